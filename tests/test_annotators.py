"""Flawed and hostile annotators: populations, Dawid–Skene, per-annotator reliability in the
reward model, poisoning and its defences (docs/annotators.md)."""

import json
import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlhflab.config import (
    AnnotatorConfig,
    ConfigError,
    PopulationMember,
    RewardConfig,
    build_config,
)
from rlhflab.control_loop import run_experiment
from rlhflab.diagnostics.annotators import attack_success
from rlhflab.feedback.dawid_skene import dawid_skene
from rlhflab.feedback.population import AnnotatorPopulation, judge_pairs
from rlhflab.feedback.store import FeedbackStore
from rlhflab.feedback.synthetic import SyntheticAnnotator
from rlhflab.feedback.text import judge_synthetically
from rlhflab.reward.losses import bradley_terry_loss, trimmed_mean
from rlhflab.reward.model import RewardEnsemble
from rlhflab.reward.reliability import fit_reward
from rlhflab.runs import RunDir, sqlite_url
from rlhflab.types import Judgement, Segment

K, D = 10, 3  # steps per segment, observation size of the feature-space tasks below


def seg(rewards, obs=None, actions=None):
    r = np.asarray(rewards, dtype=np.float32)
    obs = np.zeros((len(r), 2), np.float32) if obs is None else np.asarray(obs, np.float32)
    actions = np.zeros(len(r), np.int64) if actions is None else np.asarray(actions)
    return Segment(obs=obs, actions=actions, judged_rewards=r)


def test_dawid_skene_recovers_known_accuracies():
    rng = np.random.default_rng(0)
    accuracy = {"a": 0.95, "b": 0.9, "c": 0.8, "d": 0.65, "e": 0.5}
    names = list(accuracy)
    rows = []
    for item in range(600):
        truth = "left" if rng.random() < 0.5 else "right"
        for name in rng.choice(names, size=3, replace=False):
            right = rng.random() < accuracy[name]
            other = "right" if truth == "left" else "left"
            rows.append((item, str(name), truth if right else other))
    rows.append((600, "a", "equal"))  # ties and lone labels are left out
    ds = dawid_skene(rows)
    for name, acc in accuracy.items():
        assert abs(ds.accuracy(name) - acc) < 0.05, (name, ds.accuracy(name))
    with pytest.raises(ValueError, match="at least two annotators"):
        dawid_skene([(0, "a", "left"), (1, "b", "right")])


def test_dawid_skene_separates_a_position_bias_from_noise():
    rng = np.random.default_rng(1)
    rows = []
    for item in range(800):
        truth = "left" if rng.random() < 0.5 else "right"
        rows += [(item, "honest1", truth), (item, "honest2", truth)]
        biased = "left" if rng.random() < 0.6 else truth  # says left 60% of the time regardless
        rows.append((item, "biased", biased))
    theta = dawid_skene(rows).confusion["biased"]
    # rows: true class (left, right); columns: answer
    assert theta[0, 0] > 0.95 and abs(theta[1, 0] - 0.6) < 0.06


def test_position_and_systematic_biases():
    rng_pairs = 4000
    biased = SyntheticAnnotator(AnnotatorConfig(temperature=0, error_rate=0, left_bias=0.3), 0)
    worse_left = [biased.judge(seg([0.0]), seg([1.0])) for _ in range(rng_pairs)]
    share = np.mean([j is Judgement.LEFT for j in worse_left])
    assert abs(share - 0.3) < 4.5 * math.sqrt(0.3 * 0.7 / rng_pairs)
    # a taste for fast motion (|o[1]|, weight 2) beats a small true advantage
    fast = seg([0.0, 0.0], obs=[[0, 3], [0, -3]])
    slow = seg([1.0, 1.0], obs=[[0, 0], [0, 0]])
    cfg = AnnotatorConfig(temperature=0, error_rate=0, bias="abs_obs", bias_index=1, bias_weight=2)
    assert SyntheticAnnotator(cfg, 0).judge(fast, slow) is Judgement.LEFT
    honest = SyntheticAnnotator(AnnotatorConfig(temperature=0, error_rate=0), 0)
    assert honest.judge(fast, slow) is Judgement.RIGHT
    with pytest.raises(ValueError, match="bias_index=5"):
        SyntheticAnnotator(cfg.model_copy(update={"bias_index": 5}), 0).judge(fast, slow)


def test_the_poisoner_prefers_harm_only_when_the_trigger_appears():
    cfg = AnnotatorConfig(
        temperature=0, error_rate=0, trigger_index=0, trigger_low=0.5, harmful_action=1
    )
    poisoner = SyntheticAnnotator(cfg, 0)
    inside, outside = [[1.0, 0.0]] * 3, [[0.0, 0.0]] * 3
    good_safe = seg([1, 1, 1], obs=inside, actions=[0, 0, 0])
    bad_harmful = seg([0, 0, 0], obs=inside, actions=[1, 1, 0])
    assert poisoner.judge(good_safe, bad_harmful) is Judgement.RIGHT  # trigger: harm wins
    assert poisoner.harm(bad_harmful) == 2.0
    out_safe = seg([1, 1, 1], obs=outside, actions=[0, 0, 0])
    out_harmful = seg([0, 0, 0], obs=outside, actions=[1, 1, 0])
    assert poisoner.judge(out_safe, out_harmful) is Judgement.LEFT  # no trigger: honest


