"""Feedback richer than one bit: Casper et al.'s scalar-versus-comparison example, and Likert
ratings with per-annotator calibration in the control reward model (docs/annotators.md)."""

import json
import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlhflab.config import AnnotatorConfig, RewardConfig
from rlhflab.config.text import TextRewardConfig
from rlhflab.diagnostics.scalar_vs_comparison import CasperExample, study
from rlhflab.feedback.exchange import import_jsonl
from rlhflab.feedback.store import FeedbackStore
from rlhflab.feedback.synthetic import SyntheticAnnotator
from rlhflab.feedback.text import comparisons_from_store
from rlhflab.reward.model import RewardEnsemble
from rlhflab.reward.ratings import Rating, fit_ratings
from rlhflab.reward.text import TextRewardEnsemble
from rlhflab.runs import sqlite_url
from rlhflab.text.models import TextRewardModel, build_word_tokenizer, tiny_gpt2
from rlhflab.text.task import TASKS
from rlhflab.types import Segment


def test_casper_example_closed_form():
    ex = CasperExample()  # A always 1; B 10 on 40% of examples, else 0
    assert ex.p_a_preferred(0.0) == pytest.approx(0.6)  # comparisons: A, the median-better
    assert ex.mean_worth() == pytest.approx((1.0, 4.0))  # ratings: B, the mean-better
    # a noisy annotator's comparisons follow the mean difference: past τ* they pick B too
    p1 = 0.4 * 1 / (1 + math.exp(9)) + 0.6 * 1 / (1 + math.exp(-1))
    assert ex.p_a_preferred(1.0) == pytest.approx(p1) and p1 < 0.5
    tau = ex.crossover_temperature()
    assert 0.5 < tau < 1.0 and ex.p_a_preferred(tau) == pytest.approx(0.5, abs=1e-6)
    assert math.isnan(CasperExample(p_high=0.05).crossover_temperature())  # A wins both ways


def test_casper_example_with_annotators_and_reward_models():
    torch.set_num_threads(1)
    out = study(0.0, examples=300, seed=0)
    assert out["synthetic_p_a"] > 0.5  # careful annotators prefer A in most comparisons
    rating_a, rating_b = out["synthetic_mean_rating"]
    assert rating_b > rating_a + 1  # ... and rate B higher on average
    assert out["bt_a_minus_b"] > 0.1  # Bradley–Terry on the comparisons ranks A first
    assert out["ratings_a_minus_b"] < -0.5  # the rating regression ranks B first


def one_step(x: float) -> Segment:
    """A one-step segment whose single feature is x (the reward model sees x)."""
    return Segment(np.array([[x]], np.float32), np.zeros(1, np.int64), np.array([x], np.float32))


def test_ratings_from_harsh_and_lenient_annotators_are_calibrated():
    """X (worth 0.8) is rated only by a harsh annotator, Y (worth −0.8) only by a lenient one, who
    gives Y the higher score; both rate the same anchor segments. Per-annotator calibration must
    still rank X above Y, and learn that the lenient annotator's offset is higher."""
    torch.set_num_threads(1)
    harsh = SyntheticAnnotator(AnnotatorConfig(rating_offset=2.0), 1)
    lenient = SyntheticAnnotator(AnnotatorConfig(rating_offset=6.0), 2)
    anchors = [one_step(x) for x in np.linspace(-1, 1, 9)]
    ratings = [Rating(s, a.rate(s), n) for s in anchors for a, n in ((harsh, "h"), (lenient, "l"))]
    ratings += [Rating(one_step(0.8), harsh.rate(one_step(0.8)), "h") for _ in range(3)]
    ratings += [Rating(one_step(-0.8), lenient.rate(one_step(-0.8)), "l") for _ in range(3)]
    naive = np.mean([r.rating for r in ratings[-6:-3]]) < np.mean([r.rating for r in ratings[-3:]])
    assert naive  # raw scores say Y is better
    ensemble = RewardEnsemble(1, gym.spaces.Discrete(1), RewardConfig(ensemble=2, hidden=16), 0)
    out = fit_ratings(ensemble, ratings, steps=300, lr=1e-2)
    with torch.no_grad():
        r = ensemble.segment_returns([one_step(0.8), one_step(-0.8)]).mean(0)
    assert r[0] > r[1]
    assert out["calibration"]["l"][0] > out["calibration"]["h"][0] + 2.0


