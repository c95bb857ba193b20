"""`SentenceTransformer(checkpoint)` on a ume export: ume's disc vectors (with `write_st_config`), not mean pooling.

Uses the real sentence-transformers package on the tiny checkpoint in examples/ (copied, so nothing is written into
the repository). Users pass `trust_remote_code=True`: sentence-transformers imports a module class outside its own
package only then (here, ume's installed `UmeDiscEmbedding`, no code from the checkpoint folder).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sentence_transformers")

import ume
from ume.integrations.sentence_transformers import ST_MODULE_TYPE, write_st_config

TINY = Path(__file__).resolve().parents[1] / "examples" / "tiny-qwen2-vl"
TEXTS = ["a red circle", "two squares"]


@pytest.fixture(scope="module")
def plain(tmp_path_factory) -> Path:
    """An exported ume checkpoint as it was before: no sentence-transformers files."""
    d = tmp_path_factory.mktemp("st") / "plain"
    shutil.copytree(TINY, d)
    return d


@pytest.fixture(scope="module")
def ckpt(plain) -> Path:
    d = plain.parent / "with_st"
    shutil.copytree(plain, d)
    write_st_config(d)
    return d


@pytest.fixture(scope="module")
def enc(ckpt):
    return ume.load(ckpt, device="cpu")


@pytest.fixture(scope="module")
def st(ckpt):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(ckpt), device="cpu", trust_remote_code=True)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def test_files_written(ckpt):
    modules = json.loads((ckpt / "modules.json").read_text())
    assert modules == [{"idx": 0, "name": "0", "path": "", "type": ST_MODULE_TYPE}]
    config = json.loads((ckpt / "config_sentence_transformers.json").read_text())
    assert config["model_type"] == "SentenceTransformer" and config["similarity_fn_name"] == "cosine"
    assert "ume.load" in config["requirements"]["ume"]["reason"]
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        write_st_config(ckpt / "nowhere")


def test_write_needs_no_sentence_transformers(plain, tmp_path):
    """The export path calls write_st_config: it must not import sentence-transformers (nor need it installed)."""
    d = tmp_path / "c"
    d.mkdir()
    shutil.copy(plain / "config.json", d / "config.json")
    code = ("import sys; from pathlib import Path; from ume.integrations.sentence_transformers import write_st_config;"
            f"write_st_config(Path({str(d)!r})); assert 'sentence_transformers' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
    assert (d / "modules.json").is_file()


def test_encode_is_ume_disc(st, enc):
    import torch

    want = enc.encode(TEXTS, mode="disc").embeddings
    got = st.encode(TEXTS)
    assert isinstance(got, np.ndarray) and got.dtype == np.float32 and got.shape == (len(TEXTS), enc.dim)
    assert cosines(got, want).min() >= 0.9999
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)  # unit vectors, as ume's
    assert st.get_embedding_dimension() == enc.dim
    one = st.encode(TEXTS[0])
    assert one.shape == (enc.dim,) and cosines(one, want[0]) >= 0.9999
    t = st.encode(TEXTS, convert_to_tensor=True)
    assert isinstance(t, torch.Tensor) and t.shape == (len(TEXTS), enc.dim)
    sim = st.similarity(got, got)
    assert sim.shape == (2, 2) and float(sim[0, 0]) == pytest.approx(1.0, abs=1e-5)


def test_prompt_and_images(st, enc):
    from PIL import Image, ImageDraw

    from ume.inputs import Item

    img = Image.new("RGB", (56, 56), "white")
    ImageDraw.Draw(img).ellipse((8, 8, 40, 40), fill=(220, 30, 30))
    got = st.encode([{"text": "a red circle", "image": img}, img], batch_size=2)
    want = enc.encode([Item(text="a red circle", images=[img]), Item(images=[img])], mode="disc").embeddings
    assert cosines(got, want).min() >= 0.9999
    got = st.encode(TEXTS, prompt="Query: ")
    want = enc.encode([f"Query: {t}" for t in TEXTS], mode="disc").embeddings
    assert cosines(got, want).min() >= 0.9999


def test_bad_inputs_refused(st):
    from ume.inputs import InputError

    with pytest.raises(InputError, match="pairs"):
        st.encode([("a question", "an answer")])
    with pytest.raises(InputError, match="chat messages"):
        st.encode([{"role": "user", "content": "hi"}])
    with pytest.raises(ValueError, match="not supported"):
        type(st[0]).load(str(TINY), model_kwargs={"quantization_config": {}})


def test_needs_trust_remote_code(ckpt):
    """Without the flag sentence-transformers refuses (naming the class), it never falls back to mean pooling."""
    from sentence_transformers import SentenceTransformer

    with pytest.raises(ValueError, match="trust_remote_code") as info:
        SentenceTransformer(str(ckpt), device="cpu")
    assert ST_MODULE_TYPE in str(info.value)


def test_without_ume_the_refusal_names_ume_load(ckpt, monkeypatch):
    """A machine without ume: the checkpoint's requirement refuses, pointing to ume.load."""
    import sentence_transformers.util.environment as env
    from sentence_transformers import SentenceTransformer

    real = env.get_installed_version
    monkeypatch.setattr(env, "get_installed_version", lambda name: None if name == "ume" else real(name))
    with pytest.raises(ImportError, match=r"ume\.load"):
        SentenceTransformer(str(ckpt), device="cpu", trust_remote_code=True)


