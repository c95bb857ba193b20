import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForImageTextToText, AutoProcessor

import ume
from ume.backbone import load_backbone, register_ume_tokens
from ume.families import FAMILIES
from ume.recipe import GENERATION_PROMPT, RECIPE_FILE, Recipe
from ume.tiny import SIZES, build_tiny, qwen2_tokenizer_from_tiktoken, tiny_config

QWEN_TIKTOKEN_SHA256 = "b2b1b8dfb5cc5f024bafc373121c6aba3f66f9a5a0269e243470a1de16a33186"


def digest(d: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.iterdir())}


def test_same_seed_same_files(tmp_path):
    a = build_tiny(tmp_path / "a", seed=3)
    b = build_tiny(tmp_path / "b", seed=3)
    c = build_tiny(tmp_path / "c", seed=4)
    assert digest(a) == digest(b)
    assert digest(a)["model.safetensors"] != digest(c)["model.safetensors"]
    assert RECIPE_FILE in digest(a)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_reloads_with_plain_transformers(tiny_dirs, family):
    d = tiny_dirs[family]
    proc = AutoProcessor.from_pretrained(d)
    model = AutoModelForImageTextToText.from_pretrained(d)
    assert model.config.model_type == family
    assert proc.tokenizer.convert_tokens_to_ids("<|image_pad|>") == model.config.image_token_id
    assert "<gen_emb>" not in proc.tokenizer.get_vocab()  # a base checkpoint, like Qwen2-VL-Instruct


@pytest.mark.parametrize("family", list(FAMILIES))
def test_load_registers_tokens_and_copies_rows(tiny_dirs, family):
    bb = load_backbone(tiny_dirs[family], device="cpu")
    fam = FAMILIES[family]
    tok = bb.tokenizer
    assert bb.added_tokens
    assert (bb.gen_id, bb.disc_id) == (len(tok) - 2, len(tok) - 1)  # gen before disc
    emb = bb.model.get_input_embeddings().weight
    assert emb.shape[0] == len(tok) + 64 - 2  # the padded matrix had room: no resize
    assert torch.equal(emb[bb.gen_id], emb[tok.convert_tokens_to_ids(fam.gen_init)])
    assert torch.equal(emb[bb.disc_id], emb[tok.convert_tokens_to_ids(fam.disc_init)])
    # both are ordinary added tokens: they survive skip_special_tokens (the RL format reward needs this)
    ids = tok("a <gen_emb> b <disc_emb>").input_ids
    assert bb.gen_id in ids and bb.disc_id in ids
    assert "<gen_emb>" in tok.decode(ids, skip_special_tokens=True)


def test_resize_when_no_room(tmp_path):
    d = build_tiny(tmp_path / "noroom", vocab_room=0)
    bb = load_backbone(d, device="cpu")
    assert bb.model.get_input_embeddings().weight.shape[0] == len(bb.tokenizer)


def test_checkpoint_with_tokens_is_untouched(tmp_path):
    d = build_tiny(tmp_path / "released", with_ume_tokens=True)
    before = AutoModelForImageTextToText.from_pretrained(d).state_dict()
    bb = load_backbone(d, device="cpu")
    assert not bb.added_tokens
    after = bb.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_saved_checkpoint_roundtrip(tmp_path, tiny_dirs):
    bb = load_backbone(tiny_dirs["qwen2_vl"], device="cpu", recipe=Recipe(num_frames=4))
    out = bb.save(tmp_path / "saved")
    again = load_backbone(out, device="cpu")
    assert not again.added_tokens and again.recipe.num_frames == 4
    assert (again.gen_id, again.disc_id) == (bb.gen_id, bb.disc_id)


def test_unsupported_model_type_is_a_clear_error(tmp_path):
    from ume.families import family_of

    with pytest.raises(ValueError, match="unsupported model_type 'llama'"):
        family_of("llama")


@pytest.fixture(scope="session")
def qwen_tiktoken(tmp_path_factory) -> Path:
    """qwen.tiktoken from the dashscope wheel on PyPI (stack.md §9); cached between sessions."""
    cache = Path.home() / ".cache" / "ume-tests"
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / "qwen.tiktoken"
    if not target.exists():
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(cache),
                        "dashscope==2.0.2"], check=True)
        with zipfile.ZipFile(cache / "dashscope-2.0.2-py3-none-any.whl") as z:
            target.write_bytes(z.read("dashscope/resources/qwen.tiktoken"))
    assert hashlib.sha256(target.read_bytes()).hexdigest() == QWEN_TIKTOKEN_SHA256
    return target


@pytest.mark.slow
def test_real_qwen2_vocabulary_gives_reference_ids(qwen_tiktoken):
    tok = qwen2_tokenizer_from_tiktoken(qwen_tiktoken)
    assert tok("Hello, world!").input_ids == [9707, 11, 1879, 0]
    assert tok.convert_tokens_to_ids(["<|endoftext|>", "<|im_end|>", "<|video_pad|>"]) == [151643, 151645, 151656]
    ids = {t: tok.convert_tokens_to_ids(t) for t in FAMILIES["qwen2_vl"].tokens}
    config = tiny_config(FAMILIES["qwen2_vl"], SIZES["tiny"], 151936, ids)  # real Qwen2-VL matrix size
    model = AutoModelForImageTextToText.from_config(config)
    assert register_ume_tokens(model, tok, FAMILIES["qwen2_vl"])
    assert tok.convert_tokens_to_ids(["<gen_emb>", "<disc_emb>"]) == [151657, 151658]
    assert model.get_input_embeddings().weight.shape[0] == 151936  # room: no resize
    emb = model.get_input_embeddings().weight
    assert torch.equal(emb[151657], emb[151647]) and torch.equal(emb[151658], emb[151646])
    # the instruction text itself holds exactly one <gen_emb> token
    assert tok(GENERATION_PROMPT).input_ids.count(151657) == 1


def test_public_load_returns_encoder(tiny_dirs):
    enc = ume.load(tiny_dirs["qwen2_vl"], device="cpu")
    assert isinstance(enc, ume.Encoder) and enc.dim == 64
