"""Images to vectors: worker processes on this machine, or a Ray cluster (``engines``), fitting the
extractors that learn (codebooks, projections) on a sample first."""

from visret.embedding._fitting import embed_folder, embed_images, fit_extractor
from visret.embedding.engines import ENGINES, SHARD_SIZE, EmbedOptions, open_embedder

__all__ = ["ENGINES", "SHARD_SIZE", "EmbedOptions", "embed_folder", "embed_images", "fit_extractor", "open_embedder"]