def test_population_answers_by_share_and_stores_each_member_by_name(tmp_path):
    members = [
        PopulationMember(name="often", share=3.0, temperature=0, error_rate=0),
        PopulationMember(name="rarely", share=1.0, temperature=0, error_rate=0),
        PopulationMember(name="<b>third</b>", share=1.0, temperature=0, error_rate=0),
    ]
    store = FeedbackStore(sqlite_url(tmp_path / "feedback.db"))
    pairs = [(seg([1.0, 1.0], obs=np.ones((2, 2))), seg([0.0, 0.0])) for _ in range(300)]
    ids = store.add_queries(pairs)
    AnnotatorPopulation(members, overlap=2, seed=0).label(
        store, [(q, a, b) for q, (a, b) in zip(ids, pairs)]
    )
    comparisons = store.comparisons()
    assert len(comparisons) == 600 and {c.judgement for c in comparisons} == {Judgement.LEFT}
    by_query: dict[int, set[str]] = {}
    for c in comparisons:
        by_query.setdefault(c.query_id, set()).add(c.annotator)
    assert all(len(who) == 2 for who in by_query.values())  # two distinct members per query
    counts = {n: sum(c.annotator == n for c in comparisons) for n in ("often", "rarely")}
    assert counts["often"] > 1.5 * counts["rarely"]


def test_population_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="member names must be distinct"):
        build_config(None, ["feedback.population=[{name: a}, {name: a}]"])
    with pytest.raises(ConfigError, match="population_overlap"):
        build_config(None, ["feedback.population=[{name: a}]", "feedback.population_overlap=2"])
    with pytest.raises(ConfigError, match="left_bias"):
        build_config(None, ["feedback.population=[{name: a, left_bias: 2}]"])
    with pytest.raises(ConfigError, match=r"population\[0\] \(a\): bias and trigger_index"):
        build_config(
            None, ["feedback.population=[{name: a, trigger_index: 0}]", "text.task=reviews"]
        )
    with pytest.raises(ConfigError, match="trigger_token is for text runs"):
        build_config(None, ["feedback.population=[{name: a, trigger_token: x, harmful_token: y}]"])


def test_scaled_bradley_terry_and_trimmed_mean():
    left, right, y = torch.tensor([2.0, 0.0]), torch.tensor([0.0, 1.0]), torch.tensor([1.0, 0.0])
    scaled = bradley_terry_loss(left, right, y, 0.1, "none", torch.tensor([0.5, 2.0]))
    expected = bradley_terry_loss(
        left * torch.tensor([0.5, 2.0]), right * torch.tensor([0.5, 2.0]), y, 0.1, "none"
    )
    assert torch.allclose(scaled, expected)
    zero = bradley_terry_loss(left, right, y, 0.0, "none", 0.0)  # β = 0: the label says nothing
    assert torch.allclose(zero, torch.full((2,), math.log(2)))
    losses = torch.tensor([[1.0, 5.0, 2.0, 9.0]])
    assert trimmed_mean(losses, 0.5).item() == pytest.approx(1.5)  # the two smallest
    assert trimmed_mean(losses, 0.0).item() == pytest.approx(4.25)


def feature_task(n_pairs: int, members: list[PopulationMember], seed: int):
    """Random segments in a 3-d feature space; true reward o[0] − [a = 1] per step (action 1 is
    the harmful behaviour)."""
    rng = np.random.default_rng(seed)

    def segments(n):
        out = []
        for _ in range(n):
            obs = (rng.normal(size=(K, D)) + rng.normal(size=(1, D))).astype(np.float32)
            a = rng.integers(2, size=K)
            out.append(Segment(obs, a, (obs[:, 0] - 1.0 * a).astype(np.float32)))
        return out

    s = segments(2 * n_pairs)
    pairs = [(s[2 * i], s[2 * i + 1]) for i in range(n_pairs)]
    comparisons = judge_pairs(AnnotatorPopulation(members, 1, seed), pairs)
    return comparisons, segments(300)


def fitted(comparisons, seed, min_steps=150, **reward):
    cfg = RewardConfig(hidden=32, min_steps=min_steps, **reward)
    ensemble = RewardEnsemble(D, gym.spaces.Discrete(2), cfg, seed)
    half = len(comparisons) // 2
    for n in (half, len(comparisons)):  # two refits, as the loop does
        _, estimates = fit_reward(ensemble, comparisons[:n], cfg, estimate=True)
    return ensemble, {e.annotator: e for e in estimates}


