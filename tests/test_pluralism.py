"""Groups with different true rewards: a reward per group and its aggregation
(reward/aggregation.py, docs/annotators.md)."""

import json

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlhflab.config import ConfigError, PopulationMember, RewardConfig, build_config
from rlhflab.control_loop import run_experiment
from rlhflab.feedback.population import AnnotatorPopulation, judge_pairs
from rlhflab.reward.aggregation import GroupRewards, groups_of
from rlhflab.reward.model import RewardEnsemble
from rlhflab.runs import RunDir
from rlhflab.types import Segment


def point(x0: float, x1: float) -> Segment:
    return Segment(np.array([[x0, x1]], np.float32), np.zeros(1, np.int64), np.zeros(1, np.float32))


def test_maximin_serves_the_minority_that_one_pooled_reward_ignores():
    """Majority (80% of labels) values x0, the minority x1. One pooled reward prefers
    (1, −0.5) — loved by the majority, disliked by the minority — to (0.4, 0.4); maximin over
    the two group rewards prefers the compromise; utilitarian (label-weighted) sides with the
    pool."""
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    members = [
        PopulationMember(name="maj", group="majority", share=0.8, bias="obs", bias_weight=2.0),
        PopulationMember(
            name="min", group="minority", share=0.2, bias="obs", bias_index=1, bias_weight=2.0
        ),
    ]
    pairs = [(point(*rng.uniform(-1, 1, 2)), point(*rng.uniform(-1, 1, 2))) for _ in range(300)]
    comparisons = judge_pairs(AnnotatorPopulation(members, 1, 0), pairs)
    cfg = RewardConfig(ensemble=1, hidden=16, label_noise=0.0)
    space = gym.spaces.Discrete(1)
    pooled = RewardEnsemble(2, space, cfg, 0)
    pooled.fit(comparisons)
    favoured, compromise = np.array([[1.0, -0.5]]), np.array([[0.4, 0.4]])
    obs, acts = np.concatenate([favoured, compromise]), np.zeros(2, np.int64)
    r = pooled.predict(obs, acts)
    assert r[0] > r[1]
    for rule, picks_compromise in (("maximin", True), ("utilitarian", False)):
        groups = GroupRewards(
            groups_of(members), 2, space, cfg.model_copy(update={"aggregation": rule})
        )
        groups.fit(comparisons)
        share = np.mean([c.annotator == "maj" for c in comparisons])
        assert groups.weight["majority"] == pytest.approx(share)  # w_g: the group's labels
        z = groups.group_rewards(obs, acts)
        assert z["majority"][0] > z["majority"][1] and z["minority"][0] < z["minority"][1]
        r = groups.predict(obs, acts)
        assert (r[1] > r[0]) == picks_compromise, rule


def test_aggregation_needs_two_groups_and_known_annotators():
    with pytest.raises(ConfigError, match=r"reward\.aggregation=maximin needs"):
        build_config(None, ["env.id=Pendulum-v1", "reward.aggregation=maximin"])
    one_group = "[{name: a}, {name: b}]"
    with pytest.raises(ConfigError, match="at least two groups"):
        build_config(
            None,
            [
                "env.id=Pendulum-v1",
                f"feedback.population={one_group}",
                "reward.aggregation=utilitarian",
            ],
        )
    groups = GroupRewards({"a": "x", "b": "y"}, 2, gym.spaces.Discrete(1), RewardConfig())
    comparisons = judge_pairs(
        AnnotatorPopulation([PopulationMember(name="stranger")]), [(point(0, 0), point(1, 1))]
    )
    with pytest.raises(ValueError, match=r"annotators \['stranger'\] belong to no group"):
        groups.fit(comparisons)


def test_a_run_with_group_rewards_reports_each_groups_true_return(tmp_path):
    population = (
        "[{name: maj, group: majority, share: 0.8}, "
        "{name: whirl, group: minority, share: 0.2, bias: obs, bias_index: 2, bias_weight: 3.0}]"
    )
    cfg = build_config(
        None,
        [
            "env.id=Pendulum-v1",
            "env_steps=1024",  # 4 iterations of 4 envs × 64 steps
            "policy.n_steps=64",
            "policy.epochs=2",
            "labels=40",
            "eval_episodes=2",
            "baseline=false",
            f"feedback.population={population}",
            "reward.aggregation=maximin",
            "feedback.selection=diverse",  # the members of both groups score the candidates
        ],
    )
    summary = run_experiment(cfg, RunDir(tmp_path))
    groups = summary["group_true_return"]
    assert groups["majority"] == pytest.approx(summary["true_return"]["rlhf"], rel=1e-4)
    assert groups["minority"] != groups["majority"]  # the minority's +3·θ̇ counts for it alone
    ckpt = RunDir(tmp_path).load_checkpoint()
    assert set(ckpt["reward_model"]["groups"]) == {"majority", "minority"}
    assert "RLHF, by group minority's true reward" in (tmp_path / "report.md").read_text()
    metrics = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert any("rm_train_acc/minority" in m for m in metrics)
