"""`ume train pretrain|sft|rl`: every field of the stage's config is an option (same name, dashes), help text
from the field.

Options given on the command line override `--config cfg.json` (a saved `sft_config.json` works), which
overrides the defaults. The options are generated from the dataclass, so the CLI cannot miss a knob. A renamed
field's old option (`--per-device-batch`, ...) still works for one release, hidden from --help, with a
deprecation warning.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
import warnings
from pathlib import Path
from typing import Annotated, Any

import typer

from ume.train.config import SFTConfig
from ume.train.pretrain_config import PretrainConfig
from ume.train.rl_config import RLConfig

train_app = typer.Typer(no_args_is_help=True, help="Training stages: perception pre-training, SFT, RL.")


@train_app.callback()
def _group() -> None:
    """Training stages (a group, so that `sft` stays a subcommand even while it is the only one)."""


def _option_type(name: str, hint: Any) -> Any:
    """The field's type made optional: None means "not given", so config-file values survive."""
    return hint if type(None) in typing.get_args(hint) else hint | None


def _config_command(name: str, config_cls: Any, run: Any, doc: str) -> None:
    """Register `name` with one option per field of `config_cls` (same name, dashes, the field's help)."""

    def command(**options: Any) -> None:
        config = options.pop("config")
        with warnings.catch_warnings():  # a deprecated name in the file or on the command line is shown
            warnings.simplefilter("always", DeprecationWarning)
            base = config_cls.load(config) if config is not None else config_cls()
            given = config_cls.current_names({k: v for k, v in options.items() if v is not None})
        typer.echo(f"final model: {run(dataclasses.replace(base, **given))}")

    hints = typing.get_type_hints(config_cls)
    defaults = config_cls()
    params = [inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, default=None,
                                annotation=Annotated[Path | None, typer.Option(help=f"{config_cls.__name__} JSON "
                                                                                   "to start from.")])]
    for f in dataclasses.fields(config_cls):
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=None,
                                        annotation=Annotated[_option_type(f.name, hints[f.name]),
                                                             typer.Option(help=f"{f.metadata['help']} (default: "
                                                                               f"{getattr(defaults, f.name)})",
                                                                          show_default=False)]))
    for old, renamed in config_cls.RENAMED.items():
        params.append(inspect.Parameter(old, inspect.Parameter.KEYWORD_ONLY, default=None,
                                        annotation=Annotated[_option_type(old, hints[renamed.new]),
                                                             typer.Option(hidden=True, help=f"Deprecated: use "
                                                                          f"--{renamed.new.replace('_', '-')}.")]))
    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__doc__ = doc
    train_app.command(name)(command)


def _train_sft(cfg: SFTConfig) -> Path:
    from ume.train.sft import train_sft

    return train_sft(cfg)


def _train_pretrain(cfg: PretrainConfig) -> Path:
    from ume.train.pretrain import train_pretrain

    return train_pretrain(cfg)


def _train_rl(cfg: RLConfig) -> Path:
    from ume.train.rl import train_rl

    return train_rl(cfg)


_config_command("pretrain", PretrainConfig, _train_pretrain, """Perception pre-training: next-token CE on descriptions.

    Fresh MiniMMEB-world scenes, crops, videos and pages described object by object (ume.synth.describe),
    generated on the fly from seeds no eval or training item uses; vision tower, merger and LLM train.
    `ume train pretrain --model BASE --output runs/pretrain`, then `ume train sft --model runs/pretrain`.
    """)
_config_command("sft", SFTConfig, _train_sft, """Cold-start SFT (UME-R1 stage 1): InfoNCE on both vectors + CE.

    One process: `ume train sft --model M --data sft.json`. Several (CPU or GPU):
    `torchrun --nproc_per_node N -m ume.train sft --config cfg.json` (on CPU use torchrun, not
    `accelerate launch --cpu`, which starts one process).
    """)
_config_command("rl", RLConfig, _train_rl, """RL (UME-R1 stage 2): GRPO with the embedding reward, both sides.

    `ume train rl --model SFT_CHECKPOINT --data rl.json`; several processes:
    `torchrun --nproc_per_node N -m ume.train rl --config cfg.json`.
    """)


@train_app.command("perception")
def perception_command(
    model: Annotated[str, typer.Option(help="Checkpoint: local directory or hub id.")],
    per_kind: Annotated[int, typer.Option(help="Held-out renders per kind (scene, crop, video, page).")] = 100,
    seed: Annotated[int, typer.Option(help="Seed of the held-out renders.")] = 0,
    batch_size: Annotated[int, typer.Option(help="Descriptions generated at once.")] = 16,
    max_new_tokens: Annotated[int, typer.Option(help="Longest description.")] = 256,
    output: Annotated[Path | None, typer.Option(help="Write the whole report (per kind, examples) as JSON.")] = None,
) -> None:
    """Perception accuracy: exact match per attribute on held-out renders.

    The model's greedy descriptions of fresh MiniMMEB-world renders against the generator's ground truth: what
    pre-training must teach before SFT."""
    import json

    import torch

    from ume.backbone import load_backbone
    from ume.io import write_json
    from ume.train.perception import perception

    backbone = load_backbone(model, device="cpu", dtype=torch.float32)
    report = perception(backbone, per_kind, seed, max_new_tokens, batch_size)
    if output is not None:
        write_json(output, report)
    typer.echo(json.dumps(report["headline"], indent=1))
