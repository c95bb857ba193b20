"""Cold-start SFT: loss, labels, readout, data validation, GradCache, DDP parity, exact resume, LoRA export."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file as load_safetensors
from sft_ddp_probe import run_with_grads
from sft_fixture import COLOURS, SHAPES, build_sft_fixture, draw
from typer.testing import CliRunner

import ume
from ume.backbone import load_backbone
from ume.batching import make_batch, prompt_texts
from ume.compat import enable_activation_checkpointing
from ume.inputs import Item
from ume.recipe import GENERATION_PROMPT, Recipe
from ume.tiny import build_tiny
from ume.train.collate import IGNORE, Collator
from ume.train.config import SFTConfig
from ume.train.data import DataError, Mixture, Pair, load_file, user_text
from ume.train.engine import deepspeed_config
from ume.train.losses import InfoNCE, SFTLoss
from ume.train.model import SFTModel, param_groups, set_trainable, tower_of
from ume.train.sft import train_sft
from ume.train.step import full_batch_step, grad_cache_step


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return build_tiny(tmp_path_factory.mktemp("sft_tiny") / "qwen2_vl", seed=0)


@pytest.fixture(scope="module")
def sft_data(tmp_path_factory) -> dict[str, Path]:
    return build_sft_fixture(tmp_path_factory.mktemp("sft_data"))


@pytest.fixture(scope="module")
def backbone(tiny):
    return load_backbone(tiny, device="cpu", dtype=torch.float32)


def config(tiny: Path, files: dict[str, Path], out: Path, **kw) -> SFTConfig:
    base = dict(model=str(tiny), data=[str(files["images"]), str(files["videos"])], output=str(out), max_steps=4,
                per_device_train_batch_size=4, gradient_accumulation_steps=1, learning_rate=1e-3, num_workers=0,
                save_steps=0, progress=False, device="cpu")
    return SFTConfig(**{**base, **kw})


def log_lines(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]


def pairs_of(data: dict[str, Path], recipe: Recipe, n: int) -> list[Pair]:
    pairs, _ = load_file(data["images"], None, recipe)
    videos, _ = load_file(data["videos"], None, recipe)
    return (pairs[:n - 2] + videos[:2])[:n]


# --- loss -------------------------------------------------------------------------------------------
def test_infonce_equals_independent_computation():
    g = torch.Generator().manual_seed(0)
    q = F.normalize(torch.randn(5, 8, generator=g, dtype=torch.float64), dim=-1)
    t = F.normalize(torch.randn(5, 8, generator=g, dtype=torch.float64), dim=-1)
    s = 50.0
    qn, tn = q.numpy(), t.numpy()

    def ce(a, b):  # mean_i -log softmax(s a_i . b_j)_i, written out
        out = []
        for i in range(len(a)):
            z = s * b @ a[i]
            out.append(-(z[i] - (z.max() + math.log(np.exp(z - z.max()).sum()))))
        return float(np.mean(out))

    expected = 0.5 * (ce(qn, tn) + ce(tn, qn))
    assert float(InfoNCE(s)(q, t)) == pytest.approx(expected, rel=1e-12)


def test_sft_loss_weights_and_dume():
    g = torch.Generator().manual_seed(1)
    v = [F.normalize(torch.randn(4, 6, generator=g), dim=-1) for _ in range(4)]
    ce_q, ce_t = torch.tensor(2.0), torch.tensor(3.0)
    terms = SFTLoss(50.0, 2.0, 3.0, 0.5, 0.25)(*v, ce_q, ce_t)
    nce = InfoNCE(50.0)
    assert float(terms["gen"]) == pytest.approx(float(nce(v[0], v[1])))
    assert float(terms["disc"]) == pytest.approx(float(nce(v[2], v[3])))
    expected = 2 * terms["gen"] + 3 * terms["disc"] + 0.5 * 2.0 + 0.25 * 3.0
    assert float(terms["loss"]) == pytest.approx(float(expected))
    dume = SFTConfig(disc_only=True)
    assert (dume.w_gen, dume.w_disc, dume.w_ce_qry, dume.w_ce_tgt) == (0, 1, 0, 0)
    only = SFTLoss(50.0, dume.w_gen, dume.w_disc, dume.w_ce_qry, dume.w_ce_tgt)(*v, ce_q, ce_t)
    assert set(only) == {"disc", "loss"} and float(only["loss"]) == pytest.approx(float(nce(v[2], v[3])))


# --- data and labels --------------------------------------------------------------------------------
def test_human_value_prompt_suffix_is_stripped():
    recipe = Recipe()
    released = f"<image>\nFind a caption.\n<disc_emb>\n{GENERATION_PROMPT}"
    assert recipe.prompt_text(user_text(released, recipe)) == recipe.prompt_text("<image>\nFind a caption.")
    rl_spacing = f"Find a caption. \n<disc_emb>\n{GENERATION_PROMPT}"
    assert recipe.prompt_text(user_text(rl_spacing, recipe)).count("<disc_emb>") == 1


def test_labels_cover_exactly_the_assistant_turn(backbone, sft_data):
    recipe, proc, tok = backbone.recipe, backbone.processor, backbone.tokenizer
    pairs = pairs_of(sft_data, recipe, 4)
    collator = Collator(proc, recipe, max_length=4096)
    mb = collator(pairs)
    assert len(mb.qry) == 1 and mb.rows == [(p.file, p.row) for p in pairs]
    for side, name in ((mb.qry[0], "qry"), (mb.tgt[0], "tgt")):
        loaded = [collator.load(getattr(p, name), name) for p in pairs]
        prompt_only = make_batch(proc, recipe, loaded)  # what inference feeds the model for these items
        ids, labels, mask = side["input_ids"], side["labels"], side["attention_mask"]
        for b, p in enumerate(pairs):
            supervised = labels[b] != IGNORE
            prompt = ids[b][mask[b].bool() & ~supervised]
            assert prompt.tolist() == prompt_only["input_ids"][b][prompt_only["attention_mask"][b].bool()].tolist()
            assert tok.decode(ids[b][supervised]) == getattr(p, f"{name}_response") + "<|im_end|>\n"
            first = int(supervised.nonzero()[0])  # the prompt, assistant header included, precedes it
            assert tok.decode(ids[b, :first]).endswith("<|im_end|>\n<|im_start|>assistant\n")
        visual = {k for k in prompt_only if k.startswith(("pixel_values", "image_grid", "video_grid"))}
        assert visual and all(torch.equal(side[k], prompt_only[k]) for k in visual)  # the same pixels as inference


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
def test_one_render_per_side_gives_the_full_conversation_render(tiny_dirs, sft_data, monkeypatch, family):
    """Each side is rendered once (its inference prompt, the assistant turn appended), and the batch is
    token-identical to the chat template's render of the whole conversation (what the collator fed before)."""
    bb = load_backbone(str(tiny_dirs[family]), device="cpu", dtype=torch.float32)
    proc, recipe = bb.processor, bb.recipe
    pairs = pairs_of(sft_data, recipe, 6)
    collator = Collator(proc, recipe, max_length=4096)
    renders = []
    render = proc.apply_chat_template
    monkeypatch.setattr(proc, "apply_chat_template", lambda *a, **k: renders.append(k) or render(*a, **k))
    mb = collator(pairs)
    assert len(renders) == 2 * len(pairs) and all(k.get("add_generation_prompt") for k in renders)
    monkeypatch.undo()
    for side, name in ((mb.qry[0], "qry"), (mb.tgt[0], "tgt")):
        loaded = [collator.load(getattr(p, name), name) for p in pairs]
        responses = [getattr(p, f"{name}_response") for p in pairs]
        whole = make_batch(proc, recipe, loaded, responses)
        assert set(whole) | {"labels"} == set(side)
        assert all(torch.equal(side[k], whole[k]) for k in whole)
        prompts = prompt_texts(proc, recipe, loaded)
        fulls = prompt_texts(proc, recipe, loaded, responses)
        tails = proc.tokenizer([f[len(q):] for q, f in zip(prompts, fulls, strict=True)],
                               add_special_tokens=False)["input_ids"]
        for b, tail in enumerate(tails):
            assert side["labels"][b, -len(tail):].tolist() == tail and (side["labels"][b, :-len(tail)] == IGNORE).all()

    def other_header(messages, **kw):  # a template whose conversation does not continue its generation prompt
        text = render(messages, **kw)
        return text if kw.get("add_generation_prompt") else text.replace("<|im_start|>assistant", "<|im_start|>bot")

    monkeypatch.setattr(proc, "apply_chat_template", other_header)
    with pytest.raises(ValueError, match="cannot place labels on the assistant turn"):
        Collator(proc, recipe, max_length=4096)


