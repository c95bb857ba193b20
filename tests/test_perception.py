"""Perception accuracy: descriptions scored attribute by attribute against the generator's truth."""

from __future__ import annotations

import pytest
import torch

from ume.backbone import load_backbone
from ume.synth.describe import KINDS, item
from ume.tiny import build_tiny
from ume.train.perception import (
    aggregate,
    describe,
    headline,
    heldout_items,
    perception,
    perception_eval_fn,
    score_item,
)


def first(kind: str):
    return next(d for d in heldout_items(0, 30) if d.kind == kind and
                (kind != "scene" or len(d.truth["scene"]["objects"]) >= 3))


def test_the_canonical_description_scores_one_everywhere():
    items = heldout_items(0, 8)
    rep = aggregate(items, [d.text for d in items])
    for kind in KINDS:
        assert all(v == 1.0 for v in rep[kind].values()), (kind, rep[kind])
    assert rep["n"] == dict.fromkeys(KINDS, 8)
    h = headline(rep)
    assert {"colour", "shape", "count", "position", "events", "table_cells"} <= set(h)


def test_errors_cost_the_attribute_they_break():
    d = first("scene")
    n = len(d.truth["scene"]["objects"])
    o = d.truth["scene"]["objects"][0]
    wrong = "purple" if o["colour"] != "purple" else "red"
    s = score_item(d, d.text.replace(f"{o['colour']} {o['shape']}", f"{wrong} {o['shape']}", 1))
    assert s["colour"] == pytest.approx((n - 1) / n) and s["shape"] == 1.0 and s["position"] == 1.0
    assert s["count"] == 1.0 and s["exact"] == 0.0
    dropped = d.text.split("; ")
    s = score_item(d, "; ".join(dropped[:-1]) + ".")  # the last object is missing
    assert s["position"] == pytest.approx((n - 1) / n) and s["colour"] == pytest.approx((n - 1) / n)
    assert score_item(d, "")["colour"] == 0.0 and score_item(d, "")["count"] == 0.0

    v = first("video")
    s = score_item(v, v.text.replace("Frame", "frame").replace("frames", "frame 0 to"))
    assert s["events"] < 1.0 or not v.truth["video"]["events"]
    p = first("page")
    if p.truth["page"]["items"]:
        item0, val0 = p.truth["page"]["items"][0], p.truth["page"]["values"][0]
        s = score_item(p, p.text.replace(f"{item0} {val0}", f"{item0} {val0 + 1}"))
        assert s["table_cells"] == pytest.approx(1 - 1 / len(p.truth["page"]["items"]))


def _pixels(d) -> bytes:
    frames = d.visual if isinstance(d.visual, list) else [d.visual]
    return b"".join(f.tobytes() for f in frames)


def test_heldout_renders_are_not_training_renders():
    """Descriptions of one-object crops recur (few words), the renders do not (jitter in 1/1000 cell)."""
    train = {_pixels(item(0, "train", i)) for i in range(300)}
    assert not any(_pixels(d) in train for d in heldout_items(0, 20))


def test_an_untrained_model_describes_and_scores_near_zero(tmp_path):
    bb = load_backbone(build_tiny(tmp_path / "m", seed=0), device="cpu", dtype=torch.float32)
    items = heldout_items(0, 1)
    texts = describe(bb, items, max_new_tokens=8, batch_size=4)
    assert len(texts) == len(items) and all(isinstance(t, str) for t in texts)
    rep = perception(bb, 1, max_new_tokens=8)
    assert rep["headline"]["colour"] <= 0.2 and set(rep["examples"]) == set(KINDS)
    assert set(perception_eval_fn(4, 0)(bb, 0)) == set(rep["headline"])


def test_the_cli_prints_the_headline_and_writes_the_report(tmp_path):
    import json

    from typer.testing import CliRunner

    from ume.cli import app

    model = build_tiny(tmp_path / "m", seed=0)
    res = CliRunner().invoke(app, ["train", "perception", "--model", str(model), "--per-kind", "1",
                                   "--max-new-tokens", "8", "--output", str(tmp_path / "p.json")])
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "p.json").read_text())
    assert json.loads(res.stdout) == report["headline"] and report["per_kind"] == 1
