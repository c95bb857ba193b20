"""mteb / MIEB: a ume model as an mteb encoder, and small offline retrieval tasks built from files.

    import mteb, ume
    from ume.integrations.mteb import file_task
    model = ume.mteb_model("models/ume-demo-rl", mode="disc")
    result = mteb.evaluate(model, [file_task("my_task_dir")], cache=None)

The wrapper follows mteb's encoder protocol as its own model implementations do (an `AbsEncoder` with
`mteb_model_meta`; `encode(DataLoader[BatchedInput], task_metadata=..., prompt_type=...)` -> [n, d]): text, images
(PIL, as mteb's collators give them) and their combinations, through `Encoder.encode`. A failed item raises
(mteb has no notion of a missing vector). mteb's own `UMER1Wrapper` reimplements the model path with
`generate(output_hidden_states=True)`; this one reuses ume's, so its vectors are `ume embed`'s.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from mteb.abstasks.retrieval import AbsTaskRetrieval
from mteb.abstasks.task_metadata import TaskMetadata
from mteb.models.abs_encoder import AbsEncoder
from mteb.models.model_meta import ModelMeta, ScoringFunction

from ume.inputs import Item, as_list

if TYPE_CHECKING:
    from torch.utils.data import DataLoader


def batch_items(batch: dict[str, Any], instruction: str | None = None) -> list[Item]:
    """mteb's collated batch (columns `text`, `image`, `video`, ...) -> ume items, row by row."""
    n = max((len(v) for k, v in batch.items() if k in ("text", "image", "video") and v is not None), default=0)
    texts = batch.get("text") or [""] * n
    images = batch.get("image") or [None] * n
    videos = batch.get("video") or [None] * n
    items = []
    for text, image, video in zip(texts, images, videos, strict=True):
        text = text or ""
        if instruction:
            text = f"{instruction} {text}".strip()
        frames = as_list(video) if video is not None else None
        items.append(Item(text=text, images=as_list(image), video=frames or None))
    return items


class UmeMtebModel(AbsEncoder):
    """A ume checkpoint behind mteb's encoder protocol; `mode` picks disc or gen vectors."""

    def __init__(self, model_name: str | Any, revision: str | None = None, *, device: str | None = None,
                 mode: str = "disc", batch_size: int = 8, max_new_tokens: int | None = None,
                 use_instructions: bool = False, **kwargs: Any) -> None:
        import ume

        self.encoder = ume.load(str(model_name), device=device) if isinstance(model_name, (str, Path)) else model_name
        source = str(getattr(getattr(self.encoder, "backbone", None), "source", model_name))
        self.mode, self.batch_size, self.max_new_tokens = mode, batch_size, max_new_tokens
        self.use_instructions = use_instructions
        name = Path(source).name if Path(source).exists() else source
        n_params = int(sum(p.numel() for p in self.encoder.model.parameters()))
        self.mteb_model_meta = ModelMeta(
            loader=None, name=name if "/" in name else f"ume/{name}", revision=revision or "local",
            release_date=None, languages=None, n_parameters=n_params,
            memory_usage_mb=None, max_tokens=None, embed_dim=self.encoder.dim, license=None, open_weights=True,
            public_training_code=None, public_training_data=None, framework=["PyTorch", "Transformers"],
            similarity_fn_name=ScoringFunction.COSINE, use_instructions=use_instructions, training_datasets=set(),
            modalities=["image", "text", "video"], reference=None,
        )

    def encode(self, inputs: DataLoader, *, task_metadata: TaskMetadata, hf_split: str, hf_subset: str,
               prompt_type: Any = None, show_progress_bar: bool = True, **kwargs: Any) -> np.ndarray:
        instruction = self.get_instruction(task_metadata, prompt_type) if self.use_instructions else None
        out = []
        kw: dict[str, Any] = {"mode": self.mode, "batch_size": self.batch_size, "on_error": "raise",
                              "show_progress": False}
        if self.mode != "disc":
            kw["max_new_tokens"] = self.max_new_tokens
        for batch in inputs:
            items = batch_items(batch, instruction)
            if items:
                out.append(self.encoder.encode(items, **kw).embeddings)
        return np.concatenate(out) if out else np.zeros((0, self.encoder.dim), np.float32)


def mteb_model(model: str | Any, mode: str = "disc", **kwargs: Any) -> UmeMtebModel:
    """A ume checkpoint (path, hub id or loaded `ume.Encoder`) as an mteb model; `mode` disc | gen."""
    return UmeMtebModel(model, mode=mode, **kwargs)


# --- offline tasks from files ------------------------------------------------------------------------
def write_file_task(directory: str | Path, queries: Iterable[dict[str, Any]], corpus: Iterable[dict[str, Any]],
                    qrels: dict[str, dict[str, int]], name: str = "UmeFileRetrieval",
                    description: str = "A retrieval task read from local files.") -> Path:
    """Write a task directory: queries.jsonl / corpus.jsonl (`id` plus `text` and/or `image` path, relative to
    the directory or absolute), qrels.jsonl (`query-id`, `corpus-id`, `score`) and task.json."""
    from ume.io import write_json, write_jsonl

    d = Path(directory)
    write_jsonl(d / "queries.jsonl", list(queries))
    write_jsonl(d / "corpus.jsonl", list(corpus))
    write_jsonl(d / "qrels.jsonl", [{"query-id": q, "corpus-id": c, "score": s}
                                    for q, docs in qrels.items() for c, s in docs.items()])
    write_json(d / "task.json", {"name": name, "description": description})
    return d


