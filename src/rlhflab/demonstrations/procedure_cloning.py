"""Procedure cloning: imitate the expert's computation, not only its actions (Yang, Schuurmans,
Abbeel & Nachum 2022, "Chain of thought imitation with procedure cloning"; seed chapter §6.5.3).

BC learns p(a | o). PC learns the expert's *procedure* — the sequence of intermediate search
states x₀, x₁, …, x_K it computed before acting — and the action as its last step:

    max_θ  Σ_k log p_θ(x_{k+1} | o, x_k)  +  log p_θ(a | o, x_K)

Here the expert is a breadth-first search from the goal (`experts.bfs_search`); search state x_k
is the set of cells within k steps of the goal, each with the move that leads one step closer.
p_θ(x_{k+1} | o, x_k) factorises over cells: a small fully convolutional network reads the walls
and x_k and gives each cell one of five classes — "not new at step k+1", or "new, with move
up/down/left/right". At test time the network runs the search itself from x₀ = {goal} until the
agent's cell is reached, and the action is the move it wrote there (the last factor is a lookup).
Because one search step is local, the learned procedure carries over to layouts never seen;
an action predictor has to learn the whole map from mazes to moves, and does not.

Departures: Yang et al.'s BFS starts at the agent and backtracks from the goal; searching from
the goal instead puts the action at the agent's own cell. They predict the whole procedure with
one autoregressive transformer or convnet; the step network here is applied repeatedly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from rlhflab.demonstrations.dataset import Demonstrations
from rlhflab.demonstrations.experts import SearchStates

NEW_CLASSES = 5  # 0: not new; 1 + a: new, with move a


def _pad(walls: torch.Tensor, visited: torch.Tensor) -> torch.Tensor:
    """[B, 2, n+2, n+2]: outside the grid is wall and never visited."""
    return torch.stack(
        [functional.pad(walls, (1, 1, 1, 1), value=1.0), functional.pad(visited, (1, 1, 1, 1))], 1
    )


class SearchStep(nn.Module):
    """p_θ(x_{k+1} | walls, x_k): per-cell logits over the five classes."""

    def __init__(self, hidden: int = 32):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(2, hidden, 3),
            nn.ReLU(),
            nn.Conv2d(hidden, hidden, 1),
            nn.ReLU(),
            nn.Conv2d(hidden, NEW_CLASSES, 1),
        )

    def forward(self, walls: torch.Tensor, visited: torch.Tensor) -> torch.Tensor:
        return self.net(_pad(walls, visited))  # [B, 5, n, n]


def procedure_pairs(searches: list[SearchStates]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training pairs (walls, x_k visited, class targets for step k+1) from recorded searches."""
    walls, visited, targets = [], [], []
    for s in searches:
        for k in range(s.layers):  # the last pair teaches "nothing new: the search is done"
            nxt = s.depth == k + 1
            walls.append(s.depth < 0)
            visited.append((s.depth >= 0) & (s.depth <= k))
            targets.append(np.where(nxt, s.move + 1, 0))
    return (
        np.array(walls, np.float32),
        np.array(visited, np.float32),
        np.array(targets, np.int64),
    )


def searches_of(demos: Demonstrations) -> list[SearchStates]:
    """The expert's recorded searches (`record_maze` stores them in `extras`), one per maze."""
    if "bfs_depth" not in demos.extras:
        raise ValueError("procedure cloning needs the expert's search states (record_maze)")
    depth, move = demos.extras["bfs_depth"], demos.extras["bfs_move"]
    unique = {d.tobytes() + g.tobytes(): (d, g) for d, g in zip(depth, move)}
    return [SearchStates(d, g) for d, g in unique.values()]


@dataclass
class ProcedureCloning:
    step: SearchStep

    @torch.no_grad()
    def search(self, walls: np.ndarray, goal: tuple[int, int], stop_at: tuple[int, int]):
        """Run the learned procedure on one maze; returns the search states it produced."""
        states = []
        w = torch.as_tensor(walls[None], dtype=torch.float32)
        visited = torch.zeros_like(w)
        visited[0, goal[0], goal[1]] = 1.0
        move = torch.full(w.shape, -1)
        for _ in range(walls.size):
            states.append((visited[0].numpy().astype(bool), move[0].numpy().copy()))
            if visited[0, stop_at[0], stop_at[1]] > 0:
                break
            cls = self.step(w, visited).argmax(1)
            new = (cls > 0) & (visited == 0)
            if not new.any():
                break
            visited = visited + new.float()
            move = torch.where(new, cls - 1, move)
        return states

    def act(self, raw_obs: np.ndarray) -> np.ndarray:
        """Maze observations [E, 3·n·n] → moves (0 where the procedure never reached the agent)."""
        obs = np.asarray(raw_obs)
        n = round(float(np.sqrt(obs.shape[1] / 3)))
        grids = obs.reshape(len(obs), 3, n, n)
        actions = np.zeros(len(obs), np.int64)
        for i, g in enumerate(grids):
            goal = tuple(int(v) for v in np.argwhere(g[1] > 0.5)[0])
            pos = tuple(int(v) for v in np.argwhere(g[2] > 0.5)[0])
            visited, move = self.search(g[0] > 0.5, goal, pos)[-1]  # type: ignore[arg-type]
            actions[i] = max(int(move[pos]), 0) if visited[pos] else 0
        return actions


def train_procedure_cloning(
    demos: Demonstrations,
    hidden: int = 32,
    steps: int = 1500,
    lr: float = 3e-3,
    batch_size: int = 64,
    seed: int = 0,
) -> tuple[ProcedureCloning, float]:
    """Fit the search step by cross-entropy over the cells of recorded search steps (Adam,
    `steps` minibatches drawn with replacement).

    Returns the procedure and its per-cell training accuracy."""
    torch.manual_seed(seed)
    walls, visited, targets = (torch.as_tensor(a) for a in procedure_pairs(searches_of(demos)))
    step = SearchStep(hidden)
    opt = torch.optim.Adam(step.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(len(walls), (batch_size,), generator=gen)
        loss = functional.cross_entropy(step(walls[idx], visited[idx]), targets[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        accuracy = float((step(walls, visited).argmax(1) == targets).float().mean())
    return ProcedureCloning(step), accuracy


class MazeActionNet(nn.Module):
    """BC's network for mazes: convolutions over (walls, goal, agent), then a linear head."""

    def __init__(self, size: int, hidden: int = 32):
        super().__init__()
        self.size = size
        self.conv = nn.Sequential(
            nn.Conv2d(3, hidden, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(hidden, hidden, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(hidden, hidden, 3, padding=1),
            nn.ReLU(),
        )
        self.head = nn.Linear(hidden * size * size, 4)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = self.conv(obs.reshape(-1, 3, self.size, self.size))
        return self.head(x.flatten(1))
