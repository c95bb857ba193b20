"""The RL stage end to end on tiny models: logs, resume, distributed reward gathering, bad rows."""

import json
import os
import subprocess
import sys

import pytest
import torch

from ume.generation import Completion
from ume.train.rl import RLTrainer, sequence_batch
from ume.train.rl_config import RLConfig
from ume.train.rl_data import DataError, load_rl_pairs


def cfg_for(tiny, minimmeb_root, out, **kw) -> RLConfig:
    base = dict(model=str(tiny), data=[str(minimmeb_root / "train" / "rl.json")], media_root=str(minimmeb_root),
                output=str(out), max_steps=2, per_device_train_batch_size=2, num_generations=2, max_completion_length=6,
                device="cpu", save_steps=0, progress=False, learning_rate=1e-4)
    return RLConfig(**{**base, **kw})


def log(run):
    return [json.loads(x) for x in (run / "train_log.jsonl").read_text().splitlines()]


def test_rl_run_logs_every_term_and_exports(tiny_dirs, minimmeb_root, tmp_path):
    out = RLTrainer(cfg_for(tiny_dirs["qwen2_vl"], minimmeb_root, tmp_path / "rl")).train()
    lines = log(out.parent)
    assert [ln["step"] for ln in lines] == [1, 2]
    for key in ("qry_format", "qry_rank", "qry_gap", "qry_reward", "tgt_reward", "qry_kl", "qry_clip_fraction",
                "qry_completion_length", "qry_forced", "time_rollout", "time_forward", "time_backward"):
        assert key in lines[0], key
    assert lines[0]["qry_clip_fraction"] == 0.0  # mu = 1: ratio 1, the clip is inert
    assert lines[0]["qry_kl"] == pytest.approx(0.0, abs=1e-6)  # the reference is the starting policy
    assert lines[0]["qry_forced"] == 4  # a random model never emits <gen_emb>: every rollout is forced
    import ume

    assert ume.load(out, device="cpu").dim == 64


def test_mu_greater_than_one_reuses_rollouts_and_clips(tiny_dirs, minimmeb_root, tmp_path):
    out = RLTrainer(cfg_for(tiny_dirs["qwen2_vl"], minimmeb_root, tmp_path / "mu", max_steps=2, num_iterations=2,
                            learning_rate=5e-2, beta=0.0, save_steps=2)).train()
    lines = log(out.parent)
    assert [ln["iteration"] for ln in lines] == [0, 1]
    assert lines[1]["qry_clip_fraction"] > 0.0  # the second pass sees ratio != 1


def test_resume_is_exact(tiny_dirs, minimmeb_root, tmp_path):
    straight = RLTrainer(cfg_for(tiny_dirs["qwen2_vl"], minimmeb_root, tmp_path / "a", max_steps=4)).train()
    RLTrainer(cfg_for(tiny_dirs["qwen2_vl"], minimmeb_root, tmp_path / "b", max_steps=2, save_steps=2)).train()
    with (tmp_path / "b" / "train_log.jsonl").open("a") as f:  # a crash after step 3, before its checkpoint
        f.write(json.dumps({"step": 3, "qry_reward": -1.0}) + "\n")
    resumed = RLTrainer(cfg_for(tiny_dirs["qwen2_vl"], minimmeb_root, tmp_path / "b", max_steps=4,
                                resume=str(tmp_path / "b" / "checkpoint-2"))).train()
    from safetensors.torch import load_file

    a, b = load_file(straight / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert [ln["step"] for ln in log(resumed.parent)] == [1, 2, 3, 4]  # the crashed tail was dropped
    later = [ln["qry_reward"] for ln in log(resumed.parent)][2:]
    assert [ln["qry_reward"] for ln in log(straight.parent)][2:] == pytest.approx(later)


def test_sequence_batch_keeps_generated_ids_and_masks_forced_token(encoder):
    from ume.inputs import Item

    bb = encoder.backbone
    comps = [Completion((0, 0), [5, 6, bb.gen_id], False), Completion((1, 0), [7, bb.gen_id], True)]
    batch, plen, _, mask = sequence_batch(bb, [Item("a"), Item("b")], comps, bb.pad_id)
    assert batch["input_ids"][:, plen:].tolist() == [[5, 6, bb.gen_id], [7, bb.gen_id, bb.pad_id]]
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0]]  # the appended <gen_emb> is not the policy's choice
    assert batch["attention_mask"][:, plen:].tolist() == [[1, 1, 1], [1, 1, 0]]


