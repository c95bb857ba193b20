"""The mteb wrapper on an offline mteb task built from files (a MiniMMEB task exported), and the
sentence-transformers-shaped encode."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

mteb = pytest.importorskip("mteb")

import ume  # noqa: E402
from ume.integrations.mteb import batch_items, export_minimmeb_task, file_task, write_file_task  # noqa: E402

DEMO = Path(__file__).resolve().parents[1] / "models" / "ume-demo-rl"


@pytest.fixture(scope="module")
def enc():
    return ume.load(DEMO, device="cpu")


def test_wrapper_follows_mteb_protocol(enc):
    from mteb.models.models_protocols import EncoderProtocol
    from PIL import Image

    model = ume.mteb_model(enc, mode="disc")
    assert isinstance(model, EncoderProtocol)
    assert model.mteb_model_meta.embed_dim == enc.dim and model.mteb_model_meta.name == "ume/ume-demo-rl"
    img = Image.new("RGB", (32, 32), "red")
    items = batch_items({"text": ["a", "b"], "image": [img, [img, img]]})
    assert [it.text for it in items] == ["a", "b"] and [len(it.images) for it in items] == [1, 2]
    assert batch_items({"image": [img]})[0].text == ""
    by_path = ume.mteb_model(str(DEMO), mode="gen", device="cpu")  # a path loads the checkpoint itself
    assert by_path.mode == "gen" and by_path.encoder.dim == enc.dim


@pytest.mark.parametrize("mode", ["disc", "gen"])
def test_mteb_evaluate_reproduces_ume_eval(minimmeb_root, tmp_path, enc, mode):
    """mteb.evaluate(ume.mteb_model(...)) on MiniDocTable exported as files gives ume eval's own scores."""
    from ume.evaluate.runner import EvalConfig, Runner

    budget = 8
    task = file_task(export_minimmeb_task(minimmeb_root, "MiniDocTable", tmp_path / "task"))
    assert task.metadata.category == "t2it" and task.metadata.modalities == ["image", "text"]
    model = ume.mteb_model(enc, mode=mode, max_new_tokens=budget)
    result = mteb.evaluate(model, [task], cache=None, show_progress_bar=False)
    (scores,) = result.task_results[0].scores["test"]

    cfg = EvalConfig(model=str(DEMO), data_root=str(minimmeb_root), output=str(tmp_path / "eval"),
                     tasks=("MiniDocTable",), qry_mode=mode, tgt_mode=mode, max_new_tokens=budget)
    Runner(cfg, encoder=enc).run()
    (score_file,) = (tmp_path / "eval").rglob("MiniDocTable_score.json")
    ours = json.loads(score_file.read_text())
    assert abs(scores["ndcg_at_5"] - ours["ndcg_linear@5"]) < 1e-4
    assert abs(scores["mrr_at_10"] - ours["mrr@10"]) < 1e-4
    assert abs(scores["precision_at_1"] - ours["hit@1"]) < 1e-4


def test_text_file_task(tmp_path, enc):
    task = file_task(write_file_task(tmp_path / "t", [{"id": "q0", "text": "a red circle"}],
                                     [{"id": "d0", "text": "a red circle"}, {"id": "d1", "text": "tax law"}],
                                     {"q0": {"d0": 1}}, name="TinyText"))
    assert task.metadata.category == "t2t"
    res = mteb.evaluate(ume.mteb_model(enc), [task], cache=None, show_progress_bar=False)
    assert res.task_results[0].scores["test"][0]["ndcg_at_1"] == 1.0  # the identical text ranks first


def test_sentence_transformers_like(enc):
    import torch

    from ume.integrations import SentenceTransformerLike

    st = SentenceTransformerLike(enc)
    texts = ["a red circle", "a blue square", "tax law"]
    want = enc.encode(texts, mode="disc").embeddings
    got = st.encode(texts, batch_size=2, show_progress_bar=False)
    assert isinstance(got, np.ndarray) and got.shape == (3, enc.dim)
    np.testing.assert_allclose(got, want, atol=1e-4)
    one = st.encode("a red circle")
    assert one.shape == (enc.dim,)
    t = st.encode(texts, convert_to_tensor=True)
    assert isinstance(t, torch.Tensor) and t.shape == (3, enc.dim)
    as_list = st.encode(texts, convert_to_numpy=False)
    assert isinstance(as_list, list) and len(as_list) == 3
    sim = st.similarity(got, got)
    assert sim.shape == (3, 3) and torch.allclose(torch.diagonal(sim), torch.ones(3, dtype=sim.dtype), atol=1e-5)
    assert st.get_sentence_embedding_dimension() == enc.dim
    gen = st.encode(["a red circle"], mode="gen", max_new_tokens=8)
    np.testing.assert_allclose(gen, enc.encode(["a red circle"], mode="gen", max_new_tokens=8).embeddings, atol=1e-4)
