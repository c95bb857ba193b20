"""`ume demo` on the shipped models, shrunk to seconds (the real run is the README's first command)."""

import json
import shutil

import pytest

from ume.demo import CARD, MODELS, STAGES, DemoPlan, install_models, run_demo, train_log, write_card


@pytest.mark.slow
def test_demo_runs_on_the_shipped_models(minimmeb_root, tmp_path):
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "minimmeb").symlink_to(minimmeb_root, target_is_directory=True)
    plan = DemoPlan(work=tmp_path / "work", scale="tiny")  # the session's tiny MiniMMEB build
    summary = run_demo(tmp_path / "demo", plan, limit=1, pool_limit=2, samples=2, max_new_tokens=8)
    assert [f["finding"] for f in summary["findings"]] == [
        "SFT lifts both embeddings above chance (by 2 standard errors)", "generative beats discriminative",
        "the oracle beats both", "RL improves the generative embedding over SFT", "pass@k coverage rises with k"]
    assert "overall" in summary["table"] and "(13)" in summary["table"] and "| chance | SFT disc |" in summary["table"]
    assert (tmp_path / "demo" / "demo.md").exists() and (tmp_path / "demo" / "rl" / "plots" / "passk.png").exists()
    assert json.loads((tmp_path / "demo" / "demo.json").read_text())["limit_per_task"] == 1
    assert (MODELS / "ume-demo-rl" / "ume_recipe.json").exists()
    models = tmp_path / "models"  # the card of a retrain, written beside a copy of the shipped models
    shutil.copytree(MODELS, models)
    card = json.loads(write_card(DemoPlan(work=plan.work, models=models), {"sft": 1.0}, summary).read_text())
    assert card["sft"]["steps"] == card["sft"]["config"]["max_steps"] and card["rl"]["steps"] > 0
    assert card["eval"]["table"] == summary["table"] and card["command_wall_seconds"] == {"sft": 1.0}
    assert "--resume latest" in card["commands"][1] and (models / CARD).is_file()


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
