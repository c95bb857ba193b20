"""Pairs -> model inputs: each side is the recipe's inference prompt plus its annotated assistant turn.

Each side is decoded by `inputs.load_item` and its prompt rendered by `batching.prompt_texts`, as at
inference, so training and inference inputs cannot drift. The chat template renders each side once: the
text trained on is that prompt + the response + the template's end of turn (`<|im_end|>\\n` on Qwen), what
the model produces after the prompt at inference. Labels cover the assistant turn only (reasoning, answer,
<gen_emb>, <|im_end|>, "\\n"): the system, user and assistant-header tokens (everything the prompt with
add_generation_prompt=True holds) are -100. Sequences are left-padded, so the assistant turn is the last `n`
tokens of each row, `n` its token count alone; a row where it does not tokenize identically after the prompt
is rejected rather than mislabelled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ume.batching import make_batch, prompt_texts
from ume.inputs import InputError, InputLimits, Item, LoadedItem, load_item
from ume.recipe import Recipe
from ume.train.data import BadRow, DataError, Pair

IGNORE = -100
Batch = dict[str, torch.Tensor]
# The SFT name of the part of an item `load_item` names in InputError.field (None: the item as a whole).
_FIELDS = {"images": ".image", "video": ".video"}
_PROBE = "<ume-probe-response>"


def turn_end(processor: Any, recipe: Recipe) -> str:
    """What the chat template writes after an assistant message's text (`<|im_end|>\\n` on Qwen), read off one
    probe conversation. Refuses a template that does not render a conversation as the generation prompt
    followed by the message: labels could not be placed on the assistant turn alone."""
    probe = LoadedItem("", [], None)
    prompt = prompt_texts(processor, recipe, [probe])[0]
    full = prompt_texts(processor, recipe, [probe], [_PROBE])[0]
    if not full.startswith(prompt + _PROBE):
        raise ValueError("the chat template does not render a conversation as its generation prompt followed by "
                         "the assistant's text; SFT cannot place labels on the assistant turn")
    return full[len(prompt) + len(_PROBE):]


@dataclass
class MicroBatch:
    """One process's share of a global micro-batch, split into GradCache chunks (one chunk without)."""

    qry: list[Batch]
    tgt: list[Batch]
    rows: list[tuple[str, int]]  # (file, row) of the kept pairs, in order
    skipped: list[BadRow] = field(default_factory=list)

    @property
    def tokens(self) -> int:
        return int(sum(int(c["attention_mask"].sum()) for c in self.qry + self.tgt))


class Collator:
    """Loads media, renders both sides and builds labels; bad rows raise or are skipped (`skip_bad_rows`)."""

    def __init__(self, processor: Any, recipe: Recipe, max_length: int, chunk: int | None = None,
                 skip_bad_rows: bool = False) -> None:
        self.processor, self.recipe = processor, recipe
        self.max_length, self.chunk, self.skip = max_length, chunk, skip_bad_rows
        self.limits = InputLimits(num_frames=recipe.num_frames)
        self.turn_end = turn_end(processor, recipe)

    def __call__(self, pairs: Sequence[Pair]) -> MicroBatch:
        bad: list[BadRow] = []
        loaded: list[tuple[Pair, LoadedItem, LoadedItem]] = []
        for p in pairs:
            try:
                loaded.append((p, self.load(p.qry, "qry"), self.load(p.tgt, "pos")))
            except DataError as e:
                field_name, _, reason = str(e).partition(": ")
                self._reject(bad, p, field_name, reason)
        size = self.chunk or max(len(loaded), 1)
        out = MicroBatch([], [], [], bad)
        for start in range(0, len(loaded), size):
            built = self._build(loaded[start:start + size], bad)
            if built is not None:
                out.qry.append(built[0])
                out.tgt.append(built[1])
                out.rows += built[2]
        if not out.rows:
            raise DataError(f"all {len(pairs)} pairs of a micro-batch are bad rows: "
                            + "; ".join(b.message() for b in bad))
        return out

    # --- internals --------------------------------------------------------------------------------
    def _reject(self, bad: list[BadRow], pair: Pair, field_name: str, reason: str) -> None:
        row = BadRow(pair.file, pair.row, field_name, reason, stage="load")
        if not self.skip:
            raise DataError(row.message())
        bad.append(row)

    def load(self, item: Item, name: str) -> LoadedItem:
        """Decode one side exactly as inference does; a failure raises DataError naming the row's field
        (`qry.image`, `pos.video`, ...) with inference's reason."""
        try:
            return load_item(item, 0, self.limits)
        except InputError as e:
            raise DataError(f"{name}{_FIELDS.get(e.field or '', '')}: {e.reason}") from None

    def _build(self, group: list[tuple[Pair, LoadedItem, LoadedItem]],
               bad: list[BadRow]) -> tuple[Batch, Batch, list[tuple[str, int]]] | None:
        """Both sides of a chunk; rows the processor or the label check rejects are dropped, the rest rebuilt."""
        if not group:
            return None
        try:
            qry, q_bad = self.side([g[1] for g in group], [g[0].qry_response for g in group])
            tgt, t_bad = self.side([g[2] for g in group], [g[0].tgt_response for g in group])
        except Exception as e:  # the processor's own error; find the row(s) it belongs to
            if len(group) == 1:
                self._reject(bad, group[0][0], "processor", f"{type(e).__name__}: {e}")
                return None
            kept = [g for g in group if self._build([g], bad) is not None]
            if len(kept) == len(group):  # no single row is to blame (e.g. out of memory)
                raise
            return self._build(kept, bad)
        problems = {**{b: f"pos.{r}" for b, r in t_bad.items()}, **{b: f"qry.{r}" for b, r in q_bad.items()}}
        if not problems:
            return qry, tgt, [(g[0].file, g[0].row) for g in group]
        for b, msg in problems.items():
            field_name, _, reason = msg.partition(": ")
            self._reject(bad, group[b][0], field_name, reason)
        return self._build([g for b, g in enumerate(group) if b not in problems], bad)

    def side(self, items: Sequence[LoadedItem], responses: Sequence[str]) -> tuple[Batch, dict[int, str]]:
        """Processor batch + labels for one side; also {row: "field: reason"} for rows that cannot be labelled.

        One chat-template render per item: its inference prompt, to which the assistant turn is appended."""
        prompts = prompt_texts(self.processor, self.recipe, items)
        turns = [r + self.turn_end for r in responses]
        texts = [p + t for p, t in zip(prompts, turns, strict=True)]
        batch = make_batch(self.processor, self.recipe, items, texts=texts)
        turn_ids = self.processor.tokenizer(turns, add_special_tokens=False)["input_ids"]
        ids, mask = batch["input_ids"], batch["attention_mask"]
        length = ids.shape[1]
        labels = torch.full_like(ids, IGNORE)
        problems: dict[int, str] = {}
        for b, tail in enumerate(turn_ids):
            n = len(tail)
            if ids[b, length - n:].tolist() != tail:
                problems[b] = ("conversations[1].value: the response tokenizes differently inside the "
                               "conversation (leading whitespace?); cannot place the labels")
            elif int(mask[b].sum()) > self.max_length:
                problems[b] = f"length: {int(mask[b].sum())} tokens exceed max_length={self.max_length}"
            else:
                labels[b, length - n:] = ids[b, length - n:]
        batch["labels"] = labels
        return batch, problems
