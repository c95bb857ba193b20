"""The evaluation runner: accounting, resume, oracle, pass@k, reports, and 1 vs 2 processes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ume.evaluate.runner import EvalConfig, Runner

TASKS = ("ImageNet-1K", "MSCOCO_t2i", "CIRR", "Breakfast", "MSR-VTT", "NExTQA", "QVHighlight",
         "ViDoRe_esg_reports_human_labeled_v2")


def config(root, out, tiny, **kw) -> EvalConfig:
    base = dict(model=str(tiny), data_root=str(root), output=str(out), tasks=TASKS, batch_size=4,
                max_new_tokens=6, chunk_size=2)
    return EvalConfig(**{**base, **kw})


def scores(out: Path) -> dict:
    report = json.loads((out / "report.json").read_text())
    return {lab: run["tasks"] for lab, run in report["runs"].items()}


def test_full_run_writes_reports_and_accounts_encodes(mmeb_root, tiny_dirs, encoder, tmp_path):
    out = tmp_path / "run"
    cfg = config(mmeb_root, out, tiny_dirs["qwen2_vl"], qry_mode="gen", tgt_mode="gen", oracle=True, samples=3)
    summary = Runner(cfg, encoder=encoder).run()
    assert set(summary["runs"]) == {"gen-gen", "disc-disc", "oracle", "chance"}
    assert not (out / "leaderboard_chance.json").exists() and not (out / "leaderboard_oracle.json").exists()
    for name, stats in summary["encoding"].items():
        for side_mode, s in stats.items():
            assert s["encoded_now"] == s["unique_inputs"], (name, side_mode)  # each unique input once
    assert summary["encoding"]["ImageNet-1K"]["tgt-disc"]["unique_inputs"] == 5  # labels named twice: once
    assert summary["encoding"]["Breakfast"]["tgt-disc"]["unique_inputs"] == 10  # the full label list
    for f in ["report.json", "report.md", "errors.jsonl", "leaderboard_gen-gen.json", "plots/meta_tasks.png",
              "plots/passk.png", "runs/gen-gen/image/ImageNet-1K_score.json",
              "runs/disc-disc/visdoc/ViDoRe_esg_reports_human_labeled_v2_pred.jsonl"]:
        assert (out / f).exists(), f
    score = json.loads((out / "runs/gen-gen/video/Breakfast_score.json").read_text())
    assert len(score) == 26  # exactly the reference keys: the official report script ingests the whole file
    meta = json.loads((out / "runs/gen-gen/video/Breakfast_meta.json").read_text())
    assert meta["run"] == "gen-gen" and meta["protocol"] == "ume-r1" and meta["ties"] == "ume"
    assert meta["data"][0]["repo"] == "VLM2Vec/Breakfast" and meta["data"][0]["rows"] == 2
    assert meta["data"][0]["files"][0]["path"] == "data/test.jsonl" and len(meta["data"][0]["files"][0]["sha256"]) == 64
    assert summary["data"]["Breakfast"] == meta["data"] and summary["scored"] == summary["selected"] == 8
    board = json.loads((out / "leaderboard_gen-gen.json").read_text())
    assert [len(mod) for mod in board["metrics"].values()] == [36, 18, 24]
    assert all(v == "FILE_N/A" or len(v) == 26 for mod in board["metrics"].values() for v in mod.values())
    assert board["metadata"]["model_backbone"] == "qwen2_vl" and board["metadata"]["embedding_dimension"] == 64
    errors = [json.loads(x) for x in (out / "errors.jsonl").read_text().splitlines()]
    assert errors == []  # the published layouts load with no row error
    md = (out / "report.md").read_text()
    assert "overall" in md and "(8)" in md and "pass@k" in md
    # pass@k coverage is monotone in k and reported at 1, 2 and 3
    for curve in summary["passk"].values():
        vals = [curve[k] for k in ("1", "2", "3")]
        assert vals == sorted(vals)


def test_oracle_is_per_query_max(mmeb_root, tiny_dirs, encoder, tmp_path):
    runner = Runner(config(mmeb_root, tmp_path / "o", tiny_dirs["qwen2_vl"], qry_mode="gen", tgt_mode="gen",
                           oracle=True, tasks=("MSCOCO_t2i", "ViDoRe_esg_reports_human_labeled_v2")),
                    encoder=encoder)
    from ume.evaluate.tasks import select_tasks

    for task in select_tasks(runner.cfg.tasks):
        res = runner.run_task(task)
        d, g, o = (np.array(res.per_query[k]) for k in ("disc-disc", "gen-gen", "oracle"))
        assert np.array_equal(o, np.maximum(d, g))
        assert res.scores["oracle"][task.metric] == pytest.approx(o.mean())


def test_resume_after_interruption_gives_identical_scores(mmeb_root, tiny_dirs, encoder, tmp_path):
    cfg = config(mmeb_root, tmp_path / "clean", tiny_dirs["qwen2_vl"], qry_mode="gen", tgt_mode="disc")
    clean = Runner(cfg, encoder=encoder).run()

    class Crash(RuntimeError):
        pass

    calls = {"n": 0}
    real = encoder.encode

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            raise Crash("killed")
        return real(*args, **kwargs)

    crashed = config(mmeb_root, tmp_path / "resumed", tiny_dirs["qwen2_vl"], qry_mode="gen", tgt_mode="disc")
    encoder.encode = flaky
    try:
        with pytest.raises(Crash):
            Runner(crashed, encoder=encoder).run()
    finally:
        encoder.encode = real
    chunks = list((tmp_path / "resumed" / "cache").rglob("chunk-*.npz"))
    assert chunks  # work done before the crash is on disk
    resumed = Runner(crashed, encoder=encoder).run()
    assert scores(tmp_path / "resumed") == scores(tmp_path / "clean")
    assert resumed["runs"] == clean["runs"]
    encoded_after = sum(s["encoded_now"] for t in resumed["encoding"].values() for s in t.values())
    unique = sum(s["unique_inputs"] for t in resumed["encoding"].values() for s in t.values())
    assert 0 < encoded_after < unique  # only what the crash had not saved
    again = Runner(crashed, encoder=encoder).run()
    assert sum(s["encoded_now"] for t in again["encoding"].values() for s in t.values()) == 0


@pytest.mark.slow
def test_two_processes_match_one(mmeb_root, tiny_dirs, tmp_path):
    args = ["-m", "ume", "eval", "--model", str(tiny_dirs["qwen2_vl"]), "--data-root", str(mmeb_root),
            "--qry-mode", "gen", "--tgt-mode", "gen", "--max-new-tokens", "6", "--batch-size", "4"]
    for t in TASKS:
        args += ["--task", t]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, *args, "--output", str(tmp_path / "one")], env=env,
                         capture_output=True, text=True)
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                          "--master_port", "29533", *args, "--output", str(tmp_path / "two")],
                         env=env, capture_output=True, text=True)
    assert two.returncode == 0, two.stderr[-3000:]
    assert scores(tmp_path / "two") == scores(tmp_path / "one")
    shards = {p.name.split("-")[1] for p in (tmp_path / "two" / "cache").rglob("chunk-*.npz")}
    assert shards == {"0", "1"}  # both ranks encoded a share


def test_overall_standard_error_adds_task_errors_in_quadrature():
    from ume.evaluate.report import aggregate, standard_error
    from ume.evaluate.tasks import select_tasks

    a, b = select_tasks(benchmark="minimmeb")[:2]
    se = {a.name: standard_error([1, 0, 1, 0]), b.name: standard_error([1, 1, 1, 1])}
    assert se[a.name] == pytest.approx(100 * np.sqrt(1 / 3) / 2) and se[b.name] == 0.0  # sample std, ddof 1
    overall = aggregate({a.name: 50.0, b.name: 100.0}, [a, b], se)["overall"]
    assert overall["mean"] == 75.0 and overall["se"] == pytest.approx(se[a.name] / 2)
    assert "se" not in aggregate({a.name: 50.0}, [a, b])["overall"]  # no per-query data, no error bar


def test_a_folder_holding_other_settings_is_refused_unless_overwritten(mmeb_root, tiny_dirs, encoder, tmp_path):
    from ume.evaluate.runner import OutputConflict

    out = tmp_path / "shared"
    Runner(config(mmeb_root, out, tiny_dirs["qwen2_vl"], tasks=("ImageNet-1K",), limit=1), encoder=encoder).run()
    assert json.loads((out / "eval_config.json").read_text())["limit"] == 1
    Runner(config(mmeb_root, out, tiny_dirs["qwen2_vl"], tasks=("MSCOCO_t2i",), limit=1), encoder=encoder).run()
    kept = {p.name for p in (out / "runs/disc-disc/image").glob("*_score.json")}
    assert kept == {"ImageNet-1K_score.json", "MSCOCO_t2i_score.json"}  # same settings, other tasks: one folder
    with pytest.raises(OutputConflict, match=r"'limit': \(1, 2\)"):
        Runner(config(mmeb_root, out, tiny_dirs["qwen2_vl"], tasks=("ImageNet-1K",), limit=2), encoder=encoder).run()
    Runner(config(mmeb_root, out, tiny_dirs["qwen2_vl"], tasks=("ImageNet-1K",), limit=2, overwrite=True),
           encoder=encoder).run()
    assert {p.name for p in (out / "runs/disc-disc/image").glob("*_score.json")} == {"ImageNet-1K_score.json"}
    meta = json.loads((out / "runs/disc-disc/image/ImageNet-1K_meta.json").read_text())
    assert meta["num_queries"] == 2


def test_a_bad_query_is_named_scored_zero_and_counted_or_stops_a_fail_fast_run(mmeb_root, tiny_dirs, encoder,
                                                                               tmp_path):
    import shutil

    from ume.inputs import InputError

    root = tmp_path / "data"
    for repo in ("ziyjiang/MMEB_Test_Instruct", "TIGER-Lab/MMEB-V2"):
        shutil.copytree(mmeb_root / repo, root / repo, symlinks=True)
    victim = root / "TIGER-Lab/MMEB-V2/image-tasks/ImageNet-1K/q_0.jpg"
    victim.write_bytes(victim.read_bytes()[:30])
    cfg = config(root, tmp_path / "out", tiny_dirs["qwen2_vl"], tasks=("ImageNet-1K",))
    Runner(cfg, encoder=encoder).run()
    errors = [json.loads(x) for x in (tmp_path / "out" / "errors.jsonl").read_text().splitlines()]
    assert len(errors) == 1 and errors[0]["reason"].startswith("task ImageNet-1K: row 0: qry: ")
    meta = json.loads((tmp_path / "out/runs/disc-disc/image/ImageNet-1K_meta.json").read_text())
    assert meta["queries_failed"] == 1 and meta["candidates_failed"] == 0
    per_query = [json.loads(x) for x in (tmp_path / "out/runs/disc-disc/image/ImageNet-1K_pred.jsonl")
                 .read_text().splitlines()]
    assert len(per_query) == meta["num_queries"]  # the bad query is still a row of the task, scored 0
    with pytest.raises(InputError, match="task ImageNet-1K: row 0: qry"):
        Runner(config(root, tmp_path / "strict", tiny_dirs["qwen2_vl"], tasks=("ImageNet-1K",), fail_fast=True),
               encoder=encoder).run()