def test_save_roundtrip(st, enc, tmp_path):
    from sentence_transformers import SentenceTransformer

    st.save(str(tmp_path / "saved"))
    config = json.loads((tmp_path / "saved" / "config_sentence_transformers.json").read_text())
    assert "ume" in config["requirements"]
    again = SentenceTransformer(str(tmp_path / "saved"), device="cpu", trust_remote_code=True)
    assert cosines(again.encode(TEXTS), enc.encode(TEXTS, mode="disc").embeddings).min() >= 0.9999


def test_plain_export_was_silently_wrong(plain, enc):
    """The issue: without the config, sentence-transformers builds Transformer + mean pooling, no error."""
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(plain), device="cpu")
    assert type(st[0]).__name__ == "Transformer"
    assert cosines(st.encode(TEXTS), enc.encode(TEXTS, mode="disc").embeddings).max() < 0.9


def test_dtype_follows_ume(ckpt, st):
    """Without a dtype the weights take ume.load's dtype for the device they end on (bf16 on CUDA, fp32 on CPU);
    model_kwargs' dtype is kept as given, and the vectors are then ume.load(..., dtype=...)'s."""
    import torch
    from sentence_transformers import SentenceTransformer

    assert st[0].model.dtype == torch.float32
    cls = type(st[0])
    module = cls(ume.load(ckpt, device="cpu", dtype="bfloat16"), follow_device_dtype=True)
    module.on_model_ready(None)  # on the CPU ume's dtype is fp32: cast back
    assert module.model.dtype == torch.float32
    bf16 = SentenceTransformer(str(ckpt), device="cpu", trust_remote_code=True, model_kwargs={"dtype": "bfloat16"})
    assert bf16[0].model.dtype == torch.bfloat16
    want = ume.load(ckpt, device="cpu", dtype="bfloat16").encode(TEXTS, mode="disc").embeddings
    assert cosines(bf16.encode(TEXTS), want).min() >= 0.9999


@pytest.mark.parametrize("name", ["ume-demo-sft", "ume-demo-rl"])
def test_the_shipped_models_load_in_sentence_transformers_as_ume_disc(name):
    from sentence_transformers import SentenceTransformer

    model = TINY.parents[1] / "models" / name
    texts = ["a red circle on the left", "the chart where figs win"]
    got = SentenceTransformer(str(model), device="cpu", trust_remote_code=True).encode(texts)
    want = ume.load(model, device="cpu").encode(texts, mode="disc", show_progress=False).embeddings
    assert got.shape == want.shape and (np.sum(got * want, axis=1) >= 0.9999).all()


def test_the_st_files_do_not_change_the_models_identity(tmp_path):
    """Eval caches key vectors by the checkpoint's fingerprint: writing ST's entry point must not void them."""
    from ume.evaluate.cache import NOT_MODEL_FILES, model_fingerprint
    from ume.integrations.sentence_transformers import ST_FILES

    d = shutil.copytree(TINY, tmp_path / "m")
    before = model_fingerprint(str(d))
    write_st_config(d)
    assert set(ST_FILES) <= set(NOT_MODEL_FILES) and model_fingerprint(str(d)) == before
