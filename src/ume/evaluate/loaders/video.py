"""Video tasks: rows from the task's repo, frames from `<media>/video-tasks/frames/<FRAME_DIRS[task]>/`.

Each function follows one reference loader (TIGER-AI-Lab/VLM2Vec `src/data/eval_dataset/<loader>_dataset.py`,
`data_prepare`): the same fields, frame directory, query and candidate strings, candidate names and label. A
video is passed as its list of sampled frame files (`process_video_frames(dir, 8)`); a missing or empty frame
directory is that row's error (the reference would try to extract frames from a raw video MMEB-V2 does not ship).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from ume.evaluate.loaders.common import (
    VIDEO_TOKEN,
    EvalQuery,
    LoadContext,
    RowError,
    TaskData,
    existing,
    frame_files,
    get,
    input_text,
    sampled_frames,
)
from ume.evaluate.tasks import MRET_PROMPT, QA_PROMPT, TaskMeta
from ume.inputs import Item

VIDEO_CAND = f"{VIDEO_TOKEN} Understand the content of the provided video."
MOMENTSEEKER_QUERY = {  # momentseeker_dataset.py TASK_INST_QRY_{TEXT,IMG,VIDEO}
    "text": "Find the clip that corresponds to the given text:",
    "image": "Select the video clip that aligns with the given text and image:",
    "video": "Find the clip that corresponds to the given sentence and video segment:",
}
MOMENTSEEKER_CAND = f"{VIDEO_TOKEN} Understand the content of the provided video clip."
VIDEOMME_LETTERS = "ABCD"  # videomme_dataset.py OPTIONS


@cache
def label_sets() -> dict[str, list[str]]:
    """The full label list of each video classification task (VIDEOCLS_LABEL_MAPPING of the reference)."""
    text = resources.files("ume.evaluate").joinpath("video_labels.json").read_text(encoding="utf-8")
    return {k: v for k, v in json.loads(text).items() if not k.startswith("_")}


AddRow = Callable[[TaskData, TaskMeta, dict[str, Any], Path], None]
# a QA row -> (query text, candidate names, candidate texts, label, video directory); gets the asked question
QaRow = Callable[[TaskData, dict[str, Any], Path, str], tuple[str, list[str], list[str], str, Path]]


def _rows(add: AddRow) -> Callable[[TaskMeta, LoadContext], TaskData]:
    """A video loader: every row of the task's repo through `add`, frames from its frame directory."""

    def load(task: TaskMeta, ctx: LoadContext) -> TaskData:
        data = TaskData(task)
        if task.configs:  # MVBench: the configs concatenated, each row tagged with its subset
            rows = [{**r, "subset": c} for c in task.configs for r in data.rows(ctx, config=c)]
        else:
            rows = data.rows(ctx)
        frames = ctx.sources.media_dir(task.media or "", f"video-tasks/frames/{task.frames}", task.name)
        data.add_rows(rows, lambda row: add(data, task, row, frames))
        if task.label_set is not None:  # global pool = every label of the task, after those the rows name
            for label in label_sets()[task.label_set]:
                data.add_candidate(label, Item(text=label))
        return data

    return load


def _cls_query(task: TaskMeta, row: dict[str, Any], frames: Path) -> tuple[Item, str]:
    video = sampled_frames(frames / str(get(row, "video_id", (str, int))))
    return Item(text=input_text(task.instruction or "", video=True), video=video), get(row, "pos_text", str)


def _cls_row(data: TaskData, task: TaskMeta, row: dict[str, Any], frames: Path) -> None:
    query, label = _cls_query(task, row, frames)
    data.add_candidate(label, Item(text=label))
    data.queries.append(EvalQuery(query, [label]))


def _ssv2_row(data: TaskData, task: TaskMeta, row: dict[str, Any], frames: Path) -> None:
    """Local ranking: the row's own options."""
    query, label = _cls_query(task, row, frames)
    options = [str(o) for o in get(row, "neg_text", list)]
    for o in options:
        data.add_candidate(o, Item(text=o))
    data.queries.append(EvalQuery(query, [label], cand_names=options))


def _ret(id_field: str, cap_field: str, name_of: Callable[[str], str] = str) -> AddRow:
    """Video RET: the caption is the query; the frame directory named from the id field is the candidate."""

    def add(data: TaskData, task: TaskMeta, row: dict[str, Any], frames: Path) -> None:
        name = name_of(str(get(row, id_field, (str, int))))
        caption = get(row, cap_field, (str, list))
        if isinstance(caption, list):  # MSVD and VATEX ship caption lists; the first one is the query
            if not caption:
                raise RowError(f"field {cap_field!r} is an empty list")
            caption = str(caption[0])
        data.add_candidate(name, Item(text=VIDEO_CAND, video=sampled_frames(frames / name)))
        data.queries.append(EvalQuery(Item(text=input_text(task.instruction or "", caption)), [name]))

    return add


