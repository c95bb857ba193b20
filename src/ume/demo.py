"""`ume demo`: evaluate the shipped MiniMMEB models the way MMEB-V2 is evaluated, in a few minutes.

The shipped checkpoints (`models/ume-demo-pretrain`, `models/ume-demo-sft`, `models/ume-demo-rl`) were
trained by ume's own pipeline, base -> perception pre-training -> SFT -> RL; `models/TRAINING_CARD.json`
lists the exact commands, seeds, steps, times and metrics, and the 200-query evaluation the findings are
judged on. `ume demo --retrain` runs those same commands (the ones a user would type), then that
evaluation, then the demo's own.

Besides retrieval, the demo measures what the generative embedding rests on: whether the base model sees
(perception accuracy on held-out renders, `ume.train.perception`), whether the reasoning is right (answer
accuracy against the generator's gold answers) and what gen would score if it were (the gold-reasoning
ceiling), `ume.diagnose`.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

MODELS = Path(__file__).resolve().parents[2] / "models"
CARD = "TRAINING_CARD.json"
STAGES = ("pretrain", "sft", "rl")
Z = 2.0  # a finding holds when its difference is at least Z standard errors


@dataclass(frozen=True)
class DemoPlan:
    """Where the demo's data, models and reports live; the training commands derive from it."""

    work: Path = Path("runs/demo")
    models: Path = MODELS
    seed: int = 0
    scale: str = "small"  # the MiniMMEB scale the models are evaluated on (the eval benchmark)
    train_scale: str = "full"  # the build whose training pairs SFT and RL use (same seed: small's are a prefix)
    # torch threads per training command. One: on a shared machine two threads spin-wait for each other and
    # cost ~3x the CPU per step (measured: 5.9 vs 1.8 core-s per pre-training step); the shipped models were
    # trained with one, and floating-point sums depend on it.
    threads: int = 1

    @property
    def data(self) -> Path:
        return self.work / "minimmeb"

    @property
    def train_data(self) -> Path:
        return self.work / f"minimmeb-{self.train_scale}"

    def training_commands(self) -> list[list[str]]:
        """The exact commands that produced the shipped models (also what --retrain runs). `--resume latest`
        makes an interrupted retrain continue from its last checkpoint (and a finished stage return at once);
        the training-data build is skipped when a complete build with that seed and scale exists."""
        base, pre, sft, rl, train = (self.work / "base", self.work / "pretrain", self.work / "sft", self.work / "rl",
                                     self.train_data)
        ume = [sys.executable, "-m", "ume"]
        return [
            [*ume, "tiny", "build", str(base), "--size", "demo", "--seed", str(self.seed), "--corpus",
             str(self.data / "train" / "sft.json")],
            [*ume, "synth", "build", str(train), "--seed", str(self.seed), "--scale", self.train_scale],
            [*ume, "train", "pretrain", "--config", str(self.models / "pretrain_config.json"), "--model", str(base),
             "--output", str(pre), "--resume", "latest"],
            [*ume, "train", "sft", "--config", str(self.models / "sft_config.json"), "--model", str(pre),
             "--data", str(train / "train" / "sft.json"), "--media-root", str(train), "--output", str(sft),
             "--resume", "latest"],
            [*ume, "train", "rl", "--config", str(self.models / "rl_config.json"), "--model", str(sft),
             "--data", str(train / "train" / "rl.json"), "--media-root", str(train), "--output", str(rl),
             "--resume", "latest"],
        ]


def _built(root: Path, seed: int, scale: str) -> bool:
    manifest = root / "manifest.json"
    if not manifest.is_file():
        return False
    info = json.loads(manifest.read_text())
    return info.get("seed") == seed and info.get("scale") == scale


def ensure_data(plan: DemoPlan) -> Path:
    """Build MiniMMEB (the plan's scale and seed) unless an identical build is already there."""
    from ume.synth.build import build

    if not _built(plan.data, plan.seed, plan.scale):
        build(plan.data, seed=plan.seed, scale=plan.scale, overwrite=True)
    return plan.data


def _stage(cmd: list[str]) -> str:
    return {"tiny": "tiny build", "synth": "synth build"}.get(cmd[3], cmd[4] if len(cmd) > 4 else cmd[3])


