"""The extraction engine: worker processes give exactly what one process gives."""

import numpy as np

from visret import get_extractor
from visret.images._folders import scan_folder
from visret.embedding._extraction import extract_records


def test_process_pool_output_equals_single_process_output(folder_with_broken_files, digits):
    records = scan_folder(digits / "test") + scan_folder(folder_with_broken_files)
    extractor = get_extractor("lbp", size=32)
    single = extract_records(extractor, records, batch_size=7, workers=1, max_pixels=1_000_000)
    pooled = extract_records(extractor, records, batch_size=7, workers=2, max_pixels=1_000_000)
    assert np.array_equal(single.features, pooled.features)
    assert single.records == pooled.records and single.hashes == pooled.hashes
    assert single.skipped == pooled.skipped and len(single.skipped) == 5
    assert len(single.records) == 56 and single.features.shape == (56, 10)


def test_progress_is_reported_per_batch(digits):
    records = scan_folder(digits / "test")
    seen = []
    extract_records(get_extractor("pixels"), records, batch_size=16, workers=1, progress=seen.append)
    assert seen == [16, 16, 16, 2]
