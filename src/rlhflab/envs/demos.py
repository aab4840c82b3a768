"""Gymnasium ids of the environments used to learn from demonstrations."""

from __future__ import annotations

import gymnasium as gym

ENVS = {
    "rlhflab/Maze-v0": "rlhflab.envs.maze:MazeEnv",
    "rlhflab/Gridworld-v0": "rlhflab.envs.gridworld:GridworldEnv",
}


def register() -> None:
    for env_id, entry_point in ENVS.items():
        if env_id not in gym.registry:
            gym.register(env_id, entry_point=entry_point)
