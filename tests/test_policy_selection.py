"""Choosing the kept policy by the annotator's judgements of whole episodes."""

import numpy as np
import pytest
import torch

from rlhflab.config import AnnotatorConfig, ConfigError, build_config, selection_reserve
from rlhflab.control_loop import LabelSchedule, run_rlhf
from rlhflab.feedback.policy_selection import PolicySelection
from rlhflab.feedback.store import FeedbackStore
from rlhflab.feedback.synthetic import SyntheticAnnotator
from rlhflab.runs import RunDir
from rlhflab.types import Comparison, Judgement


def _balance(obs: np.ndarray) -> np.ndarray:
    """CartPole: push toward the side the pole falls to (balances for a long time)."""
    return (obs[:, 2] + 0.5 * obs[:, 3] > 0).astype(np.int64)


def _fall(obs: np.ndarray) -> np.ndarray:
    """CartPole: push the same way always (falls within a few dozen steps)."""
    return np.zeros(len(obs), dtype=np.int64)


def test_the_annotator_keeps_the_better_policy_and_not_a_worse_later_one():
    cfg = build_config(None, ["env.horizon=200"])
    exact = SyntheticAnnotator(AnnotatorConfig(temperature=0, error_rate=0), seed=0)
    pick = PolicySelection(cfg.env, exact, "true_reward", queries=3)
    assert pick.offer(1, _fall) and pick.kept == 1 and pick.judgements == 0  # the first: kept
    assert pick.offer(2, _balance) and pick.kept == 2  # wins 3 of 3
    assert not pick.offer(3, _fall) and pick.kept == 2  # loses: the better one stays
    assert pick.judgements == 6
    assert [h["kept"] for h in pick.history] == [1, 2, 2]
    assert pick.history[1]["wins"] == 3 and pick.history[2]["losses"] == 3
    again = PolicySelection(cfg.env, exact, "true_reward", queries=3)
    again.load_state_dict(pick.state_dict())
    assert not again.offer(4, _fall) and again.kept == 2  # resumed: compares with the kept


def test_selection_labels_come_out_of_the_budget_and_the_run_ends_with_the_kept_policy(
    tmp_path, monkeypatch
):
    # an annotator who prefers the first checkpoint to every later one
    def prefer_kept(annotator, pairs):
        return [Comparison(i, a, b, Judgement.RIGHT) for i, (a, b) in enumerate(pairs)]

    monkeypatch.setattr("rlhflab.feedback.policy_selection.judge_pairs", prefer_kept)
    over = ["env_steps=4000", "labels=40", "seed=0", "baseline=false", "checkpoint_every=1"]
    cfg = build_config(None, [*over, "policy.n_steps=128", "feedback.select_policy=2"])
    per_iteration = cfg.policy.n_steps * cfg.env.num_envs
    reserve = selection_reserve(cfg)
    assert reserve == 2 * (-(-cfg.env_steps // per_iteration) - 1)
    assert LabelSchedule.from_config(cfg).total == 40 - reserve
    run = RunDir(tmp_path)
    run.write_config(cfg)
    policy = run_rlhf(cfg, run)
    last = [m for m in run.metrics() if m.get("phase") == "rlhf"][-1]
    assert policy.env_steps >= cfg.env_steps and last["iteration"] >= 2  # the run did not rewind
    stored = FeedbackStore(run.store_url).count_judgements()
    assert stored + last["selection_labels"] <= 40 and last["selection_labels"] <= reserve
    assert last["selected_iteration"] == 1 and "last_policy_eval_true_return" in last
    kept = torch.load(run.policy_snapshots()[1], weights_only=False)
    for key, value in kept["net"].items():  # the run returns the kept snapshot's weights
        assert torch.equal(value, policy.state_dict()["net"][key]), key


def test_selection_is_refused_with_people_and_when_it_would_take_the_budget():
    with pytest.raises(ConfigError, match="select_policy"):
        build_config(None, ["feedback.select_policy=2", "feedback.annotator.kind=people"])
    with pytest.raises(ConfigError, match="select_policy"):
        build_config(None, ["feedback.select_policy=50", "labels=100", "checkpoint_every=1"])
