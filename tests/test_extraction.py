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


def test_a_network_runs_here_while_threads_decode_ahead_with_the_same_output(folder_with_broken_files, digits, monkeypatch):
    """A network (not ``parallel``) is never shipped to worker processes: threads decode the next batches
    here, and what comes out (features, order, skips) is what one thread gives."""
    import multiprocessing
    import threading

    from visret.embedding import _extraction

    records = scan_folder(digits / "test") + scan_folder(folder_with_broken_files)
    extractor = get_extractor("keras/squeezenet", size=64)
    assert not extractor.parallel
    single = extract_records(extractor, records, batch_size=7, workers=1, max_pixels=1_000_000)
    readers, children = set(), []
    read_batch = _extraction.read_batch

    def watched(*args):
        readers.add(threading.current_thread().name)
        return read_batch(*args)

    monkeypatch.setattr(_extraction, "read_batch", watched)
    ahead = extract_records(extractor, records, batch_size=7, workers=2, max_pixels=1_000_000,
                            progress=lambda n: children.extend(multiprocessing.active_children()))
    assert readers and all(name.startswith("visret-decode") for name in readers) and children == []
    assert np.array_equal(single.features, ahead.features)
    assert single.records == ahead.records and single.hashes == ahead.hashes
    assert single.skipped == ahead.skipped and len(single.skipped) == 5 and len(single.records) == 56


def test_progress_is_reported_per_batch(digits):
    records = scan_folder(digits / "test")
    seen = []
    extract_records(get_extractor("pixels"), records, batch_size=16, workers=1, progress=seen.append)
    assert seen == [16, 16, 16, 2]


def test_fitting_a_combination_with_a_network_embeds_in_batches_not_all_at_once():
    """combine's block weights embed their fitting images in batches: all 1,020 flowers at once took 24 GB."""
    from peak_memory import peak_growth_mib

    setup = ("import numpy as np, visret\n"
             "e = visret.get_extractor('combine', parts=[{'name': 'keras/squeezenet', 'params': {'size': 96}}, 'color-hist'], weights='auto', size=96)\n"
             "rng = np.random.default_rng(0)\nimages = [rng.integers(0, 256, (96, 96, 3), dtype=np.uint8) for _ in range(640)]\n"
             "labels = [str(i % 4) for i in range(640)]\ne.extract(images[:2])")
    growth = peak_growth_mib(setup, "e.fit(images, labels)\nassert len(e.weights_) == 2")
    assert growth < 300, growth  # one batch of activations, not 640 images' (over 1 GB)
