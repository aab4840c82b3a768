"""Active query selection: BALD information gain and a diverse batch (feedback/selection.py)."""

import numpy as np
import pytest

from rlhflab.feedback.selection import information_gain, select_pairs
from rlhflab.types import Segment


def seg(x: float, k: int = 3) -> Segment:
    obs = np.full((k, 2), x, np.float32)
    return Segment(obs, np.zeros(k, np.int64), np.zeros(k, np.float32))


def test_information_gain_matches_hand_computed_bald():
    p = np.array([[0.9, 0.5, 0.99], [0.6, 0.5, 0.01]])  # members × pairs
    h = lambda q: -(q * np.log2(q) + (1 - q) * np.log2(1 - q))  # noqa: E731
    expected = [h(0.75) - (h(0.9) + h(0.6)) / 2, 0.0, 1.0 - h(0.99)]
    assert information_gain(p) == pytest.approx(expected, abs=1e-9)
    # members unsure together teach nothing; members sure but opposed teach the most
    assert np.argmax(information_gain(p)) == 2 and information_gain(p)[1] == pytest.approx(0)


def test_diverse_batch_spreads_over_behaviour_that_information_gain_piles_on():
    """Candidates near x = 0 are the most informative, but many alike; the diverse batch keeps
    one of them and then pairs unlike it."""
    segments = [seg(x) for x in [0.0, 0.01, 0.02, 0.03, 0.04, 0.05, 3.0, -3.0, 5.0, -5.0]]

    def preferences(pairs):  # members disagree most about pairs whose segments are near 0
        near = np.array([max(abs(a.obs[0, 0]), abs(b.obs[0, 0])) < 0.1 for a, b in pairs])
        return np.stack([np.where(near, 0.95, 0.7), np.where(near, 0.05, 0.4)])

    def spread(pairs):
        return np.ptp([s.obs[0, 0] for pair in pairs for s in pair])

    rng = np.random.default_rng(0)
    k = 5
    ig = select_pairs(
        segments, 2, "information_gain", np.random.default_rng(0), k, None, preferences
    )
    div = select_pairs(segments, 2, "diverse", np.random.default_rng(0), k, None, preferences)
    assert all(max(abs(a.obs[0, 0]), abs(b.obs[0, 0])) < 0.1 for a, b in ig)
    assert spread(div) > spread(ig) + 1
    with pytest.raises(ValueError, match="unknown query selection 'psychic'"):
        select_pairs(segments, 2, "psychic", rng)
