"""Video tasks: frame directories plus annotation rows (`docs/data-layout.md`, spec §3.4).

Videos are passed as frame directories; `ume.inputs` natural-sorts the frames and samples 8 with
`linspace(0, n-1, 8)` (all of them when fewer), as the reference does at load time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ume.evaluate.loaders.common import (
    EvalQuery,
    LoaderError,
    RowError,
    TaskData,
    existing,
    find_table,
    get,
    read_table,
)
from ume.evaluate.tasks import MRET_PROMPT, QA_PROMPT, TaskMeta
from ume.inputs import Item

VIDEO_TOKEN = "<|video_pad|>"
VIDEO_CAND = f"{VIDEO_TOKEN} Understand the content of the provided video."
GROUPS = {"video_classification": "video_cls", "ssv2": "video_cls", "msrvtt": "video_ret", "msvd": "video_ret",
          "didemo": "video_ret", "youcook2": "video_ret", "vatex": "video_ret", "nextqa": "video_qa",
          "mvbench": "video_qa", "videomme": "video_qa", "egoschema": "video_qa", "activitynetqa": "video_qa",
          "moment_retrieval": "video_mret"}
# Video RET loaders differ only in field names: (video id field, caption field).
RET_FIELDS = {"msrvtt": ("video_id", "caption"), "msvd": ("video_id", "caption"), "didemo": ("video", "caption"),
              "youcook2": ("id", "sentence"), "vatex": ("videoID", "enCap")}
QA_VIDEO_FIELD = {"nextqa": "video", "mvbench": "video", "videomme": "videoID", "egoschema": "video_idx",
                  "activitynetqa": "video_name"}
LETTERS = "ABCDEFGHIJ"


def qa_template(question: str, options: list[str]) -> str:
    lines = "\n".join(f"({LETTERS[i]}) {o}" for i, o in enumerate(options))
    return f"{question}\nOptions:\n{lines}".rstrip()


def _strip_letter(option: str) -> str:
    """"A. text" -> "text" (Video-MME / EgoSchema option strings)."""
    head, sep, rest = option.partition(". ")
    return rest if sep and len(head) == 1 and head in LETTERS else option


def load_video_task(task: TaskMeta, root: Path) -> TaskData:
    if task.loader not in GROUPS:
        raise LoaderError(f"task {task.name}: loader {task.loader!r} is not supported yet")
    data = TaskData(task)
    rows = read_table(find_table(root / "video-annotations" / task.name, ("test", task.split), task.name),
                      task.name)
    frames = root / "MMEB-V2" / "video-tasks" / "frames" / GROUPS[task.loader] / task.name
    add = {"video_classification": _cls_row, "ssv2": _cls_row, "moment_retrieval": _mret_row}.get(
        task.loader, _ret_row if task.loader in RET_FIELDS else _qa_row)
    for i, row in enumerate(rows):
        try:
            add(data, task, row, frames)
        except RowError as e:
            data.row_error(i, str(e))
    return data


def _video(frames: Path, video_id: Any) -> Path:
    path = existing(frames / str(video_id), "frame directory")
    if not path.is_dir() or not any(path.iterdir()):
        raise RowError(f"frame directory is empty: {path}")
    return path


def _cls_row(data: TaskData, task: TaskMeta, row: dict[str, Any], frames: Path) -> None:
    video = _video(frames, get(row, "video_id", (str, int)))
    label = get(row, "pos_text", str)
    query = Item(text=f"{VIDEO_TOKEN} {task.instruction or ''}", video=str(video))
    if task.loader == "ssv2":
        options = [str(o) for o in get(row, "neg_text", list)]
        for o in options:
            data.add_candidate(o, Item(text=o))
        data.queries.append(EvalQuery(query, [label], cand_names=options))
        return
    data.add_candidate(label, Item(text=label))
    data.queries.append(EvalQuery(query, [label]))


def _ret_row(data: TaskData, task: TaskMeta, row: dict[str, Any], frames: Path) -> None:
    id_field, cap_field = RET_FIELDS[task.loader]
    vid = str(get(row, id_field, (str, int)))
    caption = get(row, cap_field, (str, list))
    if isinstance(caption, list):
        if not caption:
            raise RowError(f"field {cap_field!r} is an empty list")
        caption = str(caption[0])
    data.add_candidate(vid, Item(text=VIDEO_CAND, video=str(_video(frames, vid))))
    data.queries.append(EvalQuery(Item(text=f"{task.instruction} {caption}"), [vid]))


def _qa_row(data: TaskData, task: TaskMeta, row: dict[str, Any], frames: Path) -> None:
    video = _video(frames, get(row, QA_VIDEO_FIELD[task.loader], (str, int)))
    question = get(row, "question", str)
    loader = task.loader
    if loader == "nextqa":
        options = [str(get(row, f"a{i}", (str, int))) for i in range(5)]
        block, texts, names = qa_template(question, options), options, options
        label = options[_index(get(row, "answer", (int, str)), len(options))]
    elif loader == "mvbench":
        raw = [str(o) for o in get(row, "candidates", list)]
        block = qa_template(question, raw)
        texts = names = [f"({LETTERS[i]}) {o}" for i, o in enumerate(raw)]
        answer = str(get(row, "answer", (str, int)))
        if answer not in raw:
            raise RowError(f"field 'answer' {answer!r} is not one of the candidates")
        label = names[raw.index(answer)]
    elif loader == "videomme":
        names = [str(o) for o in get(row, "options", list)]
        block, texts = question + "\n" + "\n".join(names), [_strip_letter(o) for o in names]
        letter = str(get(row, "answer", str)).strip()
        if letter not in LETTERS[:len(names)]:
            raise RowError(f"field 'answer' {letter!r} is not an option letter")
        label = names[LETTERS.index(letter)]
    elif loader == "egoschema":
        options = [str(o) for o in get(row, "option", list)]
        block, texts = question + " ".join(options), [_strip_letter(o) for o in options]
        names = texts
        label = names[_index(get(row, "answer", (int, str)), len(options))]
    else:  # activitynetqa
        block, texts = f"{question}? (A) yes; (B) no.", ["yes", "no"]
        names = texts
        label = str(get(row, "answer", str)).strip().lower()
        if label not in names:
            raise RowError(f"field 'answer' {label!r} is not yes/no")
    for name, text in zip(names, texts, strict=True):
        data.add_candidate(name, Item(text=text))
    query = Item(text=f"{VIDEO_TOKEN} {QA_PROMPT} {block}", video=str(video))
    data.queries.append(EvalQuery(query, [label], cand_names=list(names)))


def _index(value: Any, n: int) -> int:
    try:
        i = int(value)
    except (TypeError, ValueError):
        raise RowError(f"field 'answer' {value!r} is not an option index") from None
    if not 0 <= i < n:
        raise RowError(f"field 'answer' {i} is outside 0..{n - 1}")
    return i


def _mret_row(data: TaskData, task: TaskMeta, row: dict[str, Any], frames: Path) -> None:
    video = str(get(row, "video", (str, int)))
    text = get(row, "query", str)
    base = _video(frames, video)
    full = _video(base, "query")
    clips = sorted(p.name for p in base.iterdir() if p.is_dir() and p.name != "query")
    positives = [c for c in clips if c.startswith("positive")]
    if len(positives) != 1:
        raise RowError(f"expected exactly one 'positive*' clip directory in {base}, found {len(positives)}")
    names = [f"{video}/{c}" for c in clips]  # root-relative names (the reference keeps the data root)
    for name, clip in zip(names, clips, strict=True):
        data.add_candidate(name, Item(text=VIDEO_CAND, video=str(_video(base, clip))))
    query = Item(text=f"{VIDEO_TOKEN} {MRET_PROMPT} {text}", video=str(full))
    data.queries.append(EvalQuery(query, [f"{video}/{positives[0]}"], cand_names=names))
