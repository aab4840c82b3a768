"""GAIL's discriminator loss and optimum, AIRL's shaped discriminator, GAIL on CartPole."""

import gymnasium as gym
import numpy as np
import torch
from torch.nn.functional import softplus

from rlhflab.config import EnvConfig, PolicyConfig
from rlhflab.demonstrations.airl import AIRLDiscriminator, shaped_logit
from rlhflab.demonstrations.experts import cartpole_expert, record
from rlhflab.demonstrations.gail import discriminator_loss, gail
from rlhflab.policy.control import ControlPolicy


def test_discriminator_loss_closed_form():
    e, p = torch.tensor([0.0, 2.0]), torch.tensor([-1.0])
    expected = (np.log(2) + np.log1p(np.exp(-2.0))) / 2 + np.log1p(np.exp(-1.0))
    assert abs(float(discriminator_loss(e, p)) - expected) < 1e-6
    assert abs(float(discriminator_loss(torch.zeros(3), torch.zeros(5))) - 2 * np.log(2)) < 1e-6


def test_discriminator_optimum_is_the_density_ratio():
    """Over three states, the loss is minimised by D = p_E / (p_E + p_π)."""
    p_e, p_pi = np.array([0.6, 0.3, 0.1]), np.array([0.2, 0.3, 0.5])
    d = torch.zeros(3, requires_grad=True)
    opt = torch.optim.LBFGS([d], max_iter=200)

    def closure():
        opt.zero_grad()
        loss = (torch.tensor(p_e) * softplus(-d)).sum() + (torch.tensor(p_pi) * softplus(d)).sum()
        loss.backward()
        return loss

    opt.step(closure)
    np.testing.assert_allclose(torch.sigmoid(d).detach().numpy(), p_e / (p_e + p_pi), atol=1e-4)


def test_airl_discriminator_has_the_shaped_form():
    torch.manual_seed(0)
    env = EnvConfig(id="CartPole-v1", horizon=20, num_envs=1)
    policy = ControlPolicy(env, PolicyConfig(), seed=0)
    disc = AIRLDiscriminator(4, gym.spaces.Discrete(2), gamma=0.9)
    rng = np.random.default_rng(0)
    s, s2, a = rng.normal(size=(5, 4)), rng.normal(size=(5, 4)), rng.integers(2, size=5)
    with torch.no_grad():
        g, h, h2 = disc.f(s, s2)
        f = g + 0.9 * h2 - h
        pi = policy.distribution(s.astype(np.float32)).probs[torch.arange(5), torch.as_tensor(a)]
        D = torch.sigmoid(disc.logits(s, a, s2, policy))
    np.testing.assert_allclose(D.numpy(), (f.exp() / (f.exp() + pi)).numpy(), rtol=1e-5)
    np.testing.assert_allclose(disc.reward(s, a, s2, policy), (f - pi.log()).numpy(), rtol=1e-5)
    # the form alone: g(s) + γh(s') − h(s) − log π
    assert float(shaped_logit(*map(torch.tensor, (1.0, 2.0, 3.0, -0.5)), 0.5)) == 1 + 1.5 - 2 + 0.5


def test_gail_imitates_the_cartpole_expert():
    demos = record("CartPole-v1", 200, 10, cartpole_expert, seed=0)
    env = EnvConfig(id="CartPole-v1", horizon=200)
    result = gail(demos, env, PolicyConfig(), 32_768, seed=0)
    assert result.policy.evaluate(8) > 150
