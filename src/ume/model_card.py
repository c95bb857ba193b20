"""The model card (README.md) written with every checkpoint ume exports.

A folder pushed to the hub is read by people who never ran ume: the card says what the model is, which recipe
its prompts follow, what its training logged, and how to load it with ume and with plain transformers (the
prompt and the token whose last-layer state is the vector), with the hub's YAML front matter.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ume.recipe import Recipe

CARD = "README.md"
STAGES = {"pretrain": "perception pre-training (next-token on dense descriptions)",
          "sft": "cold-start SFT (InfoNCE on the disc and gen vectors + next-token loss on the reasoning)",
          "rl": "RL (GRPO with the embedding reward: format + ranking x similarity gap)"}


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def render(recipe: Recipe, model_type: str, stage: str, base: str, config: dict[str, Any],
           last: dict[str, Any] | None, disc_id: int, gen_id: int) -> str:
    """The card's text: front matter, what it is, training, and loading with ume and with transformers."""
    metrics = ", ".join(f"{k} {_fmt(v)}" for k, v in (last or {}).items() if isinstance(v, (int, float))
                        and k not in ("lr", "step_time") and not k.startswith("lr_"))
    settings = ", ".join(f"`{k}={json.dumps(v)}`" for k, v in config.items()
                         if k not in ("model", "output", "data", "media_root", "resume", "progress") and v is not None)
    base_line = f"base_model: {base}\n" if base and not Path(base).exists() else ""
    prompt = recipe.prompt_text("{text}")
    side = recipe.blank_image_size
    if recipe.vision_preprocess == "qwen-vl-utils":
        prep = "Images go through qwen-vl-utils' `fetch_image` (the blank as a JPEG data URL, as the reference sent it)"
        imports = "import base64, io\nimport torch\nfrom PIL import Image\nfrom qwen_vl_utils import fetch_image"
        blank = (f'buf = io.BytesIO()\nImage.new("RGB", ({side}, {side}), "white").save(buf, "JPEG")\n'
                 'url = "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()\n'
                 'image = fetch_image({"image": url}, image_patch_size=proc.image_processor.patch_size)\n')
    else:
        prep = "Images go to the processor as they are (recipe `vision_preprocess=\"processor\"`)"
        imports = "import torch\nfrom PIL import Image"
        blank = f'image = Image.new("RGB", ({side}, {side}), "white")\n'
    size = ("" if recipe.min_pixels is None or recipe.max_pixels is None else
            f',\n             images_kwargs={{"size": {{"shortest_edge": {recipe.min_pixels}, '
            f'"longest_edge": {recipe.max_pixels}}}}}')
    return f"""---
library_name: transformers
pipeline_tag: feature-extraction
{base_line}tags: [ume, ume-r1, embeddings, multimodal, {model_type}]
---

# UME-R1 embedding model ({model_type}, {stage})

A multimodal embedding model in the UME-R1 method, trained by ume — stage: {STAGES[stage]},
from `{base}`. It embeds text, images, videos and document pages two ways: **disc** (one forward pass; the
last-layer state at `<disc_emb>`, id {disc_id}) and **gen** (it reasons in `<think>…</think><answer>…</answer>`,
then emits `<gen_emb>`, id {gen_id}; the vector is the last-layer state there).

## Training

- Recipe `{recipe.digest()}` (`ume_recipe.json`: prompts, tokens, pixel limits, {recipe.num_frames} frames per video).
- Settings: {settings or "defaults"}.
- Last logged step: {metrics or "none logged"}.

## Use with ume

```python
import ume

enc = ume.load("THIS_FOLDER_OR_HUB_ID")           # device="cuda", attn_implementation=..., max_pixels=...
disc = enc.encode(["a red circle", ume.Item("Represent the given image.", images=["cat.png"])])
gen = enc.encode(["a red circle"], mode="gen", max_new_tokens=512)   # gen.texts: the reasoning
```

`ume embed`, `ume eval` (MMEB-V2), `ume serve` (OpenAI-compatible `/v1/embeddings`) take it as `--model`.

## Use with plain transformers (disc)

The prompt: a system turn `{recipe.system_prompt}`, then the user turn — the visuals first, then the text
below with your input in place of `{{text}}`; an input without a visual gets a white
{recipe.blank_image_size}x{recipe.blank_image_size} image (`blank_image="{recipe.blank_image}"`). {prep}, then the
processor with the recipe's pixel limits; the vector is the normalised last-layer state at the last `<disc_emb>`.
This gives ume's vector (cosine >= 0.9999, tested):

```python
{imports}
from transformers import AutoModelForImageTextToText, AutoProcessor

path, text = "THIS_FOLDER", "a red circle"
proc = AutoProcessor.from_pretrained(path)
model = AutoModelForImageTextToText.from_pretrained(path).eval()
{blank}user = {json.dumps(prompt)}.format(text=text)
messages = [{{"role": "system", "content": [{{"type": "text", "text": {json.dumps(recipe.system_prompt)}}}]}},
            {{"role": "user", "content": [{{"type": "image"}}, {{"type": "text", "text": user}}]}}]
prompt = proc.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
batch = proc(text=[prompt], images=[image], return_tensors="pt"{size})
with torch.no_grad():
    hidden = model(**batch, output_hidden_states=True).hidden_states[-1][0]
pos = (batch["input_ids"][0] == {disc_id}).nonzero()[-1].item()
vector = torch.nn.functional.normalize(hidden[pos], dim=-1)
```

For gen, generate until `<gen_emb>` and read the last-layer state at it in one teacher-forced forward over
prompt + completion.

## Use with sentence-transformers (disc)

`SentenceTransformer("THIS_FOLDER", trust_remote_code=True)` loads ume's own module (`modules.json`; the code
run is the installed `ume` package, nothing from this folder) and `.encode([...])` gives ume's disc vectors.
"""


def write_model_card(directory: str | Path, recipe: Recipe, model_type: str, stage: str, base: str,
                     config: dict[str, Any], last: dict[str, Any] | None, disc_id: int, gen_id: int) -> Path:
    path = Path(directory) / CARD
    path.write_text(render(recipe, model_type, stage, base, config, last, disc_id, gen_id))
    return path
