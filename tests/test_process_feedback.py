"""Process feedback: a label on each part of two segments, trained beside the whole-segment
preference (reward/process.py), and the time model that prices it (feedback/label_time.py)."""

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlhflab.config import AnnotatorConfig, RewardConfig
from rlhflab.feedback.label_time import LabelTime
from rlhflab.feedback.population import judge_pairs
from rlhflab.feedback.synthetic import SyntheticAnnotator
from rlhflab.reward.model import RewardEnsemble
from rlhflab.reward.process import part_loss, part_targets
from rlhflab.types import Comparison, Judgement, Segment, part_of_step


def segment(states: list[int], rewards: list[float]) -> Segment:
    """Steps in one-hot states (3 of them) with the given true rewards."""
    obs = np.eye(3, dtype=np.float32)[states]
    return Segment(obs, np.zeros(len(states), np.int64), np.array(rewards, np.float32))


def test_parts_are_contiguous_and_near_equal():
    assert part_of_step(5, 2).tolist() == [0, 0, 0, 1, 1]
    s = segment([0, 1, 2, 0, 1], [1, 2, 3, 4, 5])
    assert [p.judged_rewards.tolist() for p in s.parts(2)] == [[1, 2, 3], [4, 5]]
    with pytest.raises(ValueError, match="6 parts of a 5-step segment"):
        s.parts(6)


def test_part_loss_against_hand_computed_value():
    left = torch.tensor([[[1.0, 2.0, 0.5, 0.5]]])  # [M=1, B=1, k=4]: parts 3.0 and 1.0
    right = torch.tensor([[[0.0, 1.0, 1.0, 2.0]]])  # parts 1.0 and 3.0
    targets = torch.tensor([[[1.0, float("nan")]]])  # part 1: left; part 2: not labelled
    assert part_loss(left, right, targets).item() == pytest.approx(math.log1p(math.exp(-2.0)))
    both = torch.tensor([[[1.0, 1.0]]])  # part 2 labelled "left" though the model says right
    expected = (math.log1p(math.exp(-2.0)) + math.log1p(math.exp(2.0))) / 2
    assert part_loss(left, right, both).item() == pytest.approx(expected)
    assert part_loss(left, right, torch.full((1, 1, 2), float("nan"))).item() == 0.0


def test_part_targets_reads_judgements_and_refuses_bad_ones():
    s = segment([0, 1], [0, 0])
    c = Comparison(7, s, s, Judgement.LEFT, extra={"parts": ["left", "cant_tell"]})
    plain = Comparison(8, s, s, Judgement.RIGHT)
    t = part_targets([c, plain])
    assert t[0, 0] == 1.0 and t[0, 1].isnan() and t[1].isnan().all()
    assert part_targets([plain]) is None
    bad = Comparison(9, s, s, Judgement.LEFT, extra={"parts": ["left", "up"]})
    with pytest.raises(ValueError, match=r"query 9, parts \['left', 'up'\]"):
        part_targets([bad])


def test_synthetic_annotator_judges_each_part():
    careful = SyntheticAnnotator(AnnotatorConfig(temperature=0.0, error_rate=0.0))
    left, right = segment([0, 1], [1.0, 0.0]), segment([2, 2], [0.4, 0.4])
    assert careful.judge(left, right) == Judgement.LEFT
    assert careful.judge_parts(left, right, 2) == [Judgement.LEFT, Judgement.RIGHT]
    (c,) = judge_pairs(careful, [(left, right)], parts=2)
    assert c.extra["parts"] == ["left", "right"]


