"""What every misspecification environment shares.

Each env is a small gridworld with a flat `Box` observation (one-hot positions and
flags) and `Discrete` actions. It returns a hand-written *proxy* reward and reports,
every step, `info["proxy_reward"]` and the hidden `info["true_reward"]` — the designer's
real intention — so a run can always show the gold score beside the proxy it
optimised (some envs add channels, e.g. `info["apparent_reward"]`). Each env also
scripts two behaviours, `honest` and `hack`, used by the tests and as reference rows
in `bench/misspecification.py`.
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet

import gymnasium as gym
import numpy as np
from gymnasium import spaces


def one_hot(index: int, n: int) -> np.ndarray:
    out = np.zeros(n, dtype=np.float32)
    out[index] = 1.0
    return out


def require(ok: bool, env: str, field: str, message: str, value) -> None:
    """Refuse a bad constructor argument with a message that names it."""
    if not ok:
        raise ValueError(f"{env}: {field} {message}, got {value!r}")


MOVES = ((-1, 0), (1, 0), (0, -1), (0, 1), (0, 0))  # grid actions: up, down, left, right, stay


def moved(pos: tuple[int, int], action: int, shape: tuple[int, int]) -> tuple[int, int]:
    """The grid cell `action` (an index into MOVES) leads to from `pos`, kept inside the grid."""
    dr, dc = MOVES[int(action)]
    return (
        int(np.clip(pos[0] + dr, 0, shape[0] - 1)),
        int(np.clip(pos[1] + dc, 0, shape[1] - 1)),
    )


def step_towards(
    pos: tuple[int, int],
    goal: tuple[int, int],
    shape: tuple[int, int],
    blocked: AbstractSet = frozenset(),
) -> tuple[int, int]:
    """The first move (d_row, d_col) of a shortest 4-connected path avoiding `blocked`; (0, 0) at
    the goal."""
    if pos == goal:
        return (0, 0)
    frontier, first = [goal], {goal: (0, 0)}  # search backwards from the goal
    while frontier:
        nxt = []
        for r, c in frontier:
            for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1)):
                cell = (r + dr, c + dc)
                if (
                    0 <= cell[0] < shape[0]
                    and 0 <= cell[1] < shape[1]
                    and cell not in first
                    and cell not in blocked
                ):
                    first[cell] = (-dr, -dc)
                    if cell == pos:
                        return first[cell]
                    nxt.append(cell)
        frontier = nxt
    return (0, 0)


class MisspecEnv(gym.Env):
    """Base class: `reward` is the proxy; `info` carries `proxy_reward`, `true_reward` and any other
    channel."""

    metadata = {"render_modes": ["ansi"]}  # noqa: RUF012 - gymnasium declares it per instance
    behaviours = ("honest", "hack")

    def __init__(self, obs_dim: int, n_actions: int, render_mode: str | None = None):
        self.observation_space = spaces.Box(0.0, 1.0, (obs_dim,), np.float32)
        self.action_space = spaces.Discrete(n_actions)
        self.render_mode = render_mode

    def _obs(self) -> np.ndarray:
        raise NotImplementedError

    def _result(self, proxy: float, true: float, terminated: bool = False, **extra):
        """The step's return value: the proxy as the reward, both (and any extra channels) in
        info."""
        info = {"proxy_reward": float(proxy), "true_reward": float(true), **extra}
        return self._obs(), float(proxy), terminated, False, info

    def scripted_action(self, obs: np.ndarray, behaviour: str) -> int:
        """The action a scripted `honest` or `hack` policy takes, decided from the observation
        alone."""
        if behaviour not in self.behaviours:
            raise ValueError(
                f"behaviour must be one of {', '.join(self.behaviours)}, got {behaviour!r}"
            )
        return int(getattr(self, f"_{behaviour}")(np.asarray(obs)))

    def render(self) -> str:
        return "\n".join(self._rows()) + "\n"

    def _rows(self) -> list[str]:
        raise NotImplementedError
