"""MiniMMEB through the MMEB-V2 loaders and the runner, end to end."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from ume.cli import app
from ume.evaluate.loaders import load_task
from ume.evaluate.runner import EvalConfig, Runner
from ume.evaluate.tasks import select_tasks


def test_every_minimmeb_task_loads_through_the_mmeb_loaders(minimmeb_root):
    for task in select_tasks(benchmark="minimmeb") + select_tasks(benchmark="minimmeb-holdout"):
        data = load_task(task, minimmeb_root)
        assert data.queries and not data.errors, (task.name, data.errors[:2])
        for q in data.queries:
            assert all(lab in data.pool for lab in q.labels), task.name
            if task.ranking == "local":
                assert q.cand_names and all(n in data.pool for n in q.cand_names)


def test_random_model_scores_near_chance(minimmeb_root, encoder, tmp_path):
    """No label leaks into the inputs: an untrained model ranks the positive first about 1/#candidates."""
    cfg = EvalConfig(model="tiny", data_root=str(minimmeb_root), output=str(tmp_path), benchmark="minimmeb",
                     qry_mode="disc", tgt_mode="disc", limit=8, pred_top_k=0)
    runner = Runner(cfg, encoder=encoder)
    hits, chance = [], []
    for task in select_tasks(benchmark="minimmeb"):
        res = runner.run_task(task)
        data = load_task(task, minimmeb_root)
        sizes = [len(q.cand_names) if q.cand_names else len(data.pool) for q in data.queries[:8]]
        hits.append(res.scores["disc-disc"]["hit@1"])
        chance.append(np.mean([1 / n for n in sizes]))
        if task.metric == "hit@1":  # one positive per query: the report's chance column is 1/#candidates
            assert res.scores["chance"]["hit@1"] == pytest.approx(chance[-1]), task.name
    assert abs(np.mean(hits) - np.mean(chance)) < 0.08, (np.mean(hits), np.mean(chance))


def test_cli_eval_gen_oracle_passk_end_to_end(minimmeb_root, tiny_dirs, tmp_path):
    out = tmp_path / "report"
    res = CliRunner().invoke(app, [
        "eval", "--model", str(tiny_dirs["qwen2_vl"]), "--data-root", str(minimmeb_root), "--benchmark",
        "minimmeb", "--qry-mode", "gen", "--tgt-mode", "gen", "--oracle", "--samples", "4", "--limit", "2",
        "--max-new-tokens", "4", "--output", str(out)])
    assert res.exit_code == 0, res.output
    report = json.loads((out / "report.json").read_text())
    assert set(report["runs"]) == {"gen-gen", "disc-disc", "oracle", "chance"}
    assert report["runs"]["oracle"]["aggregate"]["overall"]["n"] == 13
    assert all(set(c) == {"1", "2", "4"} for c in report["passk"].values())
    assert (out / "plots" / "passk.png").exists() and "overall" in (out / "report.md").read_text()
    listing = CliRunner().invoke(app, ["eval", "--benchmark", "mmeb-v2-visdoc", "--list"])
    assert listing.exit_code == 0 and len(listing.output.strip().splitlines()) == 24
