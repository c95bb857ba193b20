"""The decoder's KV cache: rows that join and leave a running batch without copying the whole cache per step.

transformers' `DynamicLayer` appends a step's keys with `torch.cat`, a copy of every row's whole cache, per
layer, per step; continuous batching also keeps rows, appends rows and drops padding columns. `RowLayer`
keeps each layer's keys/values in a buffer with spare columns, as a view of it: a step writes one column in
place, finished rows are compacted inside the buffer, and leading padding is dropped by moving the view's start.
Only appending rows (a refill) and running out of room allocate, each with one copy. The model sees an ordinary
`Cache` of `CacheLayerMixin` layers, transformers' extension point for cache layouts.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.cache_utils import Cache, DynamicLayer

ROOM = 64  # spare columns allocated past the current length: one reallocation per 64 decoding steps


class RowLayer(DynamicLayer):
    """One layer's keys/values [rows, heads, length, dim] as views of [rows, heads, capacity, dim] buffers."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._buffers: tuple[torch.Tensor, torch.Tensor] | None = None
        self._start = self._end = 0  # the visible columns of the buffers

    def _show(self, rows: int) -> None:
        kb, vb = self._buffers
        self.keys, self.values = kb[:rows, :, self._start:self._end], vb[:rows, :, self._start:self._end]

    def _own(self) -> bool:
        """Whether keys/values are still the view this layer made (not replaced by a caller)."""
        return self._buffers is not None and self.keys.data_ptr() == self._buffers[0][:, :, self._start:].data_ptr()

    def _reserve(self, length: int, rows: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Uninitialised buffers: every column is written before it becomes visible (padding is zeroed)."""
        shape = (rows, like.shape[1], length + ROOM, like.shape[3])
        return like.new_empty(shape), like.new_empty(shape)

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
               ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        rows, q = key_states.shape[0], key_states.shape[-2]
        n = self.get_seq_length()
        if not self._own() or self._end + q > self._buffers[0].shape[-2] or self._buffers[0].shape[0] < rows:
            kb, vb = self._reserve(n + q, rows, key_states)
            if n:
                kb[:, :, :n], vb[:, :, :n] = self.keys, self.values
            self._buffers, self._start, self._end = (kb, vb), 0, n
        kb, vb = self._buffers
        kb[:rows, :, self._end:self._end + q] = key_states
        vb[:rows, :, self._end:self._end + q] = value_states
        self._end += q
        self._show(rows)
        return self.keys, self.values

    def keep_rows(self, keep: list[int]) -> None:
        """Keep only the rows `keep` (ascending), compacted to the front of the buffers in place."""
        if not self._own():
            super().batch_select_indices(torch.tensor(keep, dtype=torch.long, device=self.keys.device))
            return
        kb, vb = self._buffers
        for j, i in enumerate(keep):
            if i != j:
                kb[j], vb[j] = kb[i], vb[i]
        self._show(len(keep))

    def drop_leading(self, columns: int) -> None:
        """Drop the first `columns` visible columns (padding in every remaining row)."""
        rows = self.keys.shape[0]
        if self._own():
            self._start += columns
            self._show(rows)
        else:
            self.keys, self.values = self.keys[:, :, columns:], self.values[:, :, columns:]

    def append_rows(self, other: DynamicLayer) -> None:
        """Append `other`'s rows below these, left-padding the shorter side (the attention mask hides it)."""
        a, b = self.get_seq_length(), other.get_seq_length()
        length, rows = max(a, b), self.keys.shape[0] + other.keys.shape[0]
        kb, vb = self._reserve(length, rows, self.keys)
        top = self.keys.shape[0]
        for buf in (kb, vb):  # masked out, but must be finite: a masked score is still q . k, a weight x v
            buf[:top, :, :length - a] = 0
            buf[top:, :, :length - b] = 0
        kb[:top, :, length - a:length], vb[:top, :, length - a:length] = self.keys, self.values
        kb[top:, :, length - b:length], vb[top:, :, length - b:length] = other.keys, other.values
        self._buffers, self._start, self._end = (kb, vb), 0, length
        self._show(rows)


def decode_cache(model: Any) -> Cache:
    """An empty cache of `RowLayer`s for `model`, which must be all full attention (the Qwen-VL families are):
    a sliding-window layer keeps a different layout, so it is refused rather than decoded wrongly."""
    config = model.config.get_text_config(decoder=True)
    types = getattr(config, "layer_types", None) or ["full_attention"] * config.num_hidden_layers
    if set(types) != {"full_attention"}:
        raise ValueError(f"ume's decoder needs full-attention layers; this model has {sorted(set(types))}")
    return Cache(layers=[RowLayer() for _ in types])


def keep_rows(cache: Cache, keep: list[int]) -> None:
    for layer in cache.layers:
        layer.keep_rows(keep)


def drop_leading(cache: Cache, columns: int) -> None:
    for layer in cache.layers:
        layer.drop_leading(columns)


def append_rows(cache: Cache, other: Cache) -> None:
    for la, lb in zip(cache.layers, other.layers, strict=True):
        la.append_rows(lb)