def test_part_labels_assign_credit_the_whole_label_cannot():
    """State a is worth 1, b 0, c 0.4 per step. Segment [a, b] beats [c, c] (1 > 0.8), but the
    whole-segment label cannot say whether a or b earned it; the part labels (a ≻ c, c ≻ b) can.
    With them the reward model must rank a > c > b; the same fit with the part labels dropped
    is left to chance, so the test also checks the labels (not the fit) made the difference."""
    torch.set_num_threads(1)
    left, right = segment([0, 1], [1.0, 0.0]), segment([2, 2], [0.4, 0.4])
    careful = SyntheticAnnotator(AnnotatorConfig(temperature=0.0, error_rate=0.0))
    pairs = [(left, right), (right, left)] * 8

    def fitted(parts: int) -> np.ndarray:
        cfg = RewardConfig(ensemble=3, hidden=16, min_steps=300)
        ensemble = RewardEnsemble(3, gym.spaces.Discrete(1), cfg, seed=0)
        ensemble.fit(judge_pairs(careful, pairs, parts))
        return ensemble.predict(np.eye(3, dtype=np.float32), np.zeros(3, np.int64))

    a, b, c = fitted(parts=2)
    assert a > c + 0.5 and c > b + 0.5
    a0, b0, c0 = fitted(parts=0)
    assert (a0 + b0) / 2 > c0  # the whole label alone: [a, b] ≻ [c, c] ...
    assert abs((a0 - b0) - (a - b)) > 0.5  # ... but how a and b share it is not what parts say


def test_label_time_buys_fewer_richer_labels():
    t = LabelTime(comparison=6.0, part=2.0, rating=4.0)
    assert t.affordable(1, "comparison") == 10
    assert t.affordable(1, "comparison", parts=5) == 3  # 16 s each
    assert t.affordable(2, "rating") == 30


# -- multi-objective vectors (reward/objectives.py, feedback/objectives.py) -----------------------
def test_vector_labels_judge_each_objective():
    from rlhflab.feedback.objectives import judge_objectives
    from rlhflab.text.task import TASKS

    careful = SyntheticAnnotator(AnnotatorConfig(temperature=0.0, error_rate=0.0))
    insult, criticism = "the director was idiotic .", "the director was dull ."
    out = judge_objectives(careful, TASKS["reviews-insults"], [("p", insult, criticism)])
    assert out["helpful"][0].responses[0] == insult  # no negative adjective: more "helpful"
    assert out["harmless"][0].responses[0] == criticism
    assert out["overall"][0].responses[0] == criticism  # gold = helpful − #insults


def test_weighting_and_the_lagrange_multiplier():
    from rlhflab.reward.objectives import LagrangeMultiplier, constrained_choice, weighted

    help_, harm = torch.tensor([[2.0, 1.0]]), torch.tensor([[-1.0, 0.5]])
    z = {"helpful": help_, "harmless": harm}
    assert weighted(z, {"helpful": 1.0, "harmless": 1.0}).argmax().item() == 1
    with pytest.raises(ValueError, match="unknown objectives"):
        weighted(z, {"honest": 1.0})
    lam = LagrangeMultiplier(bound=0.0, lr=1.0)
    assert constrained_choice(help_, harm, lam).item() == 0  # λ = 0: the most helpful
    lam.update(-1.0)  # the constraint violated by 1: λ rises by η·1
    assert lam.value == 1.0 and constrained_choice(help_, harm, lam).item() == 1
    lam.update(5.0)  # slack: λ falls, never below 0
    assert lam.value == 0.0 and lam.average == 0.5


