"""What the trainers (pretrain, SFT, RL) share: the accelerate setup, the optimiser (per-tower AdamW groups)
and schedule, checkpoints and their exact resume with its refusal of changed settings, the JSONL log and the
periodic-eval hook. Each trainer adds its own data, model wrapper and step."""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator, DeepSpeedPlugin, DistributedDataParallelKwargs
from torch.utils.data import DataLoader, Dataset
from transformers import get_scheduler

from ume.backbone import RUN_MODEL_DIR, Backbone
from ume.compat import enable_activation_checkpointing
from ume.io import iter_json_lines, parse_json_line
from ume.train.data import BadRow
from ume.train.engine_config import EngineConfig
from ume.train.model import param_groups

EvalFn = Callable[[Backbone, int], dict[str, Any]]
"""Periodic evaluation: called on every rank with the live model (eval mode, no grad) and the step."""

STATE_DIR, TRAINER_STATE = "training_state", "trainer_state.json"
LOG, BAD_ROWS = "train_log.jsonl", "bad_rows.jsonl"


def deepspeed_config(cfg: EngineConfig) -> dict[str, Any]:
    """The DeepSpeed JSON with the batch, accumulation and clipping "auto" fields taken from `cfg`."""
    assert cfg.deepspeed is not None
    ds = json.loads(Path(cfg.deepspeed).read_text())
    for key, value in (("train_micro_batch_size_per_gpu", cfg.per_device_train_batch_size),
                       ("gradient_accumulation_steps", cfg.gradient_accumulation_steps),
                       ("gradient_clipping", cfg.max_grad_norm)):
        if ds.get(key, "auto") == "auto":
            ds[key] = value
    return ds


def make_accelerator(cfg: EngineConfig, find_unused: bool) -> Accelerator:
    cpu = cfg.device == "cpu" or not torch.cuda.is_available()
    bf16 = (not cpu) if cfg.bf16 == "auto" else cfg.bf16 == "true"
    plugin = DeepSpeedPlugin(hf_ds_config=deepspeed_config(cfg)) if cfg.deepspeed else None
    # step_scheduler_with_optimizer=False: otherwise accelerate steps the scheduler once per process.
    # broadcast_buffers=False: the model's buffers are constants (rotary tables), and without a collective
    # in every forward, ranks may run different numbers of GradCache chunks (after dropping bad rows).
    ddp = DistributedDataParallelKwargs(find_unused_parameters=find_unused, broadcast_buffers=False)
    return Accelerator(cpu=cpu, mixed_precision="bf16" if bf16 else "no",
                       gradient_accumulation_steps=cfg.gradient_accumulation_steps,
                       step_scheduler_with_optimizer=False, deepspeed_plugin=plugin, kwargs_handlers=[ddp])


def find_checkpoint(output: Path, resume: str | None) -> Path | None:
    """The checkpoint to resume from: a directory, or "latest" (None when output has none yet)."""
    if resume is None:
        return None
    if resume != "latest":
        path = Path(resume)
        if not (path / TRAINER_STATE).is_file():
            raise FileNotFoundError(f"resume: {path} is not a checkpoint (no {TRAINER_STATE})")
        return path
    done = [p for p in output.glob("checkpoint-*") if (p / TRAINER_STATE).is_file() and p.name[11:].isdigit()]
    return max(done, key=lambda p: int(p.name[11:]), default=None)


def write_aside(acc: Accelerator, final: Path, write: Callable[[Path], None]) -> Path:
    """A folder written through `write(tmp)` (on every rank) under a temporary name beside `final` and renamed
    into place when complete, so a crash never leaves half of one where a reader looks."""
    tmp = final.with_name(f"{final.name}.tmp")
    if acc.is_main_process and tmp.exists():
        shutil.rmtree(tmp)
    acc.wait_for_everyone()
    write(tmp)
    if acc.is_main_process:
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
    acc.wait_for_everyone()
    return final


