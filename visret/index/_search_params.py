"""Search parameters chosen for a recall target when an index is built, and the recall they give.

An IVF index probes ``nprobe`` of its lists and an HNSW graph keeps a beam of ``ef_search``; too few
lose neighbours, too many cost time. A fixed default fits no collection: on 1M clustered vectors
``nprobe`` 16 gave recall@10 0.365, and on a small, tightly clustered collection it probes more lists
than needed. So a build measures: a seeded sample of stored vectors is searched exactly (over the
shards) and through the structure at doubling values, and the smallest value whose recall@10 reaches
``RECALL_TARGET`` is kept in the manifest with the recall it gave (``visret info`` shows it,
``visret info --recall`` measures it again). Recall leaves the query itself out: every stored vector
finds itself, which would count a tenth of recall@10 for free. Codes cap recall (10M vectors of real
structure as SQ8 codes reach 0.933 with every list probed), so doubling stops once it gains less than
``PLATEAU``, rather than probing every list for nothing (knobs below ``K`` are widened to it by the search
and only judged past it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from visret.index._search import ExactSearch, StructureSearch
from visret.index._vectors import rows_at
from visret.index.distances import Distance

#: The recall@10 against exact search a build chooses its search parameters for.
RECALL_TARGET = 0.95
#: Stored vectors searched to measure it (a seeded sample).
SAMPLE = 500
#: Neighbours compared.
K = 10
#: Recall a doubling must add (past ``K``) to be worth its cost, when the target is not reached yet.
PLATEAU = 0.0005


def sample_rows(ids: np.ndarray, size: int = SAMPLE, seed: int = 0) -> np.ndarray:
    """Positions of a seeded sample of ``size`` stored vectors (all when fewer)."""
    return np.sort(np.random.default_rng(seed).choice(len(ids), min(size, len(ids)), replace=False))


def recall_at_10(truth: np.ndarray, found: np.ndarray, query_ids: np.ndarray) -> float:
    """Mean share of each query's ``K`` exact neighbours (itself left out) among the ``K`` found."""
    shares = []
    for own, exact, approximate in zip(query_ids.tolist(), truth.tolist(), found.tolist()):
        wanted = [i for i in exact if i != own and i >= 0][:K]
        if wanted:
            got = [i for i in approximate if i != own and i >= 0][:K]
            shares.append(len(set(got) & set(wanted)) / len(wanted))
    return float(np.mean(shares)) if shares else 1.0


def choose(structure, shards: Sequence[np.ndarray | Path], ids: np.ndarray, distance: Distance,
           target: float = RECALL_TARGET) -> dict[str, float | int]:
    """The smallest doubling value of each knob the structure has whose recall@10 reaches ``target`` (or
    past which doubling gains less than ``PLATEAU``), and that recall: ``{"nprobe": 32, "recall_at_10":
    0.962}``; ``{}`` for a structure without knobs. Shards given as files are read one at a time."""
    knobs = structure.search_knobs()
    if not knobs:
        return {}
    exact = ExactSearch(shards, ids, distance)
    rows = sample_rows(ids)
    queries = rows_at(shards, rows)
    truth = exact.search(queries, K + 1)[1]
    approximate = StructureSearch(structure, distance, np.zeros(0, np.int64))
    chosen: dict[str, float | int] = {}

    def recall(knob: str, value: int) -> float:
        structure.set_search_params(**{knob: value})
        return recall_at_10(truth, approximate.search(queries, K + 1)[1], ids[rows])

    for knob, largest in knobs.items():
        value, reached = 1, recall(knob, 1)
        while reached < target and value < largest:
            bigger = min(2 * value, largest)
            more = recall(knob, bigger)
            if value > K and more - reached < PLATEAU:  # the codes cap recall: more costs time for nothing
                break
            value, reached = bigger, more
        chosen.update({knob: value, "recall_at_10": round(reached, 4)})
    return chosen

