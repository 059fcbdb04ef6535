"""Finding exact and near-duplicate images in a folder or an index.

Exact copies share a SHA-256 of their bytes and need no features. Near duplicates are found among
the distinct contents by range search under the chosen features (a perceptual hash by default),
and grouped by connected components. Nothing is deleted or moved: a ``keep`` rule only names, in
each group, the file to keep.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from visret.images.loaders import find_images
from visret.duplicates import colour
from visret.duplicates import threshold as thresholds
from visret.duplicates.pairs import UnionFind, close_pairs, distance_name, nearest_distances, random_pair_distances, searchable
from visret.duplicates.report import DuplicateReport, Group, Pair
from visret.errors import VisretError
from visret.features._extractor import FeatureExtractor
from visret.images._decode import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS

#: The extractor duplicates are found with unless another is named: on the benchmark's copies
#: (re-encoded, resized, cropped, turned, re-lit, grey) GIST with the colour check reaches pair F1
#: 0.98-1.0 where the perceptual hashes stay below 0.92 (docs/benchmarks.md); hashes are ~10x faster.
DEFAULT_DUPLICATES_EXTRACTOR = "gist"
KEEP_RULES = ("first", "largest", "newest")
#: Stored forms of 0/1 features that keep zeros at zero (so the bits can be read back).
BIT_PRESERVING_METRICS = ("hamming", "l2", "l1", "cosine", "intersection")

#: ``progress(stage, done, total)``: stages are "embedding" and "searching".
Progress = Callable[[str, int, int], None]


def _file_order_key(rule: str) -> Callable[[str], Any]:
    """Sort key under which the file to keep comes first (ties: path order)."""
    if rule == "first":
        return lambda path: path

    def key(path: str):
        try:
            stat = os.stat(path)
        except OSError:
            return (1, 0, path)  # a file gone since it was indexed is never the one kept
        if rule == "newest":
            return (0, -stat.st_mtime, path)
        return (0, -_pixels(path), -stat.st_size, path)

    return key


def _pixels(path: str) -> int:
    """Width x height from the file's header (no decoding); 0 when unreadable."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.width * image.height
    except Exception:  # noqa: BLE001 - any unreadable file ranks last, it is never fatal
        return 0


