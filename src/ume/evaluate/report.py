"""Reports: task-weighted aggregates with task counts, leaderboard JSON, markdown, PNG plots."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ume.evaluate.metrics import METRIC_KEYS
from ume.evaluate.tasks import TaskMeta, select_tasks
from ume.io import write_json

if TYPE_CHECKING:  # matplotlib is imported only when a plot is drawn
    from matplotlib.figure import Figure

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


def _model_name(summary: Mapping[str, Any]) -> str:
    model = str(summary.get("model") or summary.get("config", {}).get("model", "?"))
    return Path(model.rstrip("/")).name or model


def _modes(label: str) -> str:
    """What a run column compares, in words: `qry/tgt` for a model run."""
    if label == "oracle":
        return "best of disc/gen"
    if label == "chance":
        return "random ranking"
    return label.replace("-", "/", 1)


def _limits(cfg: Mapping[str, Any]) -> str:
    parts = [f"first {cfg['limit']} queries/task" if cfg.get("limit") else "all queries"]
    if cfg.get("pool_limit"):
        parts.append(f"{cfg['pool_limit']} distractors")
    return ", ".join(parts)


def _selection(cfg: Mapping[str, Any]) -> str:
    """Which tasks were asked for, so `1/1` on a `--task` run cannot pass for a whole benchmark."""
    names = list(cfg.get("tasks") or ())
    if names:
        parts = [", ".join(names) if len(names) <= 2 else f"{len(names)} named tasks"]
    else:
        parts = [cfg.get("benchmark") or "all benchmarks"]
    parts += [f"{k.replace('_', '-')} {cfg[k]}" for k in ("modality", "meta_task") if cfg.get(k)]
    return ", ".join(parts)


def _task_count(summary: Mapping[str, Any], short: bool = False) -> str:
    overall = next(iter(summary["runs"].values()))["aggregate"]["overall"]
    scored, selected = summary.get("scored", overall["n"]), summary.get("selected", overall["of"])
    selection = _selection(summary.get("config", {}))
    return f"{scored}/{selected} {selection}" if short else f"{scored}/{selected} tasks ({selection})"


def _count(group: Mapping[str, Any]) -> str:
    n = f"{group['n']}/{group['of']}" if group["n"] != group["of"] else str(group["n"])
    return f"{n} task" + ("" if group["of"] == 1 else "s")


def _title(summary: Mapping[str, Any], what: str, modes: str | None = None) -> str:
    """Model and settings: a picture passed around alone still says what produced it."""
    cfg = summary.get("config", {})
    if modes is None:
        modes = f"qry {cfg.get('qry_mode', '?')} / tgt {cfg.get('tgt_mode', '?')}"
        modes += " + oracle" if cfg.get("oracle") else ""
        modes += f", samples {cfg.get('samples', 1)}"
    return f"{what} — {_model_name(summary)}\n{modes}\n{_limits(cfg)}, {_task_count(summary)}"


def _figure(width: float, height: float) -> Figure:
    """A Figure on an Agg canvas: no pyplot, so the caller's backend and figure registry stay untouched."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def meta_task_figure(summary: Mapping[str, Any]) -> Figure:
    """Bars per meta-task and model run with ±1 standard error, chance as a dashed mark per meta-task.

    Every bar is labelled with its value and a zero score keeps a visible stub at 0, so a 0 never reads as
    a missing bar; a meta-task a run did not score is marked n/a."""
    runs = summary["runs"]
    models = [lab for lab in runs if lab != "chance"]
    keys = list(dict.fromkeys(k for run in runs.values() for k in run["aggregate"]["meta_task"]))
    fig = _figure(max(7.0, 1.25 * len(keys) + 3), 4.8)
    ax = fig.add_subplot()
    x = np.arange(len(keys))
    width = min(0.8 / max(1, len(models)), 0.3)
    tops = [10.0]
    for i, lab in enumerate(models):
        groups = [runs[lab]["aggregate"]["meta_task"].get(k) for k in keys]
        vals = np.array([g["mean"] if g and g["mean"] is not None else np.nan for g in groups])
        errs = np.array([g.get("se", 0.0) if g and g["mean"] is not None else 0.0 for g in groups])
        pos = x + (i - (len(models) - 1) / 2) * width
        color = f"C{i}"
        lower = np.minimum(errs, np.nan_to_num(vals))  # a score cannot go below 0
        ax.bar(pos, np.nan_to_num(vals), width * 0.92, yerr=[lower, errs], color=color,
               edgecolor="black", linewidth=0.4, capsize=2.5, error_kw={"elinewidth": 0.8}, label=lab)
        zero = vals == 0
        if zero.any():
            ax.hlines(np.zeros(zero.sum()), pos[zero] - width * 0.46, pos[zero] + width * 0.46, colors=color,
                      linewidth=3, zorder=3, gid="zero")
        for p, v, e in zip(pos, vals, errs, strict=True):
            text = "n/a" if np.isnan(v) else f"{v:.1f}"
            top = 0 if np.isnan(v) else v + e
            ax.annotate(text, (p, top), xytext=(0, 2), textcoords="offset points", ha="center", va="bottom",
                        fontsize=6.5)
            tops.append(top)
    chance = [runs["chance"]["aggregate"]["meta_task"].get(k) if "chance" in runs else None for k in keys]
    have = [i for i, g in enumerate(chance) if g and g["mean"] is not None]
    if have:
        ys = [chance[i]["mean"] for i in have]
        half = width * len(models) / 2 + 0.05
        ax.hlines(ys, x[have] - half, x[have] + half, colors="black", linestyles="--", linewidth=1.2, zorder=4,
                  label="chance (random ranking)", gid="chance")
        tops += ys
    mods = [k.split("/")[0] for k in keys]
    for i in range(1, len(keys)):
        if mods[i] != mods[i - 1]:
            ax.axvline(i - 0.5, color="0.75", linewidth=0.8, linestyle=":")
    counts = [next(run["aggregate"]["meta_task"][k] for run in runs.values() if k in run["aggregate"]["meta_task"])
              for k in keys]
    ax.set_xticks(x, [f"{k}\n{_count(g)}" for k, g in zip(keys, counts, strict=True)], fontsize=8)
    ax.set_xlim(-0.6, len(keys) - 0.4)
    ax.set_ylim(0, max(tops) * 1.12 + 2)
    metrics = sorted({t["metric"] for t in summary["tasks"].values()})
    ax.set_ylabel(f"score ×100 ({' / '.join(metrics)})")
    ax.grid(axis="y", color="0.9", linewidth=0.6)
    ax.set_axisbelow(True)
    ax.set_title(_title(summary, "per meta-task"), fontsize=9)
    handles, names = ax.get_legend_handles_labels()
    order = sorted(range(len(names)), key=lambda i: names[i].startswith("chance"))  # the runs first
    fig.legend([handles[i] for i in order], [names[i] for i in order], loc="outside right upper",
               title="run (±1 s.e.)", fontsize=8, title_fontsize=8)
    return fig


