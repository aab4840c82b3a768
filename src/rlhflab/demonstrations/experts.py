"""Scripted experts that demonstrate, and the recorder that turns their play into trajectories.

- CartPole: a linear state-feedback controller, push right when k·(x, ẋ, θ, θ̇) > 0 with
  k = (0.1, 0.2, 1, 1); it holds the pole for 1000 steps from every start we tried.
- Pendulum: energy pumping (u = 2·sign(θ̇) while the energy E = ½θ̇² − 15(1 − cos θ) is below
  the upright's 0) and a PD controller u = −(10θ + 2θ̇) once cos θ > 0.85.
- Maze: breadth-first search *from the goal*, which records its search states: the depth map
  (the BFS layer each cell joined) and, for each cell, the move towards the cell that found it
  (up, down, left, right, the first in that order whose neighbour is one layer closer). The
  expert's action at the agent's cell is that move: a shortest path to the goal. Search state k
  is (cells of depth ≤ k, their moves); `search_states` lists them. Procedure cloning learns the
  step k → k+1 from these.

Every expert is a batch policy: raw observations [E, D] → env actions [E] or [E, A].
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from rlhflab.demonstrations.dataset import Demonstrations, Trajectory
from rlhflab.envs.maze import MOVES, Maze, observation_maze
from rlhflab.envs.wrappers import make_env

Act = Callable[[np.ndarray], np.ndarray]
CARTPOLE_GAINS = np.array([0.1, 0.2, 1.0, 1.0])


def cartpole_expert(obs: np.ndarray) -> np.ndarray:
    return (np.asarray(obs) @ CARTPOLE_GAINS > 0).astype(np.int64)


def pendulum_expert(obs: np.ndarray) -> np.ndarray:
    cos, sin, w = np.asarray(obs, dtype=np.float64).T
    theta = np.arctan2(sin, cos)
    energy = 0.5 * w**2 - 15.0 * (1.0 - cos)
    pump = np.where(energy < 0, 2.0 * np.where(w == 0, 1.0, np.sign(w)), 0.0)
    u = np.where(cos > 0.85, -(10.0 * theta + 2.0 * w), pump)
    return np.clip(u, -2.0, 2.0)[:, None].astype(np.float32)


@dataclass(frozen=True)
class SearchStates:
    """The whole record of one BFS from the goal: every search state is a threshold of it."""

    depth: np.ndarray  # [n, n] int: BFS layer at which a cell was reached; −1 never (a wall)
    move: np.ndarray  # [n, n] int: the move towards the goal from each reached cell; −1 none

    def state(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Search state k: (visited [n, n] bool, move [n, n] int with −1 where unvisited)."""
        visited = (self.depth >= 0) & (self.depth <= k)
        return visited, np.where(visited, self.move, -1)

    @property
    def layers(self) -> int:
        return int(self.depth.max()) + 1


def bfs_search(maze: Maze) -> SearchStates:
    n = maze.size
    depth = np.full((n, n), -1, np.int64)
    depth[maze.goal] = 0
    queue = deque([maze.goal])
    while queue:
        r, c = queue.popleft()
        for dr, dc in MOVES:
            q = (r + dr, c + dc)
            if maze.free(*q) and depth[q] < 0:
                depth[q] = depth[r, c] + 1
                queue.append(q)
    move = np.full((n, n), -1, np.int64)
    for r, c in zip(*np.nonzero(depth > 0)):
        for a, (dr, dc) in enumerate(MOVES):  # the first move (in action order) one layer closer
            q = (r + dr, c + dc)
            if maze.free(*q) and depth[q] == depth[r, c] - 1:
                move[r, c] = a
                break
    return SearchStates(depth, move)


def search_states(maze: Maze) -> list[tuple[np.ndarray, np.ndarray]]:
    """The BFS's search states in order, k = 0 (the goal alone) to the last layer."""
    record = bfs_search(maze)
    return [record.state(k) for k in range(record.layers)]


def maze_expert(obs: np.ndarray) -> np.ndarray:
    actions = []
    for o in np.asarray(obs):
        maze, pos = observation_maze(o)
        move = bfs_search(maze).move[pos]
        actions.append(max(int(move), 0))  # at the goal any action will do
    return np.array(actions, np.int64)


EXPERTS: dict[str, Act] = {
    "CartPole-v1": cartpole_expert,
    "Pendulum-v1": pendulum_expert,
    "rlhflab/Maze-v0": maze_expert,
}


def scripted_expert(env_id: str) -> Act:
    if env_id not in EXPERTS:
        raise ValueError(
            f"no scripted expert for {env_id} (there are: {', '.join(EXPERTS)}); "
            "give demonstrations.file instead"
        )
    return EXPERTS[env_id]


def record(
    env_id: str,
    horizon: int,
    episodes: int,
    act: Act,
    seed: int = 0,
    kwargs: dict | None = None,
    source: str = "",
) -> Demonstrations:
    """Play `episodes` episodes with `act` and keep them as trajectories (with true rewards).

    An episode ends when the env terminates (terminal=True) or after `horizon` steps."""
    env = make_env(env_id, horizon, kwargs).env  # type: ignore[attr-defined]  # real ends
    trajs = []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        trajs.append(_play(env, obs, act, horizon))
    env.close()
    return Demonstrations(trajs, env_id, source or "policy")


def _play(env: gym.Env, obs: np.ndarray, act: Act, horizon: int) -> Trajectory:
    all_obs, acts, rews, terminal = [obs], [], [], False
    for _ in range(horizon):
        a = act(np.asarray(obs, np.float32)[None])[0]
        obs, reward, terminated, truncated, _ = env.step(a)
        all_obs.append(obs)
        acts.append(a)
        rews.append(reward)
        if terminated or truncated:
            terminal = bool(terminated)
            break
    return Trajectory(
        np.asarray(all_obs, np.float32),
        np.asarray(acts),
        None,
        terminal,
        np.asarray(rews, np.float32),
    )


def record_maze(
    horizon: int, episodes: int, seed: int = 0, kwargs: dict | None = None
) -> Demonstrations:
    """Maze demonstrations with the expert's search states: `extras['bfs_depth']` and
    `extras['bfs_move']` hold, per trajectory, the BFS record of its maze ([n_traj, n, n])."""
    demos = record("rlhflab/Maze-v0", horizon, episodes, maze_expert, seed, kwargs, "scripted")
    searches = [bfs_search(observation_maze(t.obs[0])[0]) for t in demos.trajectories]
    demos.extras["bfs_depth"] = np.stack([s.depth for s in searches])
    demos.extras["bfs_move"] = np.stack([s.move for s in searches])
    return demos
