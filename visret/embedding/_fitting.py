"""Fitting extractors that learn (codebooks, projections, supervised steps) on a collection side only.

``fit_extractor`` fits one extractor on image files; ``embed_folder`` fits when needed and embeds. ``fold_embeddings`` embeds a labelled set of
images once per part of an evaluation protocol, the extractor fitted each time on that part's
collection side and never on its queries. An extractor that learns only on top of another's
features (``post``: it has ``base``, ``fit_features`` and ``transform_features``) has its base
features computed once and only its own steps refitted per part.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from visret.images._folders import ImageRecord
from visret.errors import VisretError
from visret.embedding._extraction import Embedder
from visret.features._extractor import DEFAULT_EXTRACTOR, FeatureExtractor
from visret.images._decode import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, ImageReadError, as_array, display_path, read_image
from visret.features._lookup import extractor_from_spec, resolve_extractor
from visret.features._output import checked_query_features


def fitting_records(extractor: FeatureExtractor, records: Sequence[ImageRecord], seed: int = 0) -> list[ImageRecord]:
    """The records an extractor is fitted on: the labelled ones if it learns from labels, then a
    seeded sample of ``fit_sample_size()`` of them."""
    records = list(records)
    if extractor.supervised and any(r.label is not None for r in records):
        records = [r for r in records if r.label is not None]
    wanted = extractor.fit_sample_size()
    if wanted is not None and wanted < len(records):
        chosen = np.sort(np.random.default_rng(seed).choice(len(records), wanted, replace=False))
        records = [records[i] for i in chosen]
    return records


def fit_extractor(
    extractor: FeatureExtractor, records: Sequence[ImageRecord], max_pixels: int = DEFAULT_MAX_PIXELS,
    seed: int = 0, max_bytes: int = DEFAULT_MAX_BYTES,
) -> None:
    """Fit a learning extractor on the readable images among ``records`` (or a seeded sample);
    an extractor that learns from labels is fitted on the labelled ones."""
    records = fitting_records(extractor, records, seed)
    images, labels = [], []
    for record in records:
        try:
            images.append(read_image(record.path, extractor.input_spec, max_pixels, max_bytes)[0])
            labels.append(record.label)
        except ImageReadError:
            continue  # reported once, by the extraction pass
    if not images:
        raise VisretError("no readable image to fit the extractor on")
    try:
        extractor.fit(images, labels if all(label is not None for label in labels) else None)
    except ValueError as exc:
        raise VisretError(f"cannot fit extractor {extractor.name!r}: {exc}") from None


def _refits_on_features(extractor: FeatureExtractor) -> bool:
    base = getattr(extractor, "base", None)
    return (
        isinstance(base, FeatureExtractor) and not base.requires_fit
        and callable(getattr(extractor, "fit_features", None)) and callable(getattr(extractor, "transform_features", None))
    )


@dataclass
class FoldEmbedding:
    """The embeddings of every readable record (rows index the records) for one protocol part."""

    features: np.ndarray
    rows: np.ndarray
    seconds: float
    images: int


def fold_embeddings(
    spec: str | dict[str, Any],
    records: Sequence[ImageRecord],
    training: Sequence[np.ndarray | None],
    *,
    batch_size: int = 32,
    workers: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> Iterator[FoldEmbedding]:
    """For each mask of ``training`` (True: the records the extractor may learn from; None: all),
    the embeddings of all records by the extractor ``spec`` fitted on those records only."""
    extractor = extractor_from_spec(spec)
    position = {r.path: i for i, r in enumerate(records)}

    def embed(current: FeatureExtractor) -> FoldEmbedding:
        start = time.perf_counter()
        with Embedder(current, batch_size, workers, max_pixels) as embedder:
            extracted = embedder.run(records, progress)
        rows = np.array([position[r.path] for r in extracted.records], dtype=np.int64)
        return FoldEmbedding(extracted.features, rows, time.perf_counter() - start, len(records))

    if not extractor.requires_fit:
        shared = embed(extractor)
        for _ in training:
            yield shared
        return
    if _refits_on_features(extractor):
        base = embed(extractor.base)
        labels = np.array([records[r].label for r in base.rows], dtype=object)
        for mask in training:
            chosen = np.ones(len(base.rows), bool) if mask is None else mask[base.rows]
            if extractor.supervised:
                chosen &= labels != None  # noqa: E711 - elementwise
            current = extractor_from_spec(spec)
            sample = np.flatnonzero(chosen)
            wanted = current.fit_sample_size()
            if wanted is not None and wanted < len(sample):
                sample = np.sort(np.random.default_rng(seed).choice(sample, wanted, replace=False))
            start = time.perf_counter()
            try:
                current.fit_features(base.features[sample], labels[sample].astype(str) if extractor.supervised else None)
            except ValueError as exc:
                raise VisretError(f"cannot fit extractor {current.name!r}: {exc}") from None
            features = current.transform_features(base.features)
            yield FoldEmbedding(features, base.rows, base.seconds + time.perf_counter() - start, base.images)
        return
    for mask in training:
        current = extractor_from_spec(spec)
        fit_extractor(current, records if mask is None else [r for r, t in zip(records, mask) if t], max_pixels, seed)
        yield embed(current)


#: Images given to an extractor at once by ``embed_images``.
EMBED_BATCH = 32


def embed_images(
    images: Sequence[str | Path | Any],
    extractor: str | dict[str, Any] | FeatureExtractor = DEFAULT_EXTRACTOR,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    what: str = "image",
) -> np.ndarray:
    """Features of images given as paths, Pillow images or uint8 arrays of any size: each is
    decoded and resized as the extractor's ``input_spec`` says (``extract`` takes them prepared)."""
    extractor = resolve_extractor(extractor)
    spec = extractor.input_spec
    arrays = []
    for image in images:
        try:
            arrays.append(as_array(image, spec, max_pixels))
        except ImageReadError as exc:
            shown = display_path(image) if isinstance(image, (str, Path)) else type(image).__name__
            raise VisretError(f"cannot read {what} {shown}: {exc}") from None
    # in batches: a network's activations grow with the batch (1,020 images at once took 24 GB)
    parts = [checked_query_features(extractor, extractor.extract(arrays[start:start + EMBED_BATCH]), len(arrays[start:start + EMBED_BATCH]),
                                    what, start, len(arrays)) for start in range(0, len(arrays), EMBED_BATCH)]
    return np.concatenate(parts) if parts else np.zeros((0, extractor.dim), np.float32)


def embed_folder(
    source: str | Path,
    extractor: str | dict[str, Any] | FeatureExtractor = DEFAULT_EXTRACTOR,
    batch_size: int = 32,
    workers: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    progress: Callable[[int], None] | None = None,
    fit: bool = True,
) -> tuple[np.ndarray, list[ImageRecord]]:
    """Features of every readable image of a folder or an image list, and their records (path,
    label) in the same order: for a plot, a classifier or an index of one's own
    (``index_from_arrays``). A learning extractor is fitted on the same images first, unless
    ``fit`` is False (fitted already, e.g. on a training folder: never on the test images)."""
    from visret.images.loaders import find_images
    from visret.embedding._extraction import extract_records

    extractor = resolve_extractor(extractor)
    records = find_images(source)
    if not records:
        raise VisretError(f"no image files found in {source}")
    if fit and extractor.requires_fit:
        fit_extractor(extractor, records, max_pixels, max_bytes=max_bytes)
    found = extract_records(extractor, records, batch_size, workers, max_pixels, progress, max_bytes)
    return found.features, found.records