def qa_template(question: str, options: list[str]) -> tuple[str, list[str]]:
    """vision_utils.qa_template: the question with "(A) option" lines, and the lettered options."""
    lettered = [f"({chr(ord('A') + i)}) {o}" for i, o in enumerate(options)]
    return f"{question}\nOptions:\n" + "".join(f"{o}\n" for o in lettered).rstrip(), lettered


def strip_letter(option: str) -> str:
    """Video-MME / EgoSchema candidate text: the reference's `o[o.find('. '):].strip('. ')`, quirks included
    (an option without ". " keeps only its last character)."""
    return option[option.find(". "):].strip(". ")


def _qa(parse: QaRow) -> AddRow:
    """Video QA: the question (after the QA prompt) against the row's own options."""

    def add(data: TaskData, task: TaskMeta, row: dict[str, Any], frames: Path) -> None:
        # process_query(query, prompt, video_token); QA_PROMPT ends with " "
        asked = f"{VIDEO_TOKEN} {QA_PROMPT} " + get(row, "question", str)
        query, names, texts, label, video = parse(data, row, frames, asked)
        for name, text in zip(names, texts, strict=True):
            data.add_candidate(name, Item(text=text))
        data.queries.append(EvalQuery(Item(text=query, video=sampled_frames(video)), [label],
                                      cand_names=list(names)))

    return add


def _nextqa(data: TaskData, row: dict[str, Any], frames: Path, asked: str
            ) -> tuple[str, list[str], list[str], str, Path]:
    options = [str(get(row, f"a{i}", (str, int))) for i in range(5)]
    query, _ = qa_template(asked, options)
    label = options[_index(get(row, "answer", (int, str)), len(options))]
    return query, options, options, label, frames / str(get(row, "video", (str, int)))


def _mvbench(data: TaskData, row: dict[str, Any], frames: Path, asked: str
             ) -> tuple[str, list[str], list[str], str, Path]:
    raw = [str(o) for o in get(row, "candidates", list)]
    query, texts = qa_template(asked, raw)
    answer = str(get(row, "answer", (str, int)))
    if answer not in raw:  # the reference labels it "(@) answer", which never matches: a counted miss
        data.note("mvbench_answer_not_in_candidates")
    label = f"({chr(ord('A') + (raw.index(answer) if answer in raw else -1))}) {answer}"
    return query, texts, texts, label, frames / get(row, "subset", str) / str(get(row, "video", (str, int)))


def _videomme(data: TaskData, row: dict[str, Any], frames: Path, asked: str
              ) -> tuple[str, list[str], list[str], str, Path]:
    names = [str(o) for o in get(row, "options", list)]
    letter = get(row, "answer", str)
    if letter not in VIDEOMME_LETTERS[:len(names)]:
        raise RowError(f"field 'answer' {letter!r} is not an option letter")
    return (asked + "\n" + "\n".join(names), names, [strip_letter(o) for o in names],
            names[VIDEOMME_LETTERS.index(letter)], frames / str(get(row, "videoID", (str, int))))


def _egoschema(data: TaskData, row: dict[str, Any], frames: Path, asked: str
               ) -> tuple[str, list[str], list[str], str, Path]:
    names = [str(o) for o in get(row, "option", list)]  # full options are names and label; texts stripped
    label = names[_index(get(row, "answer", (int, str)), len(names))]
    return (asked + " ".join(names), names, [strip_letter(o) for o in names], label,
            frames / str(get(row, "video_idx", (str, int))))


def _activitynetqa(data: TaskData, row: dict[str, Any], frames: Path, asked: str
                   ) -> tuple[str, list[str], list[str], str, Path]:
    options = ["yes", "no"]
    label = get(row, "answer", str)
    if label not in options:  # the reference's OPTIONS.index(answer) fails on anything else
        raise RowError(f"field 'answer' {label!r} is not 'yes' or 'no'")
    return (asked + "? (A) yes; (B) no.", options, options, label,
            frames / f"v_{get(row, 'video_name', (str, int))}")


