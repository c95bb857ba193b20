"""Perception pre-training: the description generator, the trainer (labels, log, exact resume, export, CLI)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file as load_safetensors
from typer.testing import CliRunner

from ume.backbone import load_backbone
from ume.recipe import GENERATION_PROMPT
from ume.synth.describe import (
    KINDS,
    PRETRAIN_SPLIT,
    describe_scene,
    item,
    parse_objects,
    parse_page,
    split_video,
    stream,
)
from ume.synth.rng import SPLIT_IDS, item_rng
from ume.synth.scene import canonical
from ume.synth.vocab import CELL_NAMES, HOLDOUT_COMBOS
from ume.tiny import build_tiny
from ume.train.collate import IGNORE
from ume.train.perception import heldout_items
from ume.train.pretrain import CaptionCollator, train_pretrain
from ume.train.pretrain_config import PretrainConfig


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return build_tiny(tmp_path_factory.mktemp("pre_tiny") / "qwen2_vl", seed=0)


def config(tiny: Path, out: Path, **kw) -> PretrainConfig:
    base = dict(model=str(tiny), output=str(out), max_steps=4, per_device_train_batch_size=4, learning_rate=1e-3,
                num_workers=0, save_steps=0, progress=False, device="cpu")
    return PretrainConfig(**{**base, **kw})


def log_lines(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]


# ---- the generator ---------------------------------------------------------------------------------------
def test_items_are_deterministic_and_every_kind_appears():
    a, b = item(0, "train", 7), item(0, "train", 7)
    assert a.text == b.text and a.kind == b.kind
    kinds = {item(0, "train", i).kind for i in range(60)}
    assert kinds == set(KINDS)
    assert item(0, "train", 7).text != item(1, "train", 7).text or item(0, "train", 7).kind != item(1, "train", 7).kind


def test_curriculum_level_zero_is_crops_only():
    assert {item(0, "train", i, level=0.0).kind for i in range(80)} == {"crop"}
    mid = [item(0, "train", i, level=0.5) for i in range(200)]
    assert max(len(d.truth["scene"]["objects"]) for d in mid if d.kind == "scene") == 5
    assert item(0, "train", 5, level=1.0).text == item(0, "train", 5).text  # level 1 is the full mix


def test_streams_are_disjoint_from_every_eval_and_training_split():
    """The pre-training split id is none of eval/holdout/sft/rl, so no stream can coincide with theirs, and
    the held-out perception part differs from the training part."""
    assert PRETRAIN_SPLIT not in SPLIT_IDS.values()
    draws = {tuple(stream(0, part, i).integers(0, 2**62, 4)) for part in ("train", "heldout") for i in range(50)}
    assert len(draws) == 100
    for split in SPLIT_IDS:
        for task in range(13):
            assert tuple(item_rng(0, split, task, 0).integers(0, 2**62, 4)) not in draws


def test_training_items_never_show_a_holdout_pair():
    for i in range(300):
        d = item(0, "train", i)
        spec = d.truth.get("scene") or d.truth.get("video")
        if spec is None:
            continue
        combos = {(o["colour"], o["shape"]) for o in spec["objects"]}
        combos |= {(e["to"], spec["objects"][e["obj"]]["shape"]) for e in spec.get("events", [])
                   if e["kind"] == "recolour"}
        assert not combos & set(HOLDOUT_COMBOS), (i, combos)


def test_descriptions_read_back_to_the_ground_truth():
    for d in heldout_items(0, 25):
        if d.kind == "scene":
            count, objs = parse_objects(d.text)
            truth = d.truth["scene"]["objects"]
            assert count == len(truth)
            got = sorted((o["where"], o["size"], o["colour"], o["shape"], o["label"]) for o in objs)
            want = sorted((CELL_NAMES[(o["row"], o["col"])], o["size"], o["colour"], o["shape"], o["label"])
                          for o in truth)
            assert got == want
        elif d.kind == "video":
            first, events = split_video(d.text)
            assert first.startswith("Frame 1 shows") and len(events) == len(d.truth["video"]["events"])
        elif d.kind == "page":
            page = parse_page(d.text)
            assert page["title"] == d.truth["page"]["title"]
            assert page["cells"] == dict(zip(d.truth["page"]["items"], d.truth["page"]["values"], strict=True))


def test_scene_description_is_canonical():
    from ume.synth.scene import sample_scene

    scene = sample_scene(np.random.default_rng(3), 5, label_prob=1.0)
    assert describe_scene(scene) == describe_scene(tuple(reversed(scene)))  # reading order, not draw order
    assert canonical(scene)  # the scene helpers the eval uses accept it


# ---- the trainer -------------------------------------------------------------------------------------------
def test_labels_cover_only_the_description_and_the_prompt_has_no_embedding_suffix(tiny):
    bb = load_backbone(tiny, device="cpu", dtype=torch.float32)
    items = [item(0, "train", i) for i in range(6)]
    batch = CaptionCollator(bb.processor, bb.recipe, 4096)(items)
    tok = bb.processor.tokenizer
    for b, d in enumerate(items):
        labels = batch["labels"][b]
        text = tok.decode(labels[labels != IGNORE])
        assert text.startswith(d.text) and text.rstrip().endswith("<|im_end|>")
        prompt = tok.decode(batch["input_ids"][b][labels == IGNORE])
        assert d.prompt in prompt and "<disc_emb>" not in prompt and GENERATION_PROMPT not in prompt
    assert batch["kinds"] == [d.kind for d in items]


def test_short_run_lowers_loss_logs_per_kind_and_exports(tiny, tmp_path):
    out = train_pretrain(config(tiny, tmp_path / "run", max_steps=30, per_device_train_batch_size=6, warmup_ratio=0.1,
                                vision_lr=5e-4, merger_lr=2e-4, min_pixels=112 * 112))
    steps = log_lines(out.parent)
    assert [x["step"] for x in steps] == list(range(1, 31))
    assert np.mean([x["loss"] for x in steps[-5:]]) < 0.9 * np.mean([x["loss"] for x in steps[:3]])
    assert {k for x in steps for k in x if k.startswith("ce_")} == {f"ce_{k}" for k in KINDS}
    assert steps[5]["lr_vision"] == pytest.approx(steps[5]["lr"] / 2)
    assert json.loads((out / "ume_recipe.json").read_text())["min_pixels"] == 112 * 112
    assert (out.parent / "pretrain_config.json").is_file() and out.name == "model"
    bb = load_backbone(out, device="cpu", dtype=torch.float32)  # a base for `ume train sft --model`
    assert bb.recipe.min_pixels == 112 * 112


def test_resume_is_exact(tiny, tmp_path):
    kw = dict(max_steps=6, gradient_accumulation_steps=2, per_device_train_batch_size=2, warmup_ratio=0.2, save_steps=3)
    straight = train_pretrain(config(tiny, tmp_path / "straight", **kw))

    class Crash(RuntimeError):
        pass

    def crash(bb, step):
        raise Crash(step)

    with pytest.raises(Crash):  # dies at step 4, after checkpoint-3
        train_pretrain(config(tiny, tmp_path / "resumed", eval_steps=4, **kw), eval_fn=crash)
    resumed = train_pretrain(config(tiny, tmp_path / "resumed", resume="latest", **kw))
    a, b = (load_safetensors(str(p / "model.safetensors")) for p in (straight, resumed))
    for n in a:
        torch.testing.assert_close(b[n], a[n], atol=1e-7, rtol=0, msg=n)
    losses = [[x["loss"] for x in log_lines(run.parent)] for run in (straight, resumed)]
    assert losses[1] == pytest.approx(losses[0], rel=1e-6)
    stamp = (resumed / "model.safetensors").stat().st_mtime_ns
    assert train_pretrain(config(tiny, tmp_path / "resumed", resume="latest", **kw)) == resumed  # finished: kept
    assert (resumed / "model.safetensors").stat().st_mtime_ns == stamp and not (resumed.parent / "model.tmp").exists()
    with pytest.raises(ValueError, match=r"cannot resume .* exactly"):
        train_pretrain(config(tiny, tmp_path / "resumed", resume="latest", **{**kw, "mix": [1, 0, 0, 0]}))


def test_curriculum_grows_with_the_step(tiny, tmp_path):
    from ume.train.pretrain import StreamDataset

    cfg = config(tiny, tmp_path, curriculum=10, per_device_train_batch_size=8)
    seen = {}

    def collator(items):
        return items

    for start in (0, 5, 10, 40):
        batch = StreamDataset(cfg, collator, 0, 1, start, 1)[0]
        seen[start] = max(len(d.truth["scene"]["objects"]) for d in batch if d.kind == "scene") if any(
            d.kind == "scene" for d in batch) else 0
        if start == 0:
            assert {d.kind for d in batch} == {"crop"}
    assert seen[0] == 0 and seen[40] > 1


def test_config_validation(tiny, tmp_path):
    with pytest.raises(ValueError, match="mix"):
        config(tiny, tmp_path, mix=[1, 1]).validate()
    with pytest.raises(ValueError, match="vision_lr"):
        config(tiny, tmp_path, vision_lr=0.0).validate()


def test_cli_runs_pretrain(tiny, tmp_path):
    from ume.cli import app

    result = CliRunner().invoke(app, ["train", "pretrain", "--model", str(tiny), "--output", str(tmp_path / "cli"),
                                      "--max-steps", "2", "--per-device-train-batch-size", "2", "--num-workers", "0",
                                      "--device", "cpu", "--no-progress", "--mix", "1", "--mix", "0",
                                      "--mix", "0", "--mix", "0"])
    assert result.exit_code == 0, result.output
    cfg = json.loads((tmp_path / "cli" / "pretrain_config.json").read_text())
    assert cfg["mix"] == [1.0, 0.0, 0.0, 0.0] and cfg["max_steps"] == 2
    assert all(set(k for k in x if k.startswith("ce_")) == {"ce_scene"} for x in log_lines(tmp_path / "cli"))
