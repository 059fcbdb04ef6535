"""Ranking a whole collection (leave-one-out's default): visret's exact search against the
per-shard k-selection it replaced, in one run.

Run from the repository root: ``.venv/bin/python benchmarks/ranking.py`` (about 15 seconds).
10,000 random 576-d vectors in shards of 2,048; 2,000 queries each ranked against all 10,000:

- visret: ``ExactSearch.search(queries, 10_000)`` (distance matrix, one sort of 64-bit keys a row);
- before: ``faiss.knn`` with k = the shard's size on every shard, then ``np.lexsort`` by (distance, id),
  500 queries at a time;

and the share of (query, rank) cells where both put the same entry (float rounding of the two
distance computations may swap entries within about 1e-6 of each other).
"""

from __future__ import annotations

import json
import time

import faiss
import numpy as np

from visret.index.distances import get_distance
from visret.index._search import ExactSearch


def per_shard_selection(queries, shards, offsets, ids, distance):
    found_d, found_i = [], []
    for shard, start in zip(shards, offsets[:-1]):
        raw, rows = faiss.knn(queries, shard, len(shard))
        found_d.append(distance.readable(raw))
        found_i.append(ids[start + rows])
    d, i = np.concatenate(found_d, 1), np.concatenate(found_i, 1)
    order = np.lexsort((i, d), axis=1)
    return np.take_along_axis(d, order, 1), np.take_along_axis(i, order, 1)


def main() -> None:
    vectors = np.random.default_rng(0).random((10_000, 576), dtype=np.float32)
    shards = [vectors[i : i + 2048] for i in range(0, len(vectors), 2048)]
    ids, distance = np.arange(len(vectors)), get_distance("l2")
    search = ExactSearch(shards, ids, distance)
    queries = vectors[:2000]
    start = time.perf_counter()
    new_d, new_i = search.search(queries, len(vectors))
    visret_s = time.perf_counter() - start
    start = time.perf_counter()
    old = [per_shard_selection(queries[b : b + 500], shards, search.offsets, ids, distance) for b in range(0, len(queries), 500)]
    before_s = time.perf_counter() - start
    old_i = np.concatenate([i for _, i in old])
    print(json.dumps({
        "queries": len(queries), "entries": len(vectors), "visret_s": round(visret_s, 2), "before_s": round(before_s, 2),
        "speed_up": round(before_s / visret_s, 2), "same_entry_at_each_rank": round(float(np.mean(new_i == old_i)), 6),
    }, indent=2))


if __name__ == "__main__":
    main()