def _from_folder(folder: Path, extractor: FeatureExtractor, workers, max_pixels, max_bytes, progress):
    from visret.embedding._extraction import extract_records, nothing_embedded
    from visret.embedding._fitting import fit_extractor

    records = find_images(folder)
    if not records:
        raise VisretError(f"no image files found in {folder}")
    if extractor.requires_fit:
        fit_extractor(extractor, records, max_pixels, max_bytes=max_bytes)
    done = 0

    def embedded(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress("embedding", done, len(records))

    found = extract_records(extractor, records, workers=workers, max_pixels=max_pixels, progress=embedded, max_bytes=max_bytes)
    paths = [str(r.path) for r in found.records]
    if not paths:
        raise nothing_embedded(folder, found.skipped)
    return paths, found.hashes, found.features, len(found.skipped)


@dataclass(frozen=True)
class _StoredFeatures:
    """An index's extractor as its manifest records it, where that extractor's plugin is not installed
    here: duplicates are found from the stored vectors, which need no extractor."""

    name: str
    config: dict[str, Any]
    binary: bool
    dim: int

    def get_config(self) -> dict[str, Any]:
        return self.config


def _from_index(index, extractor: FeatureExtractor | None):
    config = index.manifest["extractor"]
    built = index.extractor if index.has_extractor else _StoredFeatures(config["name"], config, index.metric == "hamming", index.manifest["dim"])
    if extractor is not None and extractor.get_config() != built.get_config():
        raise VisretError(
            f"the index at {index.path} was built with {built.name} {built.get_config()['params']}, not {extractor.name} "
            f"{extractor.get_config()['params']}: leave out the extractor, or pass the folder instead"
        )
    if built.binary and index.metric not in BIT_PRESERVING_METRICS:
        raise VisretError(f"cannot read {built.name} bits back from an index with metric {index.metric}; pass the folder instead")
    rows = index.rows("live files by path")
    if not rows:
        raise VisretError(f"the index at {index.path} is empty")
    features = index.vectors([r[0] for r in rows])
    if built.binary:
        features = (features > 0).astype(np.float32)
    return built, [r[1] for r in rows], [r[2] for r in rows], features


def find_duplicates(
    source: Any,
    extractor: str | FeatureExtractor | None = None,
    params: dict[str, Any] | None = None,
    threshold: float | None = None,
    auto_threshold: bool = False,
    keep: str = "first",
    workers: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    progress: Progress | None = None,
    colour_check: bool = True,
) -> DuplicateReport:
    """Groups of exact and near-duplicate images in ``source``: a folder, an index directory or an
    opened ``Index`` (whose stored vectors are used instead of extracting features).

    ``extractor`` defaults to ``gist`` for folders and to the index's own extractor for indexes.
    ``threshold`` is in bits for perceptual hashes and in cosine distance for float features; by
    default the extractor's calibrated one (``visret.duplicates.threshold.CALIBRATED``), else, as
    with ``auto_threshold``, one picked from the gap in nearest-neighbour distances. ``keep``
    (``first``, ``largest``, ``newest``) names the file each group keeps. ``colour_check`` keeps
    two colourful images whose hues disagree out of one group (see ``visret.duplicates.colour``);
    it reads the images of candidate pairs again (a file gone since indexing passes).
    """
    from visret.index._index import Index, open_at
    from visret.features._lookup import resolve_extractor

    if keep not in KEEP_RULES:
        raise VisretError(f"keep must be one of {', '.join(KEEP_RULES)}, got {keep!r}")
    if threshold is not None and auto_threshold:
        raise VisretError("pass a threshold or ask for an automatic one, not both")
    from_index = isinstance(source, Index) or _is_index(source)
    if from_index and extractor is None:
        if params:
            raise VisretError("pass params only with an extractor name")
        asked = None
    else:
        asked = resolve_extractor(extractor or DEFAULT_DUPLICATES_EXTRACTOR, params)
    skipped = 0
    if from_index:
        opened = source if isinstance(source, Index) else open_at(Path(source))
        try:
            chosen, paths, hashes, features = _from_index(opened, asked)
        finally:
            if opened is not source:
                opened.close()
    else:
        folder = source  # a folder, an image list, or a source a loader reads
        chosen = asked
        paths, hashes, features, skipped = _from_folder(folder, chosen, workers, max_pixels, max_bytes, progress)
    if not paths:
        raise VisretError(f"none of the images in {source} could be read")
    check = (max_pixels, max_bytes) if colour_check else None
    return _group(paths, hashes, features, chosen, threshold, auto_threshold, keep, skipped, progress, check)


def _is_index(source: Any) -> bool:
    return isinstance(source, (str, Path)) and (Path(source) / "manifest.json").is_file()


def _group(paths, hashes, features, extractor, threshold, auto_threshold, keep, skipped, progress, colour_limits) -> DuplicateReport:
    binary = bool(getattr(extractor, "binary", False))
    first_of: dict[str, int] = {}
    representative = np.array([first_of.setdefault(h, i) for i, h in enumerate(hashes)])
    distinct = np.flatnonzero(representative == np.arange(len(paths)))
    vectors = searchable(features[distinct], binary)
    random_pairs = random_pair_distances(vectors, binary)
    nearest = nearest_distances(vectors, binary)
    if threshold is not None:
        thresholds.check(threshold, binary, features.shape[1])
        chosen = thresholds.Threshold(float(threshold), "given")
    else:
        fixed = None if auto_threshold else thresholds.default(extractor)
        chosen = fixed or thresholds.automatic(nearest, random_pairs, binary)
    search_progress = None if progress is None else (lambda done, total: progress("searching", done, total))
    i, j, d = close_pairs(vectors, binary, chosen.value, search_progress)
    i, j, d = distinct[i], distinct[j], d  # as indexes of paths
    closest_first = np.argsort(d, kind="stable")
    i, j, d = i[closest_first], j[closest_first], d[closest_first]
    guard = None
    if colour_limits is not None and len(i):
        candidates = np.unique(np.concatenate([i, j])).tolist()
        guard = colour.ColourGuard(dict(zip(candidates, colour.signatures([paths[k] for k in candidates], *colour_limits))))
    components = UnionFind(len(paths))
    for a in range(len(paths)):
        components.union(a, representative[a])
    joined = np.array([components.union(a, b, guard) for a, b in zip(i.tolist(), j.tolist())], bool)
    i, j, d = i[joined], j[joined], d[joined]
    similarity = thresholds.similarity(d, random_pairs)
    near_pairs: dict[int, list[Pair]] = {}
    for a, b, dist, sim in zip(i.tolist(), j.tolist(), d.tolist(), similarity.tolist()):
        near_pairs.setdefault(components.find(a), []).append(Pair(paths[a], paths[b], round(dist, 6), round(sim, 6), "near"))
    order = _file_order_key(keep)
    groups = []
    for members in components.groups():
        exact = [Pair(paths[representative[m]], paths[m], 0.0, 1.0, "exact") for m in members if representative[m] != m]
        files = [paths[m] for m in members]
        kind = "exact" if len({hashes[m] for m in members}) == 1 else "near"
        links = {f: os.path.realpath(f) for f in files if os.path.islink(f)}
        keep = min(files, key=lambda f: (f in links, order(f)))  # a real file before a link to it
        groups.append(Group(files, keep, kind, exact + near_pairs.get(components.find(members[0]), []), links))
    return DuplicateReport(
        groups=groups, extractor=extractor.get_config(), distance=distance_name(binary), threshold=chosen.value,
        threshold_how=chosen.how, keep_rule=keep, images=len(paths), skipped=skipped,
        nearest=[round(float(x), 6) for x in nearest],
    )