def retrain(plan: DemoPlan, evaluate: bool = True) -> dict[str, Any]:
    """Run the training commands, time them, copy the results into `plan.models`, then (by default) run the
    200-query evaluation the card ships (`full_evaluation`)."""
    times = {}
    for cmd in plan.training_commands():
        stage = _stage(cmd)
        if stage == "synth build" and _built(plan.train_data, plan.seed, plan.train_scale):
            times[stage] = 0.0
            continue
        if stage == "synth build" and plan.train_data.exists():  # an interrupted build: start it again
            cmd = [*cmd, "--overwrite"]
        print("$", " ".join(shlex.quote(c) for c in cmd), flush=True)
        t = time.perf_counter()
        subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": str(plan.threads)})
        times[stage] = time.perf_counter() - t
    install_models(plan)
    if evaluate:
        full_evaluation(plan)
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


# ---- evaluation ------------------------------------------------------------------------------------------
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


def _diagnose(model: Path, data: Path, out: Path, limit: int | None, pool_limit: int | None,
              max_new_tokens: int, batch_size: int) -> dict[str, Any]:
    from ume.diagnose import diagnose

    return diagnose(str(model), str(data), str(out), limit, pool_limit, max_new_tokens, batch_size)


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


def _passk(summary: dict[str, Any]) -> dict[int, dict[str, float]]:
    """Overall pass@k (task mean x100) and its standard error (binomial per task, in quadrature)."""
    curve: dict[int, list[tuple[float, int]]] = {}
    n_of = summary.get("n_queries", {})
    for task, task_curve in summary.get("passk", {}).items():
        for k, v in task_curve.items():
            curve.setdefault(int(k), []).append((v, n_of.get(task, 1)))
    out = {}
    for k, vals in sorted(curve.items()):
        mean = 100 * float(np.mean([v for v, _ in vals]))
        se = 100 * float(np.sqrt(sum(v * (1 - v) / max(n - 1, 1) for v, n in vals)) / len(vals))
        out[k] = {"mean": mean, "se": se}
    return out


