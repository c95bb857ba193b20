"""The decoder's cache layer against transformers' own `DynamicLayer` fed the same operations: appending steps,
keeping rows, dropping leading padding and appending a refill's rows must leave the same keys and values."""

from __future__ import annotations

import random

import pytest
import torch
from transformers import AutoModelForImageTextToText
from transformers.cache_utils import DynamicLayer

from ume.kv_cache import ROOM, RowLayer, decode_cache


def kv(rows: int, length: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(rows, 2, length, 4, generator=gen), torch.randn(rows, 2, length, 4, generator=gen)


def pad_left(t: torch.Tensor, length: int) -> torch.Tensor:
    return torch.cat([t.new_zeros(*t.shape[:2], length - t.shape[2], t.shape[3]), t], dim=2)


@pytest.mark.parametrize("seed", range(4))
def test_row_layer_equals_dynamic_layer_under_continuous_batching(seed):
    rng, gen = random.Random(seed), torch.Generator().manual_seed(seed)
    ours, ref = RowLayer(), DynamicLayer()
    k, v = kv(5, 7, gen)
    ours.update(k, v)
    ref.update(k, v)
    for _ in range(3 * ROOM):  # long enough to run out of room more than once
        rows = ref.keys.shape[0]
        op = rng.random()
        if op < 0.1 and rows > 1:
            keep = sorted(rng.sample(range(rows), rng.randint(1, rows - 1)))
            ours.keep_rows(keep)
            ref.batch_select_indices(torch.tensor(keep))
        elif op < 0.15 and ref.get_seq_length() > 2:
            drop = rng.randint(1, 2)
            ours.drop_leading(drop)
            ref.keys, ref.values = ref.keys[:, :, drop:], ref.values[:, :, drop:]
        elif op < 0.2:
            new = DynamicLayer()
            new.update(*kv(rng.randint(1, 3), rng.randint(1, 12), gen))
            ours.append_rows(new)
            length = max(ref.get_seq_length(), new.get_seq_length())
            ref.keys = torch.cat([pad_left(ref.keys, length), pad_left(new.keys, length)])
            ref.values = torch.cat([pad_left(ref.values, length), pad_left(new.values, length)])
        else:
            step = kv(rows, 1, gen)
            got, want = ours.update(*step), ref.update(*step)
            assert all(torch.equal(a, b) for a, b in zip(got, want, strict=True))
        assert ours.get_seq_length() == ref.get_seq_length()
        assert torch.equal(ours.keys, ref.keys) and torch.equal(ours.values, ref.values)


def test_a_step_writes_in_place_until_the_room_is_used():
    layer, gen = RowLayer(), torch.Generator().manual_seed(0)
    layer.update(*kv(2, 3, gen))
    start = layer.keys.data_ptr()
    for _ in range(ROOM):
        layer.update(*kv(2, 1, gen))
        assert layer.keys.data_ptr() == start  # no copy of the cache per step
    layer.update(*kv(2, 1, gen))
    assert layer.keys.data_ptr() != start and layer.get_seq_length() == 3 + ROOM + 1


def test_a_sliding_window_model_is_refused(tiny_dirs):
    model = AutoModelForImageTextToText.from_pretrained(tiny_dirs["qwen2_vl"])
    assert len(decode_cache(model).layers) == model.config.get_text_config().num_hidden_layers
    text = model.config.get_text_config()
    text.layer_types = ["sliding_attention"] + ["full_attention"] * (text.num_hidden_layers - 1)
    with pytest.raises(ValueError, match="full-attention layers; this model has"):
        decode_cache(model)
