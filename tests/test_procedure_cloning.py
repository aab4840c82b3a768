"""The maze expert's search states, and procedure cloning against BC on unseen layouts."""

import gymnasium as gym
import numpy as np

from rlhflab.config import EnvConfig
from rlhflab.demonstrations.bc import ClonedPolicy, fit
from rlhflab.demonstrations.experts import bfs_search, maze_expert, record_maze, search_states
from rlhflab.demonstrations.procedure_cloning import (
    MazeActionNet,
    procedure_pairs,
    train_procedure_cloning,
)
from rlhflab.envs.maze import HELD_OUT_LAYOUTS, Maze
from rlhflab.policy.rollout import evaluate_true_return

# . . #
# . # .      goal G at (2, 2); (1, 2) is reached only through (2, 2)
# . . G
MAZE = Maze(np.array([[0, 0, 1], [0, 1, 0], [0, 0, 0]], bool), (2, 2))


def test_bfs_search_states_by_hand():
    record = bfs_search(MAZE)
    np.testing.assert_array_equal(record.depth, [[4, 5, -1], [3, -1, 1], [2, 1, 0]])
    # moves towards the goal (0 up, 1 down, 2 left, 3 right); the first in that order on ties
    np.testing.assert_array_equal(record.move, [[1, 2, -1], [1, -1, 1], [3, 3, -1]])
    states = search_states(MAZE)
    assert len(states) == 6
    visited, move = states[1]
    np.testing.assert_array_equal(visited, [[0, 0, 0], [0, 0, 1], [0, 1, 1]])
    assert move[1, 2] == 1 and move[2, 1] == 3 and move[0, 0] == -1
    assert all(states[k][0].sum() < states[k + 1][0].sum() for k in range(5))


def test_expert_follows_the_recorded_moves():
    obs = np.stack([MAZE.observe(p) for p in [(0, 1), (0, 0), (1, 2)]])
    np.testing.assert_array_equal(maze_expert(obs), [2, 1, 1])


def test_procedure_pairs_end_with_a_finished_search():
    walls, _, targets = procedure_pairs([bfs_search(MAZE)])
    assert len(walls) == 6 and targets[-1].max() == 0
    assert targets[0][1, 2] == 1 + 1 and targets[0][2, 1] == 1 + 3


def test_pc_generalises_to_unseen_layouts_where_bc_does_not():
    demos = record_maze(48, 50, seed=0, kwargs={"layouts": [0, 10]})
    pc, accuracy = train_procedure_cloning(demos, steps=1500, seed=0)
    obs, acts, _ = demos.transitions()
    bc = ClonedPolicy(MazeActionNet(8), gym.spaces.Discrete(4), obs.shape[1])
    fit(bc, obs, acts, epochs=100, seed=0, normalize=False)
    held_out = EnvConfig(
        id="rlhflab/Maze-v0", horizon=48, num_envs=1, kwargs={"layouts": list(HELD_OUT_LAYOUTS)}
    )
    pc_success = evaluate_true_return(held_out, 30, pc.act)
    bc_success = evaluate_true_return(held_out, 30, bc.act)
    assert accuracy > 0.999
    assert pc_success > 0.9 and pc_success > bc_success + 0.4
