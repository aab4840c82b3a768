"""Adversarial inverse RL (Fu, Luo & Levine 2018): GAIL whose discriminator has the form of a
reward plus potential shaping, so that a reward can be read out of it.

    f_{θ,φ}(s, a, s') = g_θ(s) + γ·h_φ(s') − h_φ(s)
    D(s, a, s') = exp f / (exp f + π(a|s)),   i.e. logit D = f(s, a, s') − log π(a|s)
The discriminator minimises GAIL's cross-entropy (`gail.discriminator_loss`); the policy
maximises log D − log(1 − D) = f − log π, an entropy-regularised RL objective on f. At the
optimum f = A*(s, a), and g recovers the expert's reward up to a constant when the reward is
state-only and the dynamics deterministic ("disentangled"); h is then the optimal value.
`AIRLDiscriminator.learned_reward` is g, the reward that transfers: `bench/demonstrations.py`
trains a fresh PPO policy on it and reports that policy's true return.

Departures: the paper uses TRPO; this uses rlhflab's PPO. Where a rollout's next observation is
unknown (the last step of an episode), h(s') is taken as h(s).
"""

from __future__ import annotations

from functools import partial

import gymnasium as gym
import numpy as np
import torch

from rlhflab.config import EnvConfig, PolicyConfig
from rlhflab.demonstrations.bc import ObsNormalized, mlp
from rlhflab.demonstrations.dataset import Demonstrations
from rlhflab.demonstrations.gail import AdversarialResult, imitate
from rlhflab.policy.control import ControlPolicy


def shaped_logit(
    g_s: torch.Tensor, h_s: torch.Tensor, h_next: torch.Tensor, log_pi: torch.Tensor, gamma: float
) -> torch.Tensor:
    """logit D = f − log π with f = g(s) + γ·h(s') − h(s)."""
    return g_s + gamma * h_next - h_s - log_pi


class AIRLDiscriminator(ObsNormalized):
    def __init__(self, obs_dim: int, action_space: gym.Space, gamma: float, hidden: int = 64):
        super().__init__()
        self.action_space, self.gamma = action_space, gamma
        self.g = mlp(obs_dim, hidden, 1)  # the reward g_θ(s)
        self.h = mlp(obs_dim, hidden, 1)  # the shaping potential h_φ(s)
        self.register_normalizer(obs_dim)

    def _norm(self, obs: np.ndarray) -> torch.Tensor:
        return self.normalize(torch.as_tensor(np.asarray(obs, np.float32)))

    def f(self, obs, next_obs) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(g(s), h(s), h(s')) for a batch."""
        s, s2 = self._norm(obs), self._norm(next_obs)
        return self.g(s).squeeze(-1), self.h(s).squeeze(-1), self.h(s2).squeeze(-1)

    def logits(self, obs, acts, next_obs, policy: ControlPolicy) -> torch.Tensor:
        g, h, h2 = self.f(obs, next_obs)
        with torch.no_grad():
            log_pi = _log_prob(policy, obs, acts)
        return shaped_logit(g, h, h2, log_pi, self.gamma)

    @torch.no_grad()
    def reward(self, obs, acts, next_obs, policy: ControlPolicy) -> np.ndarray:
        """The policy's reward log D − log(1 − D) = f − log π."""
        return self.logits(obs, acts, next_obs, policy).numpy()

    @torch.no_grad()
    def learned_reward(self, obs: np.ndarray) -> np.ndarray:
        """g(s), the disentangled reward."""
        return self.g(self._norm(obs)).squeeze(-1).numpy()


def _log_prob(policy: ControlPolicy, obs: np.ndarray, acts: np.ndarray) -> torch.Tensor:
    dist = policy.distribution(np.asarray(obs, np.float32))
    a = torch.as_tensor(np.asarray(acts))
    if policy.net.discrete:
        return dist.log_prob(a.long())
    return dist.log_prob(a.float()).sum(-1)


def airl(
    demos: Demonstrations,
    env_cfg: EnvConfig,
    policy_cfg: PolicyConfig,
    env_steps: int,
    seed: int = 0,
    hidden: int = 64,
    **kwargs,
) -> AdversarialResult:
    """AIRL on `demos` with PPO as the policy optimiser; the result's discriminator holds g."""
    make = partial(AIRLDiscriminator, gamma=policy_cfg.gamma, hidden=hidden)
    return imitate(make, demos, env_cfg, policy_cfg, env_steps, seed, **kwargs)
