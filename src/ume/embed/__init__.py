"""Corpus-scale embedding (`ume embed`): streaming input readers, append-only chunks with a manifest, one job
that one process, torchrun ranks and Ray actors all drive (`ume.ray`), and `open_embeddings` to read the result
as one memory-mapped array."""

from ume.embed.chunks import open_embeddings
from ume.embed.job import EmbedConfig, EmbedError, EmbedSummary, run

__all__ = ["EmbedConfig", "EmbedError", "EmbedSummary", "open_embeddings", "run"]