def test_vectors_and_ce_from_one_teacher_forced_forward(backbone, sft_data):
    recipe = backbone.recipe
    mb = Collator(backbone.processor, recipe, 4096)(pairs_of(sft_data, recipe, 3))
    batch = mb.qry[0]
    module = SFTModel(backbone.model, backbone.gen_id, backbone.disc_id)
    with torch.no_grad():
        gen, disc, ce_sum = module(batch)
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        hidden = backbone.model.model(**inputs).last_hidden_state
        hf_loss = backbone.model(**inputs, labels=batch["labels"]).loss
    ids, labels = batch["input_ids"], batch["labels"]
    for b in range(ids.shape[0]):
        gens = (ids[b] == backbone.gen_id).nonzero().flatten().tolist()
        discs = (ids[b] == backbone.disc_id).nonzero().flatten().tolist()
        assert len(gens) == 2 and len(discs) == 1  # one <gen_emb> in the instruction, one in the answer
        assert labels[b, gens[0]] == IGNORE and labels[b, gens[1]] != IGNORE
        assert torch.allclose(gen[b], F.normalize(hidden[b, gens[1]], dim=-1), atol=1e-6)
        assert torch.allclose(disc[b], F.normalize(hidden[b, discs[0]], dim=-1), atol=1e-6)
    n_tokens = int((labels[:, 1:] != IGNORE).sum())
    assert float(ce_sum) / n_tokens == pytest.approx(float(hf_loss), rel=1e-5)


