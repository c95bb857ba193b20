"""Every benchmark task as data (mteb `TaskMetadata` style), so reports can say exactly what ran.

The 78 MMEB-V2 tasks are the typed table `mmeb_v2_registry.csv`, one column per `TaskMeta` field. It holds
what the spec's `mmeb-v2-tasks.csv` says (modality, meta-task, loader, dataset path, metric; ranking and query
count from its notes — tested to agree with a copy of that file, tests/spec/) and what the reference harness
keeps in code rather than in its data, verbatim: video instructions, frame directories (TIGER-AI-Lab/VLM2Vec
`experiments/public/eval/video.yaml`, `frame_root`), MVBench's 20 subsets (`mvbench_dataset.py`,
`subset_meta`), row caps (`num_sample_per_subset`) and the key of each video-classification label list
(`video_labels.json`). MiniMMEB tasks come from `ume.synth.tasks`.
"""

from __future__ import annotations

import csv
import dataclasses
import typing
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from importlib import resources

MAIN_METRIC = {"image": "hit@1", "video": "hit@1", "visdoc": "ndcg_linear@5"}

QA_PROMPT = ("Given a video and a question, select the most accurate answer from the provided candidates. "
             "Return only the exact text of your chosen answer. Question: ")
MRET_PROMPT = "Find the clip that corresponds to the described scene in the given video:"
MMEB_MEDIA = "TIGER-Lab/MMEB-V2"  # images (image-tasks/) and frames (video-tasks/frames/) of every task
BENCHMARKS = ("mmeb-v2", "mmeb-v2-image", "mmeb-v2-video", "mmeb-v2-visdoc", "minimmeb", "minimmeb-holdout")
REGISTRY = "mmeb_v2_registry.csv"


@dataclass(frozen=True)
class TaskMeta:
    """One evaluation task."""

    name: str
    benchmark: str  # "mmeb-v2" | "minimmeb" | "minimmeb-holdout" (compositional hold-out, reported apart)
    modality: str  # image | video | visdoc
    meta_task: str  # CLS, QA, RET, GD, MRET, VDRv1, VDRv2, VR, OOD, ...
    loader: str
    source: str  # the dataset repo its rows come from, "owner/name" (`load_dataset(source, subset, split)`)
    subset: str | None  # the config of `source` (None: the default one)
    split: str
    metric: str  # the main metric
    ranking: str  # local | global
    n_queries: int | None = None
    instruction: str | None = None
    reasoning_heavy: bool | None = None
    media: str | None = None  # the repo holding its images / frames (visdoc pages live in the rows)
    frames: str | None = None  # video tasks: frame directory under <media>/video-tasks/frames/
    configs: tuple[str, ...] = ()  # several configs concatenated (MVBench); empty: just `subset`
    max_rows: int | None = None  # the reference evaluates only the first N rows
    label_set: str | None = None  # video classification: the key of the full label list in video_labels.json

    @property
    def meta_key(self) -> str:
        """Modality-qualified meta-task, e.g. "image/CLS" (video and image both have CLS)."""
        return f"{self.modality}/{self.meta_task}"


def _typed(name: str, hint: typing.Any, text: str) -> typing.Any:
    """One registry cell as its field's type: "" is None for optional fields, "|" separates tuple items."""
    if typing.get_origin(hint) is tuple:
        return tuple(text.split("|")) if text else ()
    if type(None) in typing.get_args(hint):
        if text == "":
            return None
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    try:
        return hint(text)
    except ValueError:
        raise ValueError(f"{REGISTRY}: {name}={text!r} is not a {hint.__name__}") from None


@cache
def _mmeb_v2() -> tuple[TaskMeta, ...]:
    text = resources.files("ume.evaluate").joinpath(REGISTRY).read_text(encoding="utf-8")
    hints = typing.get_type_hints(TaskMeta)
    columns = {f.name for f in dataclasses.fields(TaskMeta)} - {"name", "benchmark", "reasoning_heavy"}
    reader = csv.DictReader(text.splitlines())
    if set(reader.fieldnames or ()) != columns | {"task"}:
        raise ValueError(f"{REGISTRY}: columns {reader.fieldnames} do not match TaskMeta's fields {sorted(columns)}")
    tasks = []
    for row in reader:
        values = {k: _typed(k, hints[k], v) for k, v in row.items() if k != "task"}
        tasks.append(TaskMeta(name=row["task"], benchmark="mmeb-v2", **values))
    return tuple(tasks)


def _minimmeb() -> list[TaskMeta]:
    from ume.synth.tasks import MEDIA_REPO, MINI_TASKS, SPLIT

    return [TaskMeta(name=t.name, benchmark="minimmeb-holdout" if t.split == "holdout" else "minimmeb",
                     modality=t.modality, meta_task=t.meta_task,
                     loader=t.loader, source=t.repo, subset=t.config, split=SPLIT, metric=t.metric,
                     ranking=t.ranking, n_queries=None, instruction=t.instruction,
                     reasoning_heavy=t.reasoning_heavy, media=MEDIA_REPO if t.modality != "visdoc" else None,
                     frames=t.frames) for t in MINI_TASKS]


def all_tasks() -> list[TaskMeta]:
    return list(_mmeb_v2()) + _minimmeb()


def select_tasks(tasks: Iterable[str] = (), benchmark: str | None = None, modality: str | None = None,
                 meta_task: str | None = None) -> list[TaskMeta]:
    """Tasks by name, benchmark (see BENCHMARKS), modality and/or meta-task, in registry order."""
    pool = all_tasks()
    if benchmark is not None:
        if benchmark not in BENCHMARKS:
            raise ValueError(f"unknown benchmark {benchmark!r}; choose from {', '.join(BENCHMARKS)}")
        _, sep, mod = benchmark.partition("mmeb-v2-")
        family = "mmeb-v2" if sep else benchmark
        pool = [t for t in pool if t.benchmark == family and mod in ("", t.modality)]
    if modality is not None:
        pool = [t for t in pool if t.modality == modality]
    if meta_task is not None:
        pool = [t for t in pool if meta_task in (t.meta_task, t.meta_key)]
    names = list(tasks)
    if names:
        by_name = {t.name: t for t in pool}
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise ValueError(f"unknown task(s) {unknown} in the selection; see `ume eval --list`")
        pool = [by_name[n] for n in names]
    if not pool:
        raise ValueError("the selection matches no task")
    return pool
