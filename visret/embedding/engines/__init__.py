"""Where images are embedded: in this process and its worker processes (``local``), or on a Ray
cluster (``ray``). Both return the same results through the same commit path (``visret.index._changes``)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Callable, Iterator, Protocol, Sequence

from visret.images._folders import ImageRecord
from visret.errors import VisretError
from visret.embedding._extraction import Embedder, Extracted
from visret.features._extractor import FeatureExtractor
from visret.images._decode import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS

ENGINES = ("local", "ray")
#: Images embedded per committed part (and per shard).
SHARD_SIZE = 2048


class StreamingEmbedder(Protocol):
    """What an engine provides: chunks of embedded images, each committed as it arrives."""

    def stream(self, records: Sequence[ImageRecord], chunk: int, progress: Callable[[int], None] | None = None) -> Iterator[Extracted]: ...

    def __enter__(self) -> StreamingEmbedder: ...

    def __exit__(self, *exc) -> None: ...


@dataclass(frozen=True)
class EmbedOptions:
    """How images are read and embedded: engine, batch size, workers or actors, file limits.

    ``workers`` are local processes; ``actors`` Ray actors (by default one per CPU of the
    cluster, or one per GPU when it has GPUs); ``ray_address`` is ``None`` (a Ray instance of
    this machine), ``auto`` (the cluster this machine belongs to) or ``ray://HOST:PORT``.
    """

    batch_size: int = 32
    workers: int | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_bytes: int = DEFAULT_MAX_BYTES
    shard_size: int = SHARD_SIZE
    engine: str = "local"
    ray_address: str | None = None
    actors: int | None = None

    @classmethod
    def from_keywords(cls, caller: str, keywords: dict) -> EmbedOptions:
        """The options a function takes as ``**embedding`` keywords, checked; one definition for all callers."""
        known = {f.name for f in fields(cls)}
        for name in keywords:
            if name not in known:
                raise TypeError(f"{caller}() got an unexpected keyword argument {name!r}")
        options = cls(**keywords)
        options.check()
        return options

    def check(self) -> None:
        for name in ("batch_size", "shard_size", "max_pixels", "max_bytes"):
            if getattr(self, name) < 1:
                raise VisretError(f"{name.replace('_', ' ')} must be at least 1, got {getattr(self, name)}")
        for name in ("workers", "actors"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise VisretError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.engine not in ENGINES:
            raise VisretError(f"unknown engine {self.engine!r}; choose one of {', '.join(ENGINES)}")
        if self.engine != "ray" and (self.ray_address is not None or self.actors is not None):
            raise VisretError("--ray-address and --actors need --engine ray")
        if self.engine == "ray":
            from visret.embedding.engines.ray_data import check_available

            check_available()


def open_embedder(extractor: FeatureExtractor, options: EmbedOptions) -> StreamingEmbedder:
    """The engine ``options`` names, ready to embed with ``extractor`` (use as a context manager)."""
    if options.engine == "ray":
        from visret.embedding.engines.ray_data import RayEmbedder

        return RayEmbedder(extractor, options)
    return Embedder(extractor, options.batch_size, options.workers, options.max_pixels, options.max_bytes)
