"""Reports: task-weighted aggregates with task counts, leaderboard JSON, markdown, PNG plots."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from ume.evaluate.metrics import METRIC_KEYS
from ume.evaluate.tasks import TaskMeta, select_tasks
from ume.io import write_json

MODALITIES = ("image", "video", "visdoc")
DERIVED = ("oracle", "chance")  # report columns that are not model runs: no leaderboard file
LEADERBOARD_BENCHMARK = "mmeb-v2"  # the only tasks the leaderboard knows; MiniMMEB runs get no file
SCORE_KEYS = (*METRIC_KEYS, "num_pred", "num_data")  # a task entry: the 26 keys of a `_score.json`
# report_score_v2.py's "temp fix": the leaderboard tells the re-released page splits (VLM2Vec #167) by these names
PAGE_FIXED = {"ViDoSeek-page": "ViDoSeek-page-fixed", "MMLongBench-page": "MMLongBench-page-fixed"}


@dataclass(frozen=True)
class LeaderboardMeta:
    """The metadata template of VLM2Vec `experiments/report_score_v2.py`, fields in its key order.

    None is written as null (unknown), as the script's own examples do.
    """

    model_name: str
    model_backbone: str | None = None  # e.g. "qwen2_vl"
    model_size: str | None = None  # e.g. "2B parameters"
    embedding_dimension: int | None = None
    max_length_tokens: int | None = None
    model_release_date: str | None = None  # YYYY-MM-DD
    data_source: str = "Self-Reported"
    url: str | None = None


def aggregate(task_scores: dict[str, float], selected: Sequence[TaskMeta],
              task_se: dict[str, float] | None = None) -> dict[str, Any]:
    """Means of task scores (x100) per meta-task, per modality and overall (task-weighted), each with its
    task count and the selected tasks it is missing, so a partial average is never mistaken for a full one.
    With `task_se` (each task's standard error over its queries), also the mean's standard error `se`:
    queries are independent samples, so the task errors add in quadrature."""

    def group(members: list[TaskMeta]) -> dict[str, Any]:
        present = [t.name for t in members if t.name in task_scores]
        out = {"mean": float(np.mean([task_scores[n] for n in present])) if present else None,
               "n": len(present), "of": len(members),
               "missing": [t.name for t in members if t.name not in task_scores]}
        if task_se is not None and present:
            out["se"] = float(np.sqrt(sum(task_se[n] ** 2 for n in present)) / len(present))
        return out

    meta_keys = list(dict.fromkeys(t.meta_key for t in selected))
    return {
        "meta_task": {k: group([t for t in selected if t.meta_key == k]) for k in meta_keys},
        "modality": {m: group([t for t in selected if t.modality == m]) for m in MODALITIES
                     if any(t.modality == m for t in selected)},
        "overall": group(list(selected)),
    }


def _fmt(g: dict[str, Any], se: bool = False) -> str:
    if g["mean"] is None:
        return "–"
    err = f" ± {g['se']:.1f}" if se and "se" in g else ""
    return f"{g['mean']:.1f}{err} ({g['n']})" if g["n"] == g["of"] else f"{g['mean']:.1f}{err} ({g['n']}/{g['of']})"


def standard_error(scores: Sequence[float]) -> float:
    """Standard error (x100) of a task's mean over its per-query scores; 0 for a single query."""
    return float(100 * np.std(scores, ddof=1) / np.sqrt(len(scores))) if len(scores) > 1 else 0.0


def markdown(summary: dict[str, Any]) -> str:
    labels = list(summary["runs"])
    lines = ["| group | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    first = summary["runs"][labels[0]]["aggregate"]
    for key in first["meta_task"]:
        lines.append(f"| {key} | " + " | ".join(_fmt(summary["runs"][lab]["aggregate"]["meta_task"][key])
                                                  for lab in labels) + " |")
    for mod in first["modality"]:
        lines.append(f"| **{mod}** | " + " | ".join(_fmt(summary["runs"][lab]["aggregate"]["modality"][mod])
                                                     for lab in labels) + " |")
    lines.append("| **overall** | " + " | ".join(_fmt(summary["runs"][lab]["aggregate"]["overall"], se=True)
                                                 for lab in labels) + " |")
    out = ["# Evaluation report", "", f"model: `{summary['model']}`", "",
           "Scores x100 (hit@1; ndcg_linear@5 for visdoc); in parentheses the number of tasks averaged "
           "(n/of when some selected tasks are missing). Overall is the task-weighted mean, ± its standard "
           "error over queries; `chance` is the expected score of a random ranking of the same candidates.",
           "", *lines, ""]
    tasks = summary["tasks"]
    out += ["## Per task", "", "| task | modality | meta-task | " + " | ".join(labels) + " |",
            "|---|---|---|" + "---|" * len(labels)]
    for name, info in tasks.items():
        cells = [f"{summary['runs'][lab]['tasks'][name]:.1f}" if name in summary["runs"][lab]["tasks"] else "–"
                 for lab in labels]
        out.append(f"| {name} | {info['modality']} | {info['meta_task']} | " + " | ".join(cells) + " |")
    if summary.get("passk"):
        ks = sorted({int(k) for v in summary["passk"].values() for k in v})
        out += ["", "## pass@k coverage (hit@1 by any of the first k query samples)", "",
                "| task | " + " | ".join(f"k={k}" for k in ks) + " |", "|---|" + "---|" * len(ks)]
        for name, curve in summary["passk"].items():
            out.append(f"| {name} | " + " | ".join(f"{100 * curve[str(k)]:.1f}" for k in ks) + " |")
    if summary.get("missing"):
        n = len(summary["missing"])
        out += ["", f"**{n} of {summary['selected']} selected task(s) missing** (not loaded):", ""]
        out += [f"- {name}: {reason}" for name, reason in summary["missing"].items()]
    if summary["errors"]:
        out += ["", f"{summary['errors']} error(s) recorded in `errors.jsonl`."]
    return "\n".join(out) + "\n"


def leaderboard(scores: Mapping[str, Mapping[str, Any]], meta: LeaderboardMeta,
                fixed_page_names: bool = True) -> dict[str, Any]:
    """The submission JSON report_score_v2.py writes for a results tree holding `scores` (task -> score dict).

    Each modality lists all its MMEB-V2 tasks in the script's order whatever ran, so the leaderboard sees
    what is absent: "FILE_N/A" for a task without a score, "DIR_N/A" for every task of a modality without
    any (the script's missing directory; ume writes one only with a score in it). Names the script does
    not list (MiniMMEB, MomentSeeker_1k8) are dropped, as it ignores their files; entries keep exactly
    the 26 score keys. `fixed_page_names` applies the script's rename of the two page tasks, which the
    current leaderboard expects; False keeps the canonical names, as in the published v2.1 files.
    """
    canonical = select_tasks(benchmark=LEADERBOARD_BENCHMARK)
    metrics: dict[str, dict[str, Any]] = {}
    for mod in MODALITIES:
        names = [t.name for t in canonical if t.modality == mod]
        missing = "FILE_N/A" if any(n in scores for n in names) else "DIR_N/A"
        metrics[mod] = {PAGE_FIXED.get(n, n) if fixed_page_names else n:
                        {k: scores[n][k] for k in SCORE_KEYS} if n in scores else missing for n in names}
    return {"metadata": {**asdict(meta), "report_generated_date": datetime.now().isoformat()},
            "metrics": metrics}


def plots(out: Path, summary: dict[str, Any]) -> list[str]:
    """Per-meta-task bars (one bar per run) and pass@k curves, as PNG files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    labels = list(summary["runs"])
    keys = list(summary["runs"][labels[0]]["aggregate"]["meta_task"])
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(keys) + 2), 4))
    width = 0.8 / len(labels)
    for i, lab in enumerate(labels):
        vals = [summary["runs"][lab]["aggregate"]["meta_task"][k]["mean"] or 0 for k in keys]
        ax.bar(np.arange(len(keys)) + i * width, vals, width, label=lab)
    ax.set_xticks(np.arange(len(keys)) + width * (len(labels) - 1) / 2, keys, rotation=30, ha="right")
    ax.set_ylabel("score x100")
    ax.set_title("per meta-task")
    ax.legend()
    fig.tight_layout()
    path = out / "plots" / "meta_tasks.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(str(path))
    if summary.get("passk"):
        fig, ax = plt.subplots(figsize=(6, 4))
        for name, curve in summary["passk"].items():
            ks = sorted(int(k) for k in curve)
            ax.plot(ks, [100 * curve[str(k)] for k in ks], marker="o", label=name)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("k (query samples)")
        ax.set_ylabel("coverage x100")
        ax.set_title("pass@k")
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = out / "plots" / "passk.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(str(path))
    return written


def write_reports(out: Path, cfg: Any, selected: Sequence[TaskMeta], results: Sequence[Any],
                  errors: Sequence[dict[str, Any]], timings: dict[str, float] | None = None,
                  meta: LeaderboardMeta | None = None, missing: Mapping[str, str] | None = None,
                  fixed_page_names: bool = True) -> dict[str, Any]:
    """Write report.json, report.md, plots and, per model run with an MMEB-V2 score, leaderboard_<run>.json
    (metadata from `meta`, by default only the model name); return the summary. `missing` (task -> why it
    could not be loaded) is stated in both reports, so a partial run never reads as a full one."""
    meta = meta or LeaderboardMeta(model_name=cfg.model)
    labels = list(dict.fromkeys(lab for r in results for lab in r.scores))
    runs = {}
    for lab in labels:
        task_scores = {r.task.name: 100 * r.scores[lab][r.task.metric] for r in results if lab in r.scores}
        task_se = None if lab == "chance" else {r.task.name: standard_error(r.per_query[lab])
                                                 for r in results if lab in r.scores}
        runs[lab] = {"tasks": task_scores, "aggregate": aggregate(task_scores, selected, task_se)}
        board = {r.task.name: r.scores[lab] for r in results
                 if lab in r.scores and r.task.benchmark == LEADERBOARD_BENCHMARK}
        if lab not in DERIVED and board:
            write_json(out / f"leaderboard_{lab}.json", leaderboard(board, meta, fixed_page_names))
    summary = {
        "model": cfg.model, "config": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__},
        "tasks": {t.name: {"modality": t.modality, "meta_task": t.meta_key, "metric": t.metric,
                           "benchmark": t.benchmark} for t in selected},
        "runs": runs,
        "passk": {r.task.name: {str(k): v for k, v in r.passk.items()} for r in results if r.passk},
        "encoding": {r.task.name: r.stats for r in results},
        "data": {r.task.name: r.data for r in results},
        "timings_s": timings or {},
        "errors": len(errors),
        "selected": len(selected), "scored": len(results), "missing": dict(missing or {}),
    }
    if not runs:
        write_json(out / "report.json", summary)
        return summary
    summary["plots"] = plots(out, summary)
    write_json(out / "report.json", summary)
    (out / "report.md").write_text(markdown(summary), encoding="utf-8")
    return summary


def compare(dirs: Sequence[Path]) -> str:
    """A markdown table of several runs' aggregates side by side (`ume report DIR...`)."""
    import json

    columns: list[tuple[str, dict[str, Any]]] = []
    for d in dirs:
        path = Path(d) / "report.json"
        if not path.is_file():
            raise FileNotFoundError(f"no report.json in {d} (run `ume eval --output {d}` first)")
        summary = json.loads(path.read_text())
        for lab, run in summary["runs"].items():
            columns.append((f"{Path(d).name}:{lab}", run["aggregate"]))
    rows: list[tuple[str, str, str]] = []  # (label, section, key)
    for _, agg in columns:
        for section in ("meta_task", "modality"):
            for key in agg[section]:
                if (key, section, key) not in rows:
                    rows.append((key, section, key))
    rows.append(("overall", "overall", ""))
    lines = ["| group | " + " | ".join(c for c, _ in columns) + " |", "|---|" + "---|" * len(columns)]
    for label, section, key in rows:
        cells = []
        for _, agg in columns:
            group = agg[section] if section == "overall" else agg[section].get(key)
            cells.append(_fmt(group) if group else "–")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