def write_checkpoint(acc: Accelerator, out: Path, step: int, export: Callable[[Path], None],
                     state: dict[str, Any]) -> Path:
    """checkpoint-N: the HF export, accelerate's state and `state` (trainer_state.json), written aside
    (`write_aside`), so a crash never leaves a half checkpoint to resume from."""

    def write(tmp: Path) -> None:
        export(tmp)
        acc.save_state(str(tmp / STATE_DIR))
        if acc.is_main_process:
            (tmp / TRAINER_STATE).write_text(json.dumps(state, indent=2) + "\n")

    return write_aside(acc, out / f"checkpoint-{step}", write)


def _as_is(x: Any) -> Any:
    """The DataLoader's collate_fn: the datasets yield whole collated micro-batches."""
    return x


def changed_settings(state: dict[str, Any], expected: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """{setting: (checkpoint, now)} for each setting of `expected` the checkpoint recorded with another value.
    Names the checkpoint wrote before a rename are read under the new names; a setting an older checkpoint
    did not record cannot be compared and is skipped."""
    saved = EngineConfig.current_names(state, warn=False)
    return {k: (saved[k], v) for k, v in expected.items() if k in saved and saved[k] != v}


def mean_over_ranks(acc: Accelerator, terms: dict[str, float]) -> dict[str, float]:
    """Per-step log terms averaged over processes (each holds an equal share of the batch)."""
    if acc.num_processes == 1:
        return terms
    keys = sorted(terms)
    t = torch.tensor([terms[k] for k in keys], device=acc.device, dtype=torch.float64)
    return dict(zip(keys, acc.reduce(t, reduction="mean").tolist(), strict=True))


class Trainer:
    """Base of the trainers: they name their `stage`, set `cfg`, `acc`, `out`, `backbone`, `eval_fn` and `step`,
    and call `_find_resume`, `_start_run` and `_setup_optimisation` (which sets `model`, `optimizer`,
    `scheduler`) in their constructor."""

    stage: str  # "pretrain" | "sft" | "rl": the model card's stage
    cfg: EngineConfig
    ckpt: Path | None
    acc: Accelerator
    out: Path
    backbone: Backbone
    model: torch.nn.Module
    optimizer: Any
    scheduler: Any
    eval_fn: EvalFn | None
    step: int
    resumed_at: int | None = None  # the step of the checkpoint this run resumed from

    # --- setup ----------------------------------------------------------------------------------------
    def _find_resume(self) -> tuple[Path | None, dict[str, Any]]:
        """The checkpoint to resume from and its trainer_state.json, refused before anything is loaded or
        written when a setting that shapes the run (`run_identity`) changed since it was saved."""
        ckpt = find_checkpoint(self.out, self.cfg.resume)
        if ckpt is None:
            return None, {}
        state = json.loads((ckpt / TRAINER_STATE).read_text())
        diff = changed_settings(state, self.cfg.run_identity(self.acc.num_processes))
        if diff:
            changes = ", ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in diff.items())
            raise ValueError(f"cannot resume {ckpt} exactly; changed settings (checkpoint -> now): {changes}")
        return ckpt, state

    def _start_run(self, bad: list[BadRow] | None = None) -> None:
        """The run directory with this run's config and, unless resuming (`self.ckpt`), the rows the stage's
        validation dropped (`bad`; None for a stage that reads no row files)."""
        if self.acc.is_main_process:
            self.out.mkdir(parents=True, exist_ok=True)
            self.cfg.save(self.out / f"{self.cfg.stage}_config.json")
            if bad is not None and self.ckpt is None:
                (self.out / BAD_ROWS).write_text("".join(json.dumps(b.to_dict()) + "\n" for b in bad))
        self.acc.wait_for_everyone()  # the output directory exists before any rank reports a bad row

    def _setup_optimisation(self, hf: Any, module: torch.nn.Module) -> None:
        """What every stage trains with: activation checkpointing when asked (non-reentrant), AdamW over the
        per-tower groups (own peak rates, no decay on norms and biases), warm-up + the configured schedule, all
        prepared by accelerate."""
        cfg = self.cfg
        if cfg.gradient_checkpointing:
            enable_activation_checkpointing(hf)
        groups = param_groups(module, cfg.learning_rate, cfg.weight_decay,
                              {"vision": cfg.vision_lr, "merger": cfg.merger_lr})
        optimizer = torch.optim.AdamW(groups, lr=cfg.learning_rate)
        scheduler = get_scheduler(cfg.lr_scheduler, optimizer, num_warmup_steps=math.ceil(cfg.warmup_ratio *
                                  cfg.max_steps), num_training_steps=cfg.max_steps)
        self.model, self.optimizer, self.scheduler = self.acc.prepare(module, optimizer, scheduler)

    # --- the loop -------------------------------------------------------------------------------------
    def _loader(self, data: Dataset) -> Iterator[Any]:
        """The stage's micro-batches, already collated by `data`; with its own generator, so creating the loader
        draws nothing from the global RNG that a resume restores."""
        if self.cfg.num_workers:  # type: ignore[attr-defined]
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        return iter(DataLoader(data, batch_size=None, num_workers=self.cfg.num_workers,  # type: ignore[attr-defined]
                               collate_fn=_as_is, generator=torch.Generator().manual_seed(self.cfg.seed)))

    def _optimiser_step(self) -> float | None:
        """Clip (when configured), step optimiser and schedule, count the step; the gradient norm before clipping."""
        cfg = self.cfg
        norm = self.acc.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm) if cfg.max_grad_norm > 0 else None
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return None if norm is None else float(norm)

    def _end_step(self, line: dict[str, Any], bar: Any, shown: tuple[str, ...]) -> None:
        """Log the step, show `shown` on the bar, then the periodic eval and checkpoint."""
        cfg = self.cfg
        self._log(line)
        bar.update(1)
        bar.set_postfix({k: f"{line[k]:.3g}" for k in shown if k in line})
        if cfg.eval_steps and self.step % cfg.eval_steps == 0 and self.eval_fn is not None:
            self._evaluate()
        if self.step == cfg.max_steps or (cfg.save_steps and self.step % cfg.save_steps == 0):
            self.save_checkpoint()

    def _lrs(self) -> dict[str, float]:
        """{"lr": the LLM's learning rate} plus lr_vision / lr_merger where those towers have their own."""
        towers = {g.get("name", "llm").split("/")[0]: lr
                  for g, lr in zip(self.optimizer.param_groups, self.scheduler.get_last_lr(), strict=True)}
        main = towers.get("llm", next(iter(towers.values())))
        return {"lr": main, **{f"lr_{t}": lr for t, lr in towers.items() if t != "llm" and lr != main}}

    def _log(self, line: dict[str, Any]) -> None:
        if self.acc.is_main_process:
            with (self.out / LOG).open("a") as f:
                f.write(json.dumps(line, default=str) + "\n")

    def _report(self, rows: list[BadRow]) -> None:
        """Rows dropped while loading (skip_bad_rows), appended by the rank that met them."""
        if rows:
            with (self.out / BAD_ROWS).open("a") as f:
                for r in rows:
                    f.write(json.dumps({**r.to_dict(), "step": self.step, "rank": self.acc.process_index}) + "\n")

    def _evaluate(self) -> None:
        assert self.eval_fn is not None
        self.model.eval()
        try:
            with torch.no_grad():
                result = self.eval_fn(self.backbone, self.step)
        finally:
            self.model.train()
        self._log({"step": self.step, "eval": result})

    # --- checkpoints ----------------------------------------------------------------------------------
    @property
    def final(self) -> Path:
        """Where the final model is exported: `<output>/model`, only the model (the folder `hf upload` sends),
        with the run's config, logs and checkpoints beside it rather than in it."""
        return self.out / RUN_MODEL_DIR

    def export_final(self) -> Path:
        """Export the final model to `final`, written beside it and renamed when complete (a crash never leaves
        half a model there). A resumed run that had already finished keeps the model it exported: rewriting the
        same weights would only change the file times that key every evaluation cache of the model."""
        if self.resumed_at == self.step and (self.final / "config.json").is_file():
            return self.final
        return write_aside(self.acc, self.final, self.export)

    def export(self, directory: Path) -> None:
        """HF layout (+ ume_recipe.json, model card) loadable by `ume.load` and plain transformers."""
        hf_state = self._hf_state()
        if self.acc.is_main_process:
            self._export_full(directory, hf_state)
        self.acc.wait_for_everyone()

    def _micro_batches(self) -> int:
        """Micro-batches of data consumed after `step` optimiser steps (the data position)."""
        return self.step * self.cfg.gradient_accumulation_steps

    def save_checkpoint(self) -> Path:
        state = {"step": self.step, "micro_batches": self._micro_batches(),
                 **self.cfg.run_identity(self.acc.num_processes)}
        return write_checkpoint(self.acc, self.out, self.step, self.export, state)

    def _export_full(self, directory: Path, hf_state: dict[str, torch.Tensor]) -> None:
        """The HF layout + processor + ume_recipe.json + model card (main process only)."""
        directory.mkdir(parents=True, exist_ok=True)
        self.backbone.model.save_pretrained(directory, state_dict=hf_state)
        self.backbone.processor.save_pretrained(directory)
        self.backbone.recipe.save(directory)
        self._write_card(directory)

    def _write_card(self, directory: Path) -> None:
        """README.md for the hub (what the model is, its training's last logged numbers, how to load it) and the
        sentence-transformers config that makes `SentenceTransformer(dir)` give ume's disc vector."""
        from ume.integrations.sentence_transformers import write_st_config
        from ume.model_card import write_model_card

        bb = self.backbone
        write_model_card(directory, bb.recipe, bb.model.config.model_type, self.stage, str(self.cfg.model),
                         self.cfg.to_dict(), last_log_line(self.out / LOG), bb.disc_id, bb.gen_id)
        write_st_config(directory)

    def _hf_state(self) -> dict[str, torch.Tensor]:
        """The trained weights under the stock model's names (gathers ZeRO-3 shards; on every rank)."""
        return {k.removeprefix("model."): v for k, v in self.acc.get_state_dict(self.model).items()}

    def _restore(self, ckpt: Path, state: dict[str, Any]) -> None:
        """Load accelerate's state and drop log lines written after the checkpoint (a crashed run's tail)."""
        self.acc.load_state(str(ckpt / STATE_DIR))
        self.step = self.resumed_at = int(state["step"])
        if self.acc.is_main_process and (self.out / LOG).is_file():
            kept = kept_log_lines((self.out / LOG).read_bytes(), self.step)
            (self.out / LOG).write_bytes(b"".join(ln + b"\n" for ln in kept))
        self.acc.wait_for_everyone()


def last_log_line(path: Path) -> dict[str, Any] | None:
    """The last training-step line of a log (eval lines and unreadable lines skipped), or None."""
    if not path.is_file():
        return None
    steps = [ln.value for ln in iter_json_lines(path) if isinstance(ln.value, dict) and "loss" in ln.value]
    return steps[-1] if steps else None


def kept_log_lines(blob: bytes, step: int) -> list[bytes]:
    """Lines of train_log.jsonl up to `step`, as they were written. A line that does not parse (the torn last line
    of a killed run) is dropped, as is a line without a step; nothing in the log can stop a resume."""
    kept = []
    for n, raw in enumerate(blob.split(b"\n"), 1):
        line = parse_json_line(raw, n)
        entry = None if line is None else line.value
        if isinstance(entry, dict) and isinstance(entry.get("step"), int) and entry["step"] <= step:
            kept.append(raw)
    return kept
