"""RL stage (`ume train rl`): GRPO on generative embeddings, both sides rolled out (the UME-R1 paper, stage 2).

One optimiser micro-step:
1. rollouts: G completions of each pair's query prompt and G of its target prompt (the rollout backend,
   seeded per pair, side and step);
2. one teacher-forced forward per side over prompt + completion gives the policy log-probs AND, through
   the shared readout, the `<gen_emb>` vectors (detached) that the reward uses — no extra forward;
3. vectors are gathered across processes; each rollout's reward = format + rank x gap against all
   rollouts of the other side; advantages are normalised within each group of G;
4. clipped surrogate + beta * k3 KL per side, L = (L_qry + L_tgt) / 2.

Completions that never emit `<gen_emb>` (within max_completion_length, or ending the turn first) get
`<gen_emb>` appended by the decoder: their format reward is 0 (the regex sees the model's own text), their
vector is read at the appended token so they still take part in the ranking, and the appended token is
excluded from the policy loss (the policy did not sample it). They are counted as `forced` in the logs.
"""

from __future__ import annotations

import time
from copy import deepcopy
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from accelerate.utils import set_seed
from torch import nn
from tqdm.auto import tqdm

from ume.backbone import Backbone, find_recipe, load_backbone
from ume.batching import completion_batch
from ume.encoder import Encoder
from ume.generation import Completion, row_seed
from ume.inputs import InputLimits, LoadedItem
from ume.readout import EmbeddingTokens, last_hidden, read_embedding
from ume.train.engine import EvalFn, Trainer, make_accelerator, mean_over_ranks
from ume.train.grpo_loss import group_advantages, policy_loss
from ume.train.model import set_trainable
from ume.train.rewards import RolloutGroup, total_reward
from ume.train.rl_config import RLConfig
from ume.train.rl_data import RLPair, global_batch, load_rl_batch, load_rl_pairs, spare_indices
from ume.train.rollouts import Rollouts


