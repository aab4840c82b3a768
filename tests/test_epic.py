import numpy as np
import pytest

from rlhflab.diagnostics.epic import canonicalize, epic_distance, pearson_distance

GAMMA = 0.9


def reward(s, a, s2):
    return np.sin(s[:, 0]) + s[:, 1] * a[:, 0] + 0.5 * s2[:, 2] ** 2


def potential(s):
    return np.cos(3 * s[:, 0]) + s[:, 1] ** 3 - 2 * s[:, 2]


def shaped(s, a, s2):
    """A positive rescaling of `reward`, plus potential shaping and a constant: the same optimal
    policies."""
    return 2.5 * reward(s, a, s2) + GAMMA * potential(s2) - potential(s) + 7.0


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    s = rng.normal(size=(500, 3))
    a = rng.normal(size=(500, 1))
    s2 = s + 0.3 * rng.normal(size=s.shape)
    return s, a, s2, s[:80], rng.normal(size=(16, 1))


def test_epic_is_zero_for_a_shaped_and_rescaled_copy(data):
    assert epic_distance(reward, shaped, *data, GAMMA) == pytest.approx(0.0, abs=1e-6)
    # without canonicalisation the shaping shows: the raw rewards are far from perfectly correlated
    s, a, s2, _, _ = data
    assert pearson_distance(reward(s, a, s2), shaped(s, a, s2)) > 0.2


def test_epic_is_clearly_positive_for_a_different_reward(data):
    def different(s, a, s2):
        return s[:, 2] - a[:, 0] ** 2

    assert epic_distance(reward, different, *data, GAMMA) > 0.4
    assert epic_distance(reward, lambda *x: -reward(*x), *data, GAMMA) == pytest.approx(
        1.0, abs=1e-6
    )


def test_canonicalisation_removes_a_potential_entirely(data):
    s, a, s2, states, actions = data
    only_shaping = canonicalize(
        lambda s, a, s2: GAMMA * potential(s2) - potential(s), s, a, s2, states, actions, GAMMA
    )
    assert np.abs(only_shaping).max() < 1e-9


def test_epic_on_tables_indexed_by_state_and_action():
    # the form the report uses: rewards saved per (state index, action index)
    rng = np.random.default_rng(3)
    table = rng.normal(size=(60, 4))
    phi = rng.normal(size=60)

    def lookup(si, ai, s2):
        return table[si, ai]

    def shaped_lookup(si, ai, s2):
        return 3 * table[si, ai] + GAMMA * phi[s2] - phi[si] + 1

    i = np.arange(59)
    assert epic_distance(
        lookup, shaped_lookup, i, np.zeros_like(i), i + 1, np.arange(60), np.arange(1, 4), GAMMA
    ) == pytest.approx(0.0, abs=1e-6)