def test_a_rating_moves_the_reward_in_its_direction():
    torch.set_num_threads(1)
    segs = [one_step(x) for x in (-1.0, 0.0, 1.0)]

    def fitted(extra: float) -> float:
        ensemble = RewardEnsemble(1, gym.spaces.Discrete(1), RewardConfig(ensemble=1), 0)
        ratings = [Rating(s, y) for s, y in zip(segs, (2.0, 4.0, 6.0))]
        ratings += [Rating(segs[1], extra)] * 3  # the middle segment rated again
        fit_ratings(ensemble, ratings, steps=200, lr=1e-2)
        with torch.no_grad():
            r = ensemble.segment_returns(segs).mean(0)
        return float((r[1] - r[0]) / (r[2] - r[0]))  # where the middle one sits, 0..1

    assert fitted(7.0) > fitted(1.0) + 0.3


@pytest.mark.parametrize("bad", [0, 8, float("nan"), float("inf")])
def test_malformed_rating_refused(bad):
    with pytest.raises(ValueError, match="rating must be a number from 1 to 7"):
        Rating(one_step(0.0), bad)


# -- text: corrections and ratings train the reward model ------------------------------------------
NOUNS = ["plot", "acting", "music", "script", "ending", "cast"]


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_corrections_and_ratings_train_the_text_reward_model(tmp_path):
    """Imported corrections become corrected ≻ original comparisons, ratings become pairs within
    one annotator and prompt; fitted on them, a tiny reward model scores the corrected
    wording higher than the original on held-out prompts."""
    torch.manual_seed(0)
    tokenizer = build_word_tokenizer(TASKS["reviews"].vocabulary)
    model = tiny_gpt2(len(tokenizer), n_layer=1, n_embd=32, n_head=2, tokenizer=tokenizer)
    store = FeedbackStore(sqlite_url(tmp_path / "feedback.db"))
    prompt = "review of the film :"
    fixes = [
        {"prompt": prompt, "response": f"the {n} was awful .", "correction": f"the {n} was great ."}
        for n in NOUNS[:4]
    ]
    import_jsonl(store, write_jsonl(tmp_path / "c.jsonl", fixes), "corrections")
    harsh = [  # a harsh rater: low numbers, but "great" still above "awful"
        {"prompt": f"{prompt} {n}", "response": f"the {n} was {w} .", "rating": y}
        for n in NOUNS[:4]
        for w, y in (("great", 3), ("awful", 1))
    ]
    import_jsonl(store, write_jsonl(tmp_path / "r.jsonl", harsh), "ratings", annotator="harsh")
    lenient = [{"prompt": prompt, "response": "the plot was awful .", "rating": 6}]  # alone
    import_jsonl(store, write_jsonl(tmp_path / "l.jsonl", lenient), "ratings", annotator="kind")
    comparisons = comparisons_from_store(store)
    store.close()
    assert len(comparisons) == 4 + 4  # 4 corrections, 4 rating pairs; the lone rating adds none
    assert all(c.responses[0].endswith("great .") for c in comparisons)
    cfg = TextRewardConfig(epochs=15, lr=3e-3, batch_size=8, val_fraction=0.0)
    rm = TextRewardEnsemble(TextRewardModel(model.transformer), tokenizer, seed=0, cfg=cfg)

    def margin() -> float:
        held_out = [n for n in NOUNS[4:]]
        good = rm.score([prompt] * 2, [f"the {n} was great ." for n in held_out])
        bad = rm.score([prompt] * 2, [f"the {n} was awful ." for n in held_out])
        return float((good - bad).mean())

    before = margin()
    rm.fit(comparisons)
    assert margin() > before + 0.5 and margin() > 0


@pytest.mark.parametrize(
    "record, error",
    [
        ({"prompt": "p", "response": "r", "correction": "r"}, "response unchanged"),
        ({"prompt": "p", "response": "r", "correction": "  "}, "field 'correction' is empty"),
        ({"prompt": "p", "response": "r", "correction": 3}, "'correction' must be a string"),
    ],
)
def test_malformed_corrections_are_refused_on_import(tmp_path, record, error):
    store = FeedbackStore(sqlite_url(tmp_path / "feedback.db"))
    path = write_jsonl(tmp_path / "bad.jsonl", [record])
    with pytest.raises(ValueError, match=rf"bad.jsonl:1: .*{error}"):
        import_jsonl(store, path, "corrections")
    assert store.count_judgements() == 0
    critique = write_jsonl(tmp_path / "crit.jsonl", [{"prompt": "p", "response": "r"}])
    with pytest.raises(ValueError, match=r"crit\.jsonl:1: field 'critique' is missing"):
        import_jsonl(store, critique, "critiques")
    store.close()
