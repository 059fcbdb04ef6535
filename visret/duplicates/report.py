"""What ``find_duplicates`` returns: groups of duplicate files, the pairs behind them, and how the
threshold was chosen; as a dict, CSV, or the list of files a ``keep`` rule would remove."""

from __future__ import annotations

import csv
import io
import os
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Pair:
    a: str
    b: str
    #: Hamming bits for hashes, cosine distance for float features; 0 for identical files.
    distance: float
    #: Share of random pairs of the collection that are farther apart (see ``visret.duplicates.threshold``).
    similarity: float
    #: ``exact`` (same content, SHA-256) or ``near``.
    kind: str


@dataclass
class Group:
    """Files that are copies of each other, directly or through other members."""

    files: list[str]
    #: The one file the ``keep`` rule keeps; the others are removable, except ``linked``.
    keep: str
    #: ``exact`` when every member has the same content, else ``near``.
    kind: str
    pairs: list[Pair] = field(default_factory=list)
    #: Members that are symbolic links, with the file each resolves to.
    links: dict[str, str] = field(default_factory=dict)

    @property
    def linked(self) -> list[str]:
        """Members another member links to: removing one would leave that link dangling."""
        targets = set(self.links.values())
        return [f for f in self.files if f not in self.links and os.path.realpath(f) in targets]

    @property
    def removable(self) -> list[str]:
        kept = {self.keep, *self.linked}
        return [f for f in self.files if f not in kept]

    def ordered(self) -> list[tuple[str, str]]:
        """``(path, role)`` for every member, the kept one first: role ``keep``, ``linked to``
        (kept: another member links to it), ``link`` (removable: a link) or ``""`` (removable)."""
        linked = set(self.linked)
        roles = [(self.keep, "keep")] + [(f, "linked to") for f in self.files if f in linked and f != self.keep]
        return roles + [(f, "link" if f in self.links else "") for f in self.removable]

    def closest(self) -> dict[str, Pair]:
        """Each member's closest pair to another member."""
        found: dict[str, Pair] = {}
        for pair in self.pairs:
            for path in (pair.a, pair.b):
                if path not in found or pair.distance < found[path].distance:
                    found[path] = pair
        return found


@dataclass
class DuplicateReport:
    groups: list[Group]
    #: The extractor's config, the distance (``hamming`` or ``cosine``) and the threshold used.
    extractor: dict[str, Any]
    distance: str
    threshold: float
    threshold_how: str
    keep_rule: str
    #: Images looked at, and files that could not be read.
    images: int
    skipped: int
    #: Each image's distance to its nearest other image (distinct content), for the histogram.
    nearest: list[float] = field(default_factory=list, repr=False)

    @property
    def pairs(self) -> list[Pair]:
        return [pair for group in self.groups for pair in group.pairs]

    def removable(self) -> list[str]:
        """Every file but the kept one of each group, in group order."""
        return [f for group in self.groups for f in group.removable]

    def summary(self) -> str:
        exact = sum(g.kind == "exact" for g in self.groups)
        return (
            f"{len(self.groups)} groups of duplicates ({exact} exact, {len(self.groups) - exact} near) among {self.images} images, "
            f"{len(self.removable())} removable; {self.distance} threshold {self.threshold:g} ({self.threshold_how})"
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("nearest")
        for group, original in zip(data["groups"], self.groups):
            group["removable"] = original.removable
            group["linked"] = original.linked
        return data

    def to_csv(self) -> str:
        """One row per file of each group: group number, kind, path, kept or not, and its
        smallest distance and largest similarity to another member."""
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["group", "kind", "path", "keep", "distance", "similarity"])
        for number, group in enumerate(self.groups, start=1):
            closest, removable = group.closest(), set(group.removable)
            for path in group.files:
                pair = closest.get(path)
                writer.writerow([number, group.kind, path, path not in removable,
                                 "" if pair is None else pair.distance, "" if pair is None else pair.similarity])
        return out.getvalue()
