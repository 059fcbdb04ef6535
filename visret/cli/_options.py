"""Options that several commands take, defined once (typer ``Annotated`` types)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

IndexPath = Annotated[
    Optional[Path],
    typer.Option("--index", help="Index directory [default: $VISRET_INDEX or indexes/default]."),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
K = Annotated[int, typer.Option("-k", "--k", min=1, help="Number of neighbours.")]
Workers = Annotated[Optional[int], typer.Option(min=1, help="Worker processes, or decoding threads beside a network [default: CPU count].")]
BatchSize = Annotated[int, typer.Option(min=1, help="Images per batch.")]
MaxPixels = Annotated[Optional[int], typer.Option(min=1, help="Skip images with more pixels (decompression bombs).")]
MaxBytes = Annotated[Optional[str], typer.Option(help="Skip files larger than this (e.g. 100M) [default: 512M].")]
Nprobe = Annotated[Optional[int], typer.Option(min=1, help="IVF lists probed per query.")]
Rerank = Annotated[Optional[str], typer.Option(help="Re-ranking: aqe:k=5, alpha-qe:k=10,alpha=3, dba:k=3, k-reciprocal:k1=20,k2=6,lambda=0.3, several joined by +, or none [default: the index's].")]
Depth = Annotated[Optional[int], typer.Option(min=1, help="Rank only the top N of the collection (mAP becomes mAP@N) [default: all].")]
EfSearch = Annotated[Optional[int], typer.Option(min=1, help="HNSW search beam per query.")]
Engine = Annotated[str, typer.Option(help="Where images are embedded: local (this machine's cores) or ray (a Ray Data actor pool; pip install 'visret[ray]').")]
RayAddress = Annotated[Optional[str], typer.Option(help="With --engine ray: auto (this machine's cluster) or ray://HOST:PORT [default: a Ray instance of this machine, or $RAY_ADDRESS].")]
Actors = Annotated[Optional[int], typer.Option(min=1, help="With --engine ray: actors in the pool [default: one per CPU, or per GPU].")]
FromList = Annotated[Optional[Path], typer.Option(help="A .csv or .parquet list of images (columns path and optional label; paths may be s3://, gs://... URIs).")]
