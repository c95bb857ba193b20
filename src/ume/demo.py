"""`ume demo`: evaluate the shipped MiniMMEB models the way MMEB-V2 is evaluated, in a few minutes.

The shipped checkpoints (`models/ume-demo-sft`, `models/ume-demo-rl`) were trained by ume's own
pipeline; `models/TRAINING_CARD.json` lists the exact commands, seeds, steps, times and metrics.
`ume demo --retrain` runs those same commands (the ones a user would type) and then the evaluation.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MODELS = Path(__file__).resolve().parents[2] / "models"
CARD = "TRAINING_CARD.json"
STAGES = ("sft", "rl")


@dataclass(frozen=True)
class DemoPlan:
    """Where the demo's data, models and reports live; the training commands derive from it."""

    work: Path = Path("runs/demo")
    models: Path = MODELS
    seed: int = 0
    scale: str = "small"  # MiniMMEB scale the models were trained on and are evaluated on

    @property
    def data(self) -> Path:
        return self.work / "minimmeb"

    def training_commands(self) -> list[list[str]]:
        """The exact commands that produced the shipped models (also what --retrain runs). `--resume latest`
        makes an interrupted retrain continue from its last checkpoint (and a finished stage return at once)."""
        base, sft, rl = self.work / "base", self.work / "sft", self.work / "rl"
        ume = [sys.executable, "-m", "ume"]
        return [
            [*ume, "tiny", "build", str(base), "--size", "small", "--seed", str(self.seed), "--corpus",
             str(self.data / "train" / "sft.json")],
            [*ume, "train", "sft", "--config", str(self.models / "sft_config.json"), "--model", str(base),
             "--data", str(self.data / "train" / "sft.json"), "--media-root", str(self.data), "--output", str(sft),
             "--resume", "latest"],
            [*ume, "train", "rl", "--config", str(self.models / "rl_config.json"), "--model", str(sft),
             "--data", str(self.data / "train" / "rl.json"), "--media-root", str(self.data), "--output", str(rl),
             "--resume", "latest"],
        ]


def ensure_data(plan: DemoPlan) -> Path:
    """Build MiniMMEB (the plan's scale and seed) unless an identical build is already there."""
    from ume.synth.build import build

    manifest = plan.data / "manifest.json"
    if manifest.is_file():
        info = json.loads(manifest.read_text())
        if info.get("seed") == plan.seed and info.get("scale") == plan.scale:
            return plan.data
    build(plan.data, seed=plan.seed, scale=plan.scale, overwrite=True)
    return plan.data


def retrain(plan: DemoPlan) -> dict[str, Any]:
    """Run the training commands, time them, and copy the results into `plan.models`."""
    times = {}
    for cmd in plan.training_commands():
        print("$", " ".join(shlex.quote(c) for c in cmd), flush=True)
        t = time.perf_counter()
        subprocess.run(cmd, check=True)
        times["tiny build" if cmd[3] == "tiny" else cmd[4]] = time.perf_counter() - t  # "sft", "rl"
    install_models(plan)
    return times


def install_models(plan: DemoPlan) -> None:
    """Copy each stage's final model (`<run>/model`) to `models/ume-demo-<stage>` and its training log to
    `models/train_logs/<stage>.jsonl`: beside the model, not in it (the model folders upload as they are)."""
    import shutil

    from ume.backbone import RUN_MODEL_DIR

    for stage in STAGES:
        src, dst = plan.work / stage / RUN_MODEL_DIR, plan.models / f"ume-demo-{stage}"
        if dst.exists():
            shutil.rmtree(dst)
        shutil.copytree(src, dst)
        log = train_log(plan.models, stage)
        log.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(plan.work / stage / "train_log.jsonl", log)


def train_log(models: Path, stage: str) -> Path:
    """Where the shipped training log of `stage` lives."""
    return models / "train_logs" / f"{stage}.jsonl"


def _evaluate(model: Path, data: Path, out: Path, benchmark: str, qry: str, tgt: str, oracle: bool,
              samples: int, limit: int | None, pool_limit: int | None, max_new_tokens: int,
              batch_size: int) -> dict[str, Any]:
    from ume.evaluate.runner import EvalConfig, run_eval

    cfg = EvalConfig(model=str(model), data_root=str(data), output=str(out), benchmark=benchmark, qry_mode=qry,
                     tgt_mode=tgt, oracle=oracle, samples=samples, limit=limit, pool_limit=pool_limit,
                     max_new_tokens=max_new_tokens,
                     batch_size=batch_size, pred_top_k=0, seed=0)
    return run_eval(cfg)


def _overall(summary: dict[str, Any], run: str) -> float:
    return summary["runs"][run]["aggregate"]["overall"]["mean"]