def write_rows(path: Path, rows) -> Path:
    path.write_text(json.dumps(rows))
    return path


def good_row(image: str = "img/red_circle_0.png") -> dict:
    gpt = "<think>x</think><answer>y</answer><gen_emb>"
    return {"qry": {"conversations": [{"from": "human", "value": "<image>\nfind"}, {"from": "gpt", "value": gpt}],
                    "image": image},
            "pos": {"conversations": [{"from": "human", "value": "red circle"}, {"from": "gpt", "value": gpt}]},
            "source": "s"}


BAD = {
    "no_gen_emb": (lambda r: r["pos"]["conversations"][1].update(value="<think>x</think><answer>y</answer>"),
                   "pos.conversations[1].value"),
    "missing_image": (lambda r: r["qry"].update(image="img/nope.png"), "qry.image: file not found"),
    "bad_conversations": (lambda r: r["qry"].update(conversations="hi"), "qry.conversations"),
    "wrong_role": (lambda r: r["qry"]["conversations"][0].update({"from": "gpt"}), "qry.conversations[0]"),
    "video_type": (lambda r: r["qry"].update(video=3), "qry.video"),
    "no_pos": (lambda r: r.pop("pos"), "pos: expected an object"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_row_error_names_file_row_and_field(sft_data, case):
    mutate, field = BAD[case]
    row = good_row()
    mutate(row)
    path = write_rows(sft_data["images"].parent / f"bad_{case}.json", [good_row(), row])
    with pytest.raises(DataError) as e:
        load_file(path, None, Recipe())
    assert str(e.value).startswith(f"{path}: row 1: {field}")
    pairs, bad = load_file(path, None, Recipe(), skip_bad_rows=True)
    assert [p.row for p in pairs] == [0] and [(b.row, b.stage) for b in bad] == [(1, "validate")]


def test_invalid_json_names_file_and_line(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('[{"qry": 1},\n{oops}]')
    with pytest.raises(DataError, match=r"broken.json: not valid JSON \(line 2"):
        load_file(path, None, Recipe())


def test_load_time_bad_rows_raise_or_are_skipped(backbone, sft_data):
    root = sft_data["images"].parent
    (root / "img" / "corrupt.png").write_bytes(b"not a png")
    path = write_rows(root / "corrupt.json", [good_row(), good_row("img/corrupt.png"), good_row()])
    pairs, _ = load_file(path, None, backbone.recipe)  # files exist: validation passes
    with pytest.raises(DataError, match=r"corrupt.json: row 1: qry.image: .*not a recognised image"):
        Collator(backbone.processor, backbone.recipe, 4096)(pairs)
    mb = Collator(backbone.processor, backbone.recipe, 4096, skip_bad_rows=True)(pairs)
    assert [r for _, r in mb.rows] == [0, 2] and [(b.row, b.stage) for b in mb.skipped] == [(1, "load")]
    with pytest.raises(DataError, match=r"row 0: qry.length: \d+ tokens exceed max_length=20"):
        Collator(backbone.processor, backbone.recipe, 20)(pairs[:1])


def fake_pairs(file: str, source: str, n: int) -> list[Pair]:
    side = Item(text="t")
    return [Pair(side, side, "<gen_emb>", "<gen_emb>", source, file, i) for i in range(n)]


def test_mixture_homogeneous_weighted_seeded():
    pairs = fake_pairs("a.json", "x", 40) + fake_pairs("a.json", "y", 20) + fake_pairs("b.json", "z", 8)
    mix = Mixture(pairs, {"a.json": 1.0, "b.json": 2.0}, batch_size=4, seed=3, homogeneous=True)
    assert mix.per_epoch == 10 + 5 + 4  # b.json drawn twice per epoch
    epoch = [mix.batch(k) for k in range(mix.per_epoch)]
    assert all(len({(p.file, p.source) for p in b}) == 1 for b in epoch)
    counts = {}
    for b in epoch:
        for p in b:
            counts[(p.source, p.row)] = counts.get((p.source, p.row), 0) + 1
    assert all(counts[("x", i)] == 1 for i in range(40)) and all(counts[("z", i)] == 2 for i in range(8))
    again = Mixture(pairs, {"a.json": 1.0, "b.json": 2.0}, batch_size=4, seed=3, homogeneous=True)
    assert [[p.row for p in again.batch(k)] for k in range(40)] == [[p.row for p in mix.batch(k)] for k in range(40)]
    def rows(ks):
        return [[(p.source, p.row) for p in mix.batch(k)] for k in ks]

    assert rows(range(19)) != rows(range(19, 38))  # a new epoch reshuffles
    mixed = Mixture(pairs, {}, batch_size=4, seed=3, homogeneous=False)
    assert any(len({p.source for p in mixed.batch(k)}) > 1 for k in range(mixed.per_epoch))
    with pytest.raises(DataError, match="no full global batch"):
        Mixture(fake_pairs("c.json", "w", 3), {}, batch_size=4, seed=0, homogeneous=True)


# --- GradCache ----------------------------------------------------------------------------------------
def grads_after(step, module, loss_fn, mb) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    module.zero_grad(set_to_none=True)
    terms = step(module, mb, loss_fn)
    return terms, {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}


def test_grad_cache_equals_full_batch(tiny, sft_data):
    """GradCache (chunks of 4 + 2, with gradient checkpointing) vs one full-batch backward, fp32."""
    bb = load_backbone(tiny, device="cpu", dtype=torch.float32)
    bb.model.train()
    set_trainable(bb.model, train_vision=False, train_merger=True, train_llm=True)
    module = SFTModel(bb.model, bb.gen_id, bb.disc_id)
    loss_fn = SFTLoss(50.0, 1.0, 1.0, 0.7, 1.3)
    pairs = pairs_of(sft_data, bb.recipe, 6)
    full = Collator(bb.processor, bb.recipe, 4096)(pairs)
    chunked = Collator(bb.processor, bb.recipe, 4096, chunk=4)(pairs)
    assert [c["input_ids"].shape[0] for c in chunked.qry] == [4, 2]
    cpu = torch.device("cpu")

    def full_step(m, mb, lf):
        return full_batch_step(m, mb, lf, lambda loss: loss.backward(), cpu)

    def cached_step(m, mb, lf):
        return grad_cache_step(m, mb, lf, lambda loss: loss.backward(), nullcontext, cpu)

    t_full, g_full = grads_after(full_step, module, loss_fn, full)
    enable_activation_checkpointing(bb.model)
    assert bb.model.model.language_model.gradient_checkpointing
    t_cache, g_cache = grads_after(cached_step, module, loss_fn, chunked)  # + checkpointing: same gradients

    assert set(t_full) == set(t_cache) == {"gen", "disc", "ce_qry", "ce_tgt", "loss"}
    for k in t_full:
        assert t_cache[k] == pytest.approx(t_full[k], rel=1e-5)
    assert set(g_full) == set(g_cache) and any("merger" in n for n in g_full)
    assert not any(".blocks." in n for n in g_full)  # vision tower frozen
    for n in g_full:
        torch.testing.assert_close(g_cache[n], g_full[n], atol=1e-5, rtol=1e-4, msg=n)


# --- whole runs ---------------------------------------------------------------------------------------
def params(path: Path) -> dict[str, torch.Tensor]:
    return load_safetensors(str(path / "model.safetensors"))


def test_short_run_lowers_loss_and_exports_loadable_model(tiny, sft_data, tmp_path):
    seen = []

    def eval_fn(bb, step):
        vec = ume.Encoder(bb).encode(["a red circle"], mode="disc", show_progress=False).embeddings
        seen.append(step)
        return {"vector": vec[0].tolist()}

    cfg = config(tiny, sft_data, tmp_path / "run", max_steps=40, eval_steps=20, warmup_ratio=0.1)
    out = train_sft(cfg, eval_fn=eval_fn)
    run = tmp_path / "run"
    assert out == run / "model"  # the model alone, the run's own files beside it (what `hf upload` sends)
    assert not [p.name for p in out.iterdir() if p.suffix == ".jsonl" or p.name.startswith(("checkpoint", "sft_"))]
    lines = log_lines(run)
    steps = [x for x in lines if "eval" not in x]
    assert [x["step"] for x in steps] == list(range(1, 41)) and seen == [20, 40]
    at20, at40 = (np.array(x["eval"]["vector"]) for x in lines if "eval" in x)
    assert not np.allclose(at20, at40, atol=1e-4)  # the hook sees the live model as it trains ...
    final = ume.load(out, device="cpu").encode(["a red circle"], mode="disc", show_progress=False).embeddings[0]
    card = (out / "README.md").read_text()  # the model card, with this run's last logged step
    assert card.startswith("---\nlibrary_name: transformers") and "`max_steps=40`" in card
    assert "Last logged step: step 40, " in card and (run / "checkpoint-40" / "README.md").is_file()
    assert json.loads((out / "modules.json").read_text())[0]["type"].endswith("UmeDiscEmbedding")  # for ST users
    assert np.allclose(final, at40, atol=1e-5)  # ... and at the last step it is the exported model
    for key in ("lr", "gen", "disc", "ce_qry", "ce_tgt", "loss", "grad_norm", "tokens", "step_time"):
        assert key in steps[0]
    for k in ("loss", "gen", "disc", "ce_qry", "ce_tgt"):
        assert np.mean([x[k] for x in steps[-5:]]) < np.mean([x[k] for x in steps[:5]]), k
    assert (run / "checkpoint-40" / "trainer_state.json").is_file() and (out / "ume_recipe.json").is_file()
    enc = ume.load(run, device="cpu")  # the run directory loads as its final model
    assert enc.backbone.source == str(out)
    assert not enc.backbone.added_tokens  # the tokens travel with the checkpoint
    from transformers import AutoModelForImageTextToText, AutoProcessor

    plain = AutoModelForImageTextToText.from_pretrained(out)
    AutoProcessor.from_pretrained(out)
    trained = params(out)
    for n, p in plain.state_dict().items():
        if n in trained:
            torch.testing.assert_close(p, trained[n])


def image_to_caption_hit1(model: Path, root: Path) -> dict[str, float]:
    """hit@1 of every (colour, shape) rendered anew (size and shade unseen in training) against the 12
    captions, for both embeddings; chance is 1/12."""
    enc = ume.load(model, device="cpu")
    combos = [(c, s) for c in COLOURS for s in SHAPES]
    root.mkdir(parents=True, exist_ok=True)
    queries = []
    for c, s in combos:
        draw(c, s, size=42, shade=17).save(root / f"{c}_{s}.png")
        queries.append({"text": "Find a caption for the picture.", "image": str(root / f"{c}_{s}.png")})
    captions = [f"{c} {s}" for c, s in combos]
    hits = {}
    for mode in ("disc", "gen"):
        q = enc.encode(queries, mode=mode, max_new_tokens=32, show_progress=False).embeddings
        t = enc.encode(captions, mode=mode, max_new_tokens=32, show_progress=False).embeddings
        hits[mode] = float(np.mean((q @ t.T).argmax(axis=1) == np.arange(len(combos))))
    return hits


def test_short_run_lifts_disc_and_gen_hit1_above_chance(tiny, sft_data, tmp_path):
    """60 steps (seconds) take both embeddings from chance to retrieving unseen renders: the whole path,
    data -> collator -> loss -> optimiser -> export -> `ume.load` -> encoder, learns what it should."""
    before = image_to_caption_hit1(tiny, tmp_path / "renders")
    out = train_sft(config(tiny, sft_data, tmp_path / "run", max_steps=60, per_device_train_batch_size=8,
                           warmup_ratio=0.1))
    after = image_to_caption_hit1(out, tmp_path / "renders")
    chance = 1 / (len(COLOURS) * len(SHAPES))
    assert max(before.values()) <= 3 * chance, before  # the untrained model: about chance
    assert min(after.values()) >= 6 * chance, after  # measured 0.92 for both on 2 cores


def test_tower_learning_rates_and_their_log(tiny, sft_data, tmp_path):
    bb = load_backbone(tiny, device="cpu", dtype=torch.float32)
    set_trainable(bb.model, train_vision=True, train_merger=True, train_llm=True)
    groups = param_groups(bb.model, 1e-3, 0.1, {"vision": 1e-5, "merger": None})
    by_name = {g["name"]: g for g in groups}
    assert set(by_name) == {"vision", "vision/no_decay", "merger", "merger/no_decay", "llm", "llm/no_decay"}
    assert [by_name[n]["lr"] for n in ("vision", "merger", "llm")] == [1e-5, 1e-3, 1e-3]
    assert by_name["llm"]["weight_decay"] == 0.1 and by_name["llm/no_decay"]["weight_decay"] == 0.0
    grouped = [id(p) for g in groups for p in g["params"]]
    assert sorted(grouped) == sorted(id(p) for p in bb.model.parameters())  # each parameter exactly once
    assert tower_of("base_model.model.model.visual.merger.mlp.0.weight") == "merger"  # peft-wrapped names
    assert tower_of("model.visual.blocks.0.attn.qkv.weight") == "vision"
    out = train_sft(config(tiny, sft_data, tmp_path / "run", max_steps=2, warmup_ratio=0.0, lr_scheduler="constant",
                           train_vision=True, vision_lr=1e-5))
    first = log_lines(out.parent)[0]
    assert first["lr"] == 1e-3 and first["lr_vision"] == 1e-5 and "lr_merger" not in first
    with pytest.raises(ValueError, match="merger_lr"):
        config(tiny, sft_data, tmp_path / "bad", merger_lr=0.0).validate()


def test_resume_is_exact(tiny, sft_data, tmp_path):
    kw = dict(max_steps=6, gradient_accumulation_steps=2, per_device_train_batch_size=2, warmup_ratio=0.2, save_steps=3)
    straight = train_sft(config(tiny, sft_data, tmp_path / "straight", **kw))

    class Crash(RuntimeError):
        pass

    def crash(bb, step):
        raise Crash(step)

    with pytest.raises(Crash):  # dies at step 4, after checkpoint-3
        train_sft(config(tiny, sft_data, tmp_path / "resumed", eval_steps=4, **kw), eval_fn=crash)
    assert [p.name for p in (tmp_path / "resumed").glob("checkpoint-*")] == ["checkpoint-3"]
    with pytest.raises(FileNotFoundError, match=r"no finished model/ .* latest checkpoint is .*checkpoint-3"):
        ume.load(tmp_path / "resumed", device="cpu")  # a run that has not finished names what it has
    resumed = train_sft(config(tiny, sft_data, tmp_path / "resumed", resume="latest", **kw))
    a, b = params(straight), params(resumed)
    assert a.keys() == b.keys()
    for n in a:
        torch.testing.assert_close(b[n], a[n], atol=1e-7, rtol=0, msg=n)
    la, lb = log_lines(straight.parent), log_lines(resumed.parent)
    assert [x["step"] for x in lb] == list(range(1, 7))
    assert [x["loss"] for x in lb] == pytest.approx([x["loss"] for x in la], rel=1e-6)
    with pytest.raises(ValueError, match=r"cannot resume .* exactly"):
        train_sft(config(tiny, sft_data, tmp_path / "resumed", resume=str(resumed.parent / "checkpoint-3"),
                         **{**kw, "seed": 1}))
    with pytest.raises(ValueError, match="merger_lr"):  # the saved optimiser would silently keep the old rate
        train_sft(config(tiny, sft_data, tmp_path / "resumed", resume=str(resumed.parent / "checkpoint-3"),
                         **{**kw, "merger_lr": 1e-4}))


def test_two_processes_equal_one(tiny, sft_data, tmp_path):
    """torchrun x2 (gloo; per-device 2; GradCache chunks of 1, i.e. no_sync) = 1 process with batch 4,
    including a batch that loses a row at load time (unequal rows and chunk counts across ranks).

    Compared: every step's loss terms and the gradients each optimiser step applies (parameters after Adam
    are not compared element-wise: Adam turns 1e-7 float noise in near-zero gradients into lr-sized steps).
    """
    root = sft_data["images"].parent
    (root / "img" / "bad.png").write_bytes(b"GIF89a broken")
    rows = json.loads(sft_data["images"].read_text())[:8]
    rows[5]["qry"]["image"] = "img/bad.png"  # dropped at load time: the ranks then hold 2 and 1 rows
    path = write_rows(root / "ddp.json", rows)
    kw = dict(max_steps=3, warmup_ratio=0.0, data=[str(path)], homogeneous_batches=False, skip_bad_rows=True)
    _, g_one = run_with_grads(config(tiny, sft_data, tmp_path / "one", per_device_train_batch_size=4, **kw))
    cfg = config(tiny, sft_data, tmp_path / "two", per_device_train_batch_size=2, grad_cache_chunk=1, **kw)
    cfg.save(tmp_path / "two.json")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(ume.__file__).parents[1])}
    probe = Path(__file__).with_name("sft_ddp_probe.py")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(probe),
           str(tmp_path / "two.json"), str(tmp_path / "grads.pt")]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    la, lb = log_lines(tmp_path / "one"), log_lines(tmp_path / "two")
    for x, y in zip(la, lb, strict=True):
        for k in ("loss", "gen", "disc", "ce_qry", "ce_tgt", "grad_norm"):
            assert y[k] == pytest.approx(x[k], rel=1e-5), (x["step"], k)
        assert x["tokens"] == y["tokens"]
    assert sum(x["stage"] == "load" for x in map(json.loads, (tmp_path / "two" / "bad_rows.jsonl").open())) >= 1
    g_two = torch.load(tmp_path / "grads.pt")
    assert len(g_one) == len(g_two) == 3
    for step, (a, b) in enumerate(zip(g_one, g_two, strict=True)):
        assert a.keys() == b.keys()
        for n in a:  # step 1 from identical weights; later steps inherit Adam-amplified float noise
            torch.testing.assert_close(b[n], a[n], atol=1e-6 if step == 0 else 1e-5, rtol=1e-4, msg=n)


