"""Training pairs in the reference formats: ROOT/train/sft.json (UME-R1 SFT) and ROOT/train/rl.json (RL).

SFT record: {"qry": {"conversations": [human, gpt], "image" | "video"}, "pos": {...}, "source"}; the human
turn is the placeholder ("<image>\\n" / "<video>\\n", none for text) plus the task text, and the gpt turn is
"<think>…</think><answer>…</answer><gen_emb>". RL record: qry_text, qry_image | qry_video, pos_text,
pos_image | pos_video, solution (the positive's key fact), source. Media paths are relative to ROOT.
Training scenes come from the "sft"/"rl" seed streams and never show a hold-out (colour, shape) pair.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ume.inputs import DEFAULT_NUM_FRAMES
from ume.synth.example import Side
from ume.synth.files import save_media, write_json, write_jsonl
from ume.synth.registry import examples
from ume.synth.tasks import MiniTask

PLACEHOLDER = {"image": "<image>\n", "video": "<video>\n"}


def assistant_turn(side: Side) -> str:
    return f"<think>{side.think}</think><answer>{side.answer}</answer><gen_emb>"


def _media(root: Path, side: Side, rel: str) -> dict[str, Any]:
    """{"image": path} / {"video": [frame paths]} / {} for a text-only side."""
    if side.media is None:
        return {}
    saved = save_media(side.media, root, f"{rel}_{side.media.name}", num_frames=DEFAULT_NUM_FRAMES)
    return {side.media.kind: saved}


def _sft_side(side: Side, media: dict[str, Any]) -> dict[str, Any]:
    placeholder = PLACEHOLDER[next(iter(media))] if media else ""
    return {"conversations": [{"from": "human", "value": placeholder + side.prompt()},
                              {"from": "gpt", "value": assistant_turn(side)}], **media}


def _rl_side(prefix: str, side: Side, media: dict[str, Any]) -> dict[str, Any]:
    return {f"{prefix}_text": side.prompt(), **{f"{prefix}_{k}": v for k, v in media.items()}}


def train_unit(root: Path, split: str, task: MiniTask, seed: int, n: int) -> tuple[list[dict[str, Any]],
                                                                             list[dict[str, Any]]]:
    """n pairs of one source task for `split` ("sft" or "rl"), media written; returns (records, scene specs)."""
    records, scenes = [], []
    for i, (key, ex) in enumerate(examples(task, split, seed, n)):
        rel = f"train/media/{task.name}/{split}{i:05d}"
        q_media, p_media = _media(root, ex.query, rel), _media(root, ex.positive, rel)
        if split == "sft":
            records.append({"qry": _sft_side(ex.query, q_media), "pos": _sft_side(ex.positive, p_media),
                            "source": task.name})
        else:
            records.append({**_rl_side("qry", ex.query, q_media), **_rl_side("pos", ex.positive, p_media),
                            "solution": ex.positive.answer, "source": task.name})
        scenes.append({"split": split, "source": task.name, "index": i, "seed_key": key, "spec": ex.spec})
    return records, scenes


def write_train_files(root: Path, sft: list[dict[str, Any]], rl: list[dict[str, Any]],
                      scenes: list[dict[str, Any]]) -> None:
    write_json(root / "train" / "sft.json", sft)
    write_json(root / "train" / "rl.json", rl)
    write_jsonl(root / "train" / "scenes.jsonl", scenes)
