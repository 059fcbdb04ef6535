"""Running an extractor over many image files: batches, worker processes or threads, logged skips.

CPU-bound extraction in Python (``parallel`` extractors: the handcrafted ones) scales across cores
with a process pool, started only when the work pays for its start-up (the first batch runs here
and is timed) and kept for the whole run. A network runs every core itself, in this process, while
threads decode the batches after the current one. Results come back in input order. A file that cannot be decoded or featurised is skipped
with one warning line and never stops the run; an extractor that fails on every image stops it.
Workers die with the process that started them, and never import the user's main script.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import os
import pickle
import pickletools
import sys
import threading
import time
from collections import deque
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from visret.images._folders import ImageRecord
from visret.errors import VisretError
from visret.features._extractor import FeatureExtractor, InputSpec
from visret.features._output import checked_features, finite_rows
from visret.images._decode import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, ImageReadError, display_path, read_image

log = logging.getLogger("visret")
#: Worker processes are started when the work left would take longer than this in one process.
POOL_PAYS_AFTER = 1.0
#: Batches decoded ahead of a network, per decoding thread: enough that a core the network leaves idle
#: at a batch's end always finds decoding to do.
AHEAD = 3
#: Consecutive images an extractor may fail on before the run stops with an error.
MAX_CONSECUTIVE_FAILURES = 20


@dataclass
class Extracted:
    """Features of the images that could be read, in input order, and what was skipped."""

    features: np.ndarray
    records: list[ImageRecord] = field(default_factory=list)
    hashes: list[str] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _featurise(extractor: FeatureExtractor, images: list[np.ndarray]) -> tuple[np.ndarray, list[int], dict[int, str]]:
    """Extract a batch, checked (``checked_features``): ``(features, kept, failures)``. If the batch fails,
    retry image by image to isolate the culprit; images whose features are NaN or infinite are left out."""
    failures: dict[int, str] = {}
    try:
        features = checked_features(extractor, extractor.extract(images), len(images))
        kept = list(range(len(images)))
    except VisretError:
        raise  # the extractor cannot work at all (weights missing, output of the wrong shape): not one image's fault
    except Exception:
        rows, kept = [], []
        for i, image in enumerate(images):
            try:
                output = extractor.extract([image])
            except Exception as exc:
                failures[i] = f"extractor failed: {type(exc).__name__}: {exc}"
                continue
            rows.append(checked_features(extractor, output, 1)[0])
            kept.append(i)
        features = np.array(rows, dtype=np.float32).reshape(len(rows), extractor.dim)
    finite = finite_rows(features)
    failures.update((i, "extractor gave NaN or infinite features") for i, good in zip(kept, finite) if not good)
    return features[finite], [i for i, good in zip(kept, finite) if good], failures


def read_batch(spec: InputSpec, paths: Sequence[Path], max_pixels: int, max_bytes: int = DEFAULT_MAX_BYTES):
    """Decode one batch: ``(images, positions, hashes, skipped)``."""
    images, positions, hashes, skipped = [], [], [], []
    for position, path in enumerate(paths):
        try:
            image, digest = read_image(path, spec, max_pixels, max_bytes)
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
    features, kept, failures = _featurise(extractor, images)
    skipped.extend((positions[i], failures[i]) for i in sorted(failures))
    return [positions[i] for i in kept], [hashes[i] for i in kept], features, skipped


def extract_batch(extractor: FeatureExtractor, paths: Sequence[Path], max_pixels: int, max_bytes: int = DEFAULT_MAX_BYTES):
    """Read and featurise one batch: ``(positions, hashes, features, skipped)``."""
    return featurise_batch(extractor, read_batch(extractor.input_spec, paths, max_pixels, max_bytes))


# ---- worker processes -----------------------------------------------------------------------
_worker_extractor: FeatureExtractor | None = None


def _exit_with_parent() -> None:
    """Wait for the process that asked for this worker to end, then end too.

    Needed after ``kill -9``: a worker keeps the fork server alive and waits forever for work
    otherwise. The parent's sentinel is a pipe the parent holds open until it dies.
    """
    parent = multiprocessing.parent_process()
    if parent is not None:
        parent.join()
        os._exit(1)


def _init_worker(extractor: FeatureExtractor) -> None:
    global _worker_extractor
    threading.Thread(target=_exit_with_parent, daemon=True).start()
    _worker_extractor = extractor
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)  # one process per core; nested BLAS/OpenMP threads would oversubscribe


def _extract_batch_in_worker(paths: Sequence[Path], max_pixels: int, max_bytes: int):
    return extract_batch(_worker_extractor, paths, max_pixels, max_bytes)


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


@contextmanager
def _main_script_hidden() -> Iterator[None]:
    """Keep worker processes from re-running the user's script.

    Python starts each worker by importing the main module again, which runs a script's
    top-level code (``build_index`` included) unless it sits under ``if __name__ ==
    "__main__":``. Without ``__file__`` and ``__spec__`` the workers skip that import, as they
    do for ``python -c``. Nothing visret sends to a worker lives in ``__main__`` (see
    ``_defined_in_main``).
    """
    main = sys.modules.get("__main__")
    saved = {key: main.__dict__[key] for key in ("__file__", "__spec__") if main is not None and key in main.__dict__}
    try:
        for key in saved:
            if key == "__file__":
                del main.__file__
            else:
                main.__spec__ = None
        yield
    finally:
        for key, value in saved.items():
            setattr(main, key, value)


def _defined_in_main(extractor: FeatureExtractor) -> bool:
    """Whether unpickling the extractor needs the main script (a class defined in it)."""
    try:
        data = pickle.dumps(extractor)
    except Exception:
        return True
    return any(arg == "__main__" for _, arg, _ in pickletools.genops(data))


class Embedder:
    """Runs one extractor over image files, in batches, with worker processes when they pay.

    Use as a context manager; the worker pool (if any) lives until it exits, across calls.
    """

    def __init__(
        self,
        extractor: FeatureExtractor,
        batch_size: int = 32,
        workers: int | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ):
        self.extractor, self.batch_size, self.max_pixels, self.max_bytes = extractor, batch_size, max_pixels, max_bytes
        self.workers = default_workers() if workers is None else workers
        self._pool: ProcessPoolExecutor | None = None
        self._threads: ThreadPoolExecutor | None = None
        self._hidden = None
        self._batch_seconds: float | None = None
        self._collector: BatchCollector | None = None  # made at the first run: a learning extractor knows its dim once fitted
        self._in_process_only = self.workers <= 1
        if not self._in_process_only and extractor.parallel and _defined_in_main(extractor):
            log.warning("extractor %s is defined in the main script: extracting in this process "
                     "(define it in a module to use worker processes)", extractor.name or type(extractor).__name__)
            self._in_process_only = True

    def __enter__(self) -> Embedder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None
            self._hidden.__exit__(None, None, None)
        if self._threads is not None:
            self._threads.shutdown(cancel_futures=True)
            self._threads = None

    def _pool_pays(self, batches_left: int) -> bool:
        if self._pool is not None:
            return True
        if self._in_process_only or batches_left <= 1 or self._batch_seconds is None:
            return False
        return self._batch_seconds * batches_left > POOL_PAYS_AFTER

    def _start_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._hidden = _main_script_hidden()
            self._hidden.__enter__()
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers, mp_context=_pool_context(self.extractor),
                initializer=_init_worker, initargs=(self.extractor,),
            )
        return self._pool

    def _decoders(self) -> ThreadPoolExecutor:
        if self._threads is None:
            self._threads = ThreadPoolExecutor(self.workers, thread_name_prefix="visret-decode")
        return self._threads

    def _results(self, path_batches: list[list[Path]]):
        """Each batch's result, in order."""
        if self.extractor.parallel:
            yield from self._in_processes(path_batches)
        elif self._in_process_only:
            for paths in path_batches:
                yield extract_batch(self.extractor, paths, self.max_pixels, self.max_bytes)
        else:
            yield from self._decoded_ahead(path_batches)

    def _in_processes(self, path_batches: list[list[Path]]):
        """Here while one process is enough, then in the worker processes."""
        left = deque(path_batches)
        while left and not self._pool_pays(len(left)):
            start = time.perf_counter()
            yield extract_batch(self.extractor, left.popleft(), self.max_pixels, self.max_bytes)
            self._batch_seconds = time.perf_counter() - start
        if left:
            yield from self._start_pool().map(_extract_batch_in_worker, left, itertools.repeat(self.max_pixels), itertools.repeat(self.max_bytes))

    def _decoded_ahead(self, path_batches: list[list[Path]]):
        """A network that runs every core itself, here, while threads decode the next batches (Pillow,
        hashing and ONNX Runtime free the GIL; no process to start, no second copy of anything)."""
        spec, decoders = self.extractor.input_spec, self._decoders()
        batches = iter(path_batches)
        pending = deque(decoders.submit(read_batch, spec, paths, self.max_pixels, self.max_bytes)
                        for paths in itertools.islice(batches, AHEAD * self.workers))
        while pending:
            decoded = pending.popleft().result()
            for paths in itertools.islice(batches, 1):
                pending.append(decoders.submit(read_batch, spec, paths, self.max_pixels, self.max_bytes))
            yield featurise_batch(self.extractor, decoded)

    def run(self, records: Sequence[ImageRecord], progress: Callable[[int], None] | None = None) -> Extracted:
        """Featurise ``records``; ``progress(n)`` is called as each batch of ``n`` files finishes."""
        batches = [list(records[i : i + self.batch_size]) for i in range(0, len(records), self.batch_size)]
        collector = self._collector = self._collector or BatchCollector(self.extractor)
        for batch, result in zip(batches, self._results([[r.path for r in b] for b in batches])):
            collector.add(batch, *result)
            if progress is not None:
                progress(len(batch))
        return collector.take()

    def stream(self, records: Sequence[ImageRecord], chunk: int, progress: Callable[[int], None] | None = None) -> Iterator[Extracted]:
        """Featurise ``records`` in chunks of ``chunk`` files, each returned as it is done."""
        for start in range(0, len(records), chunk):
            yield self.run(records[start : start + chunk], progress)


