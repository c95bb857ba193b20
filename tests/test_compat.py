"""The two transformers calls whose names moved between 5.20 (what vLLM 0.33 accepts) and 5.24 (tested pins).
The installed release takes one branch of each (the whole suite also ran on 5.20.2: see pyproject.toml); a
stand-in class with the older names takes the other."""

from __future__ import annotations

import inspect

from transformers import AutoModelForImageTextToText

from ume.compat import cache_kwargs, enable_activation_checkpointing


class Older:
    """What transformers 5.20's models offer: `past_key_values`, `gradient_checkpointing_enable`."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []

    def forward(self, input_ids=None, past_key_values=None, use_cache=None, **kwargs):
        return None

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs=None):
        self.calls.append(("gradient_checkpointing_enable", gradient_checkpointing_kwargs))


def test_the_cache_goes_under_the_name_the_forward_takes(tiny_dirs):
    model = AutoModelForImageTextToText.from_pretrained(tiny_dirs["qwen2_vl"])
    (name,) = set(cache_kwargs(model.model, "C")) - {"use_cache"}
    assert name in inspect.signature(type(model.model).forward).parameters
    assert cache_kwargs(Older(), "C") == {"past_key_values": "C", "use_cache": True}


def test_activation_checkpointing_through_the_call_there_is(tiny_dirs):
    model = AutoModelForImageTextToText.from_pretrained(tiny_dirs["qwen2_vl"])
    enable_activation_checkpointing(model)
    assert model.model.language_model.gradient_checkpointing
    older = Older()
    enable_activation_checkpointing(older)
    assert older.calls == [("gradient_checkpointing_enable", {"use_reentrant": False})]
