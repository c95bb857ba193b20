"""`ume demo` on the shipped models, shrunk to seconds (the real run is the README's first command)."""

import json
import shutil
import sys

import pytest

from ume.demo import CARD, MODELS, STAGES, DemoPlan, findings, install_models, run_demo, train_log, write_card
from ume.diagnose import answer_of, clauses, combine, paired, same_answer

FINDINGS = ["SFT lifts both embeddings above chance (by 2 standard errors)", "generative beats discriminative",
            "the oracle beats both", "RL improves the generative embedding over SFT", "pass@k coverage rises with k"]


def test_training_commands_chain_base_pretrain_sft_rl():
    plan = DemoPlan()
    cmds = plan.training_commands()
    stages = [c[3] if c[3] in ("tiny", "synth") else c[4] for c in cmds]
    assert stages == ["tiny", "synth", "pretrain", "sft", "rl"]
    assert all(c[:3] == [sys.executable, "-m", "ume"] for c in cmds)
    pre, sft, rl = cmds[2], cmds[3], cmds[4]
    assert pre[pre.index("--model") + 1] == str(plan.work / "base")
    assert sft[sft.index("--model") + 1] == str(plan.work / "pretrain")  # SFT starts from the perception stage
    assert rl[rl.index("--model") + 1] == str(plan.work / "sft")
    assert all(c[-2:] == ["--resume", "latest"] for c in (pre, sft, rl))
    # the eval benchmark is the small build; training pairs come from the full build of the same seed
    assert sft[sft.index("--data") + 1] == str(plan.train_data / "train" / "sft.json")
    for stage in STAGES:
        assert (MODELS / f"{stage}_config.json").is_file()


def test_answers_compare_clauses_order_free():
    assert answer_of("<think>x</think><answer>mostly red, 3 of 8</answer><gen_emb>") == "mostly red, 3 of 8"
    assert answer_of("<think>cut off") is None and answer_of(None) is None
    assert same_answer("An image with a small red circle at the top and a large blue square at the left.",
                       "An image with a large blue square at the left, a small red circle at the top.")
    assert not same_answer("An image with a small red circle at the left and a large blue square at the top.",
                           "An image with a large blue square at the left, a small red circle at the top.")
    assert not same_answer("mostly red, 4 of 8", "mostly red, 3 of 8")
    assert clauses("Answer: 4.") == clauses("answer: 4")


def test_paired_standard_error_and_findings_judge_at_two_se():
    a = {"t1": [1.0, 1.0, 0.0, 1.0], "t2": [1.0, 0.0, 1.0, 1.0]}
    b = {"t1": [0.0, 1.0, 0.0, 0.0], "t2": [0.0, 0.0, 1.0, 0.0]}
    d = paired(a, b)
    assert d["diff"] == pytest.approx(50.0) and d["se"] > 0 and d["z"] == pytest.approx(d["diff"] / d["se"])
    assert combine(a)["mean"] == pytest.approx(75.0)

    def diag(gen, disc):
        return {"tasks": {t: {"gen": gen[t], "disc": disc[t]} for t in gen}}

    many = {t: [1.0] * 150 + [0.0] * 50 for t in ("t1", "t2")}
    few = {t: [1.0] * 50 + [0.0] * 150 for t in ("t1", "t2")}
    summary = {"runs": {"chance": {"aggregate": {"overall": {"mean": 10.0}}}},
               "passk": {"t1": {"1": 0.2, "2": 0.5}, "t2": {"1": 0.2, "2": 0.5}}, "n_queries": {"t1": 200, "t2": 200}}
    found = findings(summary, summary, diag(few, few), diag(many, few))
    assert [f["finding"] for f in found] == FINDINGS
    assert [f["holds"] for f in found] == [True, True, True, True, True]
    found = findings(summary, summary, diag(many, many), diag(few, many))
    assert [f["holds"] for f in found][1:4] == [False, True, False]


@pytest.mark.slow
def test_demo_runs_on_the_shipped_models(minimmeb_root, tmp_path):
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "minimmeb").symlink_to(minimmeb_root, target_is_directory=True)
    plan = DemoPlan(work=tmp_path / "work", scale="tiny")  # the session's tiny MiniMMEB build
    summary = run_demo(tmp_path / "demo", plan, limit=1, pool_limit=2, samples=2, max_new_tokens=8,
                       perception_per_kind=1)
    assert [f["finding"] for f in summary["findings"]] == FINDINGS
    assert "overall" in summary["table"] and "(13)" in summary["table"] and "| chance | SFT disc |" in summary["table"]
    assert "SFT answer acc" in summary["reasoning_table"] and "RL ceiling" in summary["reasoning_table"]
    assert {"colour", "shape", "count", "position"} <= set(summary["perception"]["headline"])
    assert (tmp_path / "demo" / "demo.md").exists() and (tmp_path / "demo" / "rl" / "plots" / "passk.png").exists()
    assert json.loads((tmp_path / "demo" / "demo.json").read_text())["limit_per_task"] == 1
    for stage in STAGES:
        assert (MODELS / f"ume-demo-{stage}" / "ume_recipe.json").exists()
    models = tmp_path / "models"  # the card of a retrain, written beside a copy of the shipped models
    shutil.copytree(MODELS, models)
    card = json.loads(write_card(DemoPlan(work=plan.work, models=models), {"sft": 1.0}, summary).read_text())
    for stage in STAGES:
        assert card[stage]["steps"] == card[stage]["config"]["max_steps"]
    assert card["eval"]["table"] == summary["table"] and card["command_wall_seconds"] == {"sft": 1.0}
    assert "train pretrain" in card["commands"][2] and all("--resume latest" in c for c in card["commands"][2:])
    assert (models / CARD).is_file()


def test_install_models_keeps_the_log_beside_the_model(tmp_path):
    plan = DemoPlan(work=tmp_path / "work", models=tmp_path / "models")
    for stage in STAGES:  # a finished run folder as `ume train` leaves it
        run = plan.work / stage
        (run / "model" / "adapter").mkdir(parents=True)
        (run / "model" / "config.json").write_text("{}")
        (run / "checkpoint-1").mkdir()
        (run / "train_log.jsonl").write_text(f'{{"step": 1, "stage": "{stage}"}}\n')
        (run / f"{stage}_config.json").write_text("{}")
    (plan.models / "ume-demo-sft").mkdir(parents=True)
    (plan.models / "ume-demo-sft" / "stale.bin").write_text("")
    install_models(plan)
    for stage in STAGES:
        assert sorted(p.name for p in (plan.models / f"ume-demo-{stage}").iterdir()) == ["adapter", "config.json"]
        assert json.loads(train_log(plan.models, stage).read_text())["stage"] == stage
    assert not list(MODELS.glob("ume-demo-*/*.jsonl"))  # the shipped models: the model alone
