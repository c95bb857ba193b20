import json
import shutil
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from ume.cli import app

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
runner = CliRunner()


def test_embed_gen_on_shipped_examples(tmp_path):
    out = tmp_path / "out"
    res = runner.invoke(app, ["embed", "--model", str(EXAMPLES / "tiny-qwen2-vl"), "--mode", "gen",
                              "--input", str(EXAMPLES / "items.jsonl"), "--output", str(out),
                              "--max-new-tokens", "8", "--samples", "2", "--seed", "1"])
    assert res.exit_code == 1, res.output  # an item produced no embedding: not a success, and the last line says so
    last = res.output.strip().splitlines()[-1]
    assert "embedded 4/5 items (gen, dim 64); 1 error(s)" in last and "exit 1: 1 item(s) produced no embedding" in last
    emb = np.load(out / "embeddings.npy")
    assert emb.shape == (5, 2, 64)
    errors = [json.loads(x) for x in (out / "errors.jsonl").read_text().splitlines()]
    assert [(e["index"], e["id"]) for e in errors] == [(4, "missing")]
    assert "file not found" in errors[0]["reason"]
    assert np.isnan(emb[4]).all() and not np.isnan(emb[:4]).any()
    records = [json.loads(x) for x in (out / "items.jsonl").read_text().splitlines()]
    assert [r["ok"] for r in records] == [True, True, True, True, False]
    sample = records[0]["samples"][0]
    assert sample["num_tokens"] == len(sample["token_ids"]) and sample["token_ids"][-1] is not None
    run = json.loads((out / "run.json").read_text())
    assert run["settings"]["num_samples"] == 2 and run["n_errors"] == 1


def test_embed_both_writes_the_disc_vectors_of_the_same_prefill(tmp_path):
    """`--mode both`: gen vectors in embeddings.npy, disc vectors in disc_embeddings.npy, equal to a disc run."""
    args = ["embed", "--model", str(EXAMPLES / "tiny-qwen2-vl"), "--input", str(EXAMPLES / "items.jsonl"),
            "--max-new-tokens", "4", "--allow-errors"]
    res = runner.invoke(app, [*args, "--mode", "both", "--output", str(tmp_path / "both")])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, [*args, "--mode", "disc", "--output", str(tmp_path / "disc")])
    assert res.exit_code == 0, res.output
    both = np.load(tmp_path / "both" / "disc_embeddings.npy")
    disc = np.load(tmp_path / "disc" / "embeddings.npy")
    ok = ~np.isnan(disc).any(axis=1)
    assert ok.sum() == 4 and np.isnan(both[~ok]).all()
    cos = (both[ok] * disc[ok]).sum(1) / np.linalg.norm(both[ok], axis=1) / np.linalg.norm(disc[ok], axis=1)
    assert cos.min() > 0.9999
    assert np.load(tmp_path / "both" / "embeddings.npy").shape == disc.shape


def test_embed_reports_unparseable_rows(tmp_path):
    items = tmp_path / "items.jsonl"
    items.write_text('{"text": "fine"}\nnot json\n{"text": "also fine"}\n')
    out = tmp_path / "out"
    res = runner.invoke(app, ["embed", "--model", str(EXAMPLES / "tiny-qwen2-vl"), "--input", str(items),
                              "--output", str(out)])
    assert res.exit_code == 1, res.output
    assert "2/3 items" in res.output.strip().splitlines()[-1]
    err = json.loads((out / "errors.jsonl").read_text())
    assert err["index"] == 1 and "items.jsonl:2" in err["reason"]
    emb = np.load(out / "embeddings.npy")
    assert emb.shape == (3, 64) and np.isnan(emb[1]).all() and not np.isnan(emb[[0, 2]]).any()


def test_tiny_build_command(tmp_path):
    res = runner.invoke(app, ["tiny", "build", str(tmp_path / "t"), "--family", "qwen2_5_vl", "--seed", "2"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "t" / "model.safetensors").exists() and (tmp_path / "t" / "ume_recipe.json").exists()


def test_shipped_example_checkpoint_is_reproducible(tmp_path):
    from ume.tiny import build_tiny

    fresh = build_tiny(tmp_path / "t", family="qwen2_vl", seed=0)
    for name in ("model.safetensors", "tokenizer.json"):
        assert (fresh / name).read_bytes() == (EXAMPLES / "tiny-qwen2-vl" / name).read_bytes(), name
    shipped = json.loads((EXAMPLES / "tiny-qwen2-vl" / "config.json").read_text())
    config = json.loads((fresh / "config.json").read_text())
    for c in (config, shipped):  # the one field that names the library that wrote it (ume runs on 5.20 and 5.24)
        c.pop("transformers_version")
    assert config == shipped
    shutil.rmtree(fresh)


def test_embed_refuses_a_foreign_output_folder_before_loading_the_model(tmp_path):
    items = tmp_path / "items.jsonl"
    items.write_bytes(b'{"text": "a"}\n{"text": "caf\xe9"}\n')  # a bad byte is one line's error, not the file's
    out = tmp_path / "out"
    out.mkdir()
    (out / "paper.pdf").write_text("")
    res = runner.invoke(app, ["embed", "--model", str(tmp_path / "no-such-model"), "--input", str(items),
                              "--output", str(out)])
    assert res.exit_code == 2 and "holds files this command did not write" in res.output  # one line, no traceback
    (out / "paper.pdf").unlink()
    res = runner.invoke(app, ["embed", "--model", str(EXAMPLES / "tiny-qwen2-vl"), "--input", str(items),
                              "--output", str(out), "--allow-errors"])
    assert res.exit_code == 0, res.output
    err = json.loads((out / "errors.jsonl").read_text())
    assert (err["index"], err["line"]) == (1, 2) and "items.jsonl:2: invalid item row (invalid UTF-8" in err["reason"]

