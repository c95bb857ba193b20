"""`EngineConfig`: the fields every training stage shares, declared once, with the ecosystem's names.

As TRL's configs build on transformers' `TrainingArguments`, `SFTConfig`, `RLConfig` and `PretrainConfig`
build on `EngineConfig` and declare only their own fields; a stage whose paper value differs redeclares that
field with its own default and help (as TRL's `GRPOConfig` does with `learning_rate`). The defaults here are
the cold-start SFT's (the UME-R1 paper, arXiv 2511.00405). Torch-free, so the CLI builds its options cheaply.

Renamed fields (`RENAMED`) keep their old names for one release: the constructor, `from_dict` (saved JSON
configs) and the CLI accept them with a DeprecationWarning naming the new one.
"""

from __future__ import annotations

import functools
import json
import warnings
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, ClassVar, NamedTuple, Self, TypeVar, dataclass_transform

T = TypeVar("T")


def knob(default: Any, help: str, fixed: bool = False) -> Any:
    """A config field with its help text (shown by `ume train ... --help`). `fixed`: the field shapes the run's
    trajectory, so a resume refuses a changed value (`EngineConfig.run_identity`); a stage that redeclares the
    field for its own default keeps the flag."""
    return field(default=default, metadata={"help": help, "fixed": fixed})


def list_knob(factory: Any, help: str, fixed: bool = False) -> Any:
    """`knob` for a mutable default (a list)."""
    return field(default_factory=factory, metadata={"help": help, "fixed": fixed})


class Renamed(NamedTuple):
    """Where a deprecated field went: its new name, and the new value of each old value if those changed too."""

    new: str
    values: dict[Any, Any] | None = None


@dataclass_transform(field_specifiers=(field,))
def stage_config(cls: type[T]) -> type[T]:
    """`@dataclass`, with a constructor that also takes the deprecated names (for scripts written before the
    rename; `from_dict` and the CLI go through it too)."""
    cls = dataclass(cls)
    init = cls.__init__

    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **cls.current_names(kwargs))  # type: ignore[attr-defined]

    cls.__init__ = __init__  # type: ignore[method-assign]
    return cls


class JsonConfig:
    """JSON persistence shared by the stage configs (dataclasses): a saved run config is a valid --config,
    and an unknown field is an error rather than silently ignored."""

    RENAMED: ClassVar[dict[str, Renamed]] = {}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def current_names(cls, data: dict[str, Any], warn: bool = True) -> dict[str, Any]:
        """`data` with each deprecated name replaced by its new one (and the value translated where the values
        were renamed too). Old and new name both given with different values is an error naming both."""
        out = dict(data)
        for old, renamed in cls.RENAMED.items():
            if old not in out:
                continue
            value = out.pop(old)
            if renamed.values is not None:
                value = renamed.values.get(value, value)
            if warn:
                warnings.warn(f"{cls.__name__}: {old!r} is deprecated, use {renamed.new!r} (the old name is accepted "
                              "for one release)", DeprecationWarning, stacklevel=3)
            if renamed.new in out and out[renamed.new] != value:
                raise ValueError(f"{cls.__name__}: {old}={data[old]!r} (deprecated) and {renamed.new}="
                                 f"{out[renamed.new]!r} disagree; give only {renamed.new}")
            out[renamed.new] = value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        unknown = sorted(set(data) - {f.name for f in fields(cls)} - set(cls.RENAMED))  # type: ignore[arg-type]
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown field(s) {unknown}")
        return cls(**data)

    @classmethod
    def load(cls, path: str | Path) -> Self:
        return cls.from_dict(json.loads(Path(path).read_text()))


