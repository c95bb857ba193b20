"""The model card written with every export: its plain-transformers recipe, run as a reader would copy it from
the card, gives ume's disc vector."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import ume
from ume.model_card import render
from ume.recipe import Recipe

TINY = Path(__file__).resolve().parents[1] / "examples" / "tiny-qwen2-vl"


@pytest.mark.parametrize("preprocess", ["qwen-vl-utils", "processor"])
def test_the_cards_transformers_snippet_gives_umes_disc_vector(tmp_path, preprocess):
    bb = ume.load(TINY, device="cpu").backbone  # registers <gen_emb>/<disc_emb>, as every export carries them
    model = replace(bb, recipe=replace(Recipe(), vision_preprocess=preprocess)).save(tmp_path / "m")
    enc = ume.load(model, device="cpu")
    card = render(Recipe.load(model), "qwen2_vl", "sft", "base", {"max_steps": 3}, {"step": 3, "loss": 1.0},
                  bb.disc_id, bb.gen_id)
    blocks = re.findall(r"```python\n(.*?)```", card, re.S)
    assert len(blocks) == 2 and "ume.load" in blocks[0]
    for text in ("a red circle", "two blue squares on a page"):
        scope: dict = {}
        exec(blocks[1].replace('"THIS_FOLDER"', repr(str(model))).replace('"a red circle"', repr(text)), scope)
        want = enc.encode([text], mode="disc", show_progress=False).embeddings[0]
        got = scope["vector"].float().numpy()
        assert float(np.dot(got, want)) >= 0.9999, text
    assert f"id {bb.disc_id}" in card and "base_model:" not in card.split("---")[1].replace("base_model: base", "")
