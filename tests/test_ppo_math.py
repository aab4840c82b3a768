import pytest
import torch

from rlhflab.config import EnvConfig, PolicyConfig
from rlhflab.policy.control import ControlPolicy
from rlhflab.policy.ppo import (
    AdaptiveKLController,
    clipped_policy_loss,
    gae,
    kl_estimate,
    value_loss,
    whiten,
)


def test_gae_with_a_terminal_and_a_truncation():
    # one env, 5 steps: episode A ends by termination at t=1, episode B is truncated at t=3, then
    # t=4 runs on
    gamma, lam = 0.9, 0.5
    r = torch.tensor([1.0, 2.0, 0.5, 1.0, 3.0])
    v = torch.tensor([0.5, 1.0, 2.0, 1.5, 1.0])
    # next values: V(s1), V(terminal) (ignored), V(s3), V(final obs of B)=4.0, bootstrap V(s5)=2.0
    nv = torch.tensor([1.0, 9.9, 1.5, 4.0, 2.0])
    term = torch.tensor([0, 1, 0, 0, 0])
    end = torch.tensor([0, 1, 0, 1, 0])
    adv, ret = gae(r, v, nv, term, end, gamma, lam)
    # δ = r + γ·(1−term)·nv − v
    d = [
        1 + 0.9 * 1.0 - 0.5,
        2.0 - 1.0,
        0.5 + 0.9 * 1.5 - 2.0,
        1.0 + 0.9 * 4.0 - 1.5,
        3.0 + 0.9 * 2.0 - 1.0,
    ]
    # = [1.4, 1.0, -0.15, 3.1, 3.8]
    a4 = d[4]
    a3 = d[3]  # truncation: the trace stops, but δ₃ bootstrapped from the final observation
    a2 = d[2] + gamma * lam * a3
    a1 = d[1]  # terminal
    a0 = d[0] + gamma * lam * a1
    expected = [a0, a1, a2, a3, a4]
    assert expected == pytest.approx([1.85, 1.0, 1.245, 3.1, 3.8])
    assert adv.tolist() == pytest.approx(expected)
    assert ret.tolist() == pytest.approx([a + b for a, b in zip(expected, v.tolist())])


def test_gae_batches_over_envs_like_single_envs():
    torch.manual_seed(0)
    r, v, nv = torch.randn(6, 3), torch.randn(6, 3), torch.randn(6, 3)
    term = torch.zeros(6, 3)
    end = (torch.rand(6, 3) < 0.3).float()
    adv, _ = gae(r, v, nv, term, end, 0.99, 0.95)
    for e in range(3):
        single, _ = gae(r[:, e], v[:, e], nv[:, e], term[:, e], end[:, e], 0.99, 0.95)
        assert torch.allclose(adv[:, e], single)


def test_clipped_policy_loss_clips_in_the_direction_of_the_advantage():
    logp_old = torch.zeros(4)
    logp = torch.log(torch.tensor([1.5, 1.5, 0.5, 0.5]))  # ratios
    adv = torch.tensor([1.0, -1.0, 1.0, -1.0])
    loss, clip_frac = clipped_policy_loss(logp, logp_old, adv, 0.2)
    # min(ρA, clip(ρ)A): [1.2, −1.5, 0.5, −0.8] → loss = −mean = 0.15
    assert float(loss) == pytest.approx(-(1.2 - 1.5 + 0.5 - 0.8) / 4)
    assert float(clip_frac) == 1.0


def test_clipped_value_loss():
    v, v_old, ret = torch.tensor([2.0]), torch.tensor([0.0]), torch.tensor([3.0])
    assert float(value_loss(v, v_old, ret, None)) == pytest.approx(0.5)
    # clipped prediction 0.5 is further from the return: max((2−3)², (0.5−3)²)/2 = 3.125
    assert float(value_loss(v, v_old, ret, 0.5)) == pytest.approx(3.125)


def test_kl_estimators_on_a_known_pair_of_distributions():
    p = torch.distributions.Categorical(probs=torch.tensor([0.7, 0.2, 0.1]))
    q = torch.distributions.Categorical(probs=torch.tensor([0.4, 0.4, 0.2]))
    exact = float(torch.distributions.kl_divergence(p, q))
    torch.manual_seed(0)
    x = p.sample((200_000,))
    for kind in ("k1", "k3"):  # unbiased estimators
        est = float(kl_estimate(p.log_prob(x), q.log_prob(x), kind).mean())
        assert est == pytest.approx(exact, abs=0.005)
    assert (kl_estimate(p.log_prob(x), q.log_prob(x), "k3") >= 0).all()
    with pytest.raises(ValueError):
        kl_estimate(torch.zeros(1), torch.zeros(1), "k9")


def test_adaptive_kl_controller_moves_beta_towards_the_target():
    c = AdaptiveKLController(0.1, target=6.0, horizon=10_000)
    assert c.update(12.0, 1000) == pytest.approx(0.1 * (1 + 0.2 * 0.1))  # error clipped to +0.2
    c = AdaptiveKLController(0.1, target=6.0, horizon=10_000)
    assert c.update(3.0, 1000) == pytest.approx(0.1 * (1 - 0.2 * 0.1))


def test_whiten_respects_the_mask():
    x = torch.tensor([1.0, 2.0, 3.0, 100.0])
    mask = torch.tensor([1.0, 1.0, 1.0, 0.0])
    w = whiten(x, mask)
    assert float((w * mask).sum()) == pytest.approx(0.0, abs=1e-5)
    assert float(((w**2) * mask).sum() / 3) == pytest.approx(1.0, abs=1e-4)


def test_anneal_lr_decays_linearly_over_the_budget():
    """`policy.anneal_lr`: the learning rate of each update is lr · (1 − env_steps / budget)."""
    cfg = PolicyConfig(n_steps=16, epochs=1, minibatches=1, lr=1e-3, anneal_lr=True)
    policy = ControlPolicy(EnvConfig(id="CartPole-v1", num_envs=2), cfg, 0, budget=64)
    lrs = []
    for _ in range(2):
        rollout = policy.collect()  # 32 env steps each
        policy.update(rollout, rollout.true_rewards)
        lrs.append(policy.optimizer.param_groups[0]["lr"])
    assert lrs == pytest.approx([1e-3 * 0.5, 0.0])
    policy.close()
