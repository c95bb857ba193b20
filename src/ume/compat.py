"""The transformers calls whose names changed inside the range ume supports (5.20 to 5.x).

ume is tested on transformers 5.24 (constraints.txt) and also runs on 5.20, the newest release vLLM 0.33 accepts
(`pip install ume[vllm]`). Two public names moved between them; each is chosen here, once, by asking the
installed library rather than by comparing version strings.
"""

from __future__ import annotations

import inspect
from functools import cache
from typing import Any


@cache
def _forward_takes(cls: type, name: str) -> bool:
    return name in inspect.signature(cls.forward).parameters


def cache_kwargs(model: Any, cache: Any) -> dict[str, Any]:
    """The keyword that hands a KV cache to `model`'s forward: `cache` from transformers 5.2x on, before that
    `past_key_values` (an unknown keyword is swallowed by `**kwargs`, so passing the wrong one silently decodes
    without the cache)."""
    name = "cache" if _forward_takes(type(model), "cache") else "past_key_values"
    return {name: cache, "use_cache": True}


def enable_activation_checkpointing(model: Any) -> None:
    """Non-reentrant activation checkpointing through the call this transformers has: the current
    `activation_checkpointing_enable`, or the older `gradient_checkpointing_enable` where that is all there is
    (on newer releases the old name is a deprecated alias)."""
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
