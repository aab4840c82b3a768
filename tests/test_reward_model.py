from dataclasses import replace

import numpy as np
import torch
from gymnasium import spaces

from rlhflab.config import AnnotatorConfig, RewardConfig
from rlhflab.feedback.selection import select_pairs
from rlhflab.feedback.synthetic import SyntheticAnnotator
from rlhflab.reward.background import BackgroundFitter
from rlhflab.reward.model import RewardEnsemble, is_validation
from rlhflab.types import Comparison, Judgement, Segment

ACTIONS = spaces.Discrete(2)


def random_segment(rng, k=10):
    obs = rng.normal(size=(k, 3)).astype(np.float32)
    actions = rng.integers(2, size=k)
    true = obs[:, 0] + 0.5 * (
        actions == 1
    )  # true reward: first coordinate, plus a bonus for action 1
    return Segment(obs, actions, true.astype(np.float32))


def comparisons(n, seed=0, label_fn=None):
    rng = np.random.default_rng(seed)
    ann = SyntheticAnnotator(AnnotatorConfig(temperature=0.5, error_rate=0.1), seed=seed)
    out = []
    for i in range(n):
        a, b = random_segment(rng), random_segment(rng)
        out.append(Comparison(i, a, b, label_fn(i) if label_fn else ann.judge(a, b)))
    return out


def test_ensemble_learns_the_true_reward_from_noisy_preferences():
    model = RewardEnsemble(
        3, ACTIONS, RewardConfig(ensemble=3, max_epochs=40, use_actions=True), seed=0
    )
    metrics = model.fit(comparisons(400))
    assert metrics["rm_val_acc"] > 0.8
    # learned reward correlates with the true reward on fresh states
    rng = np.random.default_rng(99)
    seg = random_segment(rng, k=500)
    r_hat = model.predict(seg.obs, seg.actions)
    assert np.corrcoef(r_hat, seg.judged_rewards)[0, 1] > 0.8


def test_cant_tell_is_excluded_and_the_split_is_stable():
    data = comparisons(50, label_fn=lambda i: Judgement.CANT_TELL)
    model = RewardEnsemble(3, ACTIONS, RewardConfig(), seed=0)
    assert model.fit(data) == {}  # nothing usable: no fit at all
    assert model.fits == 0
    held_out = [i for i in range(1000) if is_validation(i, 0.368)]
    assert 0.33 < len(held_out) / 1000 < 0.41
    assert held_out == [i for i in range(1000) if is_validation(i, 0.368)]


def test_disagreement_selection_keeps_the_most_disputed_pairs():
    rng = np.random.default_rng(0)
    segs = [random_segment(rng) for _ in range(20)]
    score = {
        id(s): i for i, s in enumerate(segs)
    }  # a fake disagreement: larger index, more disputed
    picked = select_pairs(
        segs,
        5,
        "disagreement",
        rng,
        k=4,
        disagreement=lambda pairs: np.array([score[id(a)] + score[id(b)] for a, b in pairs], float),
    )
    assert len(picked) == 5
    picked_scores = sorted(score[id(a)] + score[id(b)] for a, b in picked)
    assert picked_scores[0] >= 19  # top 5 of 20 random candidate pairs all have a high summed index
    assert all(a is not b for a, b in picked)


def test_checkpoint_round_trip_reproduces_predictions():
    model = RewardEnsemble(3, ACTIONS, RewardConfig(max_epochs=5), seed=0)
    model.fit(comparisons(100))
    other = RewardEnsemble(3, ACTIONS, RewardConfig(max_epochs=5), seed=123)
    other.load_state_dict(model.state_dict())
    seg = random_segment(np.random.default_rng(1))
    np.testing.assert_allclose(
        model.predict(seg.obs, seg.actions), other.predict(seg.obs, seg.actions)
    )


def _judged(data):  # comparisons as the store returns them: with increasing judgement ids
    return [replace(c, judgement_id=i + 1) for i, c in enumerate(data)]


def test_a_background_fit_gives_the_model_an_in_line_fit_would():
    data = _judged(comparisons(120))
    cfg = RewardConfig(ensemble=2, max_epochs=5)
    in_line, background = (RewardEnsemble(3, ACTIONS, cfg, seed=0) for _ in range(2))
    fitter = BackgroundFitter(background, 3, ACTIONS, seed=0)
    assert fitter.pool is not None  # a worker process, not an in-line fallback
    try:
        for n in (60, 90, 120):  # warm-started refits: only the new comparisons are sent
            expected = in_line.fit(data[:n])
            fitter.submit(data[:n])
            got = fitter.collect()
            assert got == expected
        assert fitter.sent == [c.judgement_id for c in data]
        relabelled = [replace(data[0], judgement_id=999), *data[1:]]  # the worker starts over
        fitter.submit(relabelled)
        assert fitter.collect() == in_line.fit(relabelled)
    finally:
        fitter.close()
    for a, b in zip(in_line.net.parameters(), background.net.parameters()):
        assert torch.equal(a, b)
    seg = random_segment(np.random.default_rng(1), k=50)
    assert np.array_equal(
        in_line.predict(seg.obs, seg.actions), background.predict(seg.obs, seg.actions)
    )