def findings(sft: dict[str, Any], rl: dict[str, Any], sft_diag: dict[str, Any],
             rl_diag: dict[str, Any]) -> list[dict[str, Any]]:
    """A sanity check (SFT beats chance) and the paper's four findings, each judged at Z standard errors.

    Differences between two runs on the same queries use the standard error of the paired per-query
    difference (per task, in quadrature over tasks); the sanity check uses each score's own standard error.
    """
    from ume.diagnose import combine, paired

    def lists(diag: dict[str, Any], key: str) -> dict[str, list[float]]:
        return {t: row[key] for t, row in diag["tasks"].items()}

    gen, disc = lists(rl_diag, "gen"), lists(rl_diag, "disc")
    oracle = {t: list(np.maximum(gen[t], disc[t])) for t in gen}
    better = "gen" if combine(gen)["mean"] >= combine(disc)["mean"] else "disc"
    floor = _overall(sft, "chance")
    s_gen, s_disc = combine(lists(sft_diag, "gen")), combine(lists(sft_diag, "disc"))
    g_vs_d, o_vs_b, r_vs_s = paired(gen, disc), paired(oracle, gen if better == "gen" else disc), \
        paired(gen, lists(sft_diag, "gen"))
    pk = _passk(rl)
    ks = list(pk)
    rise = (pk[ks[-1]]["mean"] - pk[ks[0]]["mean"]) if len(ks) > 1 else 0.0
    rise_se = float(np.hypot(pk[ks[-1]]["se"], pk[ks[0]]["se"])) if len(ks) > 1 else 0.0
    return [
        {"finding": "SFT lifts both embeddings above chance (by 2 standard errors)",
         "holds": all(s["mean"] - floor >= Z * s["se"] for s in (s_disc, s_gen)),
         "numbers": {"chance": floor, "sft_disc": s_disc["mean"], "sft_disc_se": s_disc["se"],
                     "sft_gen": s_gen["mean"], "sft_gen_se": s_gen["se"]}},
        {"finding": "generative beats discriminative", "holds": g_vs_d["z"] >= Z,
         "numbers": {"gen": combine(gen)["mean"], "disc": combine(disc)["mean"], "diff": g_vs_d["diff"],
                     "diff_se": g_vs_d["se"]}},
        {"finding": "the oracle beats both", "holds": o_vs_b["z"] >= Z,
         "numbers": {"oracle": combine(oracle)["mean"], f"vs_{better}": o_vs_b["diff"], "diff_se": o_vs_b["se"]}},
        {"finding": "RL improves the generative embedding over SFT", "holds": r_vs_s["z"] >= Z,
         "numbers": {"sft_gen": s_gen["mean"], "rl_gen": combine(gen)["mean"], "diff": r_vs_s["diff"],
                     "diff_se": r_vs_s["se"]}},
        {"finding": "pass@k coverage rises with k", "holds": len(ks) > 1 and rise >= Z * rise_se,
         "numbers": {**{f"pass@{k}": v["mean"] for k, v in pk.items()}, "rise": rise, "rise_se": rise_se}},
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


def reasoning_table(sft: dict[str, Any], rl: dict[str, Any], sft_diag: dict[str, Any],
                    rl_diag: dict[str, Any]) -> str:
    """Per task: gen beside answer accuracy (does the reasoning state the gold answer?) and the gold-reasoning
    ceiling (gen read after the annotated reasoning, teacher forced), for SFT and RL; disc for reference."""
    head = ("| task | chance | SFT disc | SFT gen | SFT answer acc | SFT ceiling | RL disc | RL gen | RL answer acc "
            "| RL ceiling |")
    lines = [head, "|---|" + "---|" * 9]

    def mean(v: list[float]) -> str:
        return f"{100 * float(np.mean(v)):.1f}"

    def ans(row: dict[str, Any]) -> str:
        pos = row.get("positive_answer_accuracy")
        return f"{row['answer_accuracy']:.0f}" + (f" (target {pos:.0f})" if pos is not None else "")

    for task, s in sft_diag["tasks"].items():
        r = rl_diag["tasks"][task]
        chance = rl["runs"]["chance"]["tasks"].get(task, float("nan"))
        lines.append(f"| {task} | {chance:.1f} | {mean(s['disc'])} | {mean(s['gen'])} | {ans(s)} | "
                     f"{mean(s['ceiling']) if 'ceiling' in s else '–'} | {mean(r['disc'])} | {mean(r['gen'])} | "
                     f"{ans(r)} | {mean(r['ceiling']) if 'ceiling' in r else '–'} |")
    so, ro = sft_diag["overall"], rl_diag["overall"]

    def pm(g: dict[str, float]) -> str:
        return f"{g['mean']:.1f} ± {g['se']:.1f}"

    lines.append(f"| **overall** | {_overall(rl, 'chance'):.1f} | {pm(so['disc'])} | {pm(so['gen'])} | "
                 f"{so['answer_accuracy']:.1f} | {pm(so['ceiling']) if 'ceiling' in so else '–'} | {pm(ro['disc'])} | "
                 f"{pm(ro['gen'])} | {ro['answer_accuracy']:.1f} | {pm(ro['ceiling']) if 'ceiling' in ro else '–'} |")
    return "\n".join(lines)


def _strip(diag: dict[str, Any]) -> dict[str, Any]:
    """A diagnosis for the JSON outputs: per-query lists reduced to their means."""
    tasks = {t: {k: (100 * float(np.mean(v)) if isinstance(v, list) and v and isinstance(v[0], (int, float))
                     else v) for k, v in row.items()} for t, row in diag["tasks"].items()}
    return {**diag, "tasks": tasks}


def perception_of(model: Path, per_kind: int, seed: int, cache: Path) -> dict[str, Any]:
    """The perception report of a checkpoint, kept in `cache` (keyed by the checkpoint's fingerprint)."""
    from ume.backbone import load_backbone
    from ume.evaluate.cache import model_fingerprint
    from ume.io import write_json
    from ume.train.perception import perception

    key = {"model": model_fingerprint(str(model)), "per_kind": per_kind, "seed": seed}
    if cache.is_file():
        found = json.loads(cache.read_text())
        if found.get("key") == key:
            return found["report"]
    report = perception(load_backbone(model, device="cpu", dtype="float32"), per_kind, seed)
    write_json(cache, {"key": key, "report": report})
    return report


def evaluate_models(plan: DemoPlan, output: Path, limit: int | None, pool_limit: int | None, samples: int,
                    max_new_tokens: int, batch_size: int, perception_per_kind: int,
                    holdout: bool = True, models: dict[str, Path] | None = None) -> dict[str, Any]:
    """The shipped models (or `models`, stage -> checkpoint) on MiniMMEB: retrieval (disc, gen, oracle,
    pass@k), answer accuracy, the gold-reasoning ceiling, the findings, and the pre-trained base's perception."""
    data = ensure_data(plan)
    models = models or {s: plan.models / f"ume-demo-{s}" for s in STAGES}
    for m in models.values():
        if not (m / "model.safetensors").is_file():
            raise FileNotFoundError(f"shipped model missing: {m} (run `ume demo --retrain` to rebuild it)")
    t = time.perf_counter()
    args = dict(limit=limit, pool_limit=pool_limit, max_new_tokens=max_new_tokens, batch_size=batch_size)
    rl = _evaluate(models["rl"], data, output / "rl", "minimmeb", "gen", "gen", True, samples, **args)
    sft = _evaluate(models["sft"], data, output / "sft", "minimmeb", "gen", "gen", True, 1, **args)
    sft_diag = _diagnose(models["sft"], data, output / "sft", **args)
    rl_diag = _diagnose(models["rl"], data, output / "rl", **args)
    rl["n_queries"] = {t: row["n"] for t, row in rl_diag["tasks"].items()}  # pass@k's binomial errors
    seen = perception_of(models["pretrain"], perception_per_kind, plan.seed, output / "perception.json")
    out = {"table": table(sft, rl), "reasoning_table": reasoning_table(sft, rl, sft_diag, rl_diag),
           "findings": findings(sft, rl, sft_diag, rl_diag), "perception": seen,
           "diagnosis": {"sft": _strip(sft_diag), "rl": _strip(rl_diag)}, "examples": examples(output / "rl"),
           "limit_per_task": limit, "pool_limit": pool_limit, "samples": samples, "max_new_tokens": max_new_tokens}
    if holdout:
        ho = _evaluate(models["rl"], data, output / "rl-holdout", "minimmeb-holdout", "gen", "gen", True, 1, **args)
        out["holdout_table"] = table_holdout(ho)
    out["wall_s"] = time.perf_counter() - t
    return out


def full_evaluation(plan: DemoPlan, output: Path | None = None, samples: int = 4, max_new_tokens: int = 160,
                    batch_size: int = 32, perception_per_kind: int = 100) -> dict[str, Any]:
    """All 200 queries per task (pool limit 30, as the demo): what the card ships and the findings are
    judged on. Written to `plan.work / "full_eval.json"`; `write_card` embeds it. Embeddings and the
    perception report are cached under `output`, so an interrupted evaluation continues where it stopped."""
    from ume.backbone import RUN_MODEL_DIR
    from ume.io import write_json

    output = output or plan.work / "full-eval"
    # the training outputs themselves (the shipped models are their copies): their eval caches stay valid
    summary = evaluate_models(plan, output, None, 30, samples, max_new_tokens, batch_size, perception_per_kind,
                              holdout=False, models={s: plan.work / s / RUN_MODEL_DIR for s in STAGES})
    write_json(plan.work / "full_eval.json", summary)
    return summary


def run_demo(output: Path, plan: DemoPlan | None = None, limit: int | None = 20, pool_limit: int | None = 30,
             samples: int = 8, max_new_tokens: int = 160, batch_size: int = 32,
             perception_per_kind: int = 10) -> dict[str, Any]:
    """Evaluate the shipped models on MiniMMEB (and its hold-out), beside the card's 200-query evaluation,
    and write the report."""
    from ume.io import write_json

    plan = plan or DemoPlan()
    summary = evaluate_models(plan, output, limit, pool_limit, samples, max_new_tokens, batch_size,
                              perception_per_kind)
    card = plan.models / CARD
    summary["full"] = json.loads(card.read_text()).get("full_eval") if card.is_file() else None
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


def _finding_line(f: dict[str, Any]) -> str:
    nums = ", ".join(f"{k} {v:.1f}" for k, v in f["numbers"].items())
    return f"{'yes' if f['holds'] else 'NO'} ({nums})"


def _perception_line(p: dict[str, Any]) -> str:
    h = p["headline"]
    return ", ".join(f"{k} {100 * v:.0f}%" for k, v in h.items()) + f" ({p['per_kind']} held-out items per kind)"


def chain_line(summary: dict[str, Any]) -> str:
    """perception -> answer accuracy -> gen vs ceiling, in one line (what explains a missed finding)."""
    h = summary["perception"]["headline"]
    d = summary["diagnosis"]
    keys = ("colour", "shape", "count", "position", "events", "table_cells")
    seen = ", ".join(f"{k} {100 * h[k]:.0f}%" for k in keys if k in h)
    parts = [f"perception of the base: {seen}"]
    for stage in ("sft", "rl"):
        o = d[stage]["overall"]
        ceil = f" vs gold-reasoning ceiling {o['ceiling']['mean']:.1f}" if "ceiling" in o else ""
        parts.append(f"{stage.upper()} answer accuracy {o['answer_accuracy']:.1f}% -> gen {o['gen']['mean']:.1f}"
                     f"{ceil} (disc {o['disc']['mean']:.1f})")
    return " -> ".join(parts)


def render(summary: dict[str, Any]) -> str:
    full = summary.get("full")
    out = ["# ume demo: MiniMMEB", "",
           f"First {summary['limit_per_task']} queries per task; global tasks rank against their positives plus "
           f"{summary['pool_limit']} fixed distractors (the full build has 200 queries per task and full pools: "
           "`ume eval` runs it). Scores x100 (hit@1, ndcg_linear@5 for visdoc), task counts in parentheses; "
           "overall is task-weighted, ± its standard error over queries; chance is the expected score of a random "
           "ranking of the same candidates.", "", summary["table"], "",
           "## Seeing, reasoning, embedding", "",
           f"The chain, this run: {chain_line(summary)}.", ""]
    if full:
        out += [f"The chain, 200 queries per task (training card): {chain_line(full)}.", ""]
    out += ["Perception of the pre-trained base (greedy descriptions of held-out renders, exact match per "
            "attribute against the generator's ground truth):", "",
            f"- this run: {_perception_line(summary['perception'])}"]
    if full:
        out.append(f"- training card: {_perception_line(full['perception'])}")
    out += ["", "Answer accuracy (the generated `<answer>` states the gold one; for text queries also the "
            "positive target's) and the gold-reasoning ceiling (the query's gen vector read after the annotated "
            "reasoning, teacher forced, against the same candidates):", "", summary["reasoning_table"], ""]
    if full:
        out += ["The same on all 200 queries per task (training card):", "", full["reasoning_table"], ""]
    if "holdout_table" in summary:
        out += ["## Compositional hold-out (attribute combinations never seen in training)", "",
                summary["holdout_table"], ""]
    out += [f"## Findings, judged at {Z:.0f} standard errors (the first is a sanity check, the other four the "
            "paper's; differences of two runs use the paired standard error)", ""]
    for i, f in enumerate(summary["findings"]):
        line = f"- **{f['finding']}**: this run ({summary['limit_per_task']} queries/task) {_finding_line(f)}"
        if full:
            line += f"; 200 queries/task: {_finding_line(full['findings'][i])}"
        out.append(line)
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
        evals = [r for r in rows if "eval" in r]
        return {"steps": steps[-1]["step"], "final": steps[-1],
                "train_seconds": sum(r.get("step_time", 0.0) or sum(v for k, v in r.items() if k.startswith("time_"))
                                     for r in steps), **({"evals": evals} if evals else {})}

    full_path = plan.work / "full_eval.json"
    card = {
        "commands": [" ".join(shlex.quote(c) for c in cmd[1:]).replace("-m ume", "ume", 1)
                     .replace(f"{MODELS.parent}/", "") for cmd in plan.training_commands()],
        "data": {"benchmark": "MiniMMEB", "scale": plan.scale, "seed": plan.seed,
                 "training_pairs_from": f"MiniMMEB-{plan.train_scale} (seed {plan.seed}): train/sft.json, rl.json"},
        **{stage: {"config": json.loads((plan.models / f"{stage}_config.json").read_text()),
                   **last(train_log(plan.models, stage))} for stage in STAGES},
        "command_env": {"OMP_NUM_THREADS": str(plan.threads)},
        "command_wall_seconds": times,
        "times_note": ("train_seconds sums the optimiser-step times of the whole run (data waits excluded); "
                       "command_wall_seconds is this retrain's wall time per command, where a stage that "
                       "resumed from its finished checkpoint returns in seconds"),
        "eval": {"table": summary["table"], "findings": summary["findings"],
                 "limit_per_task": summary["limit_per_task"], "pool_limit": summary["pool_limit"]},
        "full_eval": json.loads(full_path.read_text()) if full_path.is_file() else None,
    }
    return write_json(plan.models / CARD, card)