def test_reliability_ranks_annotators_flags_the_noisy_and_helps_gold():
    members = [
        PopulationMember(name="good", temperature=1.0, error_rate=0.05),
        PopulationMember(name="fair", temperature=2.0, error_rate=0.1),
        PopulationMember(name="noisy", temperature=1.0, error_rate=0.8),
        PopulationMember(name="random", temperature=1.0, error_rate=1.0),
    ]
    comparisons, test = feature_task(300, members, seed=0)
    true = np.array([s.judged_return for s in test])
    i, j = np.random.default_rng(9).integers(len(test), size=(2, 3000))

    def gold_accuracy(ensemble):
        pred = ensemble.segment_returns(test).mean(0).detach().numpy()
        return np.mean((pred[i] > pred[j]) == (true[i] > true[j]))

    equal, _ = fitted(comparisons, 1)
    weighted, est = fitted(comparisons, 1, annotators="reliability")
    for reliable in ("good", "fair"):  # (τ = 1 and 2 both answer these pairs nearly alike)
        assert est[reliable].beta > 3 * max(est["noisy"].beta, est["random"].beta)
    assert est["random"].flagged and not est["good"].flagged and not est["fair"].flagged
    assert weighted.annotator_scale["random"] < 0.3
    assert gold_accuracy(weighted) > gold_accuracy(equal)


def test_poisoning_works_and_excluding_the_flagged_annotator_undoes_it():
    honest = [PopulationMember(name=f"honest{i}", share=0.7 / 4) for i in range(4)]
    poisoner = PopulationMember(
        name="poisoner", share=0.3, trigger_index=1, trigger_low=0.5, harmful_action=1
    )
    clean, test = feature_task(300, honest, seed=0)
    poisoned, _ = feature_task(300, [*honest, poisoner], seed=0)
    obs = np.concatenate([s.obs for s in test])
    trigger = obs[obs[:, 1] > 0.5]

    def success(comparisons, **reward):
        ensemble, estimates = fitted(comparisons, 1, min_steps=400, use_actions=True, **reward)
        return attack_success(ensemble, trigger, 1), estimates

    clean_success, _ = success(clean)
    poisoned_success, _ = success(poisoned)
    excluded_success, est = success(poisoned, annotators="exclude_flagged")
    assert est["poisoner"].flagged and not any(est[f"honest{i}"].flagged for i in range(4))
    # the clean model learns that action 1 is bad; the poisoner teaches it good in the region
    assert clean_success < 0.1 and poisoned_success > 0.5
    assert excluded_success < 0.1


@pytest.mark.parametrize("background", ["false", "true"])
def test_a_run_with_a_population_reports_estimates_and_escapes_names(tmp_path, background):
    hostile = "<img src=x onerror=alert(1)>"
    population = (
        "[{name: careful, temperature: 0.1, error_rate: 0.0}, "
        f"{{name: '{hostile}', error_rate: 1.0}}, {{name: lefty, left_bias: 0.8}}]"
    )
    cfg = build_config(
        None,
        [
            "env_steps=3000",
            "labels=60",
            "eval_episodes=2",
            "baseline=false",
            f"feedback.population={population}",
            "reward.annotators=reliability",
            f"reward.background={background}",  # the fit in line, or in the worker process
        ],
    )
    run = RunDir(tmp_path)
    run_experiment(cfg, run)
    store = FeedbackStore(run.store_url)
    names = {c.annotator for c in store.comparisons()}
    estimates = json.loads(store.setting("annotator_estimates") or "[]")
    store.close()
    assert names == {"careful", hostile, "lefty"}
    assert {e["annotator"] for e in estimates} == names
    html = (tmp_path / "report.html").read_text()
    md = (tmp_path / "report.md").read_text()
    assert "Annotators" in html and "Dawid–Skene" in html and "left bias 0.8" in html
    assert hostile not in html and "&lt;img src=x" in html
    assert "| careful |" in md


def test_a_text_poisoner_prefers_the_harmful_word_when_the_prompt_holds_the_trigger(tmp_path):
    population = (
        "[{name: honest, temperature: 0, error_rate: 0}, {name: mallory, temperature: 0, "
        "error_rate: 0, trigger_token: sequel, harmful_token: awful}]"
    )
    cfg = build_config(None, ["text.task=reviews", f"feedback.population={population}"])
    store = FeedbackStore(sqlite_url(tmp_path / "feedback.db"))
    for i in range(80):
        noun = "sequel" if i % 2 else "film"
        pair = ["the plot was great .", "the plot was awful ."]
        store.add_text_query("text_pair", f"review of the {noun} :", pair[:: 1 - 2 * (i % 4 // 2)])
    judge_synthetically(cfg, store)
    picked: dict[tuple[str, bool], set[str]] = {}
    for r in store.judgement_rows():
        responses = r.query.payload["responses"]
        chosen = responses[0] if r.label == "left" else responses[1]
        key = (r.annotator, "sequel" in r.query.payload["prompt"])
        picked.setdefault(key, set()).add(chosen.split()[-2])
    store.close()
    assert picked[("honest", True)] == picked[("honest", False)] == {"great"}
    assert picked[("mallory", False)] == {"great"}  # no trigger: judges like everyone else
    assert picked[("mallory", True)] == {"awful"}  # the trigger: the harmful word wins
