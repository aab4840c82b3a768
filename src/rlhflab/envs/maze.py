"""Grid mazes for procedure cloning: random layouts, a goal, and an agent that walks to it.

A layout is an n×n grid of walls (outside the grid counts as wall) and one goal cell; the
free cells are the goal's connected component (cells cut off from the goal become walls),
so every start can reach the goal. Layout `i` is drawn from `numpy.random.default_rng(i)`:
training layouts and held-out layouts are disjoint ranges of ids.

`rlhflab/Maze-v0` shows the maze as three n×n channels, flattened: walls, goal, agent.
Actions: up, down, left, right (a move into a wall stays put). Reward 1 on reaching the goal,
which ends the episode. Each reset draws a layout id uniformly from `layouts=[lo, hi)` and a
start uniformly from the free cells other than the goal.
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np

MOVES = ((-1, 0), (1, 0), (0, -1), (0, 1))  # up, down, left, right
ACTION_NAMES = ("up", "down", "left", "right")
TRAIN_LAYOUTS = (0, 10_000)
HELD_OUT_LAYOUTS = (1_000_000, 1_010_000)


@dataclass(frozen=True)
class Maze:
    walls: np.ndarray  # [n, n] bool
    goal: tuple[int, int]

    @property
    def size(self) -> int:
        return int(self.walls.shape[0])

    def free(self, r: int, c: int) -> bool:
        n = self.size
        return 0 <= r < n and 0 <= c < n and not self.walls[r, c]

    def step(self, pos: tuple[int, int], action: int) -> tuple[int, int]:
        dr, dc = MOVES[int(action)]
        nxt = (pos[0] + dr, pos[1] + dc)
        return nxt if self.free(*nxt) else pos

    def observe(self, pos: tuple[int, int]) -> np.ndarray:
        """[3·n·n] float32: walls, goal, agent channels, flattened."""
        n = self.size
        obs = np.zeros((3, n, n), np.float32)
        obs[0] = self.walls
        obs[1][self.goal] = 1.0
        obs[2][pos] = 1.0
        return obs.reshape(-1)

    def free_cells(self) -> list[tuple[int, int]]:
        return [(int(r), int(c)) for r, c in np.argwhere(~self.walls)]


def _component(walls: np.ndarray, start: tuple[int, int]) -> np.ndarray:
    n = walls.shape[0]
    seen = np.zeros_like(walls)
    stack = [start]
    seen[start] = True
    while stack:
        r, c = stack.pop()
        for dr, dc in MOVES:
            q = (r + dr, c + dc)
            if 0 <= q[0] < n and 0 <= q[1] < n and not walls[q] and not seen[q]:
                seen[q] = True
                stack.append(q)
    return seen


def make_maze(layout: int, size: int = 8, wall_density: float = 0.3) -> Maze:
    """Layout number `layout`: random walls, a random goal, unreachable cells walled in."""
    rng = np.random.default_rng(layout)
    walls = rng.random((size, size)) < wall_density
    goal = (int(rng.integers(size)), int(rng.integers(size)))
    walls[goal] = False
    walls = ~_component(walls, goal)
    if (~walls).sum() < 4:  # too small to be interesting: draw again from the next stream
        return make_maze(layout + 7_919_000, size, wall_density)
    return Maze(walls, goal)


def observation_maze(obs: np.ndarray) -> tuple[Maze, tuple[int, int]]:
    """The maze and agent position an observation shows."""
    n = round(float(np.sqrt(obs.size / 3)))
    grid = np.asarray(obs).reshape(3, n, n)
    goal, pos = np.argwhere(grid[1] > 0.5)[0], np.argwhere(grid[2] > 0.5)[0]
    return Maze(grid[0] > 0.5, (int(goal[0]), int(goal[1]))), (int(pos[0]), int(pos[1]))


class MazeEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 8}  # noqa: RUF012 - gymnasium.s own attribute

    def __init__(
        self,
        size: int = 8,
        wall_density: float = 0.3,
        layouts: tuple[int, int] | list[int] = TRAIN_LAYOUTS,
        render_mode: str | None = None,
    ):
        lo, hi = int(layouts[0]), int(layouts[1])
        if not 0 <= lo < hi:
            raise ValueError(f"Maze: layouts must be [lo, hi) with 0 ≤ lo < hi, got {layouts}")
        self.size, self.wall_density, self.layouts = size, wall_density, (lo, hi)
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Box(0.0, 1.0, (3 * size * size,), np.float32)
        self.action_space = gym.spaces.Discrete(4)
        self.maze = make_maze(lo, size, wall_density)
        self.pos = self.maze.goal

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        layout = (options or {}).get("layout")
        if layout is None:
            layout = int(self.np_random.integers(*self.layouts))
        self.maze = make_maze(int(layout), self.size, self.wall_density)
        starts = [p for p in self.maze.free_cells() if p != self.maze.goal]
        self.pos = starts[int(self.np_random.integers(len(starts)))]
        return self.maze.observe(self.pos), {"layout": int(layout)}

    def step(self, action):
        self.pos = self.maze.step(self.pos, int(action))
        done = self.pos == self.maze.goal
        return self.maze.observe(self.pos), float(done), done, False, {}

    def render(self):
        n = self.size
        img = np.full((n, n, 3), 255, np.uint8)
        img[self.maze.walls] = (40, 40, 40)
        img[self.maze.goal] = (40, 180, 40)
        img[self.pos] = (200, 40, 40)
        return np.kron(img, np.ones((16, 16, 1), np.uint8))
