"""MMEB_Test_Instruct image tasks (local ranking; positive at candidate index 0).

Strings follow the reference byte for byte (`shared/spec/mmeb-v2.md` §3.3), placeholder tokens
included; the recipe later removes placeholders and wraps the text in the UME prompt.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ume.evaluate.loaders.common import EvalQuery, RowError, TaskData, existing, find_table, get, read_table
from ume.evaluate.tasks import TaskMeta
from ume.inputs import Item

IMAGE_TOKEN = "<|image_pad|>"
PHI3_TOKEN = "<|image_1|>"


def _with_text(prompt: str, text: str) -> str:
    """The reference's `process_input_text`: `" " + text` only when there is text."""
    return f"{prompt} {text}" if text else prompt


def _cls_query(inst: str, text: str) -> str:
    return _with_text(f"{IMAGE_TOKEN} {inst}", text).replace(" \n", "\n") + "\n"


def _qa_query(inst: str, text: str) -> str:
    return _with_text(f"{IMAGE_TOKEN}\n{inst.strip()}", text) + "\n"


def _image_cand(inst: str, caption: str, with_caption: bool, newline: bool) -> str:
    body = f"{IMAGE_TOKEN} {inst}" + (f" {caption}" if with_caption else "")
    return body.replace(" \n", "\n") + ("\n" if newline or with_caption else "")


def load_image_task(task: TaskMeta, root: Path) -> TaskData:
    data = TaskData(task)
    table = find_table(root / "MMEB_Test_Instruct" / (task.subset or task.name),
                       ("test", task.split), task.name)
    media = root / "MMEB-V2" / "image-tasks"
    for i, row in enumerate(read_table(table, task.name)):
        try:
            _add_row(data, task, row, media)
        except RowError as e:
            data.row_error(i, str(e))
    return data


def _add_row(data: TaskData, task: TaskMeta, row: dict[str, Any], media: Path) -> None:
    qry_inst = get(row, "qry_inst", str)
    qry_text = get(row, "qry_text", str)
    tgt_inst = get(row, "tgt_inst", str)
    tgt_text = [str(t) for t in get(row, "tgt_text", list)]
    tgt_img = [str(p) for p in get(row, "tgt_img_path", list)]
    qry_img = row.get("qry_img_path") or ""
    inst = qry_inst.replace(PHI3_TOKEN, "")
    images = [str(existing(media / qry_img, "query image"))] if qry_img else []
    loader = task.loader
    if loader in ("image_cls", "image_i2t", "image_qa", "image_i2i_vg") and not images:
        raise RowError("missing field 'qry_img_path' (this loader needs a query image)")
    if loader in ("image_cls", "image_i2t", "image_qa"):
        query = _cls_query(inst, qry_text) if loader != "image_qa" else _qa_query(inst, qry_text)
        if not tgt_text:
            raise RowError("field 'tgt_text' is empty")
        names = tgt_text
        for name in names:
            data.add_candidate(name, Item(text=name))
    elif loader in ("image_t2i", "image_i2i_vg"):
        if loader == "image_t2i":
            query = f"{qry_inst.replace(PHI3_TOKEN, IMAGE_TOKEN)} {qry_text}\n"
            if task.name == "VisDial":
                query += "\n"
            images = []
        else:
            query = _qa_query(inst, qry_text)
        if not tgt_img:
            raise RowError("field 'tgt_img_path' is empty")
        captions = tgt_text + [""] * (len(tgt_img) - len(tgt_text))
        with_caption = bool(captions[0])
        t_inst = tgt_inst.replace(PHI3_TOKEN, "")
        names = []
        for path, cap in zip(tgt_img, captions, strict=False):
            name = path if loader == "image_t2i" else f"{path}:{cap.strip(chr(34))}"
            names.append(name)
            img = str(existing(media / path, "candidate image"))
            data.add_candidate(name, Item(text=_image_cand(t_inst, cap, with_caption, loader == "image_t2i"),
                                          images=[img]))
    else:
        raise RowError(f"loader {loader!r} is not an image loader")
    data.queries.append(EvalQuery(item=Item(text=query, images=images), labels=[names[0]], cand_names=names))
