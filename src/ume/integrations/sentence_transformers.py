"""sentence-transformers: `SentenceTransformer(checkpoint)` that returns ume's disc vector, and an ST-shaped wrapper.

An exported ume checkpoint is a plain Qwen-VL folder, so without help `SentenceTransformer(DIR)` builds its default
Transformer + mean pooling over it: vectors unrelated to ume's (cosine ~0.3), and no error. `write_st_config(DIR)`
adds the files that make sentence-transformers load `UmeDiscEmbedding` instead, a custom input module (subclass of
its public `InputModule`) whose forward is `Encoder.encode(..., mode="disc")`, so the vectors are ume's own:

    from sentence_transformers import SentenceTransformer
    model = SentenceTransformer("models/ume-demo-sft", trust_remote_code=True)   # the flag is required: see below
    emb = model.encode(["a red circle", {"text": "this picture", "image": pil_image}])

`trust_remote_code=True` is required because sentence-transformers (>= 6.0) imports a module class outside its own
package only with that flag; the code it runs is this module of the installed `ume` package, never a file from the
checkpoint. Without the flag it refuses, naming this class; without `ume` installed it refuses before that with the
checkpoint's requirement (whose reason points to `ume.load`). Inputs: strings are text (never a path guess), PIL
images are images, dicts are ume items (`text`, `image` | `images`, `video`, `id`; paths, bytes or PIL); prompts
are prepended to the text. Inference only: no training through sentence-transformers.

Device and dtype follow `ume.load`: the weights load on the CPU, sentence-transformers moves them to its device
(`device=`; default CUDA when present), then they take ume's dtype for that device (bf16 on CUDA, fp32 on CPU).
`model_kwargs` takes `dtype` / `torch_dtype` (kept as given), `attn_implementation`, and `device_map` (one device
only); `processor_kwargs` takes `min_pixels` / `max_pixels` (as `ume.load`'s).

`SentenceTransformerLike` instead wraps an already loaded `ume.Encoder` for code written against `.encode`:

    from ume.integrations import SentenceTransformerLike
    model = SentenceTransformerLike(ume.load("models/ume-demo-rl"))
    emb = model.encode(["a red circle", "a blue square"], batch_size=16, convert_to_tensor=True)
    model.similarity(emb, emb)

Same arguments as `SentenceTransformer.encode` where they mean something here: `batch_size`,
`show_progress_bar`, `convert_to_numpy`, `convert_to_tensor`, `normalize_embeddings`, `device` (ignored: the
encoder's device). One string in gives one vector out ([d]); a list gives [n, d]. ume vectors are always unit
length, so `normalize_embeddings=False` returns them as they are (normalised). Items may be ume `Item`s or
dicts too; a failed item raises `ume.InputError` (sentence-transformers has no missing vectors).

sentence-transformers is imported only when `UmeDiscEmbedding` is first looked up (as its loader does), so this
module, and `write_st_config` in the export path, work without it installed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

ST_MODULE_CLASS = "UmeDiscEmbedding"
ST_MODULE_TYPE = f"{__name__}.{ST_MODULE_CLASS}"  # what modules.json names; resolved by importing this module
ST_FILES = ("modules.json", "config_sentence_transformers.json")
_ITEM_KEYS = frozenset({"text", "image", "images", "video", "id"})
# "message" is listed only because sentence-transformers refuses a batch mixing modalities (text items beside
# image items, as ume batches them) unless the model supports it; chat-message inputs themselves are refused.
_MODALITIES = ["text", "image", "video", "message", ("image", "text"), ("text", "video"), ("image", "text", "video")]


def write_st_config(directory: Path) -> None:
    """Make an exported ume checkpoint load in sentence-transformers as ume's disc encoder, not as mean pooling.

    Writes `modules.json` (one module, `UmeDiscEmbedding`, at the folder root) and
    `config_sentence_transformers.json` (cosine similarity, no prompts, and a requirement on the `ume` package
    whose reason names `ume.load`, so a machine without ume gets that message rather than an import error).
    Needs no sentence-transformers. Users load with `SentenceTransformer(DIR, trust_remote_code=True)`.
    """
    from ume.io import write_json

    directory = Path(directory)
    if not (directory / "config.json").is_file():
        raise FileNotFoundError(f"{directory}: no config.json; write_st_config needs an exported ume checkpoint")
    write_json(directory / "modules.json", [{"idx": 0, "name": "0", "path": "", "type": ST_MODULE_TYPE}])
    write_json(directory / "config_sentence_transformers.json", _st_model_config())


def _st_model_config() -> dict[str, Any]:
    from ume import __version__

    return {
        "model_type": "SentenceTransformer",
        "__version__": {"ume": __version__},
        "prompts": {},
        "default_prompt_name": None,
        "similarity_fn_name": "cosine",
        "requirements": {"ume": {
            "specifier": ">=0.1.0",
            "reason": (f"This is a ume checkpoint: its vectors are ume's disc readout ({ST_MODULE_TYPE}); load it "
                       "with SentenceTransformer(path, trust_remote_code=True) once ume is installed, or with "
                       "ume.load(path).encode(texts, mode='disc')."),
        }},
    }


def st_item(x: Any) -> Any:
    """One sentence-transformers input as a ume Item: a str is text (ume's rule: never guessed to be a path), a PIL
    image an image, a dict a ume item whose `image` / `images` / `video` may also hold bytes or PIL images (ST
    users pass PIL, which `Item.from_dict`, a JSON-row parser, refuses). Types are checked as `Item.from_dict` does."""
    from PIL import Image

    from ume.encoder import as_item
    from ume.inputs import InputError, Item, as_list, check_item

    if isinstance(x, Image.Image):
        return Item(images=[x])
    if isinstance(x, tuple):
        raise InputError("ume embeds single items, not pairs; pass each text or item on its own")
    message = x[0] if isinstance(x, list) and x else x
    if isinstance(message, dict) and "role" in message and "content" in message:
        raise InputError("chat messages are not ume items; pass text, images or a dict with text / image(s) / video")
    if not isinstance(x, dict):
        return as_item(x)
    unknown = set(x) - _ITEM_KEYS
    if unknown:
        raise InputError(f"unknown field(s) {sorted(unknown)}; expected text, image(s), video, id")
    if x.get("image") is not None and x.get("images") is not None:
        raise InputError("fields 'image' and 'images' are both given; use one")
    images = x["image"] if x.get("image") is not None else x.get("images")
    rid = x.get("id")
    item = Item(text=x.get("text") or "", images=as_list(images), video=x.get("video"),
                id=None if rid is None else str(rid))
    check_item(item)
    return item


def _encoder_options(model_kwargs: dict[str, Any] | None, processor_kwargs: dict[str, Any] | None,
                     config_kwargs: dict[str, Any] | None, backend: str) -> dict[str, Any]:
    """sentence-transformers' loading kwargs as `ume.load` arguments; anything else is refused by name, since
    ignoring it would change nothing while the caller believes it did."""
    if backend != "torch":
        raise ValueError(f"backend={backend!r}: a ume checkpoint runs through ume's torch path only")
    if config_kwargs:
        raise ValueError(f"config_kwargs {sorted(config_kwargs)}: not supported for a ume checkpoint")
    model_kwargs, processor_kwargs = dict(model_kwargs or {}), dict(processor_kwargs or {})
    opts: dict[str, Any] = {"device": "cpu", "dtype": model_kwargs.pop("dtype", model_kwargs.pop("torch_dtype", None))}
    if opts["dtype"] == "auto":
        opts["dtype"] = None
    if "attn_implementation" in model_kwargs:
        opts["attn_implementation"] = model_kwargs.pop("attn_implementation")
    if "device_map" in model_kwargs:
        device_map = model_kwargs.pop("device_map")
        if isinstance(device_map, dict) or device_map in ("auto", "balanced", "sequential"):
            raise ValueError(f"device_map={device_map!r}: a ume checkpoint runs on one device; pass device=...")
        opts["device"] = device_map
    for key in ("min_pixels", "max_pixels"):
        if key in processor_kwargs:
            opts[key] = processor_kwargs.pop(key)
    if model_kwargs or processor_kwargs:
        raise ValueError(f"not supported for a ume checkpoint: {sorted({**model_kwargs, **processor_kwargs})}; "
                         "model_kwargs takes dtype, attn_implementation, device_map; processor_kwargs takes "
                         "min_pixels, max_pixels")
    return opts


def _build_module_class() -> type:
    """`UmeDiscEmbedding`, built on first lookup so that importing this module never imports sentence-transformers."""
    import torch
    from sentence_transformers.base.modules import InputModule

    import ume
    from ume.backbone import resolve_dtype

    class UmeDiscEmbedding(InputModule):
        """sentence-transformers' first (and only) module for a ume checkpoint: `sentence_embedding` is ume's disc
        vector, computed by `Encoder.encode(..., mode="disc")` (one model path, so ST and ume never disagree).

        The HF model is registered as the submodule `model`, so sentence-transformers' `.to(device)`, `.device`
        and `transformers_model` work on it; the `ume.Encoder` around it reads the device from the weights.
        """

        config_file_name = "ume_sentence_transformers.json"  # never config.json: that is the HF model's config

        def __init__(self, encoder: Any, follow_device_dtype: bool = True) -> None:
            """`follow_device_dtype`: once placed, cast to ume's default dtype for the device (no dtype was given)."""
            super().__init__()
            self.encoder = encoder
            self.model = encoder.model
            self.follow_device_dtype = follow_device_dtype

        @classmethod
        def load(cls, model_name_or_path: str, subfolder: str = "", token: bool | str | None = None,
                 cache_folder: str | None = None, revision: str | None = None, local_files_only: bool = False,
                 model_kwargs: dict[str, Any] | None = None, processor_kwargs: dict[str, Any] | None = None,
                 config_kwargs: dict[str, Any] | None = None, backend: str = "torch",
                 **kwargs: Any) -> UmeDiscEmbedding:
            """`ume.load` on the checkpoint folder (a hub id is first fetched by sentence-transformers' own
            resolver, honouring token / revision / cache). The weights load on the CPU (or model_kwargs'
            `device_map`); sentence-transformers then moves them to its `device`."""
            opts = _encoder_options(model_kwargs, processor_kwargs, config_kwargs, backend)
            path = cls.load_dir_path(model_name_or_path, subfolder=subfolder, token=token, cache_folder=cache_folder,
                                     revision=revision, local_files_only=local_files_only)
            if path is None:
                raise FileNotFoundError(f"{model_name_or_path}: not a local directory or a reachable hub repo")
            return cls(ume.load(path, **opts), follow_device_dtype=opts["dtype"] is None)

        def on_model_ready(self, model: Any) -> None:
            """After sentence-transformers placed the weights: give them the dtype `ume.load` would pick there
            (bf16 on CUDA), so `SentenceTransformer(DIR)` and `ume.load(DIR)` make the same vectors."""
            if self.follow_device_dtype:
                want = resolve_dtype(None, self.encoder.backbone.device)
                if self.model.dtype != want:
                    self.model.to(want)

        @property
        def modalities(self) -> list[Any]:
            return list(_MODALITIES)

        @property
        def tokenizer(self) -> Any:
            return self.encoder.backbone.tokenizer

        @property
        def processor(self) -> Any:
            return self.encoder.backbone.processor

        def get_embedding_dimension(self) -> int:
            return self.encoder.dim

        def preprocess(self, inputs: Sequence[Any], prompt: str | None = None, **kwargs: Any) -> dict[str, Any]:
            """ume items, not tensors: `Encoder.encode` does its own processing (chat template, `<disc_emb>`, images).
            A prompt is prepended to each item's text, as sentence-transformers does for text."""
            if kwargs:
                raise ValueError(f"{sorted(kwargs)}: not used by a ume checkpoint")
            items = [st_item(x) for x in inputs]
            if prompt:
                from dataclasses import replace

                items = [replace(it, text=prompt + it.text) for it in items]
            return {"items": items}

        def forward(self, features: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
            """The disc vectors of the batch (unit length, float32) as `sentence_embedding`, on the model's device;
            sentence-transformers' `batch_size` is the batch ume encodes, and a bad item raises."""
            items = features["items"]
            emb = self.encoder.encode(items, mode="disc", batch_size=max(1, len(items)), on_error="raise",
                                      show_progress=False).embeddings
            features["sentence_embedding"] = torch.from_numpy(emb).to(self.encoder.backbone.device)
            return features

        def save(self, output_path: str, *args: Any, safe_serialization: bool = True, **kwargs: Any) -> None:
            """A ume checkpoint (model, processor, recipe) in `output_path`; sentence-transformers writes
            modules.json and its config beside it, naming this class again; the config (written first) gets the
            `ume` requirement back, which sentence-transformers' own config leaves out."""
            import json

            from ume.io import write_json

            self.encoder.backbone.save(output_path)
            config = Path(output_path) / "config_sentence_transformers.json"
            if config.is_file():
                saved = json.loads(config.read_text())
                write_json(config, {**saved, "requirements": _st_model_config()["requirements"]})

    UmeDiscEmbedding.__qualname__ = ST_MODULE_CLASS  # found again by name (pickle, ST's save) via __getattr__
    return UmeDiscEmbedding


_built: dict[str, type] = {}


def __getattr__(name: str) -> Any:
    if name == ST_MODULE_CLASS:
        if name not in _built:
            _built[name] = _build_module_class()
        return _built[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class SentenceTransformerLike:
    def __init__(self, encoder: Any, mode: str = "disc", max_new_tokens: int | None = None) -> None:
        self.encoder, self.mode, self.max_new_tokens = encoder, mode, max_new_tokens

    def get_sentence_embedding_dimension(self) -> int:
        return self.encoder.dim

    def encode(self, sentences: str | Any | Sequence[Any], batch_size: int = 32, show_progress_bar: bool | None = None,
               convert_to_numpy: bool = True, convert_to_tensor: bool = False, normalize_embeddings: bool = True,
               device: str | None = None, mode: str | None = None, **kwargs: Any) -> Any:
        single = isinstance(sentences, (str, dict)) or not isinstance(sentences, Sequence)
        items = [sentences] if single else list(sentences)
        mode = mode or self.mode
        kw: dict[str, Any] = {"mode": mode, "batch_size": batch_size, "show_progress": show_progress_bar,
                              "on_error": "raise", **kwargs}
        if mode != "disc" and "max_new_tokens" not in kw:
            kw["max_new_tokens"] = self.max_new_tokens
        emb = self.encoder.encode(items, **kw).embeddings if items else np.zeros((0, self.encoder.dim), np.float32)
        if normalize_embeddings:  # already unit length; kept for fp safety after any caller-side change
            emb = emb / np.maximum(np.linalg.norm(emb, axis=-1, keepdims=True), 1e-12)
        if single:
            emb = emb[0]
        if convert_to_tensor:
            import torch

            return torch.from_numpy(np.ascontiguousarray(emb))
        if not convert_to_numpy:
            import torch

            return list(torch.from_numpy(np.ascontiguousarray(np.atleast_2d(emb))))
        return emb

    @staticmethod
    def similarity(a: Any, b: Any) -> Any:
        """Cosine similarity matrix (inputs are unit vectors), as a torch tensor like sentence-transformers."""
        import torch

        a, b = torch.as_tensor(np.atleast_2d(np.asarray(a))), torch.as_tensor(np.atleast_2d(np.asarray(b)))
        return a @ b.T
