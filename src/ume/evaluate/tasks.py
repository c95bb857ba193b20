"""Every benchmark task as data (mteb `TaskMetadata` style), so reports can say exactly what ran.

The 78 MMEB-V2 tasks come from `mmeb_v2_tasks.csv` (a copy of `shared/spec/mmeb-v2-tasks.csv`, tested
to stay identical); MiniMMEB tasks come from `ume.synth.tasks`. What the reference harness keeps in code
rather than in its data is recorded here verbatim: video instructions, frame directories (TIGER-AI-Lab/VLM2Vec
`experiments/public/eval/video.yaml`, `frame_root`), MVBench's 20 subsets (`mvbench_dataset.py`, `subset_meta`),
row caps (`num_sample_per_subset`) and the video-classification label lists (`video_labels.json`).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources

MAIN_METRIC = {"image": "hit@1", "video": "hit@1", "visdoc": "ndcg_linear@5"}

QA_PROMPT = ("Given a video and a question, select the most accurate answer from the provided candidates. "
             "Return only the exact text of your chosen answer. Question: ")
MRET_PROMPT = "Find the clip that corresponds to the described scene in the given video:"
VIDEO_INSTRUCTIONS = {
    "K700": "Recognize the category of the video content.",
    "SmthSmthV2": "What actions or object interactions are being performed by the person in the video?",
    "UCF101": "What activities or sports are being performed by the person in the video?",
    "HMDB51": "What actions or objects interactions are the person in the video doing?",
    "Breakfast": "Recognize the breakfast type that the person is cooking in the video. ",  # trailing space
    "MSR-VTT": "Find a video that contains the following visual content:",
    "MSVD": "Find the video snippet that corresponds to the given summary:",
    "DiDeMo": "Find a video that includes the following described scenes:",
    "YouCook2": "Find a video that demonstrates the following action while making a recipe:",
    "VATEX": "Select a video that fits the description provided:",
}
# Frame directory of each video task under `<media>/video-tasks/frames/` (video.yaml `frame_root`): the
# directory names are the yaml's, not the task names (SSv2, Charades_STA).
FRAME_DIRS = {
    "K700": "video_cls/K700", "SmthSmthV2": "video_cls/SSv2", "HMDB51": "video_cls/HMDB51",
    "UCF101": "video_cls/UCF101", "Breakfast": "video_cls/Breakfast",
    "MSR-VTT": "video_ret/MSR-VTT", "MSVD": "video_ret/MSVD", "DiDeMo": "video_ret/DiDeMo",
    "YouCook2": "video_ret/YouCook2", "VATEX": "video_ret/VATEX",
    "QVHighlight": "video_mret/QVHighlight", "Charades-STA": "video_mret/Charades_STA",
    "MomentSeeker": "video_mret/MomentSeeker",
    "Video-MME": "video_qa/Video-MME", "NExTQA": "video_qa/NExTQA", "EgoSchema": "video_qa/EgoSchema",
    "MVBench": "video_qa/MVBench", "ActivityNetQA": "video_qa/ActivityNetQA",
}
# MVBench is 20 configs of VLM2Vec/MVBench concatenated in this order, each row tagged with its `subset`.
MVBENCH_SUBSETS = (
    "episodic_reasoning", "action_sequence", "action_prediction", "action_antonym", "fine_grained_action",
    "unexpected_action", "object_existence", "object_interaction", "object_shuffle", "moving_direction",
    "action_localization", "scene_transition", "action_count", "moving_count", "moving_attribute",
    "state_change", "fine_grained_pose", "character_order", "egocentric_navigation", "counterfactual_inference",
)
MAX_ROWS = {"SmthSmthV2": 1000}  # video.yaml num_sample_per_subset (the others are None: every row)
MMEB_MEDIA = "TIGER-Lab/MMEB-V2"  # images (image-tasks/) and frames (video-tasks/frames/) of every task
BENCHMARKS = ("mmeb-v2", "mmeb-v2-image", "mmeb-v2-video", "mmeb-v2-visdoc", "minimmeb", "minimmeb-holdout")


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


def _parse_source(hf_path: str) -> tuple[str, str | None, str]:
    m = re.match(r"^(\S+)(?:\s*\[(.*)\])?$", hf_path.strip())
    if not m:
        raise ValueError(f"cannot parse dataset path {hf_path!r}")
    opts = dict(kv.split("=", 1) for kv in (m.group(2) or "").split(", ") if "=" in kv)
    return m.group(1), opts.get("subset"), opts.get("split", "test")


def _mmeb_v2() -> list[TaskMeta]:
    text = resources.files("ume.evaluate").joinpath("mmeb_v2_tasks.csv").read_text(encoding="utf-8")
    tasks = []
    for row in csv.DictReader(text.splitlines()):
        notes = dict(kv.split("=", 1) for kv in row["notes"].split("; ") if "=" in kv)
        source, subset, split = _parse_source(row["hf_path"])
        queries = notes.get("queries", "").split()[0] if notes.get("queries") else ""
        name, loader = row["task"], row["loader"]
        tasks.append(TaskMeta(
            name=name, benchmark="mmeb-v2", modality=row["modality"],
            meta_task=row["meta_task"].split(" (")[0], loader=loader, source=source, subset=subset,
            split=split, metric=row["metric"], ranking=notes["eval_type"],
            n_queries=int(queries) if queries.isdigit() else None,
            instruction=VIDEO_INSTRUCTIONS.get(name),
            media=MMEB_MEDIA if row["modality"] in ("image", "video") else None, frames=FRAME_DIRS.get(name),
            configs=MVBENCH_SUBSETS if loader == "mvbench" else (), max_rows=MAX_ROWS.get(name),
            label_set=source.split("/")[1] if loader == "video_classification" else None,
        ))
    return tasks


def _minimmeb() -> list[TaskMeta]:
    from ume.synth.tasks import MEDIA_REPO, MINI_TASKS, SPLIT

    return [TaskMeta(name=t.name, benchmark="minimmeb-holdout" if t.split == "holdout" else "minimmeb",
                     modality=t.modality, meta_task=t.meta_task,
                     loader=t.loader, source=t.repo, subset=t.config, split=SPLIT, metric=t.metric,
                     ranking=t.ranking, n_queries=None, instruction=t.instruction,
                     reasoning_heavy=t.reasoning_heavy, media=MEDIA_REPO if t.modality != "visdoc" else None,
                     frames=t.frames) for t in MINI_TASKS]


def all_tasks() -> list[TaskMeta]:
    return _mmeb_v2() + _minimmeb()


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
