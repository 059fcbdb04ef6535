"""The Ray engine: images embedded by a pool of Ray Data actors, on this machine or a cluster.

The driver lists the images and fits a learning extractor, exactly as the local engine does;
then ``map_batches`` runs an actor pool whose actors each build the extractor once (a Keras
model is built in the actor, with TensorFlow's threads set to the actor's CPUs) and read and
decode their files with visret's own loader, so bad files are skipped by the same rules. Results
stream back to the driver, which commits them in parts as they arrive: an interrupted run
resumes without recomputing what was committed. Ray is imported only here, only when asked for.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence
from urllib.parse import urlsplit

import numpy as np

from visret.images._folders import ImageRecord
from visret.errors import VisretError
from visret.embedding._extraction import BatchCollector, Extracted, extract_batch
from visret.features._extractor import FeatureExtractor
from visret.images._decode import is_uri

INSTALL_HINT = "pip install 'visret[ray]'"
#: Seconds to wait for a cluster's port to answer before saying it cannot be reached.
CONNECT_TIMEOUT = 5.0


def check_available() -> None:
    """A one-line error, before any work, when Ray Data is not installed."""
    try:
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise VisretError(f"the Ray engine needs Ray Data ({exc.name or 'ray'} is missing): {INSTALL_HINT}") from None


def _check_reachable(address: str) -> None:
    """Fail in one line, within seconds, when nothing listens at a cluster address (Ray itself
    retries for minutes)."""
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        host, port = None, None
    if not host or port is None:
        raise VisretError(f"Ray address {address!r} is not auto, HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__.replace("timeout", "timed out")
        raise VisretError(f"cannot reach the Ray cluster at {address}: {reason.lower()}") from None


def connect(address: str | None) -> bool:
    """Join Ray: the instance already started in this process, the cluster at ``address``, or a
    new instance of this machine. Return True when this call started the connection."""
    import ray

    if ray.is_initialized():
        return False
    quiet = {"include_dashboard": False, "configure_logging": False, "log_to_driver": False}  # the user's logging stays theirs
    if address is None and not os.environ.get("RAY_ADDRESS"):
        ray.init(_node_ip_address="127.0.0.1", **quiet)  # a private instance, on the loopback only
        return True
    address = address or os.environ["RAY_ADDRESS"]
    if address != "auto":
        _check_reachable(address)
    try:
        ray.init(address=address, **{k: v for k, v in quiet.items() if k != "include_dashboard"})
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise VisretError(f"cannot connect to the Ray cluster at {address}: {str(exc).splitlines()[0]}") from None
    return True


class EmbedActor:
    """One actor of the pool: builds the extractor once, then reads and embeds batches of files."""

    def __init__(self, extractor: FeatureExtractor | None, spec: dict[str, Any], state: dict[str, np.ndarray],
                 threads: int, max_pixels: int, max_bytes: int):
        for variable in ("TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS"):  # before TensorFlow starts here
            os.environ[variable] = str(threads)
        os.environ["TF_NUM_INTEROP_THREADS"] = "1"
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        if extractor is None:  # a model is built here, not shipped
            from visret.features._lookup import extractor_from_spec

            extractor = extractor_from_spec(spec)
            if state:
                extractor.set_state(state)
        self.extractor, self.max_pixels, self.max_bytes = extractor, max_pixels, max_bytes

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        paths = [str(p) for p in batch["path"]]
        positions, hashes, features, skipped = extract_batch(self.extractor, paths, self.max_pixels, self.max_bytes)
        n = len(paths)
        vectors = np.zeros((n, self.extractor.dim), np.float32)
        vectors[positions] = features
        sha256, error = np.full(n, "", dtype=object), np.full(n, "", dtype=object)
        sha256[positions] = hashes
        for position, reason in skipped:
            error[position] = reason
        return {"path": batch["path"], "label": batch["label"], "labelled": batch["labelled"],
                "sha256": sha256, "error": error, "features": vectors}


def _record(path: str, label: str, labelled: bool) -> ImageRecord:
    return ImageRecord(path if is_uri(path) else Path(path), label if labelled else None)


class RayEmbedder:
    """The Ray engine behind the same ``stream`` as the local ``Embedder``."""

    def __init__(self, extractor: FeatureExtractor, options):
        check_available()
        self.extractor, self.options = extractor, options
        self._started = connect(options.ray_address)
        import ray

        resources = ray.cluster_resources()
        self.gpus = int(resources.get("GPU", 0)) if not extractor.parallel else 0
        self.actors = options.actors or max(1, self.gpus or int(resources.get("CPU", 1)))
        self.cpus_per_actor = max(1, int(resources.get("CPU", 1)) // self.actors) if self.gpus else 1

    def __enter__(self) -> RayEmbedder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._started:
            import ray

            ray.shutdown()
            self._started = False

    def _dataset(self, records: Sequence[ImageRecord]):
        import ray.data

        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # visret shows its own progress
        logging.getLogger("ray.data").setLevel(logging.ERROR)
        items = [{"path": str(r.path), "label": r.label or "", "labelled": r.label is not None} for r in records]
        # enough blocks for every actor to have work, few enough that each is several batches
        blocks = min(len(items), max(2 * self.actors, min(math.ceil(len(items) / (4 * self.options.batch_size)), 1000)))
        shipped = self.extractor if self.extractor.parallel else None  # a model is rebuilt in each actor
        arguments = {"extractor": shipped, "spec": self.extractor.get_config(), "state": self.extractor.get_state(),
                     "threads": self.cpus_per_actor, "max_pixels": self.options.max_pixels,
                     "max_bytes": self.options.max_bytes}
        return ray.data.from_items(items, override_num_blocks=blocks).map_batches(
            EmbedActor, fn_constructor_kwargs=arguments, batch_size=self.options.batch_size, batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=self.actors), num_cpus=self.cpus_per_actor,
            num_gpus=1 if self.gpus else None,
        )

    def stream(self, records: Sequence[ImageRecord], chunk: int, progress: Callable[[int], None] | None = None) -> Iterator[Extracted]:
        """Featurise ``records`` on the actor pool; chunks of about ``chunk`` files, in arrival order."""
        if not records:
            return
        import ray.exceptions

        warnings.filterwarnings("ignore", category=UserWarning, module=r"ray\.data")  # tuning hints for Ray users
        collector = BatchCollector(self.extractor)
        batches = self._dataset(records).iter_batches(batch_size=self.options.batch_size, batch_format="numpy")
        try:
            for batch in batches:
                errors = batch["error"]
                group = [_record(p, l, bool(b)) for p, l, b in zip(batch["path"], batch["label"], batch["labelled"])]
                positions = [i for i, e in enumerate(errors) if not e]
                collector.add(group, positions, [batch["sha256"][i] for i in positions],
                              np.asarray(batch["features"][positions], np.float32), [(i, e) for i, e in enumerate(errors) if e])
                if progress is not None:
                    progress(len(group))
                if collector.size >= chunk:
                    yield collector.take()
        except ray.exceptions.RayError as exc:
            raise VisretError(f"the Ray engine failed: {_reason(exc)}") from None
        if collector.size:
            yield collector.take()


def _reason(exc: BaseException) -> str:
    """The first line of what went wrong in an actor, without Ray's wrapping."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, VisretError):
        return str(cause)
    if cause is not None and cause is not exc:
        return f"{type(cause).__name__}: {str(cause).strip().splitlines()[0] if str(cause).strip() else ''}"
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[-1].strip() if lines else type(exc).__name__