def _se(summary: dict[str, Any], run: str) -> float:
    return summary["runs"][run]["aggregate"]["overall"].get("se", 0.0)


def examples(run_dir: Path, n: int = 3) -> list[dict[str, Any]]:
    """A few gen-mode queries with their reasoning and the rank of their positive."""
    from ume.io import read_jsonl

    picked = []
    for pred in sorted((run_dir / "runs" / "gen-gen").rglob("*_pred.jsonl")):
        rows = read_jsonl(pred)
        if not rows:
            continue
        row = rows[0]
        ranking = row["prediction"]
        rank = next((i + 1 for i, name in enumerate(ranking) if name in row["label"]), None)
        picked.append({"task": pred.name.removesuffix("_pred.jsonl"), "reasoning": row.get("reasoning"),
                       "positive": row["label"][0], "rank": rank, "candidates": len(ranking)})
    by_modality = {p["task"]: p for p in picked}
    wanted = [t for t in ("MiniMajority", "MiniTrackQA", "MiniDocTable") if t in by_modality]
    return [by_modality[t] for t in wanted][:n] or picked[:n]


def findings(sft: dict[str, Any], rl: dict[str, Any]) -> list[dict[str, Any]]:
    """A sanity check (SFT beats chance) and the paper's four findings, each with the numbers behind it
    (overall, task-weighted)."""
    disc, gen, orc = _overall(rl, "disc-disc"), _overall(rl, "gen-gen"), _overall(rl, "oracle")
    sft_gen, sft_disc, floor = _overall(sft, "gen-gen"), _overall(sft, "disc-disc"), _overall(sft, "chance")
    curve = {}
    for task_curve in rl.get("passk", {}).values():
        for k, v in task_curve.items():
            curve.setdefault(int(k), []).append(100 * v)
    passk = {k: sum(v) / len(v) for k, v in sorted(curve.items())}
    ks = list(passk)
    return [
        {"finding": "SFT lifts both embeddings above chance (by 2 standard errors)",
         "holds": all(score - floor > 2 * _se(sft, run) for score, run in ((sft_disc, "disc-disc"),
                                                                          (sft_gen, "gen-gen"))),
         "numbers": {"chance": floor, "sft_disc": sft_disc, "sft_disc_se": _se(sft, "disc-disc"),
                     "sft_gen": sft_gen, "sft_gen_se": _se(sft, "gen-gen")}},
        {"finding": "generative beats discriminative", "holds": gen > disc, "numbers": {"gen": gen, "disc": disc}},
        {"finding": "the oracle beats both", "holds": orc > max(gen, disc), "numbers": {"oracle": orc}},
        {"finding": "RL improves the generative embedding over SFT", "holds": gen > sft_gen,
         "numbers": {"sft_gen": sft_gen, "rl_gen": gen}},
        {"finding": "pass@k coverage rises with k", "holds": len(ks) > 1 and passk[ks[-1]] > passk[ks[0]],
         "numbers": {f"pass@{k}": v for k, v in passk.items()}},
    ]


def table(sft: dict[str, Any], rl: dict[str, Any]) -> str:
    cols = [("chance", rl, "chance"), ("SFT disc", sft, "disc-disc"), ("SFT gen", sft, "gen-gen"),
            ("RL disc", rl, "disc-disc"), ("RL gen", rl, "gen-gen"), ("RL oracle", rl, "oracle")]
    lines = ["| group | " + " | ".join(c[0] for c in cols) + " |", "|---|" + "---|" * len(cols)]
    first = rl["runs"]["gen-gen"]["aggregate"]

    def cell(summary: dict[str, Any], run: str, section: str, key: str | None) -> str:
        agg = summary["runs"][run]["aggregate"][section]
        g = agg if key is None else agg[key]
        if g["mean"] is None:
            return "–"
        err = f" ± {g['se']:.1f}" if section == "overall" and "se" in g else ""
        return f"{g['mean']:.1f}{err} ({g['n']})"

    for key in first["meta_task"]:
        lines.append(f"| {key} | " + " | ".join(cell(s, r, "meta_task", key) for _, s, r in cols) + " |")
    for key in first["modality"]:
        lines.append(f"| **{key}** | " + " | ".join(cell(s, r, "modality", key) for _, s, r in cols) + " |")
    lines.append("| **overall** | " + " | ".join(cell(s, r, "overall", None) for _, s, r in cols) + " |")
    return "\n".join(lines)


