"""The recipe: how an item becomes a prompt, and which hidden state becomes its embedding.

One recipe is saved beside every checkpoint ume writes (`ume_recipe.json`); inference, the SFT
collator and the RL rollouts all build their prompts from it, so training and inference cannot drift.
A checkpoint without one (e.g. the released UME-R1-2B) gets `Recipe()`, the reference recipe.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

from PIL import Image

from ume.inputs import LoadedItem

RECIPE_FILE = "ume_recipe.json"

GENERATION_PROMPT = (
    "Represent the above input text, images, videos, or any combination of the three as embeddings. "
    "First output the thinking process in <think> </think> tags and then summarize the entire input in a "
    "word or sentence. Finally, use the <gen_emb> tag to represent the entire input."
)
SYSTEM_PROMPT = "You are a helpful assistant."
# Placeholders that MMEB-style texts carry for their visual; the visual travels as a content item.
PLACEHOLDERS = ("<|image_pad|>", "<|video_pad|>", "<|image_1|>", "<image>", "<video>")
_PLACEHOLDER_RE = re.compile("|".join(re.escape(p) for p in PLACEHOLDERS))
VISION_PREPROCESS = ("qwen-vl-utils", "processor")
# A visual as the recipe hands it on: a PIL image, or a data URL (the reference's JPEG blank).
Visual = Image.Image | str


@dataclass(frozen=True)
class Recipe:
    """Everything about prompts and readout that must agree between training and inference.

    Defaults are the reference (UME-R1) recipe. `blank_image="text_only"` gives every input without a
    visual a white `blank_image_size`² image, as the reference does at inference; `"never"` disables it.
    `vision_preprocess="qwen-vl-utils"` prepares every image and frame as the reference's eval did
    (qwen-vl-utils `fetch_image`, blank sent as a JPEG data URL) before the processor's own resize;
    `"processor"` hands them to the processor as they are (what version-1 recipes were trained with).
    `missing_gen_emb="force"` appends `<gen_emb>` when a completion lacks it and flags the item;
    `"error"` refuses such items (reported per item).
    """

    system_prompt: str = SYSTEM_PROMPT
    disc_separator: str = "\n<disc_emb>\n"
    generation_prompt: str = GENERATION_PROMPT
    gen_token: str = "<gen_emb>"
    disc_token: str = "<disc_emb>"
    blank_image: Literal["text_only", "never"] = "text_only"
    blank_image_size: int = 28
    # The processor's own floor / cap (reference eval: resize_min_pixels 784, resize_max_pixels 1536^2),
    # for images and video frames alike; with "qwen-vl-utils" they apply after its 3,136-pixel floor.
    min_pixels: int | None = 784
    max_pixels: int | None = 2_359_296
    num_frames: int = 8
    missing_gen_emb: Literal["force", "error"] = "force"
    vision_preprocess: Literal["qwen-vl-utils", "processor"] = "qwen-vl-utils"
    version: int = 2

    def __post_init__(self) -> None:
        if self.blank_image not in ("text_only", "never"):
            raise ValueError(f"blank_image must be 'text_only' or 'never', got {self.blank_image!r}")
        if self.missing_gen_emb not in ("force", "error"):
            raise ValueError(f"missing_gen_emb must be 'force' or 'error', got {self.missing_gen_emb!r}")
        if self.vision_preprocess not in VISION_PREPROCESS:
            raise ValueError(f"vision_preprocess must be one of {VISION_PREPROCESS}, got {self.vision_preprocess!r}")
        if self.disc_token not in self.disc_separator:
            raise ValueError("disc_separator must contain disc_token: the disc readout reads that token")

    # --- persistence -----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def digest(self) -> str:
        """A short stable hash, used to key caches and stamp reports."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / RECIPE_FILE
        path.write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n")
        return path

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Recipe:
        data = dict(data)
        # recipes written before the readout became code (ume.readout) carry its only value ever used
        readout = data.pop("readout", "last_layer_post_norm")
        if readout != "last_layer_post_norm":
            raise ValueError(f"{RECIPE_FILE}: readout {readout!r} is not implemented; ume reads the last layer's "
                             "state after the final norm")
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"{RECIPE_FILE}: unknown field(s) {sorted(unknown)}")
        if data.get("version", 1) < 2:  # version 1 predates the field; those checkpoints used the processor only
            data = {"vision_preprocess": "processor", **data}
        return cls(**data)

    @classmethod
    def load(cls, directory: str | Path | None) -> Recipe:
        """The recipe saved in `directory`, or the reference recipe when there is none."""
        if directory is None:
            return cls()
        path = Path(directory) / RECIPE_FILE
        return cls.from_dict(json.loads(path.read_text())) if path.is_file() else cls()

    # --- prompts ---------------------------------------------------------------------------------
    def prompt_text(self, text: str) -> str:
        """User text of the prompt: the item's text (placeholders removed) + disc token + instruction."""
        clean = _PLACEHOLDER_RE.sub("", text).strip()
        return clean + self.disc_separator + self.generation_prompt

    def visuals(self, item: LoadedItem) -> tuple[list[Visual], list[Image.Image] | None]:
        """The item's images and video after the blank-image policy, before any preprocessing."""
        images: list[Visual] = list(item.images)
        if not images and item.video is None and self.blank_image == "text_only":
            images = [self.blank()]
        return images, item.video

    def blank(self) -> Visual:
        """The blank for text-only inputs: with qwen-vl-utils a JPEG data URL, as the reference eval sent it."""
        white = Image.new("RGB", (self.blank_image_size, self.blank_image_size), (255, 255, 255))
        if self.vision_preprocess == "processor":
            return white
        buf = io.BytesIO()
        white.save(buf, format="JPEG")
        return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")

    def messages(self, item: LoadedItem, response: str | None = None) -> list[dict[str, Any]]:
        """Chat messages for one item: system, user (visuals then text), and optionally the answer."""
        images, video = self.visuals(item)
        content: list[dict[str, Any]] = [{"type": "image"} for _ in images]
        if video is not None:
            content.append({"type": "video"})
        content.append({"type": "text", "text": self.prompt_text(item.text)})
        msgs: list[dict[str, Any]] = [
            {"role": "system", "content": [{"type": "text", "text": self.system_prompt}]},
            {"role": "user", "content": content},
        ]
        if response is not None:
            msgs.append({"role": "assistant", "content": [{"type": "text", "text": response}]})
        return msgs
