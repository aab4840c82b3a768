"""Generative adversarial imitation learning (Ho & Ermon 2016), and the adversarial loop that
AIRL shares.

A discriminator D_ω(s, a) = σ(d_ω(s, a)) tells the expert's state-action pairs from the
policy's; the policy is trained by RL to be mistaken for the expert:
    min_π max_ω  E_{π_E}[log D_ω(s, a)] + E_π[log(1 − D_ω(s, a))] − λ·H(π).
The discriminator minimises the binary cross-entropy
    L_D = −E_{π_E}[log σ(d)] − E_π[log(1 − σ(d))] = E_{π_E}[softplus(−d)] + E_π[softplus(d)],
whose minimiser is D* = p_E / (p_E + p_π); the policy's reward is r(s, a) = −log(1 − D(s, a)) =
softplus(d(s, a)), maximised by PPO (TRPO in the paper) — rlhflab's `ControlPolicy`. Each
iteration: one rollout, `disc_steps` discriminator minibatch steps, one PPO update.

Departures: Ho & Ermon write D for the policy's probability (so their cost is log D); the
labels here are flipped, the objective is the same. Fixed-horizon envs (rlhflab's default)
let the discriminator see the absorbing state after a failure as a policy state, so a
positive reward cannot teach the policy to survive or die by itself (Kostrikov et al. 2019).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.nn import functional

from rlhflab.config import EnvConfig, PolicyConfig
from rlhflab.demonstrations.bc import ObsNormalized, mlp
from rlhflab.demonstrations.dataset import Demonstrations
from rlhflab.envs.wrappers import action_dim, action_features
from rlhflab.policy.control import ControlPolicy
from rlhflab.policy.rollout import Rollout


def discriminator_loss(expert_logits: torch.Tensor, policy_logits: torch.Tensor) -> torch.Tensor:
    """L_D = E_E[softplus(−d)] + E_π[softplus(d)]: expert labelled 1, policy 0."""
    return functional.softplus(-expert_logits).mean() + functional.softplus(policy_logits).mean()


class GAILDiscriminator(ObsNormalized):
    """d_ω(s, a): an MLP over normalised observations and action features."""

    def __init__(self, obs_dim: int, action_space: gym.Space, hidden: int = 64):
        super().__init__()
        self.action_space = action_space
        act_dim = action_dim(action_space)
        self.net = mlp(obs_dim + act_dim, hidden, 1)
        self.register_normalizer(obs_dim)

    def features(self, obs: np.ndarray, acts: np.ndarray) -> torch.Tensor:
        o = self.normalize(torch.as_tensor(np.asarray(obs, np.float32)))
        a = torch.as_tensor(action_features(self.action_space, acts))
        return torch.cat([o, a], -1)

    def logits(self, obs, acts, next_obs=None, policy: ControlPolicy | None = None) -> torch.Tensor:
        return self.net(self.features(obs, acts)).squeeze(-1)

    @torch.no_grad()
    def reward(self, obs, acts, next_obs, policy: ControlPolicy) -> np.ndarray:
        """GAIL's policy reward −log(1 − D) = softplus(d)."""
        return functional.softplus(self.logits(obs, acts)).numpy()


def rollout_transitions(rollout: Rollout) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(obs, acts, next_obs, valid) flattened over [T, N]; next_obs is the following row, and
    `valid` marks the steps whose next observation is known (not an episode's last)."""
    obs, acts = rollout.raw_obs, rollout.actions
    nxt = np.concatenate([obs[1:], obs[-1:]])
    valid = ~rollout.episode_end.astype(bool)
    valid[-1] = False
    flat = lambda x: x.reshape(-1, *x.shape[2:])  # noqa: E731
    return flat(obs), flat(acts), flat(np.where(valid[..., None], nxt, obs)), flat(valid)


@dataclass
class AdversarialResult:
    policy: ControlPolicy
    discriminator: nn.Module
    history: list[dict] = field(default_factory=list)


def adversarial_imitation(  # the paper's algorithm loop (Ho & Ermon 2016, Algorithm 1)
    discriminator: nn.Module,
    demos: Demonstrations,
    env_cfg: EnvConfig,
    policy_cfg: PolicyConfig,
    env_steps: int,
    seed: int = 0,
    disc_steps: int = 10,
    disc_lr: float = 3e-4,
    batch_size: int = 256,
    on_log: Callable[[dict], None] | None = None,
) -> AdversarialResult:
    """Alternate discriminator steps and PPO updates on the discriminator's reward."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    policy = ControlPolicy(env_cfg, policy_cfg, seed)
    e_obs, e_acts, e_next = demos.transitions()
    discriminator.fit_normalizer(e_obs)  # type: ignore[operator]
    opt = torch.optim.Adam(discriminator.parameters(), lr=disc_lr)
    history: list[dict] = []
    while policy.env_steps < env_steps:
        started = time.perf_counter()
        rollout = policy.collect()
        p_obs, p_acts, p_next, valid = rollout_transitions(rollout)
        p_idx = np.flatnonzero(valid)
        for _ in range(disc_steps):
            i, j = rng.integers(len(e_obs), size=batch_size), rng.choice(p_idx, size=batch_size)
            loss = discriminator_loss(
                discriminator.logits(e_obs[i], e_acts[i], e_next[i], policy),  # type: ignore[operator]
                discriminator.logits(p_obs[j], p_acts[j], p_next[j], policy),  # type: ignore[operator]
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
        r = discriminator.reward(p_obs, p_acts, p_next, policy)  # type: ignore[operator]
        stats = policy.update(rollout, r.reshape(rollout.true_rewards.shape))
        record = {
            "env_steps": policy.env_steps,
            "true_return": float(rollout.true_rewards.mean() * env_cfg.horizon),
            "disc_loss": float(loss.detach()),
            "policy_reward": float(r.mean()),
            "entropy": stats["entropy"],
            "steps_per_second": rollout.true_rewards.size / (time.perf_counter() - started),
        }
        history.append(record)
        if on_log:
            on_log(record)
    return AdversarialResult(policy, discriminator, history)


def imitate(
    make_discriminator: Callable[[int, gym.Space], nn.Module],
    demos: Demonstrations,
    env_cfg: EnvConfig,
    policy_cfg: PolicyConfig,
    env_steps: int,
    seed: int = 0,
    **kwargs,
) -> AdversarialResult:
    """`adversarial_imitation` with a fresh discriminator, `make_discriminator(obs_dim,
    action_space)` of the env, built after seeding torch with `seed`."""
    probe = gym.make(env_cfg.id, **env_cfg.kwargs)
    obs_dim = int(np.prod(probe.observation_space.shape or ()))
    torch.manual_seed(seed)
    disc = make_discriminator(obs_dim, probe.action_space)
    return adversarial_imitation(disc, demos, env_cfg, policy_cfg, env_steps, seed, **kwargs)


def gail(
    demos: Demonstrations,
    env_cfg: EnvConfig,
    policy_cfg: PolicyConfig,
    env_steps: int,
    seed: int = 0,
    hidden: int = 64,
    **kwargs,
) -> AdversarialResult:
    """GAIL on `demos` with PPO as the policy optimiser."""
    make = partial(GAILDiscriminator, hidden=hidden)
    return imitate(make, demos, env_cfg, policy_cfg, env_steps, seed, **kwargs)
