"""MaxEnt IRL on a gridworld with known dynamics, and the identifiability table."""

import numpy as np

from rlhflab.demonstrations.maxent_irl import (
    maxent_irl,
    sample_demonstrations,
    soft_policies,
    visitation,
)
from rlhflab.diagnostics.identifiability import candidate_rewards, identifiability
from rlhflab.envs.gridworld import feature_gridworld


def test_passes_are_distributions():
    world = feature_gridworld(seed=0)
    pi = soft_policies(world.mdp.transitions, world.mdp.rewards, world.horizon)
    np.testing.assert_allclose(pi.sum(-1), 1.0)
    D = visitation(world.mdp.transitions, pi, world.initial)
    np.testing.assert_allclose(D.sum(-1), 1.0)


def test_maxent_irl_recovers_the_reward_up_to_shaping():
    world = feature_gridworld(seed=0)
    demos = sample_demonstrations(world, 200, seed=1)
    result = maxent_irl(world, demos)
    rows = {
        r["reward"]: r
        for r in identifiability(world, demos, candidate_rewards(world, demos, result.state_reward))
    }
    assert rows["maxent_irl"]["epic"] < 0.05
    assert rows["maxent_irl"]["normalised"] > 0.95
    # weights are identified up to a constant (the colour features sum to one)
    np.testing.assert_allclose(
        result.theta - result.theta.mean(), world.theta - world.theta.mean(), atol=0.3
    )


def test_rewards_that_explain_the_same_demonstrations():
    world = feature_gridworld(seed=0)
    demos = sample_demonstrations(world, 50, seed=2)
    rewards = candidate_rewards(world, demos, world.state_reward)
    rows = {r["reward"]: r for r in identifiability(world, demos, rewards)}
    assert rows["true_shaped"]["epic"] < 1e-6  # shaping: a different reward, the same class
    assert rows["true_shaped"]["normalised"] > 0.999
    assert rows["zero"]["demos_optimal"] == 1.0  # every policy is optimal for the zero reward
    assert np.isnan(rows["zero"]["epic"]) and rows["zero"]["normalised"] < 0.05
    assert rows["demonstrated_states"]["epic"] > 0.2