class PolicyForward(nn.Module):
    """prompt + completion -> per-token log-probs of the completion [M, T] and `<gen_emb>` vectors [M, d]."""

    def __init__(self, model: Any, tokens: EmbeddingTokens) -> None:
        super().__init__()
        self.model, self.tokens = model, tokens

    def forward(self, batch: dict[str, torch.Tensor], prompt_len: int,
                completion: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = last_hidden(self.model, **batch, use_cache=False).last_hidden_state
        vectors = read_embedding(hidden, batch["input_ids"], "gen", self.tokens, prompt_len)
        steps = hidden[:, prompt_len - 1:-1]  # the state before each completion token predicts it
        logits = self.model.get_output_embeddings()(steps).float()
        logp = torch.gather(F.log_softmax(logits, dim=-1), 2, completion.unsqueeze(-1)).squeeze(-1)
        return logp, vectors


def sequence_batch(backbone: Backbone, items: list[Any], completions: list[Completion], pad_id: int
                   ) -> tuple[dict[str, torch.Tensor], int, torch.Tensor, torch.Tensor]:
    """The teacher-forced batch of prompt + exact generated ids (`ume.batching.completion_batch`) and the loss
    mask [M, T]: the appended <gen_emb> of forced rollouts is excluded (the policy did not sample it)."""
    batch, prompt_len, ids, mask = completion_batch(backbone.processor, backbone.recipe, items,
                                                    [c.token_ids for c in completions], pad_id)
    loss_mask = mask.clone()
    for i, c in enumerate(completions):
        if c.forced:
            loss_mask[i, len(c.token_ids) - 1] = 0
    return batch, prompt_len, ids, loss_mask


class RLTrainer(Trainer):
    """GRPO with the UME-R1 embedding reward on accelerate (one CPU process, torchrun/DDP, DeepSpeed)."""

    stage = "rl"
    cfg: RLConfig

    def __init__(self, cfg: RLConfig, eval_fn: EvalFn | None = None, rollouts: Rollouts | None = None) -> None:
        self.cfg, self.eval_fn = cfg, eval_fn
        self.out = Path(cfg.output)
        recipe = find_recipe(cfg.model)
        self.acc = acc = make_accelerator(cfg, find_unused=True)
        cfg.validate(acc.num_processes)
        self.pairs, bad = load_rl_pairs(cfg.data, cfg.media_root, recipe, cfg.check_files, cfg.skip_bad_rows)
        self.ckpt, state = self._find_resume()
        self._start_run(bad)
        set_seed(cfg.seed)
        self.backbone = load_backbone(cfg.model, device=acc.device, dtype=torch.float32, recipe=recipe)
        hf = self.backbone.model
        self.ref = None
        if cfg.beta > 0:
            self.ref = PolicyForward(deepcopy(hf).eval().requires_grad_(False), self.backbone.tokens)
        set_trainable(hf, cfg.train_vision, cfg.train_merger, cfg.train_llm)
        self._setup_optimisation(hf, PolicyForward(hf, self.backbone.tokens))
        self.rollouts = rollouts or Rollouts(Encoder(self.backbone), cfg.rollout_batch_size)
        self.limits = InputLimits(num_frames=recipe.num_frames)
        self.step = 0
        self.bad_pairs: set[int] = set()  # pairs that failed to decode, replaced by spares from then on
        if self.ckpt is not None:
            self._restore(self.ckpt, state)

    # --- one generated batch -------------------------------------------------------------------------
    def _rollout(self, pairs: list[RLPair], indices: list[int], micro: int) -> dict[str, Any]:
        cfg, G = self.cfg, self.cfg.num_generations
        hf = self.backbone.model
        hf.eval()  # rollouts use the KV cache; training-mode checkpointing would disable it
        try:
            sides = {}
            for s, side in enumerate(("qry", "tgt")):
                items = [getattr(p, side) for p in pairs]
                seeds = [row_seed(cfg.seed, micro, i, s) for i in indices]
                sides[side] = self.rollouts.generate(items, G, seeds, cfg.temperature, cfg.top_p,
                                                     cfg.max_completion_length)
        finally:
            hf.train()
        return sides

    def _side_batch(self, loaded: list[LoadedItem], comps: list[list[Completion]]) -> dict[str, Any]:
        G = self.cfg.num_generations
        flat = [c for group in comps for c in group]
        batch, prompt_len, ids, mask = sequence_batch(self.backbone, [it for it in loaded for _ in range(G)], flat,
                                                      self.backbone.pad_id)
        dev = self.acc.device
        tok = self.backbone.tokenizer
        texts = [tok.decode(c.token_ids[:-1] if c.forced else c.token_ids, skip_special_tokens=True) for c in flat]
        return {"batch": {k: v.to(dev) for k, v in batch.items()}, "prompt_len": prompt_len, "ids": ids.to(dev),
                "mask": mask.to(dev), "texts": texts, "forced": sum(c.forced for c in flat),
                "lengths": [len(c.token_ids) for c in flat]}

    def _rewards(self, vec: dict[str, torch.Tensor], texts: dict[str, list[str]], pair_ids: torch.Tensor
                 ) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        """The configured rewards of this rank's rollouts, against every rank's rollouts of the other side."""
        cfg = self.cfg
        gathered = {s: self.acc.gather(v.detach().contiguous()) for s, v in vec.items()}
        all_ids = self.acc.gather(pair_ids.contiguous())
        rewards, logs = {}, {}
        for side, other in (("qry", "tgt"), ("tgt", "qry")):
            group = RolloutGroup(texts[side], vec[side].detach(), pair_ids, gathered[other], all_ids,
                                 cfg.num_generations)
            rewards[side], terms = total_reward(group, cfg.reward_funcs, cfg.weights)
            logs.update({f"{side}_{k}": v for k, v in terms.items()})
            logs[f"{side}_reward"] = float(rewards[side].mean())
        return rewards, logs

    def train(self) -> Path:
        cfg, acc = self.cfg, self.acc
        G, world, rank = cfg.num_generations, acc.num_processes, acc.process_index
        accum, per_device = cfg.gradient_accumulation_steps, cfg.per_device_train_batch_size
        bar = tqdm(total=cfg.max_steps, initial=self.step, desc="rl", unit="step",
                   disable=not (cfg.progress and acc.is_main_process))
        while self.step < cfg.max_steps:
            gen_step = self.step // cfg.num_iterations
            times = {"rollout": 0.0, "forward": 0.0, "backward": 0.0}
            stored = []
            for a in range(accum):  # generate once per num_iterations optimiser steps
                micro = gen_step * accum + a
                idx = global_batch(len(self.pairs), cfg.seed, micro, per_device * world)
                local = idx[rank * per_device:(rank + 1) * per_device]
                spares = spare_indices(len(self.pairs), cfg.seed, micro, per_device * world, rank, world)
                local, loaded, bad = load_rl_batch(self.pairs, local, self.limits, cfg.skip_bad_rows, spares,
                                                   self.bad_pairs)
                self._report(bad)
                pairs = [self.pairs[i] for i in local]
                t = time.perf_counter()
                comps = self._rollout(pairs, local, micro)
                times["rollout"] += time.perf_counter() - t
                sides = {s: self._side_batch(loaded[s], comps[s]) for s in ("qry", "tgt")}
                pair_ids = torch.tensor([i for i in local for _ in range(G)], device=acc.device)
                stored.append((sides, pair_ids))
            logs: dict[str, float] = {}
            for it in range(cfg.num_iterations):
                if it > 0 and self.step >= cfg.max_steps:
                    break
                for sides, pair_ids in stored:
                    with acc.accumulate(self.model):
                        got = self._micro(sides, pair_ids, first=(it == 0), times=times)
                    for k, v in got.items():
                        logs[k] = logs.get(k, 0.0) + v / accum
                norm = self._optimiser_step()
                line = {"step": self.step, "iteration": it, **self._lrs(), **mean_over_ranks(acc, logs),
                        "grad_norm": norm, **{f"time_{k}": v for k, v in times.items()}}
                self._end_step(line, bar, ("qry_reward", "tgt_reward", "qry_format"))
        bar.close()
        self.export_final()
        acc.end_training()
        return self.final

    def _micro(self, sides: dict[str, dict[str, Any]], pair_ids: torch.Tensor, first: bool,
               times: dict[str, float]) -> dict[str, float]:
        cfg = self.cfg
        t = time.perf_counter()
        out = {s: self.model(d["batch"], d["prompt_len"], d["ids"]) for s, d in sides.items()}
        times["forward"] += time.perf_counter() - t
        logs: dict[str, float] = {}
        if first:  # rewards from the vectors of this same forward; old log-probs kept for mu > 1
            rewards, logs = self._rewards({s: o[1] for s, o in out.items()}, {s: d["texts"] for s, d in sides.items()},
                                          pair_ids)
            for s, d in sides.items():
                d["advantages"] = group_advantages(rewards[s], cfg.num_generations).detach()
                d["old_logp"] = out[s][0].detach()
                if self.ref is not None:
                    with torch.no_grad():
                        d["ref_logp"] = self.ref(d["batch"], d["prompt_len"], d["ids"])[0]
        losses = []
        for s, d in sides.items():
            pl = policy_loss(out[s][0], d["old_logp"], d["advantages"], d["mask"], cfg.epsilon, cfg.epsilon_high,
                             cfg.beta, d.get("ref_logp"), cfg.normaliser, cfg.max_completion_length)
            losses.append(pl.loss)
            logs.update({f"{s}_kl": pl.kl.item(), f"{s}_clip_fraction": pl.clip_fraction.item(),
                         f"{s}_completion_length": sum(d["lengths"]) / len(d["lengths"]),
                         f"{s}_forced": float(d["forced"])})
        loss = (losses[0] + losses[1]) / 2
        t = time.perf_counter()
        self.acc.backward(loss)
        times["backward"] += time.perf_counter() - t
        logs["loss"] = loss.item()
        return logs

    # --- checkpoints -----------------------------------------------------------------------------------
    def _find_resume(self) -> tuple[Path | None, dict[str, Any]]:
        """The engine's checks, plus: the checkpoint falls on a generation boundary, and it is not from before
        RL's optimiser had the per-tower groups (its state would not load into them)."""
        ckpt, state = super()._find_resume()
        if ckpt is None:
            return ckpt, state
        if "trains" not in state:
            raise ValueError(f"cannot resume {ckpt}: written by an older ume whose RL optimiser had one parameter "
                             "group; start a fresh run")
        if int(state["step"]) % self.cfg.num_iterations:
            raise ValueError("resume: checkpoints must fall on a generation boundary (step % num_iterations == 0)")
        return ckpt, state

    def _micro_batches(self) -> int:
        """One generated batch serves num_iterations optimiser steps."""
        return self.step // self.cfg.num_iterations * self.cfg.gradient_accumulation_steps


def train_rl(cfg: RLConfig, eval_fn: EvalFn | None = None) -> Path:
    """Run the RL stage as configured; returns the final model's directory (`<output>/model`)."""
    return RLTrainer(cfg, eval_fn).train()
