"""Reward shaping: potential-based (Ng, Harada & Russell 1999) and naive additive.

Potential-based shaping adds
    F(s, a, s') = γ·Φ(s') − Φ(s)                (Φ(s') = 0 when s' is terminal)
to the reward. Along any trajectory the added terms telescope, so every policy's
value changes by −Φ(s₀) only: Q'(s, a) = Q(s, a) − Φ(s), and the optimal policy is
unchanged for any Φ (Ng et al. prove potential-based F is also the only kind of
shaping with this guarantee for all MDPs).

Naive shaping adds a bonus F(s, a, s') = b(s') for reaching states that look like
progress. A bonus that can be collected again by going round a loop is worth more
than the task itself when b/(1 − γ²) > the task's value: the optimal policy becomes
the loop — CoastRunners' boat circling over its targets (`race_mdp`, and
`rlhflab/CoastRunners-v0` whose proxy is exactly such a bonus).

Both come as functions of a tabular MDP (exact analysis with value iteration) and as
gymnasium wrappers for any env; a wrapped env reports the reward it returns (the
shaped one) in `info["proxy_reward"]` and keeps the original in `info["true_reward"]`.
"""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym
import numpy as np

from rlhflab.envs.tabular import TabularMDP


def potential_shaping(mdp: TabularMDP, potential: np.ndarray) -> TabularMDP:
    """The MDP with rewards R(s, a, s') + γ·Φ(s') − Φ(s), Φ(terminal) = 0."""
    phi = np.where(mdp.terminal, 0.0, np.asarray(potential, dtype=np.float64))
    return mdp.with_rewards(mdp.rewards + mdp.gamma * phi[None, None, :] - phi[:, None, None])


def naive_shaping(mdp: TabularMDP, bonus: np.ndarray) -> TabularMDP:
    """The MDP with rewards R(s, a, s') + b(s'): a bonus for every arrival in a state."""
    return mdp.with_rewards(mdp.rewards + np.asarray(bonus, dtype=np.float64)[None, None, :])


class _Shaping(gym.Wrapper):
    def _report(self, reward: float, shaped: float, info: dict):
        info = dict(info)
        info["true_reward"] = info.get("true_reward", reward)
        info["proxy_reward"] = shaped
        return shaped, info


class PotentialShaping(_Shaping):
    """r + γ·Φ(o') − Φ(o) for a potential Φ over observations (Φ = 0 after termination)."""

    def __init__(self, env: gym.Env, potential: Callable[[np.ndarray], float], gamma: float):
        super().__init__(env)
        self.potential, self.gamma = potential, gamma

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self._phi = float(self.potential(obs))
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        phi = 0.0 if terminated else float(self.potential(obs))
        shaped, info = self._report(
            float(reward), float(reward) + self.gamma * phi - self._phi, info
        )
        self._phi = phi
        return obs, shaped, terminated, truncated, info


class NaiveShaping(_Shaping):
    """r + b(o, a, o'): an additive bonus, e.g. for reaching states that look like progress."""

    def __init__(self, env: gym.Env, bonus: Callable[[np.ndarray, object, np.ndarray], float]):
        super().__init__(env)
        self.bonus = bonus

    def reset(self, **kwargs):
        self._obs, info = self.env.reset(**kwargs)
        return self._obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        shaped, info = self._report(
            float(reward), float(reward) + float(self.bonus(self._obs, action, obs)), info
        )
        self._obs = obs
        return obs, shaped, terminated, truncated, info