def run_demo(output: Path, plan: DemoPlan | None = None, limit: int | None = 20, pool_limit: int | None = 30,
             samples: int = 8, max_new_tokens: int = 160, batch_size: int = 32) -> dict[str, Any]:
    """Evaluate the shipped SFT and RL models on MiniMMEB (and its hold-out) and write the report."""
    from ume.io import write_json

    plan = plan or DemoPlan()
    data = ensure_data(plan)
    rl_model, sft_model = plan.models / "ume-demo-rl", plan.models / "ume-demo-sft"
    for m in (rl_model, sft_model):
        if not (m / "model.safetensors").is_file():
            raise FileNotFoundError(f"shipped model missing: {m} (run `ume demo --retrain` to rebuild it)")
    t = time.perf_counter()
    args = dict(limit=limit, pool_limit=pool_limit, max_new_tokens=max_new_tokens, batch_size=batch_size)
    rl = _evaluate(rl_model, data, output / "rl", "minimmeb", "gen", "gen", True, samples, **args)
    sft = _evaluate(sft_model, data, output / "sft", "minimmeb", "gen", "gen", True, 1, **args)
    holdout = _evaluate(rl_model, data, output / "rl-holdout", "minimmeb-holdout", "gen", "gen", True, 1, **args)
    summary = {"table": table(sft, rl), "holdout_table": table_holdout(holdout), "findings": findings(sft, rl),
               "examples": examples(output / "rl"), "limit_per_task": limit, "pool_limit": pool_limit,
               "samples": samples,
               "max_new_tokens": max_new_tokens, "wall_s": time.perf_counter() - t}
    write_json(output / "demo.json", summary)
    (output / "demo.md").write_text(render(summary), encoding="utf-8")
    return summary


def table_holdout(holdout: dict[str, Any]) -> str:
    lines = ["| task | chance | disc | gen | oracle |", "|---|---|---|---|---|"]
    for name in holdout["runs"]["gen-gen"]["tasks"]:
        cells = [f"{holdout['runs'][r]['tasks'].get(name, float('nan')):.1f}"
                 for r in ("chance", "disc-disc", "gen-gen", "oracle")]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render(summary: dict[str, Any]) -> str:
    out = ["# ume demo: MiniMMEB", "",
           f"First {summary['limit_per_task']} queries per task; global tasks rank against their positives plus "
           f"{summary['pool_limit']} fixed distractors (the full build has 200 queries per task and full pools: "
           "`ume eval` runs it). Scores x100 (hit@1, ndcg_linear@5 for visdoc), task counts in parentheses; "
           "overall is task-weighted, ± its standard error over queries; chance is the expected score of a random "
           "ranking of the same candidates.", "", summary["table"], "",
           "## Compositional hold-out (attribute combinations never seen in training)", "",
           summary["holdout_table"], "",
           "## Findings, in miniature (the first is a sanity check, the other four the paper's)", ""]
    for f in summary["findings"]:
        nums = ", ".join(f"{k} {v:.1f}" for k, v in f["numbers"].items())
        out.append(f"- {'yes' if f['holds'] else 'NO'}: {f['finding']} ({nums})")
    out += ["", "## Examples (RL model, gen mode)", ""]
    for ex in summary["examples"]:
        out.append(f"- **{ex['task']}**: positive `{ex['positive']}` ranked {ex['rank']} of {ex['candidates']}")
        out.append(f"  > {(ex['reasoning'] or '').strip()[:400]}")
    return "\n".join(out) + "\n"


def write_card(plan: DemoPlan, times: dict[str, float], summary: dict[str, Any]) -> Path:
    """models/TRAINING_CARD.json: how the shipped models were made and what they scored."""
    from ume.io import read_jsonl, write_json

    def last(log: Path) -> dict[str, Any]:
        rows = read_jsonl(log)
        steps = [r for r in rows if "eval" not in r]
        return {"steps": steps[-1]["step"], "final": steps[-1],
                "train_seconds": sum(r.get("step_time", 0.0) or sum(v for k, v in r.items() if k.startswith("time_"))
                                     for r in steps)}

    card = {
        "commands": [" ".join(shlex.quote(c) for c in cmd[1:]).replace("-m ume", "ume", 1)
                     .replace(f"{MODELS.parent}/", "") for cmd in plan.training_commands()],
        "data": {"benchmark": "MiniMMEB", "scale": plan.scale, "seed": plan.seed},
        "sft": {"config": json.loads((plan.models / "sft_config.json").read_text()),
                **last(train_log(plan.models, "sft"))},
        "rl": {"config": json.loads((plan.models / "rl_config.json").read_text()),
               **last(train_log(plan.models, "rl"))},
        "command_wall_seconds": times,
        "times_note": ("train_seconds sums the optimiser-step times of the whole run (data waits excluded); "
                       "command_wall_seconds is this retrain's wall time per command, where a stage that "
                       "resumed from its finished checkpoint returns in seconds"),
        "eval": {"table": summary["table"], "findings": summary["findings"],
                 "limit_per_task": summary["limit_per_task"], "pool_limit": summary["pool_limit"]},
    }
    return write_json(plan.models / CARD, card)
