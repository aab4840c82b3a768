"""The one fitting routine every reward model shares (`reward/fitting.py`): early stopping keeps
each member's best parameters, and the text reward model is fitted by it (issue 15)."""

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from rlhflab.config.text import TextRewardConfig
from rlhflab.reward.fitting import Schedule, Split, fit_members, split
from rlhflab.reward.losses import bradley_terry_loss, ranking_loss
from rlhflab.reward.text import TextRewardEnsemble
from rlhflab.text.models import TextRewardModel, build_word_tokenizer, tiny_gpt2
from rlhflab.text.task import TASKS
from rlhflab.types import RankedResponses


@dataclass
class LinearBT:
    """M members r̂ = θ_m·x on comparisons whose left side is one unit better: ℓ = BT(θ, 0, y)."""

    theta: torch.Tensor  # [M]
    target: torch.Tensor  # [N]

    def member_losses(self, idx, train):
        return bradley_terry_loss(self.theta[:, None], 0.0, self.target[idx], 0.0, "none")

    def member_parameters(self):
        return [[self.theta[m]] for m in range(len(self.theta))]


def test_early_stopping_keeps_each_members_best_parameters():
    # training labels always prefer the left side (θ → ∞); held-out ones do 70% of the time,
    # so the held-out loss is least at θ = logit(0.7) and rises as training goes on
    target = torch.tensor([1.0] * 20 + [0.7] * 10)
    theta = torch.zeros(2, requires_grad=True)
    net = LinearBT(theta, target)
    boot = np.tile(np.arange(20), (2, 1))
    val = np.zeros((2, 30), bool)
    val[0, 20:] = True  # member 1 has no validation data: it keeps its latest parameters
    checks: list[torch.Tensor] = []
    opt = torch.optim.Adam([theta], lr=0.05)
    schedule = Schedule(batch_size=5, max_epochs=100, patience=3)
    steps = fit_members(
        net,
        opt,
        Split(boot, val, val[0]),
        schedule,
        np.random.default_rng(0),
        True,
        lambda step, train, v: checks.append(v[0]),
    )
    assert steps == 400  # member 1 never stops early
    best_val = min(float(v) for v in checks)
    with torch.no_grad():
        final_val = float(net.member_losses(torch.arange(20, 30)[None], False)[0].mean())
    assert final_val == pytest.approx(best_val, abs=1e-6)
    theta = theta.detach()
    assert abs(float(theta[0]) - np.log(0.7 / 0.3)) < 0.3  # the best check, not the last
    assert float(theta[1]) > float(theta[0]) + 2  # trained on to the end


def test_the_split_is_by_query_id_and_a_single_held_out_member_keeps_every_training_label():
    ids = [q for q in range(60) for _ in (0, 1)]  # overlap 2
    one = split(ids, 1, "held_out", 0.25, np.random.default_rng(0))
    three = split(ids, 3, "held_out", 0.25, np.random.default_rng(0))
    assert one is not None and three is not None
    held = {q for q, h in zip(ids, one.held) if h}
    assert held and not held & {q for q, h in zip(ids, one.held) if not h}
    assert sorted(one.boot[0]) == list(np.flatnonzero(~one.held))  # no resample for one member
    assert len(set(three.boot[0])) < len(three.boot[0])  # a bootstrap per member of three
    oob = split(ids, 3, "out_of_bag", 0.25, np.random.default_rng(0))
    assert oob is not None and not oob.held.any()
    assert all(not oob.val[m, oob.boot[m]].any() for m in range(3))


@pytest.fixture(scope="module")
def tiny_rm():
    tokenizer = build_word_tokenizer(TASKS["reviews"].vocabulary)
    model = tiny_gpt2(len(tokenizer), n_layer=1, n_embd=32, n_head=2, tokenizer=tokenizer)
    return TextRewardModel(model.transformer), tokenizer


def test_text_losses_per_comparison_match_the_hand_computed_ones(tiny_rm):
    base, tokenizer = tiny_rm
    cfg = TextRewardConfig(margin=0.5, label_noise=0.1)
    rm = TextRewardEnsemble(base, tokenizer, cfg=cfg)
    p = "review of the film :"
    groups = [
        RankedResponses(p, ("great", "dull"), target=0.5),  # a tie
        RankedResponses(p, ("great fun", "fine", "dull")),  # a ranking of three
        RankedResponses(p, ("fine", "dull")),
    ]
    member = rm.members[0].eval()
    with torch.no_grad():
        got = rm.group_losses(member, groups)
        s = [rm.member_scores([p] * len(g.responses), list(g.responses))[0] for g in groups]
    expected = [
        bradley_terry_loss(s[0][0], s[0][1], torch.tensor(0.5), 0.1),  # no margin on a tie
        ranking_loss(s[1][None], 0.5, 0.1),
        bradley_terry_loss(s[2][0] - 0.5, s[2][1], torch.tensor(1.0), 0.1),
    ]
    assert got == pytest.approx(torch.stack(expected), abs=1e-5)


def test_the_text_reward_model_learns_and_stops_early_by_the_shared_routine(tiny_rm):
    base, tokenizer = tiny_rm
    p = "review of the film :"
    good, bad = ["great", "great fun", "fine"], ["dull", "boring", "bad"]
    comps = [RankedResponses(p, (good[q % 3], bad[(q // 3) % 3]), query_id=q) for q in range(48)]
    cfg = TextRewardConfig(epochs=40, patience=2, lr=3e-3, batch_size=8, weight_decay=0.05)
    rm = TextRewardEnsemble(base, tokenizer, members=2, seed=0, cfg=cfg)
    assert rm.optimizer.param_groups[0]["weight_decay"] == 0.05  # from the config
    logged: list[dict] = []
    metrics = rm.fit(comps, logged.append)
    assert metrics["rm_val_acc"] == 1.0 and metrics["rm_val_pairs"] > 5
    assert metrics["rm_steps"] < 40 * 5  # early stopping cut the 40 epochs short
    assert logged and all(r["rm_val_loss"] >= 0 for r in logged)
