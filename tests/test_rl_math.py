"""The RL reward and GRPO loss against hand computations."""

import math

import pytest
import torch

from ume.train.grpo_loss import group_advantages, policy_loss
from ume.train.rewards import embedding_reward, format_reward


def unit(*rows):
    t = torch.tensor(rows, dtype=torch.float32)
    return t / t.norm(dim=1, keepdim=True)


def test_format_reward():
    ok = "<think>look</think> so <answer>a red circle</answer><gen_emb>"
    texts = [ok, ok + " trailing", "<think>x</think><answer>y</answer>", "x" + ok,
             "<think>a\nb</think>\n<answer>c\n</answer>\n<gen_emb>"]
    assert format_reward(texts).tolist() == [1, 1, 0, 1, 1]  # the reference's re.search: text before is fine
    assert format_reward(texts, "match").tolist() == [1, 1, 0, 0, 1]  # anchored


def test_the_configured_rewards_are_summed_with_their_weights_and_logged():
    from ume.train.rewards import REWARDS, RewardTerms, RolloutGroup, total_reward
    from ume.train.rl_config import RLConfig

    ok = "<think>a</think><answer>b</answer><gen_emb>"
    q = unit([1, 0], [1, 0.1], [0, 1], [0.1, 1])
    pairs = torch.tensor([0, 0, 1, 1])
    group = RolloutGroup([ok, " " + ok, "no", ok], q, pairs, q, pairs, 2)
    total, logs = total_reward(group, ["format", "embedding"], [1.0, 1.0])
    emb = embedding_reward(q, q, pairs, pairs, 2)
    assert torch.allclose(total, torch.tensor([1.0, 1.0, 0.0, 1.0]) + emb.value)  # the paper's R
    assert set(logs) == {"format", "rank", "gap", "emb_reward"} and logs["format"] == 0.75
    strict, logs = total_reward(group, ["format_strict"], [2.0])
    assert strict.tolist() == [2.0, 0.0, 0.0, 2.0] and logs == {"format_strict": 0.5}
    REWARDS["length"] = lambda g: RewardTerms(torch.tensor([float(len(t)) for t in g.texts]), {})
    try:  # a new reward is one registered function
        RLConfig(model="m", data=["d"], reward_funcs=["length"]).validate()
        assert total_reward(group, ["length"], [0.5])[0].tolist() == [0.5 * len(t) for t in group.texts]
    finally:
        del REWARDS["length"]
    with pytest.raises(ValueError, match="choose from"):
        RLConfig(model="m", data=["d"], reward_funcs=["formt"]).validate()
    with pytest.raises(ValueError, match="1 weights for 2"):
        RLConfig(model="m", data=["d"], reward_weights=[1.0]).validate()


def test_all_positives_on_top():
    # 2 pairs x G=2: query rollouts of pair 0 are close to pair-0 targets only
    q = unit([1, 0], [1, 0.1], [0, 1], [0.1, 1])
    t = unit([1, 0.05], [1, 0], [0, 1], [0.05, 1])
    pairs = torch.tensor([0, 0, 1, 1])
    r = embedding_reward(q, t, pairs, pairs, group_size=2)
    assert r.rank.tolist() == [1.0, 1.0, 1.0, 1.0]
    s = q @ t.T
    gap0 = s[0, :2].mean() - s[0, 2:].mean()
    assert r.gap[0] == pytest.approx(float(gap0)) and r.value[0] == pytest.approx(float(gap0))


def test_negative_gap_and_partial_rank():
    # anchors = identity, so the similarity matrix is exactly the `others` columns we write down
    sims = torch.tensor([[0.9, 0.8, 0.1, 0.0],    # pair 0: both positives on top -> rank 1, gap 0.8
                         [0.9, -0.5, 0.5, 0.4],   # pair 0: one positive in top-2 -> rank 0.5, gap -0.25
                         [0.9, 0.9, 0.1, 0.2],    # pair 1: no positive in top-2 -> rank 0, gap -0.75
                         [0.0, 0.0, 1.0, 1.0]])   # pair 1: rank 1, gap 1
    pairs = torch.tensor([0, 0, 1, 1])
    r = embedding_reward(torch.eye(4), sims.T.contiguous(), pairs, pairs, group_size=2)
    assert r.rank.tolist() == [1.0, 0.5, 0.0, 1.0]
    assert r.gap.tolist() == pytest.approx([0.8, -0.25, -0.75, 1.0])
    assert r.value.tolist() == pytest.approx([0.8, -0.125, 0.0, 1.0])  # rank x gap can be negative