PASSK_PER_TASK = 20  # more tasks than this: one curve per meta-task (their mean), or the legend is unreadable


def passk_figure(summary: Mapping[str, Any]) -> Figure:
    """pass@k coverage per task (per meta-task beyond PASSK_PER_TASK tasks) and the mean over tasks in bold."""
    from matplotlib.ticker import NullLocator, PercentFormatter

    passk = summary["passk"]
    ks = sorted({int(k) for curve in passk.values() for k in curve})
    curves = {name: [curve.get(str(k), np.nan) for k in ks] for name, curve in passk.items()}
    if len(curves) > PASSK_PER_TASK:
        by_meta: dict[str, list[list[float]]] = {}
        for name, ys in curves.items():
            by_meta.setdefault(summary["tasks"][name]["meta_task"], []).append(ys)
        curves = {f"{key} ({len(rows)} tasks)": list(np.nanmean(rows, axis=0)) for key, rows in by_meta.items()}
    fig = _figure(8.5, 4.8)
    ax = fig.add_subplot()
    styles = ("-", "--", ":")
    order = sorted(curves, key=lambda n: -np.nan_to_num(curves[n][-1]))
    for i, name in enumerate(order):
        ax.plot(ks, curves[name], color=f"C{i % 10}", linestyle=styles[i // 10 % 3], marker="o", markersize=3.5,
                linewidth=1.1, alpha=0.85, label=name)
    mean = np.nanmean([[c.get(str(k), np.nan) for k in ks] for c in passk.values()], axis=0)
    ax.plot(ks, mean, color="black", linewidth=3, marker="o", markersize=6, zorder=5,
            label=f"mean over {len(passk)} tasks", gid="mean")
    ax.set_xscale("log", base=2)
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlim(ks[0] / 1.15, ks[-1] * 1.15)
    ax.set_ylim(0, min(1.0, float(np.nanmax([*mean, *(y for c in curves.values() for y in c)])) + 0.08))
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.set_xlabel("k (reasoning samples per query)")
    ax.set_ylabel("coverage: queries with a positive\nranked first by any of the first k samples")
    ax.grid(color="0.9", linewidth=0.6)
    modes = f"qry gen x{ks[-1]} samples (temperature 1) / tgt {summary.get('config', {}).get('tgt_mode', '?')}"
    ax.set_title(_title(summary, "pass@k", modes), fontsize=9)
    fig.legend(loc="outside right upper", fontsize=7, title_fontsize=7,
               title=f"{'task' if len(order) == len(passk) else 'meta-task mean'} (by pass@{ks[-1]})")
    return fig


def plots(out: Path, summary: dict[str, Any]) -> list[str]:
    """plots/meta_tasks.png and, with pass@k curves, plots/passk.png; the paths written."""
    figures = {"meta_tasks.png": meta_task_figure(summary)}
    if summary.get("passk"):
        figures["passk.png"] = passk_figure(summary)
    (out / "plots").mkdir(parents=True, exist_ok=True)
    written = []
    for name, fig in figures.items():
        fig.savefig(out / "plots" / name, dpi=120)
        written.append(str(out / "plots" / name))
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


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A markdown table padded to its column widths, so it also reads in a terminal."""
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


def compare(dirs: Sequence[Path]) -> str:
    """Several runs' aggregates side by side (`ume report DIR...`): every score keeps its ± standard error
    and task count, under each column's model, modes, samples, limits and tasks scored, so columns that are
    not like for like (another model, a partial or limited run) say so."""
    import json

    summaries = []
    for d in dirs:
        path = Path(d) / "report.json"
        if not path.is_file():
            raise FileNotFoundError(f"no report.json in {d} (run `ume eval --output {d}` first)")
        summaries.append(json.loads(path.read_text(encoding="utf-8")))
    names = [Path(d).name for d in dirs]
    names = [n if names.count(n) == 1 else str(d) for n, d in zip(names, dirs, strict=True)]
    columns = [(f"{name}:{lab}", s, lab) for name, s in zip(names, summaries, strict=True) for lab in s["runs"]]
    aggs = [s["runs"][lab]["aggregate"] for _, s, lab in columns]

    def cell(group: dict[str, Any] | None) -> str:
        return _fmt(group, se=True) if group else "–"

    rows = [["*model*", *(_model_name(s) for _, s, _ in columns)],
            ["*qry/tgt*", *(_modes(lab) for _, _, lab in columns)],
            ["*samples (pass@k)*", *("–" if lab == "chance" else str(s.get("config", {}).get("samples", 1))
                                     for _, s, lab in columns)],
            ["*queries/task*", *(f"first {s['config']['limit']}" if s.get("config", {}).get("limit") else "all"
                                 for _, s, _ in columns)],
            ["*pool*", *(f"{s['config']['pool_limit']} distractors" if s.get("config", {}).get("pool_limit")
                         else "full" for _, s, _ in columns)],
            ["*tasks scored*", *(_task_count(s, short=True) for _, s, _ in columns)]]
    for key in dict.fromkeys(k for a in aggs for k in a["meta_task"]):
        rows.append([key, *(cell(a["meta_task"].get(key)) for a in aggs)])
    for mod in dict.fromkeys(m for a in aggs for m in a["modality"]):
        rows.append([f"**{mod}**", *(cell(a["modality"].get(mod)) for a in aggs)])
    rows.append(["**overall**", *(cell(a["overall"]) for a in aggs)])
    out = [_table(["group", *(c for c, _, _ in columns)], rows), "",
           "Scores x100 ± standard error over queries (chance is exact); in parentheses the number of tasks "
           "averaged, n/of when some selected tasks are missing; `–`: not in that run."]
    for name, s in zip(names, summaries, strict=True):
        if s.get("missing"):
            out.append(f"- {name}: {len(s['missing'])} of {s['selected']} selected task(s) missing: "
                       + ", ".join(s["missing"]))
        if s.get("errors"):
            out.append(f"- {name}: {s['errors']} error(s) recorded in its errors.jsonl")
    return "\n".join(out) + "\n"