def _dataset(rows: list[dict[str, Any]], base: Path) -> Any:
    from datasets import Dataset, Image

    cols: dict[str, list[Any]] = {"id": [str(r["id"]) for r in rows]}
    if any(r.get("text") for r in rows):
        cols["text"] = [r.get("text") or "" for r in rows]
    if any(r.get("image") for r in rows):
        cols["image"] = [None if not r.get("image") else str(base / r["image"]) for r in rows]
    ds = Dataset.from_dict(cols)
    return ds.cast_column("image", Image()) if "image" in cols else ds


def _category(queries: Any, corpus: Any) -> str:
    """mteb's category code, e.g. t2i, i2t, it2i."""

    def side(ds: Any) -> str:
        return ("i" if "image" in ds.column_names else "") + ("t" if "text" in ds.column_names else "")

    return f"{side(queries)}2{side(corpus)}"


def file_task(directory: str | Path, main_score: str = "ndcg_at_10") -> AbsTaskRetrieval:
    """An mteb retrieval task (Any2AnyRetrieval) read from a `write_file_task` directory: no hub, no network."""
    from ume.io import read_jsonl

    d = Path(directory)
    info = json.loads((d / "task.json").read_text()) if (d / "task.json").exists() else {}
    queries, corpus = read_jsonl(d / "queries.jsonl"), read_jsonl(d / "corpus.jsonl")
    qrels: dict[str, dict[str, int]] = {}
    for r in read_jsonl(d / "qrels.jsonl"):
        qrels.setdefault(str(r["query-id"]), {})[str(r["corpus-id"])] = int(r["score"])
    qds, cds = _dataset(queries, d), _dataset(corpus, d)
    modalities = sorted({m for ds in (qds, cds) for m in ("image", "text") if m in ds.column_names})
    metadata = TaskMetadata(
        name=info.get("name", d.name), description=info.get("description", "A retrieval task read from local files."),
        reference=None, dataset={"path": str(d), "revision": "local"}, type="Any2AnyRetrieval",
        category=_category(qds, cds), modalities=modalities, eval_splits=["test"], eval_langs=["eng-Latn"],
        main_score=main_score, date=None, domains=None, task_subtypes=None, license=None, annotations_creators=None,
        dialect=None, sample_creation=None, bibtex_citation=None,
    )

    class FileRetrievalTask(AbsTaskRetrieval):
        def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
            from mteb.abstasks.retrieval_dataset_loaders import RetrievalSplitData

            self.dataset = {"default": {"test": RetrievalSplitData(queries=qds, corpus=cds, relevant_docs=qrels,
                                                                   top_ranked=None)}}
            self.data_loaded = True

    FileRetrievalTask.metadata = metadata
    FileRetrievalTask.__name__ = f"FileRetrievalTask_{metadata.name}"
    return FileRetrievalTask()


def export_minimmeb_task(data_root: str | Path, task_name: str, directory: str | Path,
                         limit: int | None = None, pool_limit: int | None = None) -> Path:
    """A global-ranking MiniMMEB / MMEB-V2 task (loaded by ume's own loader) written as a file task, so mteb can
    evaluate it offline. Only single-image or text items are exported (mteb columns `text`, `image`)."""
    from ume.evaluate.loaders import load_task
    from ume.evaluate.tasks import select_tasks

    (task,) = select_tasks([task_name])
    data = load_task(task, data_root)
    if task.ranking != "global":
        raise ValueError(f"{task_name} ranks each query against its own candidates; export a global task")
    qs = data.queries[:limit] if limit else data.queries
    names = list(data.pool)
    if pool_limit is not None:
        relevant = {n for q in qs for n in q.labels}
        keep = relevant | set([n for n in names if n not in relevant][:pool_limit])
        names = [n for n in names if n in keep]

    d = Path(directory)
    (d / "media").mkdir(parents=True, exist_ok=True)

    def row(key: str, item: Item) -> dict[str, Any]:
        if item.video is not None or len(item.images) > 1:
            raise ValueError(f"{task_name}: {key} has a video or several images; mteb file tasks hold text + 1 image")
        r: dict[str, Any] = {"id": key, "text": item.text}
        if item.images:
            src = item.images[0]
            if isinstance(src, bytes):
                safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in key)
                (d / "media" / f"{safe}.png").write_bytes(src)
                r["image"] = f"media/{safe}.png"
            else:
                r["image"] = str(Path(src).resolve())
        return r

    queries = [row(f"q{i}", q.item) for i, q in enumerate(qs)]
    corpus = [row(n, data.pool[n]) for n in names]
    qrels = {f"q{i}": {lab: int(s) for lab, s in zip(q.labels, q.rel_scores or [1] * len(q.labels), strict=True)}
             for i, q in enumerate(qs)}
    return write_file_task(d, queries, corpus, qrels, name=task_name,
                           description=f"{task_name} exported from {data_root} by ume")


__all__ = ["UmeMtebModel", "batch_items", "export_minimmeb_task", "file_task", "mteb_model", "write_file_task"]