def test_reward_needs_two_pairs():
    q = unit([1, 0], [0, 1])
    with pytest.raises(ValueError, match="at least 2 distinct pairs"):
        embedding_reward(q, q, torch.tensor([0, 0]), torch.tensor([0, 0]), group_size=2)


def test_group_advantages():
    r = torch.tensor([1.0, 2.0, 3.0, 5.0, 5.0, 5.0])
    a = group_advantages(r, 3)
    std = torch.tensor([1.0, 2.0, 3.0]).std()  # Bessel-corrected, as torch's default
    assert a[:3].tolist() == pytest.approx([(-1 / (std + 1e-4)).item(), 0.0, (1 / (std + 1e-4)).item()])
    assert a[3:].tolist() == [0.0, 0.0, 0.0]


def independent_loss(logp, old, adv, mask, lo, hi, beta, ref, norm, L):
    M, T = len(logp), len(logp[0])
    per_seq, tok_sum, tok_n = [], 0.0, 0.0
    for i in range(M):
        s, n = 0.0, 0.0
        for t in range(T):
            if not mask[i][t]:
                continue
            rho = math.exp(logp[i][t] - old[i][t])
            term = -min(rho * adv[i], min(max(rho, 1 - lo), 1 + hi) * adv[i])
            d = ref[i][t] - logp[i][t]
            term += beta * (math.exp(d) - d - 1)
            s += term
            n += 1
        per_seq.append((s, n))
        tok_sum += s
        tok_n += n
    if norm == "constant":
        return sum(s / L for s, _ in per_seq) / M
    if norm == "token":
        return tok_sum / tok_n
    return sum(s / n for s, n in per_seq) / M


@pytest.mark.parametrize("norm", ["constant", "token", "sequence"])
@pytest.mark.parametrize("mu_gt_1", [False, True])
def test_policy_loss_matches_independent_computation(norm, mu_gt_1):
    g = torch.Generator().manual_seed(0)
    logp = -torch.rand(4, 6, generator=g)
    old = logp.clone() if not mu_gt_1 else logp + 2.0 * (torch.rand(4, 6, generator=g) - 0.5)
    ref = logp + 0.3 * (torch.rand(4, 6, generator=g) - 0.5)
    adv = torch.tensor([1.5, -0.5, 0.2, -1.2])
    mask = torch.tensor([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1], [1, 0, 0, 0, 0, 0], [1, 1, 1, 1, 0, 0]])
    out = policy_loss(logp, old, adv, mask, 0.2, 0.28, 0.04, ref, norm, max_completion_length=8)
    exp = independent_loss(logp.tolist(), old.tolist(), adv.tolist(), mask.tolist(), 0.2, 0.28, 0.04, ref.tolist(),
                           norm, 8)
    assert out.loss.item() == pytest.approx(exp, rel=1e-5, abs=1e-7)
    if not mu_gt_1:
        assert out.clip_fraction.item() == 0.0  # mu = 1: ratio is 1, the clip is inert
    else:
        assert out.clip_fraction.item() > 0.0


def test_mu_1_gradient_is_minus_advantage_times_grad_logp():
    logp = torch.tensor([[-1.0, -2.0], [-0.5, -0.1]], requires_grad=True)
    adv = torch.tensor([2.0, -1.0])
    out = policy_loss(logp, logp.detach(), adv, torch.ones(2, 2), beta=0.0, normaliser="sequence")
    out.loss.backward()
    assert torch.allclose(logp.grad, torch.tensor([[-0.5, -0.5], [0.25, 0.25]]))  # -A / (T * M)


@pytest.mark.parametrize("loss_type", ["dr_grpo", "bnpo", "grpo"])
def test_loss_types_are_trls_formulas(loss_type):
    """TRL's GRPOTrainer: dr_grpo = sum / (rollouts x max_completion_length), bnpo = sum / tokens of the batch,
    grpo = mean over rollouts of each rollout's token mean."""
    from ume.train.rl_config import RLConfig

    g = torch.Generator().manual_seed(1)
    logp = -torch.rand(3, 5, generator=g)
    adv = torch.tensor([1.0, -0.5, 0.3])
    mask = torch.tensor([[1, 1, 0, 0, 0], [1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]).float()
    out = policy_loss(logp, logp.detach(), adv, mask, beta=0.0, normaliser=RLConfig(loss_type=loss_type).normaliser,
                      max_completion_length=8)
    per_token = -adv.view(-1, 1).expand_as(logp) * mask  # ratio 1: the surrogate is -A per completion token
    trl = {"dr_grpo": per_token.sum() / (3 * 8), "bnpo": per_token.sum() / mask.sum(),
           "grpo": (per_token.sum(-1) / mask.sum(-1)).mean()}[loss_type]
    assert out.loss.item() == pytest.approx(trl.item(), rel=1e-6)
