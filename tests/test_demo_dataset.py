"""The demonstrations format: round trips, imitation's layout, and refusal of bad files."""

import json

import gymnasium as gym
import numpy as np
import pytest

from rlhflab.demonstrations.dataset import (
    DemonstrationError,
    Demonstrations,
    Trajectory,
    export_imitation,
    from_imitation,
    load,
    save,
)
from rlhflab.demonstrations.experts import cartpole_expert, record


@pytest.fixture
def demos():
    return record("CartPole-v1", 30, 3, cartpole_expert, seed=0, source="scripted")


def test_round_trip_keeps_everything(tmp_path, demos):
    demos.extras["tag"] = np.arange(3)
    path = save(demos, tmp_path / "d.npz")
    back = load(path, env=gym.make("CartPole-v1"))
    assert back.env_id == "CartPole-v1" and back.source == "scripted" and len(back) == 3
    for a, b in zip(demos.trajectories, back.trajectories):
        np.testing.assert_array_equal(a.obs, b.obs)
        np.testing.assert_array_equal(a.acts, b.acts)
        np.testing.assert_array_equal(a.rews, b.rews)
        assert a.terminal == b.terminal and b.infos == [{}] * len(a)
    np.testing.assert_array_equal(back.extras["tag"], np.arange(3))


def test_imitation_npz_layout(tmp_path, demos):
    """The flat layout imitation's serialize.load splits: obs keeps one extra row per trajectory."""
    path = export_imitation(demos, tmp_path / "imitation.npz")
    with np.load(path, allow_pickle=True) as data:
        lens = [len(t) for t in demos.trajectories]
        np.testing.assert_array_equal(data["indices"], np.cumsum(lens)[:-1])
        assert len(data["obs"]) == sum(lens) + len(lens) and len(data["infos"]) == sum(lens)
        obs = np.split(data["obs"], data["indices"] + np.arange(len(lens) - 1) + 1)
        np.testing.assert_array_equal(obs[1], demos.trajectories[1].obs)
    assert load(path).trajectories[2].infos is None  # pickled infos are skipped by default
    assert load(path, allow_pickle=True).trajectories[2].infos == [{}] * lens[2]


def test_from_imitation_objects(demos):
    class T:  # what imitation.data.types.TrajectoryWithRew looks like
        def __init__(self, t):
            self.obs, self.acts, self.infos, self.terminal, self.rews = (
                t.obs,
                t.acts,
                None,
                t.terminal,
                t.rews,
            )

    back = from_imitation([T(t) for t in demos.trajectories], "CartPole-v1")
    assert back.steps == demos.steps and back.returns().tolist() == demos.returns().tolist()


def test_hf_datasets_round_trip(tmp_path, demos):
    pytest.importorskip("datasets")
    path = export_imitation(demos, tmp_path / "hf")
    back = load(path)
    np.testing.assert_allclose(back.trajectories[0].obs, demos.trajectories[0].obs)


def _bad(demos, **change):
    trajs = list(demos.trajectories)
    t = trajs[1]
    trajs[1] = Trajectory(**{**t.__dict__, **change})
    return Demonstrations(trajs, demos.env_id)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"obs": np.full((31, 4), np.nan, np.float32)}, "obs"),
        ({"obs": np.zeros((12, 4), np.float32)}, "obs"),
        ({"rews": np.full(30, np.inf, np.float32)}, "rews"),
    ],
)
def test_bad_episode_is_refused_and_nothing_written(tmp_path, demos, change, field):
    target = tmp_path / "bad.npz"
    with pytest.raises(DemonstrationError, match=rf"bad.npz: episode 1: field '{field}'"):
        save(_bad(demos, **change), target)
    assert not target.exists()


@pytest.mark.parametrize(
    ("change", "field"),
    [({"acts": np.full(30, 2)}, "acts"), ({"obs": np.zeros((31, 5), np.float32)}, "obs")],
)
def test_episode_that_disagrees_with_the_env_is_refused(demos, change, field):
    with pytest.raises(DemonstrationError, match=rf"episode 1: field '{field}'"):
        _bad(demos, **change).validate(gym.make("CartPole-v1"), "x.npz")


def test_spaces_mismatch_on_load_names_file(tmp_path, demos):
    path = save(demos, tmp_path / "d.npz")
    with pytest.raises(DemonstrationError, match=r"d.npz: episode 0: field 'obs'"):
        load(path, env=gym.make("Pendulum-v1"))


def test_truncated_file_is_refused(tmp_path, demos):
    path = save(demos, tmp_path / "d.npz")
    data = path.read_bytes()
    cut = tmp_path / "cut.npz"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(DemonstrationError, match=r"cut\.npz"):
        load(cut)


def test_inconsistent_indices_are_refused(tmp_path, demos):
    path = save(demos, tmp_path / "d.npz")
    with np.load(path) as data:
        arrays = dict(data)
    arrays["obs"] = arrays["obs"][:-1]  # one observation lost
    np.savez(tmp_path / "short.npz", **arrays)
    with pytest.raises(DemonstrationError, match=r"short.npz: field 'obs'"):
        load(tmp_path / "short.npz")
    assert json.loads(arrays["infos_json"][0]) == {}
