import numpy as np
import pytest

from rlhflab.diagnostics.calibration import expected_calibration_error, reliability


def test_calibrated_predictions_have_ece_near_zero():
    rng = np.random.default_rng(0)
    p = rng.uniform(size=200_000)
    y = rng.uniform(size=p.size) < p
    assert expected_calibration_error(p, y) < 0.005


def test_ece_of_a_known_miscalibration_matches_its_closed_form():
    # the event happens with probability p² when p is predicted: in bin [a, b) the mean prediction
    # is
    # (a+b)/2 and the frequency (a²+ab+b²)/3, so ECE = Σ_b 0.1·|(a+b)/2 − (a²+ab+b²)/3|
    rng = np.random.default_rng(1)
    p = rng.uniform(size=400_000)
    y = rng.uniform(size=p.size) < p**2
    edges = np.linspace(0, 1, 11)
    a, b = edges[:-1], edges[1:]
    expected = np.sum(0.1 * np.abs((a + b) / 2 - (a * a + a * b + b * b) / 3))
    assert expected_calibration_error(p, y, bins=10) == pytest.approx(expected, abs=0.003)


def test_overconfidence_shows_in_the_reliability_bins():
    rng = np.random.default_rng(2)
    p = np.full(50_000, 0.9)
    y = rng.uniform(size=p.size) < 0.6
    rel = reliability(p, y, bins=10)
    assert rel.ece == pytest.approx(0.3, abs=0.01)
    assert rel.count[9] == p.size and rel.count[:9].sum() == 0  # 0.9 falls in the last bin [0.9, 1]
    assert rel.frequency[9] == pytest.approx(0.6, abs=0.01) and np.isnan(rel.frequency[0])


def test_mismatched_inputs_are_refused():
    with pytest.raises(ValueError, match="same length"):
        reliability(np.zeros(3), np.zeros(4))