def test_lora_adapters_saved_and_merged_on_export(tiny, sft_data, tmp_path):
    out = train_sft(config(tiny, sft_data, tmp_path / "lora", lora=True, max_steps=3, learning_rate=1e-2,
                           lora_dropout=0.0))
    adapter = out / "adapter"
    assert (adapter / "adapter_config.json").is_file() and (out.parent / "checkpoint-3" / "adapter").is_dir()
    card = (out / "README.md").read_text()  # the model card comes with a LoRA export too
    assert "stage: cold-start SFT" in card and '"lora": true' not in card and "`lora=true`" in card
    merged = params(out)
    assert not any("lora_" in n or "base_layer" in n or "modules_to_save" in n for n in merged)
    base = params(tiny)
    changed = [n for n in base if n in merged and not torch.equal(base[n], merged[n])]
    assert any("q_proj" in n for n in changed) and any("merger" in n for n in changed)
    assert not any(".blocks." in n for n in changed)
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    bb = load_backbone(tiny, device="cpu", dtype=torch.float32)
    live = PeftModel.from_pretrained(bb.model, str(adapter)).eval()
    plain = AutoModelForImageTextToText.from_pretrained(out).eval()
    batch = Collator(bb.processor, bb.recipe, 4096)(pairs_of(sft_data, bb.recipe, 2)).qry[0]
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        torch.testing.assert_close(plain(**inputs).logits, live(**inputs).logits, atol=1e-5, rtol=1e-4)


