"""Running an extractor over many image files: batches, worker processes, logged skips.

Decoding and CPU-bound extraction scale across cores with a process pool; the results come
back in input order. A file that cannot be decoded or featurised is skipped with one warning
line and never stops the run.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import itertools
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from visret.dataset import ImageRecord
from visret.errors import VisretError
from visret.extractor import FeatureExtractor, InputSpec
from visret.images import DEFAULT_MAX_PIXELS, ImageReadError, read_image

log = logging.getLogger("visret")


@dataclass
class Extracted:
    """Features of the images that could be read, in input order, and what was skipped."""

    features: np.ndarray
    records: list[ImageRecord] = field(default_factory=list)
    hashes: list[str] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _featurise(extractor: FeatureExtractor, images: list[np.ndarray]) -> tuple[np.ndarray, list[int], list[str]]:
    """Extract a batch; if the batch fails, retry image by image to isolate the culprit."""
    try:
        return np.asarray(extractor.extract(images), dtype=np.float32), list(range(len(images))), []
    except VisretError:
        raise  # the extractor cannot work at all (e.g. weights missing): not one image's fault
    except Exception:
        rows, ok, errors = [], [], []
        for i, image in enumerate(images):
            try:
                rows.append(np.asarray(extractor.extract([image]), dtype=np.float32)[0])
                ok.append(i)
            except Exception as exc:
                errors.append(f"extractor failed: {type(exc).__name__}: {exc}")
        return np.array(rows, dtype=np.float32).reshape(len(rows), extractor.dim), ok, errors


def read_batch(spec: InputSpec, paths: Sequence[Path], max_pixels: int):
    """Decode one batch: ``(images, positions, hashes, skipped)``."""
    images, positions, hashes, skipped = [], [], [], []
    for position, path in enumerate(paths):
        try:
            image, digest = read_image(path, spec, max_pixels)
        except ImageReadError as exc:
            skipped.append((position, str(exc)))
            continue
        images.append(image)
        positions.append(position)
        hashes.append(digest)
    return images, positions, hashes, skipped


def featurise_batch(extractor: FeatureExtractor, decoded):
    """Featurise a decoded batch: ``(positions, hashes, features, skipped)``."""
    images, positions, hashes, skipped = decoded
    if not images:
        return [], [], np.zeros((0, extractor.dim), np.float32), skipped
    features, ok, errors = _featurise(extractor, images)
    failed = sorted(set(range(len(images))) - set(ok))
    skipped.extend((positions[i], error) for i, error in zip(failed, errors))
    return [positions[i] for i in ok], [hashes[i] for i in ok], features, skipped


def extract_batch(extractor: FeatureExtractor, paths: Sequence[Path], max_pixels: int):
    """Read and featurise one batch: ``(positions, hashes, features, skipped)``."""
    return featurise_batch(extractor, read_batch(extractor.input_spec, paths, max_pixels))


def _decoded_ahead(extractor: FeatureExtractor, path_batches, max_pixels: int, workers: int):
    """Featurise batches in order in this process while worker processes decode the next ones.

    For extractors that use every core themselves (TensorFlow): decoding overlaps with their
    work, and at most ``workers + 1`` decoded batches wait in memory.
    """
    spec = extractor.input_spec
    with ProcessPoolExecutor(max_workers=workers, mp_context=_pool_context(extractor)) as pool:
        pending = deque()
        batches = iter(path_batches)
        for paths in itertools.islice(batches, workers + 1):
            pending.append(pool.submit(read_batch, spec, paths, max_pixels))
        while pending:
            decoded = pending.popleft().result()
            for paths in itertools.islice(batches, 1):
                pending.append(pool.submit(read_batch, spec, paths, max_pixels))
            yield featurise_batch(extractor, decoded)


_worker_extractor: FeatureExtractor | None = None


def _init_worker(extractor: FeatureExtractor) -> None:
    global _worker_extractor
    _worker_extractor = extractor
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)  # one process per core; nested BLAS/OpenMP threads would oversubscribe


def _extract_batch_in_worker(paths: Sequence[Path], max_pixels: int):
    return extract_batch(_worker_extractor, paths, max_pixels)


def _pool_context(extractor: FeatureExtractor):
    """A fork server (never a bare fork: OpenMP and TensorFlow threads do not survive one).

    The server imports visret and the extractor's module once, so each worker starts as a
    cheap fork of it instead of a fresh interpreter.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__, type(extractor).__module__])
    return context


def extract_records(
    extractor: FeatureExtractor,
    records: Sequence[ImageRecord],
    batch_size: int = 32,
    workers: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: Callable[[int], None] | None = None,
) -> Extracted:
    """Featurise ``records``; ``progress(n)`` is called as each batch of ``n`` files finishes."""
    workers = default_workers() if workers is None else workers
    out = Extracted(features=np.zeros((0, extractor.dim), np.float32))  # dim first: fails early
    batches = [list(records[i : i + batch_size]) for i in range(0, len(records), batch_size)]
    path_batches = [[r.path for r in batch] for batch in batches]
    executor = None
    if workers <= 1 or len(batches) <= 1:
        results = (extract_batch(extractor, paths, max_pixels) for paths in path_batches)
    elif not extractor.parallel:
        results = _decoded_ahead(extractor, path_batches, max_pixels, workers)
    else:
        executor = ProcessPoolExecutor(
            max_workers=min(workers, len(batches)),
            mp_context=_pool_context(extractor),
            initializer=_init_worker,
            initargs=(extractor,),
        )
        results = executor.map(_extract_batch_in_worker, path_batches, [max_pixels] * len(batches))
    chunks = []
    try:
        for batch, (positions, hashes, features, skipped) in zip(batches, results):
            out.records.extend(batch[p] for p in positions)
            out.hashes.extend(hashes)
            chunks.append(features)
            for position, reason in skipped:
                out.skipped.append((batch[position].path, reason))
                log.warning("skipped %s: %s", batch[position].path, reason)
            if progress is not None:
                progress(len(batch))
    finally:
        if executor is not None:
            executor.shutdown(cancel_futures=True)
    if chunks:
        out.features = np.concatenate(chunks).astype(np.float32, copy=False)
    return out