def test_bad_rows_name_file_row_field(tmp_path):
    from ume.recipe import Recipe

    f = tmp_path / "rl.json"
    f.write_text(json.dumps([{"qry_text": "a", "pos_text": "b"}, {"qry_text": 3, "pos_text": "b"},
                             {"qry_text": "a", "qry_image": "missing.png", "pos_text": "c"},
                             {"qry_text": "x", "pos_text": "y"}]))
    with pytest.raises(DataError, match=r"rl.json: row 1: qry_text: expected a string"):
        load_rl_pairs([str(f)], None, Recipe())
    pairs, bad = load_rl_pairs([str(f)], None, Recipe(), skip_bad_rows=True)
    assert len(pairs) == 2 and [(b.row, b.field) for b in bad] == [(1, "qry_text"), (2, "qry_image")]
    broken = tmp_path / "broken.jsonl"  # the same reader as SFT: invalid JSON names the file and line
    broken.write_text('{"qry_text": "a", "pos_text": "b"}\n{"qry_text": \n')
    with pytest.raises(DataError, match=r"broken.jsonl: not valid JSON \(line 2:"):
        load_rl_pairs([str(broken)], None, Recipe())


@pytest.mark.slow
def test_two_processes_gather_the_same_rewards_as_one(tiny_dirs, minimmeb_root, tmp_path):
    """Rollouts are seeded per pair, so 2 x 2 pairs (negatives gathered across ranks) = 1 x 4 pairs."""
    outs = {}
    for procs, per_device in ((1, 4), (2, 2)):
        cfg = cfg_for(tiny_dirs["qwen2_vl"], minimmeb_root, tmp_path / f"p{procs}",
                      per_device_train_batch_size=per_device, max_steps=1, beta=0.0)
        path = tmp_path / f"cfg{procs}.json"
        cfg.save(path)
        launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(procs),
                    "--master_port", str(29560 + procs)]
        res = subprocess.run([*launcher, "-m", "ume.train", "rl", "--config", str(path)], capture_output=True,
                             text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert res.returncode == 0, res.stderr[-3000:]
        outs[procs] = log(tmp_path / f"p{procs}")[0]
    for key in ("qry_reward", "tgt_reward", "qry_rank", "qry_gap", "tgt_gap", "qry_completion_length"):
        assert outs[1][key] == pytest.approx(outs[2][key], abs=1e-5), key


def test_a_pair_that_fails_to_decode_mid_run_is_reported_and_replaced(tiny_dirs, minimmeb_root, tmp_path):
    import shutil

    root = tmp_path / "root"
    shutil.copytree(minimmeb_root / "train", root / "train")
    rows = json.loads((root / "train" / "rl.json").read_text())
    broken = next(r for r in rows if "qry_image" in r)
    path = root / broken["qry_image"]
    path.write_bytes(path.read_bytes()[:40])  # exists (validation passes), does not decode
    cfg = cfg_for(tiny_dirs["qwen2_vl"], root, tmp_path / "rl", data=[str(root / "train" / "rl.json")],
                  max_steps=3, per_device_train_batch_size=4, skip_bad_rows=True)
    out = RLTrainer(cfg).train()
    assert [ln["step"] for ln in log(out.parent)] == [1, 2, 3]
    bad = [json.loads(x) for x in (out.parent / "bad_rows.jsonl").read_text().splitlines()]
    assert len(bad) == 1  # met once, then replaced without being decoded again
    assert bad[0]["row"] == rows.index(broken) and bad[0]["field"] == "qry_image" and bad[0]["stage"] == "load"
    assert bad[0]["rank"] == 0 and "step" in bad[0]
    with pytest.raises(DataError, match="qry_image"):
        RLTrainer(cfg_for(tiny_dirs["qwen2_vl"], root, tmp_path / "strict", data=[str(root / "train" / "rl.json")],
                          max_steps=3, per_device_train_batch_size=4)).train()


def test_resume_refuses_a_changed_setting_before_loading_anything(tiny_dirs, minimmeb_root, tmp_path):
    """RL resumes are checked as SFT's (one mechanism): a setting that shapes the run, named checkpoint -> now."""
    import shutil

    out = tmp_path / "run"
    RLTrainer(cfg_for(tiny_dirs["qwen2_vl"], minimmeb_root, out, max_steps=1, save_steps=1)).train()
    copy = tmp_path / "copy.json"
    shutil.copy(minimmeb_root / "train" / "rl.json", copy)
    changes = {"learning_rate": (1e-3, r"learning_rate 0\.0001 -> 0\.001"),
               "num_generations": (4, "num_generations 2 -> 4"),
               "data": ([str(copy)], r"data \['.*rl\.json'\] -> \['.*copy\.json'\]"),
               "gradient_accumulation_steps": (2, "gradient_accumulation_steps 1 -> 2"),
               "per_device_train_batch_size": (3, "global_batch 2 -> 3"),
               "seed": (1, "seed 42 -> 1"),
               "train_vision": (False, r"trains \[True, True, True\] -> \[False, True, True\]"),
               "loss_type": ("grpo", "loss_type 'dr_grpo' -> 'grpo'")}
    for key, (value, message) in changes.items():
        with pytest.raises(ValueError, match=rf"cannot resume .*checkpoint-1 exactly; changed settings .*{message}"):
            RLTrainer(cfg_for(tiny_dirs["qwen2_vl"], minimmeb_root, out, resume=str(out / "checkpoint-1"),
                              **{key: value}))
    assert RLConfig.load(out / "rl_config.json").learning_rate == 1e-4  # a refused resume leaves the run as it was
    legacy = tmp_path / "legacy" / "checkpoint-3"  # RL checkpoints recorded only these, with a one-group optimiser
    legacy.mkdir(parents=True)
    (legacy / "trainer_state.json").write_text(json.dumps({"step": 3, "seed": 42, "world": 1}))
    with pytest.raises(ValueError, match="written by an older ume"):
        RLTrainer(cfg_for(tiny_dirs["qwen2_vl"], minimmeb_root, tmp_path / "legacy", resume="latest"))


def test_rl_optimiser_has_the_sft_parameter_groups(tiny_dirs, minimmeb_root, tmp_path):
    """One shared setup: per-tower rates, no decay on norms and biases, for RL exactly as for SFT."""
    from ume.train.config import SFTConfig
    from ume.train.sft import SFTTrainer

    towers = dict(train_vision=True, learning_rate=1e-4, vision_lr=1e-5, merger_lr=2e-5, weight_decay=0.1)
    rl = RLTrainer(cfg_for(tiny_dirs["qwen2_vl"], minimmeb_root, tmp_path / "rl", **towers))
    sft = SFTTrainer(SFTConfig(model=str(tiny_dirs["qwen2_vl"]), data=[str(minimmeb_root / "train" / "sft.json")],
                               media_root=str(minimmeb_root), output=str(tmp_path / "sft"), device="cpu",
                               num_workers=0, progress=False, per_device_train_batch_size=2, **towers))

    def layout(optimizer):
        return [(g["name"], g["initial_lr"], g["weight_decay"], [tuple(p.shape) for p in g["params"]])
                for g in optimizer.param_groups]

    assert layout(rl.optimizer) == layout(sft.optimizer)
    by_name = {name: (lr, decay) for name, lr, decay, _ in layout(rl.optimizer)}
    assert by_name == {"vision": (1e-5, 0.1), "vision/no_decay": (1e-5, 0.0), "merger": (2e-5, 0.1),
                       "merger/no_decay": (2e-5, 0.0), "llm": (1e-4, 0.1), "llm/no_decay": (1e-4, 0.0)}


def test_gradient_checkpointing_step_uses_the_current_call_and_the_same_numbers(tiny_dirs, minimmeb_root, tmp_path):
    import warnings

    plain = RLTrainer(cfg_for(tiny_dirs["qwen2_vl"], minimmeb_root, tmp_path / "plain", max_steps=1)).train()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        trainer = RLTrainer(cfg_for(tiny_dirs["qwen2_vl"], minimmeb_root, tmp_path / "ckpt", max_steps=1,
                                    gradient_checkpointing=True))
    assert not [w for w in seen if "gradient_checkpointing_enable" in str(w.message)]  # not the deprecated call
    assert trainer.backbone.model.model.language_model.gradient_checkpointing
    a, b = log(plain.parent)[0], log(trainer.train().parent)[0]
    for key in ("loss", "qry_reward", "tgt_reward", "qry_kl", "grad_norm"):
        assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-7), key


def test_loss_normaliser_is_read_as_trls_loss_type():
    models = RLConfig.load(os.path.join(os.path.dirname(__file__), "..", "models", "rl_config.json"))
    assert models.loss_type == "dr_grpo" and models.normaliser == "constant"  # the shipped config's old name
    for old, new in (("constant", "dr_grpo"), ("token", "bnpo"), ("sequence", "grpo")):
        with pytest.warns(DeprecationWarning, match="'loss_normaliser' is deprecated, use 'loss_type'"):
            cfg = RLConfig(loss_normaliser=old)
        assert cfg.loss_type == new and cfg.normaliser == old
    with pytest.raises(ValueError, match=r"loss_normaliser='token' \(deprecated\) and loss_type='grpo' disagree"):
        RLConfig(loss_normaliser="token", loss_type="grpo")
    with pytest.raises(ValueError, match="choose dr_grpo, bnpo, grpo"):
        RLConfig(model="m", data=["d"], loss_type="dapo").validate()