def _index(value: Any, n: int) -> int:
    try:
        i = int(value)
    except (TypeError, ValueError):
        raise RowError(f"field 'answer' {value!r} is not an option index") from None
    if not 0 <= i < n:
        raise RowError(f"field 'answer' {i} is outside 0..{n - 1}")
    return i


def _mret_row(data: TaskData, task: TaskMeta, row: dict[str, Any], frames: Path) -> None:
    """QVHighlight / Charades-STA: `<frames>/<stem of video_path>/query/` is the query video, every other
    sub-directory a candidate clip; the one whose name starts with "positive" is the answer. Names are
    root-relative (`<video>/<clip>`; the reference keeps absolute paths) and sorted (the reference takes
    os.listdir order)."""
    text = get(row, "query", str)
    video = Path(get(row, "video_path", str)).stem
    base = existing(frames / video, "video frame directory")
    clips = sorted(p.name for p in base.iterdir() if p.is_dir() and p.name != "query")
    positives = [c for c in clips if c.startswith("positive")]
    if len(positives) != 1:
        raise RowError(f"expected exactly one 'positive*' clip directory in {base}, found {len(positives)}")
    names = [f"{video}/{c}" for c in clips]
    for name, clip in zip(names, clips, strict=True):
        data.add_candidate(name, Item(text=VIDEO_CAND, video=sampled_frames(base / clip, "clip frame directory")))
    query = Item(text=input_text(MRET_PROMPT, text, video=True), video=sampled_frames(base / "query"))
    data.queries.append(EvalQuery(query, [f"{video}/{positives[0]}"], cand_names=names))


def _clip_dir(path: str) -> str:
    """momentseeker_dataset.py: a clip's frame directory name, `path` with "/" -> "_" and ".mp4" dropped."""
    return path.replace("/", "_").split(".mp4")[0]


def _momentseeker_row(data: TaskData, task: TaskMeta, row: dict[str, Any], frames: Path) -> None:
    """Text, text + image or text + video queries against the row's positive and negative clips; every
    positive counts (`label_name` is a list). Clips keep all their frames (`load_frames`, not resampled)."""
    text = get(row, "query", str)
    source = row.get("input_frames") or ""
    if not isinstance(source, str):
        raise RowError(f"field 'input_frames' should be str, got {type(source).__name__}")
    if source.endswith(".mp4"):
        query = Item(text=input_text(MOMENTSEEKER_QUERY["video"], text, video=True),
                     video=frame_files(frames / "video_frames" / _clip_dir(source), "query frame directory"))
    elif source.endswith(".jpg"):
        image = existing(frames / f"query_{source}", "query image")
        query = Item(text=input_text(MOMENTSEEKER_QUERY["image"], text, image=True), images=[str(image)])
    else:
        query = Item(text=input_text(MOMENTSEEKER_QUERY["text"], text))
    clips = {}
    for kind in ("positive_frames", "negative_frames"):
        entries = get(row, kind, list)
        for entry in entries:
            if not isinstance(entry, dict) or not isinstance(entry.get("output_path"), str):
                raise RowError(f"field {kind!r}: every entry needs an 'output_path' string")
        clips[kind] = [_clip_dir(e["output_path"]) for e in entries]
    if not clips["positive_frames"]:
        raise RowError("field 'positive_frames' is empty")
    names = clips["positive_frames"] + clips["negative_frames"]
    for name in names:
        video = frame_files(frames / "video_frames" / name, "clip frame directory")
        data.add_candidate(name, Item(text=MOMENTSEEKER_CAND, video=video))
    data.queries.append(EvalQuery(query, list(clips["positive_frames"]), cand_names=names))


VIDEO_LOADERS: dict[str, Callable[[TaskMeta, LoadContext], TaskData]] = {
    "video_classification": _rows(_cls_row),
    "ssv2": _rows(_ssv2_row),
    "msrvtt": _rows(_ret("video_id", "caption")),
    "msvd": _rows(_ret("video_id", "caption")),
    "didemo": _rows(_ret("video", "caption", lambda v: Path(v).stem)),  # splitext(basename(video))
    "youcook2": _rows(_ret("id", "sentence")),
    "vatex": _rows(_ret("videoID", "enCap")),
    "nextqa": _rows(_qa(_nextqa)),
    "mvbench": _rows(_qa(_mvbench)),
    "videomme": _rows(_qa(_videomme)),
    "egoschema": _rows(_qa(_egoschema)),
    "activitynetqa": _rows(_qa(_activitynetqa)),
    "moment_retrieval": _rows(_mret_row),
    "momentseeker": _rows(_momentseeker_row),
}