@stage_config
class EngineConfig(JsonConfig):
    """What the trainers share (`ume.train.engine`): model, run directory, accelerate, optimiser, schedule,
    trained towers, checkpoints. Subclasses set `stage` and add their own fields."""

    stage: ClassVar[str] = "train"
    RENAMED: ClassVar[dict[str, Renamed]] = {
        "per_device_batch": Renamed("per_device_train_batch_size"),
        "grad_accum": Renamed("gradient_accumulation_steps"),
        "save_every": Renamed("save_steps"),
        "eval_every": Renamed("eval_steps"),
    }

    # --- model and run directory
    model: str = knob("", "Initial checkpoint (local dir or hub id): pretrain starts from a base VLM, SFT from the "
                      "pre-trained model (the paper: Qwen2-VL-{2B,7B}-Instruct), RL from the SFT checkpoint.")
    output: str = knob("", "Run directory (default runs/<stage>): <stage>_config.json, train_log.jsonl, "
                       "checkpoint-N/, and model/ (the final model).")

    # --- optimisation (paper SFT values)
    max_steps: int = knob(5000, "Optimiser steps (paper: 5000, about 3.5 passes over 1.46M pairs).", fixed=True)
    per_device_train_batch_size: int = knob(4, "Pairs per process per micro-batch (paper: 4 x 64 GPUs = 256 pairs "
                                            "per contrastive batch).")
    gradient_accumulation_steps: int = knob(4, "Micro-batches per optimiser step (paper: 4). It does NOT enlarge the "
                                            "negative pool (each micro-batch is its own contrastive batch); "
                                            "grad_cache_chunk does.", fixed=True)
    learning_rate: float = knob(5e-5, "AdamW peak learning rate of the LLM (paper: 5e-5).", fixed=True)
    vision_lr: float | None = knob(None, "Peak learning rate of the vision tower when it trains (default: "
                                   "learning_rate; our choice, the paper trains one rate).", fixed=True)
    merger_lr: float | None = knob(None, "Peak learning rate of the merger (default: learning_rate).", fixed=True)
    lr_scheduler: str = knob("cosine", "Any transformers.get_scheduler name (paper: cosine).", fixed=True)
    warmup_ratio: float = knob(0.03, "Warm-up steps as a fraction of max_steps, rounded up (paper: 0.03).",
                               fixed=True)
    weight_decay: float = knob(0.0, "AdamW weight decay on matrices; norms and biases never decay (paper: 0).",
                               fixed=True)
    max_grad_norm: float = knob(1.0, "Gradient clipping norm, 0 = off (paper: 1).", fixed=True)
    seed: int = knob(42, "Seed of the data order, the RNG (LoRA init, dropout) and the RL rollouts (paper: 42).",
                     fixed=True)

    # --- what trains (paper SFT: vision frozen, merger + LLM trained)
    train_vision: bool = knob(False, "Train the vision tower (paper SFT: frozen).")
    train_merger: bool = knob(True, "Train the merger, the vision-to-LLM projector.")
    train_llm: bool = knob(True, "Train the language model and its head.")

    # --- engine
    gradient_checkpointing: bool = knob(False, "Recompute activations in backward (use_reentrant=False); the "
                                        "reference enables it on GPU.")
    bf16: str = knob("auto", "bf16 autocast: auto (on for CUDA, fp32 on CPU), true or false.")
    device: str | None = knob(None, "cpu to force the CPU; default: CUDA when present.")
    deepspeed: str | None = knob(None, "DeepSpeed JSON (configs/ds_zero2.json, configs/ds_zero3.json); batch, "
                                 "accumulation and clipping 'auto' fields come from this config.")

    # --- checkpoints, logs, eval
    save_steps: int = knob(500, "Write checkpoint-N (HF model + ume_recipe.json + exact-resume state) every N "
                           "steps; 0 = only at the end.")
    eval_steps: int = knob(0, "Call the eval callback every N steps; 0 = never.")
    resume: str | None = knob(None, "Checkpoint directory to resume from exactly, or 'latest' (the highest "
                              "checkpoint-N under output; a fresh start when there is none).")
    progress: bool = knob(True, "Show a progress bar on the main process.")

    def __post_init__(self) -> None:
        if not self.output:
            self.output = f"runs/{self.stage}"

    def validate(self, world: int = 1) -> None:
        """Reject impossible settings before any model or data is loaded."""
        if not self.model:
            raise ValueError("model: give the initial checkpoint (local dir or hub id)")
        for name in ("max_steps", "per_device_train_batch_size", "gradient_accumulation_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        for name in ("learning_rate", "vision_lr", "merger_lr"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        if not (self.train_llm or self.train_vision or self.train_merger):
            raise ValueError("nothing to train: enable train_llm, train_merger or train_vision")
        if self.bf16 not in ("auto", "true", "false"):
            raise ValueError(f"bf16 must be auto, true or false, got {self.bf16!r}")

    def run_identity(self, world: int) -> dict[str, Any]:
        """What a resume must find unchanged for the continued run to equal a straight one: the `fixed` fields,
        the global batch (the per-process batch may change with the process count) and the trained towers (the
        saved optimiser restores its groups' rates and loads only into the same groups). max_steps only shapes
        a decaying schedule: a constant one may be extended."""
        names = {f.name for klass in type(self).__mro__ if is_dataclass(klass) for f in fields(klass)
                 if f.metadata.get("fixed")}
        fixed = {f.name: getattr(self, f.name) for f in fields(self) if f.name in names}
        if self.lr_scheduler == "constant":
            del fixed["max_steps"]
        return {"global_batch": self.per_device_train_batch_size * world, **fixed,
                "trains": [self.train_vision, self.train_merger, self.train_llm]}


@stage_config
class PairDataConfig(EngineConfig):
    """The fields of the stages that train on pair files in the reference formats (SFT and RL)."""

    data: list[str] = list_knob(list, "Training file in the stage's reference format (JSON list, or .jsonl one "
                                "record per line); repeat for several files.", fixed=True)
    media_root: str | None = knob(None, "Root that image/video paths are relative to (default: each file's "
                                  "directory; a MiniMMEB build needs its ROOT).")
    skip_bad_rows: bool = knob(False, "Skip rows that fail validation or loading and list them in bad_rows.jsonl, "
                               "instead of stopping with the file, row and field.")
    check_files: bool = knob(True, "Check before training that every media path exists.")

    def validate(self, world: int = 1) -> None:
        super().validate(world)
        if not self.data:
            raise ValueError(f"data: give at least one {self.stage.upper()} file")
