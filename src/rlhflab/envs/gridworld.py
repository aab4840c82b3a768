"""A gridworld with state features and a linear reward, for inverse RL with known dynamics.

Each cell carries one of K colours; the features φ(s) are the colour's one-hot vector and the
true reward is linear in them, r(s) = θ·φ(s) (Ziebart et al. 2008's setting). Actions: up,
down, left, right, stay; with probability `slip` the move is one of the five at random. The
reward is paid for the state the agent acts in: R(s, a, s') = r(s).

`feature_gridworld()` gives the known model (a `TabularMDP` plus features, θ, the start
distribution and the horizon) that MaxEnt IRL needs; `rlhflab/Gridworld-v0` is the same world
as a gymnasium env with a one-hot position observation.
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from rlhflab.envs.tabular import TabularMDP

MOVES = ((-1, 0), (1, 0), (0, -1), (0, 1), (0, 0))  # up, down, left, right, stay
DEFAULT_THETA = (1.0, -1.0, 0.0, 0.3)


@dataclass(frozen=True)
class FeatureGridworld:
    mdp: TabularMDP  # rewards are the true r(s) = θ·φ(s)
    features: np.ndarray  # [S, K] φ(s)
    theta: np.ndarray  # [K] the true reward weights
    initial: np.ndarray  # [S] start distribution
    horizon: int
    size: int

    @property
    def state_reward(self) -> np.ndarray:
        """[S] r(s) = θ·φ(s)."""
        return self.features @ self.theta


def _transitions(size: int, slip: float) -> np.ndarray:
    S, A = size * size, len(MOVES)
    nxt = np.zeros((S, A), np.int64)
    for s in range(S):
        r, c = divmod(s, size)
        for a, (dr, dc) in enumerate(MOVES):
            rr, cc = min(max(r + dr, 0), size - 1), min(max(c + dc, 0), size - 1)
            nxt[s, a] = rr * size + cc
    P = np.zeros((S, A, S))
    for s in range(S):
        for a in range(A):
            P[s, a, nxt[s, a]] += 1.0 - slip
            for b in range(A):
                P[s, a, nxt[s, b]] += slip / A
    return P


def feature_gridworld(
    size: int = 5,
    theta: tuple[float, ...] | np.ndarray = DEFAULT_THETA,
    slip: float = 0.1,
    horizon: int = 12,
    gamma: float = 0.95,
    seed: int = 0,
) -> FeatureGridworld:
    """A size×size world whose cells get colours 0..K−1 at random (seeded), K = len(theta)."""
    theta = np.asarray(theta, dtype=np.float64)
    rng = np.random.default_rng(seed)
    S, K = size * size, len(theta)
    colours = rng.integers(K, size=S)
    colours[:K] = np.arange(K)  # every colour appears
    colours = rng.permutation(colours)
    features = np.eye(K)[colours]
    P = _transitions(size, slip)
    R = np.broadcast_to((features @ theta)[:, None, None], P.shape).copy()
    mdp = TabularMDP(P, R, gamma, np.zeros(S, dtype=bool))
    return FeatureGridworld(mdp, features, theta, np.full(S, 1.0 / S), horizon, size)


class GridworldEnv(gym.Env):
    """`feature_gridworld` as a gymnasium env: one-hot position in, r(s) = θ·φ(s) out."""

    metadata = {"render_modes": []}  # noqa: RUF012 - gymnasium's own attribute

    def __init__(self, size: int = 5, slip: float = 0.1, seed: int = 0, horizon: int = 12):
        self.world = feature_gridworld(size, slip=slip, seed=seed, horizon=horizon)
        S = size * size
        self.observation_space = gym.spaces.Box(0.0, 1.0, (S,), np.float32)
        self.action_space = gym.spaces.Discrete(len(MOVES))
        self.state = 0

    def _obs(self) -> np.ndarray:
        obs = np.zeros(len(self.world.initial), np.float32)
        obs[self.state] = 1.0
        return obs

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.state = int(self.np_random.choice(len(self.world.initial), p=self.world.initial))
        return self._obs(), {}

    def step(self, action):
        reward = float(self.world.state_reward[self.state])
        p = self.world.mdp.transitions[self.state, int(action)]
        self.state = int(self.np_random.choice(len(p), p=p))
        return self._obs(), reward, False, False, {}
