"""MMEB_Test_Instruct image tasks (local ranking; positive at candidate index 0).

Strings follow the reference loaders byte for byte (TIGER-AI-Lab/VLM2Vec `src/data/eval_dataset/
image_{cls,qa,t2i,i2t,i2i_vg}*.py`, `data_prepare`), placeholder tokens included; the recipe later removes the
placeholders and wraps the text in the UME prompt. Images are `<media>/image-tasks/<path>` (image.yaml
`image_root: image-tasks/`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ume.evaluate.loaders.common import (
    IMAGE_TOKEN,
    EvalQuery,
    LoadContext,
    RowError,
    TaskData,
    existing,
    get,
    input_text,
)
from ume.evaluate.tasks import TaskMeta
from ume.inputs import Item

PHI3_TOKEN = "<|image_1|>"
QUERY_IMAGE_LOADERS = ("image_cls", "image_i2t", "image_qa", "image_i2i_vg")


def load_image_task(task: TaskMeta, ctx: LoadContext) -> TaskData:
    data = TaskData(task)
    rows = data.rows(ctx)
    media = ctx.sources.media_dir(task.media or "", "image-tasks", task.name)
    data.add_rows(rows, lambda row: _add_row(data, task, row, media))
    return data


def _strings(row: dict[str, Any], name: str) -> list[str]:
    values = get(row, name, list)
    if not values:
        raise RowError(f"field {name!r} is empty")
    return [str(v) for v in values]


def _query(loader: str, qry_inst: str, qry_text: str, name: str) -> str:
    """image_cls / image_i2t / image_qa / image_i2i_vg / image_t2i query strings (`data_prepare`)."""
    if loader == "image_t2i":  # the token becomes the model's own; no query image is attached
        return f"{qry_inst.replace(PHI3_TOKEN, IMAGE_TOKEN)} {qry_text}\n" + ("\n" if name == "VisDial" else "")
    inst = qry_inst.replace(PHI3_TOKEN, "")
    if loader in ("image_qa", "image_i2i_vg"):
        inst = "\n" + inst.strip()
    return input_text(inst, qry_text, image=True).replace(" \n", "\n") + "\n"


def _add_row(data: TaskData, task: TaskMeta, row: dict[str, Any], media: Path) -> None:
    loader = task.loader
    qry_inst, qry_text = get(row, "qry_inst", str), get(row, "qry_text", str)
    query = _query(loader, qry_inst, qry_text, task.name)
    images: list[str] = []
    if loader in QUERY_IMAGE_LOADERS:
        path = row.get("qry_img_path")
        if not path:
            raise RowError("missing field 'qry_img_path' (this loader needs a query image)")
        images = [str(existing(media / str(path), "query image"))]
    tgt_text = _strings(row, "tgt_text")
    if loader in ("image_cls", "image_i2t", "image_qa"):
        names = tgt_text  # candidates are the raw strings: no instruction, no token, no image
        for name in names:
            data.add_candidate(name, Item(text=name))
    else:
        paths = _strings(row, "tgt_img_path")
        if len(tgt_text) != len(paths):
            raise RowError(f"{len(tgt_text)} tgt_text for {len(paths)} tgt_img_path")
        tgt_inst = get(row, "tgt_inst", str).replace(PHI3_TOKEN, "")
        if tgt_text[0].strip():  # WebQA, EDIS, RefCOCO-Matching: the caption is part of the candidate
            texts = [input_text(f"{tgt_inst} {cap}", image=True).replace(" \n", "\n") + "\n" for cap in tgt_text]
        else:
            text = input_text(tgt_inst, image=True).replace(" \n", "\n")
            texts = [text + "\n" if loader == "image_t2i" else text] * len(paths)
        names = paths if loader == "image_t2i" else [f"{p}:{c.strip(chr(34))}" for p, c in zip(paths, tgt_text,
                                                                                                   strict=True)]
        for name, path, text in zip(names, paths, texts, strict=True):
            data.add_candidate(name, Item(text=text, images=[str(existing(media / path, "candidate image"))]))
    data.queries.append(EvalQuery(item=Item(text=query, images=images), labels=[names[0]], cand_names=names))


# the reference's image_{cls,qa,t2i,i2t,i2i_vg} loaders differ only in their strings and which side has images
IMAGE_LOADERS = dict.fromkeys((*QUERY_IMAGE_LOADERS, "image_t2i"), load_image_task)