class BatchCollector:
    """Gathers batch results into one ``Extracted``: skips logged one line each, and a run stopped
    when the extractor fails on too many images in a row (a broken plugin, not bad files)."""

    def __init__(self, extractor: FeatureExtractor):
        self.extractor = extractor
        self._failures = 0
        self._reset()

    def _reset(self) -> None:
        self._out = Extracted(features=np.zeros((0, self.extractor.dim), np.float32))  # dim first: fails early
        self._chunks: list[np.ndarray] = []

    @property
    def size(self) -> int:
        """Files gathered so far, embedded or skipped."""
        return len(self._out.records) + len(self._out.skipped)

    def add(self, batch: Sequence[ImageRecord], positions, hashes, features: np.ndarray, skipped) -> None:
        """One batch's ``extract_batch`` result; ``positions`` index into ``batch``."""
        out = self._out
        out.records.extend(batch[p] for p in positions)
        out.hashes.extend(hashes)
        self._chunks.append(features)
        for position, reason in skipped:
            out.skipped.append((batch[position].path, reason))
            log.warning("skipped %s: %s", display_path(batch[position].path), reason)
        self._count_failures(len(positions), [reason for _, reason in skipped])

    def take(self) -> Extracted:
        """What was gathered since the last ``take``."""
        out, chunks = self._out, self._chunks
        if chunks:
            out.features = np.concatenate(chunks).astype(np.float32, copy=False)
        self._reset()
        return out

    def _count_failures(self, succeeded: int, reasons: list[str]) -> None:
        failed = [r for r in reasons if r.startswith("extractor failed")]
        self._failures = len(failed) if succeeded else self._failures + len(failed)
        if self._failures >= MAX_CONSECUTIVE_FAILURES:
            from visret.features._lookup import plugin_of

            owner = plugin_of(self.extractor)
            raise VisretError(
                f"extractor {self.extractor.name!r}{f' (plugin {owner})' if owner else ''} failed on {self._failures} images in a row "
                f"(last: {failed[-1].removeprefix('extractor failed: ')}); stopping"
            )


def extract_records(
    extractor: FeatureExtractor,
    records: Sequence[ImageRecord],
    batch_size: int = 32,
    workers: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: Callable[[int], None] | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Extracted:
    """Featurise ``records`` in one go (see ``Embedder`` for runs made of several calls)."""
    with Embedder(extractor, batch_size, workers, max_pixels, max_bytes) as embedder:
        return embedder.run(records, progress)


def nothing_embedded(source, skipped: Sequence[tuple[Any, str]]) -> VisretError:
    """The error when no image of ``source`` gave features: the extractor's failure when it failed
    on each of them, else unreadable files."""
    reasons = [reason for _, reason in skipped]
    if reasons and all(reason.startswith("extractor failed") for reason in reasons):
        return VisretError(f"the extractor failed on every image of {source}: {reasons[0]}")
    return VisretError(f"none of the images in {source} could be read")