def test_ppo_on_two_objectives_moves_lambda_by_dual_ascent():
    """The PPO-Lagrangian driver: λ rises by η·(b − mean z_harmless) after every rollout while
    the constraint is violated, and each objective's gold is logged."""
    from rlhflab.config import build_config
    from rlhflab.objectives_loop import train_objectives
    from rlhflab.policy.control import ControlPolicy
    from rlhflab.reward.objectives import LagrangeMultiplier, ObjectiveRewards

    torch.set_num_threads(1)
    overrides = ["env=CartPole-v1", "env_steps=256", "env.num_envs=2", "policy.n_steps=32"]
    cfg = build_config(None, [*overrides, "policy.minibatches=1", "policy.epochs=1"])
    alive = lambda obs, actions, absorbing: torch.from_numpy(1.0 - absorbing)  # noqa: E731
    centred = lambda obs, actions, absorbing: torch.from_numpy(-np.abs(obs[..., 0]))  # noqa: E731
    ref = ControlPolicy(cfg.env, cfg.policy, 5).collect()
    objectives = ObjectiveRewards(
        {"helpful": alive, "harmless": centred}, ref.raw_obs, ref.actions, ref.absorbing
    )
    gold = {"harmless": lambda r: -np.abs(r.raw_obs[..., 0])}
    tight, log = LagrangeMultiplier(bound=3.0, lr=0.5), []
    train_objectives(cfg, objectives, ("helpful", "harmless", tight), gold, on_log=log.append)
    assert len(log) == 4
    lam = 0.0
    for record in log:
        lam = max(0.0, lam + 0.5 * (3.0 - record["z_harmless"]))
        assert record["lambda"] == pytest.approx(lam) and record["gold_harmless"] <= 0
    assert log[-1]["lambda"] > 4  # z_harmless stays far below the bound of 3 std
    loose, log = LagrangeMultiplier(bound=-50.0, lr=0.5), []
    train_objectives(cfg, objectives, ("helpful", "harmless", loose), gold, on_log=log.append)
    assert all(r["lambda"] == 0.0 for r in log)  # a constraint that holds costs nothing


# -- per-step feedback on text: a label on each sentence of two responses ------------------------
def test_response_steps_are_sentences_that_join_back():
    from rlhflab.reward.process import response_steps, step_prefixes

    text = "It was good. Then bad!\nThe end"
    assert response_steps(text) == ["It was good. ", "Then bad!\n", "The end"]
    assert "".join(response_steps(text)) == text and response_steps("") == []
    assert step_prefixes("a. b.") == ["", "a. ", "a. b."]


def test_step_labels_are_read_back_turned_with_the_pair(tmp_path):
    from rlhflab.feedback.store import FeedbackStore
    from rlhflab.feedback.text import comparisons_from_store

    store = FeedbackStore(f"sqlite:///{tmp_path / 'f.db'}")
    q = store.add_text_query("text_pair", "p", ["a. b.", "c. d."], meta={"parts": 2})
    store.add_judgement(q, "right", payload={"parts": ["left", "cant_tell"]})
    (c,) = comparisons_from_store(store)
    store.close()
    # best first: the right response leads, so a step that was "left" is now the second's
    assert c.responses == ("c. d.", "a. b.") and c.parts == ("right", "cant_tell")


def test_step_labels_assign_credit_within_a_text_response():
    """ "good . bad ." ≻ "meh . meh ." says nothing about which sentence earned it; step labels
    (good ≻ meh, then meh ≻ bad) teach a tiny GPT-2 reward model both, through the prefix-score
    increments of reward/process.py."""
    from rlhflab.config.text import TextRewardConfig
    from rlhflab.reward.text import TextRewardEnsemble
    from rlhflab.text.models import TextRewardModel, build_word_tokenizer, tiny_gpt2
    from rlhflab.types import RankedResponses

    torch.set_num_threads(1)
    tokenizer = build_word_tokenizer(["good", "bad", "meh", ".", "q"])
    base = tiny_gpt2(len(tokenizer), 1, 16, n_head=2, n_positions=32, tokenizer=tokenizer)
    rm = TextRewardEnsemble(TextRewardModel(base.transformer), tokenizer, 1, 0, TextRewardConfig())
    pair = RankedResponses("q", ("good . bad .", "meh . meh ."), 1.0, 0, parts=("left", "right"))
    member = rm.members[0]
    optimizer = torch.optim.Adam(member.parameters(), lr=2e-2)
    for _ in range(40):
        loss = rm.group_losses(member, [pair]).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    good, meh, good_bad, meh_meh = rm.score(["q"] * 4, ["good .", "meh .", *pair.responses])
    assert good > meh  # step 1: good ≻ meh
    assert meh_meh - meh > good_bad - good  # step 2: meh adds more than bad
    assert good_bad > meh_meh  # and the whole preference holds