def test_cli_maps_options_and_runs_dume(tiny, sft_data, tmp_path):
    from ume.train.cli import train_app

    base = config(tiny, sft_data, tmp_path / "from_file", max_steps=50)
    base.save(tmp_path / "cfg.json")
    out = tmp_path / "dume"
    args = ["sft", "--config", str(tmp_path / "cfg.json"), "--output", str(out), "--max-steps", "2",
            "--disc-only", "--data", str(sft_data["images"]), "--data", str(sft_data["videos"]),
            "--data-weights", "1", "--data-weights", "0.5", "--no-homogeneous-batches"]
    result = CliRunner().invoke(train_app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert f"final model: {out / 'model'}\n" in result.output
    saved = SFTConfig.load(out / "sft_config.json")
    assert saved.max_steps == 2 and saved.data_weights == [1.0, 0.5] and saved.homogeneous_batches is False
    assert saved.learning_rate == base.learning_rate and saved.disc_only and saved.w_gen == 0
    assert all(set(x) - {"step", "lr", "grad_norm", "tokens", "step_time"} == {"disc", "loss"}
               for x in log_lines(out))


def test_skipped_rows_are_reported_in_the_run_directory(tiny, sft_data, tmp_path):
    root = sft_data["images"].parent
    (root / "img" / "broken.png").write_bytes(b"\x89PNG truncated")
    no_tag = good_row()
    no_tag["pos"]["conversations"][1]["value"] = "<think>x</think><answer>y</answer>"
    rows = [good_row(), no_tag, good_row("img/broken.png")] + [good_row() for _ in range(5)]
    path = write_rows(root / "some_bad.json", rows)
    cfg = config(tiny, sft_data, tmp_path / "skip", data=[str(path)], max_steps=2, per_device_train_batch_size=3,
                 skip_bad_rows=True)
    train_sft(cfg)
    report = [json.loads(x) for x in (tmp_path / "skip" / "bad_rows.jsonl").read_text().splitlines()]
    assert {(r["row"], r["stage"], r["field"]) for r in report} >= {(1, "validate", "pos.conversations[1].value")}
    assert all(r["file"] == str(path) for r in report)
    assert any(r["row"] == 2 and r["stage"] == "load" and r["field"] == "qry.image" for r in report)
    with pytest.raises(DataError, match=r"some_bad\.json: row 1: pos\.conversations"):
        train_sft(config(tiny, sft_data, tmp_path / "stop", data=[str(path)], max_steps=2))
    assert not (tmp_path / "stop").exists()  # validation runs before anything is written


def test_deepspeed_auto_fields_come_from_the_config():
    repo = Path(__file__).parents[1]
    for name, stage in (("ds_zero2.json", 2), ("ds_zero3.json", 3)):
        cfg = SFTConfig(deepspeed=str(repo / "configs" / name), per_device_train_batch_size=3,
                        gradient_accumulation_steps=5, max_grad_norm=0.5)
        ds = deepspeed_config(cfg)
        assert ds["zero_optimization"]["stage"] == stage
        assert (ds["train_micro_batch_size_per_gpu"], ds["gradient_accumulation_steps"], ds["gradient_clipping"]) \
            == (3, 5, 0.5)
    with pytest.raises(ValueError, match="grad_cache_chunk is not supported with DeepSpeed"):
        SFTConfig(model="m", data=["d"], deepspeed="x.json", grad_cache_chunk=2).validate()


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
def test_lora_targets_the_familys_linears_and_trains_every_merger_in_full(tiny_dirs, family):
    from ume.families import FAMILIES
    from ume.train.model import add_lora

    hf = load_backbone(str(tiny_dirs[family]), device="cpu").model
    set_trainable(hf, True, True, True)
    peft = add_lora(hf, SFTConfig(model="m", data=["d"], lora=True, train_vision=True))
    trained = [n for n, p in peft.named_parameters() if p.requires_grad]
    mergers = {n.split("visual.")[1].split(".")[0] for n in trained if tower_of(n) == "merger"}
    assert mergers == set(FAMILIES[family].mergers)  # Qwen3-VL's deepstack mergers too
    vision = {n.split(".lora_")[0].rsplit(".", 1)[1] for n in trained if tower_of(n) == "vision" and "lora_" in n}
    assert vision == set(FAMILIES[family].vision_linears)
    assert all("lora_" in n for n in trained if tower_of(n) == "llm")


RENAMED = {"per_device_batch": "per_device_train_batch_size", "grad_accum": "gradient_accumulation_steps",
           "save_every": "save_steps", "eval_every": "eval_steps", "w_ce_pos": "w_ce_tgt"}


def test_old_field_names_still_work_for_one_release(tiny, sft_data, tmp_path):
    """The names before the rename: accepted by the constructor, a saved JSON config and the CLI, each with a
    DeprecationWarning naming the new field, and the run is the same."""
    import dataclasses

    from ume.train.cli import train_app

    new = config(tiny, sft_data, tmp_path / "new", max_steps=2, per_device_train_batch_size=2,
                 gradient_accumulation_steps=2, save_steps=1)
    old_name = {n: o for o, n in RENAMED.items()}
    old = {old_name.get(k, k): v for k, v in new.to_dict().items()}
    with pytest.warns(DeprecationWarning) as warned:
        assert SFTConfig(**old) == new
    assert {str(w.message) for w in warned} == {f"SFTConfig: {o!r} is deprecated, use {n!r} (the old name is accepted "
                                                "for one release)" for o, n in RENAMED.items()}
    (tmp_path / "old.json").write_text(json.dumps({**old, "output": str(tmp_path / "cli"), "grad_accum": 1}))
    with pytest.warns(DeprecationWarning, match="'save_every' is deprecated, use 'save_steps'"):
        assert SFTConfig.load(tmp_path / "old.json") == dataclasses.replace(new, output=str(tmp_path / "cli"),
                                                                           gradient_accumulation_steps=1)
    with pytest.warns(DeprecationWarning, match="'grad_accum' is deprecated, use 'gradient_accumulation_steps'"):
        result = CliRunner().invoke(train_app, ["sft", "--config", str(tmp_path / "old.json"), "--grad-accum", "2"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    saved = json.loads((tmp_path / "cli" / "sft_config.json").read_text())
    assert not set(saved) & set(RENAMED)  # saved under the new names
    assert SFTConfig.from_dict(saved) == dataclasses.replace(new, output=saved["output"])
    train_sft(new)
    assert [x["loss"] for x in log_lines(tmp_path / "cli")] == [x["loss"] for x in log_lines(tmp_path / "new")]
    assert [p.name for p in sorted((tmp_path / "cli").glob("checkpoint-*"))] == ["checkpoint-1", "checkpoint-2"]
    a, b = params(tmp_path / "new" / "model"), params(tmp_path / "cli" / "model")
    assert all(torch.equal(a[n], b[n]) for n in a)


def test_old_and_new_name_with_different_values_is_an_error(tmp_path):
    from ume.train.cli import train_app

    with pytest.raises(ValueError, match=r"per_device_batch=2 \(deprecated\) and per_device_train_batch_size=4 "
                                         "disagree; give only per_device_train_batch_size"):
        SFTConfig(per_device_batch=2, per_device_train_batch_size=4)
    assert SFTConfig(save_every=3, save_steps=3).save_steps == 3  # the same value twice is only deprecated
    (tmp_path / "both.json").write_text(json.dumps({"grad_accum": 2, "gradient_accumulation_steps": 3}))
    with pytest.raises(ValueError, match=r"grad_accum=2 \(deprecated\) and gradient_accumulation_steps=3 disagree"):
        SFTConfig.load(tmp_path / "both.json")
    result = CliRunner().invoke(train_app, ["sft", "--model", "m", "--data", "d", "--eval-every", "5",
                                            "--eval-steps", "6"])
    assert isinstance(result.exception, ValueError) and "eval_every=5 (deprecated) and eval_steps=6" in str(
        result.exception)
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['per_device_batchh'\]"):
        SFTConfig.from_dict({"per_device_batchh": 2})
