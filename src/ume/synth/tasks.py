"""MiniMMEB task metadata as data, so the evaluation registry can register the tasks without reading a build.

Each task mirrors one MMEB-V2 task: same loader, ranking (local/global) and main metric, so the harness
treats a MiniMMEB build exactly like the real benchmark. `instruction` is what a video/visdoc loader
prepends (image tasks carry `qry_inst`/`tgt_inst` in their rows, as MMEB_Test_Instruct does).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

NEXTQA_PROMPT = (
    "Given a video and a question, select the most accurate answer from the provided candidates. "
    "Return only the exact text of your chosen answer. Question: "
)
VIDEO_TARGET = "Understand the content of the provided video."
VISDOC_QUERY = "Find a document image that matches the given query:"
VISDOC_TARGET = "Understand the content of the provided document image."
# A build is a tree of hub-style snapshots, ROOT/<owner>/<repo>, laid out as their MMEB-V2 counterparts are
# published, so `ume eval --data-root ROOT` reads MiniMMEB and MMEB-V2 through the same code.
OWNER = "minimmeb"
IMAGE_REPO = f"{OWNER}/MiniMMEB_Test_Instruct"  # as ziyjiang/MMEB_Test_Instruct: one config per image task
MEDIA_REPO = f"{OWNER}/MiniMMEB-V2"  # as TIGER-Lab/MMEB-V2 unpacked: image-tasks/, video-tasks/frames/
SPLIT = "test"  # the split every eval and hold-out task is written to


@dataclass(frozen=True)
class MiniTask:
    """One MiniMMEB task. `group` is the frame group of video tasks; `holdout_of` names the task whose
    generator a hold-out task reuses with hold-out (colour, shape) pairs on its key objects."""

    name: str
    modality: Literal["image", "video", "visdoc"]
    meta_task: str
    loader: str
    ranking: Literal["local", "global"]
    metric: str
    mirrors: str
    reasoning_heavy: bool
    why: str
    instruction: str = ""
    qry_inst: str = ""
    tgt_inst: str = ""
    group: str = ""
    split: Literal["eval", "holdout"] = "eval"
    holdout_of: str = ""

    @property
    def base(self) -> str:
        """The generator's task name (itself, or the task a hold-out copy derives from)."""
        return self.holdout_of or self.name

    @property
    def repo(self) -> str:
        """The hub-style repo its rows are written to (image tasks share one, as MMEB_Test_Instruct)."""
        return IMAGE_REPO if self.modality == "image" else f"{OWNER}/{self.name}"

    @property
    def config(self) -> str | None:
        """The config of `repo` holding its rows (image tasks: the task name; others: the default)."""
        return self.name if self.modality == "image" else None

    @property
    def frames(self) -> str | None:
        """Video tasks: the frame directory under MEDIA_REPO's video-tasks/frames/."""
        return f"{self.group}/{self.name}" if self.modality == "video" else None


def _image(name: str, meta: str, loader: str, mirrors: str, heavy: bool, why: str, qry_inst: str,
           tgt_inst: str = "") -> MiniTask:
    return MiniTask(name, "image", meta, loader, "local", "hit@1", mirrors, heavy, why, qry_inst=qry_inst,
                    tgt_inst=tgt_inst)


BASE_TASKS: tuple[MiniTask, ...] = (
    _image("MiniShapes", "CLS", "image_cls", "ImageNet-1K", False,
           "one object; its colour and shape are visible at a glance",
           "Represent the given image for classification"),
    _image("MiniMajority", "CLS", "image_cls", "VOC2007", True,
           "count the objects of every colour, compare the counts, and count the total",
           "Represent the given image for classification by its most common colour"),
    _image("MiniVQA", "QA", "image_qa", "GQA", True,
           "find the named object, then follow a relation, read its letter or count around it",
           "Represent the given image with the following question:"),
    _image("MiniCaps_t2i", "RET", "image_t2i", "MSCOCO_t2i", True,
           "negatives swap colours, shapes, sizes or positions between the described objects",
           "Find an image that matches the given caption:", "Represent the given image."),
    _image("MiniCount_i2t", "RET", "image_i2t", "MSCOCO_i2t", True,
           "captions differ only in per-group counts or in which colour goes with which shape",
           "Find an image caption describing the given image."),
    _image("MiniEdit", "RET", "image_i2i_vg", "CIRR", True,
           "apply one or two edits to the query scene; negatives apply part of them or edit the wrong object",
           "Given an image, find a similar image with the described changes:", "Represent the given image."),
    _image("MiniRef", "GD", "image_i2i_vg", "RefCOCO", True,
           "resolve a relational or attribute-bound expression to one of the scene's objects",
           "Select the portion of the image that follows the language expressions.",
           "Represent the given cropped image of the object."),
    MiniTask("MiniEvents", "video", "CLS", "video_classification", "global", "hit@1", "K700", True,
             "compare frames to find which object changes and how (moves, appears, disappears, recolours)",
             instruction="Recognize which object changes in the video and how.", group="video_cls"),
    MiniTask("MiniTrackQA", "video", "QA", "nextqa", "local", "hit@1", "NExTQA", True,
             "track two events over time: which object moved where, what appeared, what changed first",
             instruction=NEXTQA_PROMPT, group="video_qa"),
    MiniTask("MiniVidRet", "video", "RET", "msrvtt", "global", "hit@1", "MSR-VTT", True,
             "bind each described event to the right object among videos with the same objects",
             instruction="Find a video that contains the following visual content:", group="video_ret"),
    MiniTask("MiniMoment", "video", "MRET", "moment_retrieval", "local", "hit@1", "Charades-STA", True,
             "negatives include the other segments and time-reversed clips (appear vs disappear, left vs right)",
             instruction="Find the clip that corresponds to the described scene in the given video:",
             group="video_mret"),
    MiniTask("MiniDocTable", "visdoc", "VDR", "vidore", "global", "ndcg_linear@5", "ViDoRe_tabfquad", True,
             "pages of one series share title and items; only comparing the values finds the page",
             instruction=VISDOC_QUERY),
    MiniTask("MiniDocReport", "visdoc", "VDR", "vidore", "global", "ndcg_linear@5",
             "ViDoRe_esg_reports_human_labeled_v2", False,
             "graded qrels: the evidence page (2) and the rest of its report (1); a title-and-topic lookup",
             instruction=VISDOC_QUERY),
)

HOLDOUT_BASES: tuple[str, ...] = ("MiniShapes", "MiniVQA", "MiniCaps_t2i", "MiniRef", "MiniTrackQA")


def _holdout(task: MiniTask) -> MiniTask:
    return replace(task, name=f"{task.name}-holdout", split="holdout", holdout_of=task.name,
                   why=task.why + "; key objects use (colour, shape) pairs never seen in training")


MINI_TASKS: list[MiniTask] = [*BASE_TASKS, *(_holdout(t) for t in BASE_TASKS if t.name in HOLDOUT_BASES)]
TASKS_BY_NAME: dict[str, MiniTask] = {t.name: t for t in MINI_TASKS}
# Stable per-generator ids for the seed streams (never hash(): it is salted per process).
TASK_IDS: dict[str, int] = {t.name: i for i, t in enumerate(BASE_TASKS)}
