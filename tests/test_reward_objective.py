"""Conservative reward-model objectives (Coste et al. 2023): mean − λ·std and the worst member."""

import numpy as np
import pytest
import torch
from gymnasium import spaces
from test_reward_model import comparisons, random_segment

from rlhflab.config import RewardConfig
from rlhflab.reward.model import RewardEnsemble


@pytest.fixture(scope="module")
def fitted():
    model = RewardEnsemble(3, spaces.Discrete(2), RewardConfig(ensemble=3, max_epochs=10), seed=0)
    data = comparisons(150)
    model.fit(data)
    return model, data


def test_members_are_standardised_over_the_labelled_steps(fitted):
    model, data = fitted
    obs = np.concatenate([s.obs for c in data for s in (c.left, c.right)])
    actions = np.concatenate([s.actions for c in data for s in (c.left, c.right)])
    members = model._member_rewards(model.features(obs, actions)).detach()
    z = (members - model.member_scale[0]) / model.member_scale[1]
    assert (
        z.mean().abs() < 0.3 and 0.7 < z.std() < 1.3
    )  # the scale comes from the training split, a subset of these steps


def test_objectives_order_mean_conservative_worst(fitted):
    model, _ = fitted
    seg = random_segment(np.random.default_rng(5), k=200)
    members = model._member_rewards(model.features(seg.obs, seg.actions)).detach()
    z = ((members - model.member_scale[0]) / model.member_scale[1]).numpy()
    cfg = model.cfg
    try:
        assert np.allclose(
            model.predict(seg.obs, seg.actions), members.mean(0).numpy(), atol=1e-6
        )  # default: the plain mean
        cfg.objective, cfg.conservative_lambda = "conservative", 0.0
        np.testing.assert_allclose(model.predict(seg.obs, seg.actions), z.mean(0), atol=1e-5)
        cfg.conservative_lambda = 2.0
        conservative = model.predict(seg.obs, seg.actions)
        np.testing.assert_allclose(conservative, z.mean(0) - 2.0 * z.std(0), atol=1e-5)
        cfg.objective = "worst"
        worst = model.predict(seg.obs, seg.actions)
        np.testing.assert_allclose(worst, z.min(0), atol=1e-5)
        assert np.all(worst <= z.mean(0) + 1e-6) and np.all(conservative <= z.mean(0) + 1e-6)
        assert model.predict(seg.obs[:4].reshape(2, 2, 3), seg.actions[:4].reshape(2, 2)).shape == (
            2,
            2,
        )  # any batch shape
    finally:
        cfg.objective, cfg.conservative_lambda = "mean", 1.0


def test_the_scale_survives_a_checkpoint(fitted):
    model, _ = fitted
    other = RewardEnsemble(3, spaces.Discrete(2), RewardConfig(ensemble=3), seed=1)
    other.load_state_dict(model.state_dict())
    assert torch.equal(other.member_scale, model.member_scale)


def test_an_unknown_objective_is_refused_by_name():
    with pytest.raises(ValueError, match="objective"):
        RewardConfig(objective="median")
