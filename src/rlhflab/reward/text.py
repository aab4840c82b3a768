"""Reward models for text (InstructGPT Step 2): r̂(x, y) from pairwise preferences and K-wise
rankings.

Each comparison is one prompt with K ≥ 2 responses, best first. All C(K,2) pairs of a
prompt go through the model together, in one batch element (InstructGPT §3.5: "we
train on all C(K,2) comparisons from each prompt as a single batch element", which
avoids overfitting to responses seen in many pairs). Pairs may be ties (target ½).
The loss is `ranking_loss` / `bradley_terry_loss`; an optional ensemble fits members on
bootstraps of the comparisons, and its mean is the reward. Held-out comparisons use the
same fixed split as the control reward model (`is_validation`), by query id: every judgement
of a query (overlap > 1) falls on the same side.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from rlhflab.reward.losses import bradley_terry_loss, ranking_loss
from rlhflab.reward.model import is_validation
from rlhflab.text.models import TextRewardModel, context_length
from rlhflab.text.sequences import encode
from rlhflab.types import RankedResponses


def split_by_query(
    comparisons: list[RankedResponses], val_fraction: float
) -> tuple[list[RankedResponses], list[RankedResponses]]:
    """(training, validation) comparisons: a query is held out by its id (`is_validation`), so
    every judgement of one query lands on the same side; list position stands in for the id of
    comparisons that have none."""
    held = [
        is_validation(i if c.query_id is None else c.query_id, val_fraction)
        for i, c in enumerate(comparisons)
    ]
    return (
        [c for c, h in zip(comparisons, held) if not h],
        [c for c, h in zip(comparisons, held) if h],
    )


class TextRewardEnsemble:
    def __init__(self, base: TextRewardModel, tokenizer, members: int = 1, seed: int = 0):
        self.tokenizer = tokenizer
        self.max_length = context_length(base.backbone)
        self.members = []
        for k in range(members):
            m = copy.deepcopy(base)
            torch.manual_seed(seed + k)
            torch.nn.init.normal_(m.head.weight, std=0.02)
            torch.nn.init.zeros_(m.head.bias)
            self.members.append(m)
        self.rng = np.random.default_rng(seed)

    def state_dict(self) -> dict:
        return {"members": [m.state_dict() for m in self.members]}

    def load_state_dict(self, state: dict) -> None:
        for m, weights in zip(self.members, state["members"], strict=True):
            m.load_state_dict(weights)
            m.eval()

    def member_scores(self, prompts: list[str], responses: list[str]) -> torch.Tensor:
        """[M, N] scores of every member."""
        batch = encode(self.tokenizer, prompts, responses, self.max_length)
        return torch.stack([m(batch.input_ids, batch.attention_mask) for m in self.members])

    @torch.no_grad()
    def score(
        self, prompts: list[str], responses: list[str], batch_size: int = 256
    ) -> torch.Tensor:
        """Ensemble-mean r̂ for each (prompt, response)."""
        for m in self.members:
            m.eval()
        out = [
            self.member_scores(prompts[i : i + batch_size], responses[i : i + batch_size]).mean(0)
            for i in range(0, len(prompts), batch_size)
        ]
        return torch.cat(out) if out else torch.zeros(0)

    def _group_loss(
        self, member, groups: list[RankedResponses], margin: float, label_noise: float
    ) -> torch.Tensor:
        K = len(groups[0].responses)
        batch = encode(
            self.tokenizer,
            [g.prompt for g in groups for _ in range(K)],
            [r for g in groups for r in g.responses],
            self.max_length,
        )
        scores = member(batch.input_ids, batch.attention_mask).view(len(groups), K)
        if K == 2:  # pairs may be ties
            target = torch.tensor([g.target for g in groups])
            return bradley_terry_loss(
                scores[:, 0] - margin * (target == 1), scores[:, 1], target, label_noise
            )
        return ranking_loss(scores, margin, label_noise)

    def fit(
        self,
        comparisons: list[RankedResponses],
        epochs: int,
        lr: float,
        batch_size: int,
        margin: float = 0.0,
        label_noise: float = 0.0,
        on_log=None,
        val_fraction: float = 0.2,
    ) -> dict:
        """Fit every member on a bootstrap of the training split; returns held-out accuracy and
        calibration. The split is by query id (list position only for comparisons that have
        none), with `val_fraction` of the queries held out."""
        train, val = split_by_query(comparisons, val_fraction)
        for k, member in enumerate(self.members):
            member.train()
            opt = torch.optim.AdamW(member.parameters(), lr=lr, weight_decay=0.01)
            boot = (
                self.rng.integers(len(train), size=len(train))
                if len(self.members) > 1
                else np.arange(len(train))
            )
            for epoch in range(epochs):
                order = self.rng.permutation(boot)
                losses = []
                for start in range(0, len(order), batch_size):
                    loss = self._group_loss(
                        member,
                        [train[i] for i in order[start : start + batch_size]],
                        margin,
                        label_noise,
                    )
                    opt.zero_grad()
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(member.parameters(), 1.0)
                    opt.step()
                    losses.append(float(loss.detach()))
                if on_log:
                    on_log(
                        {
                            "phase": "reward_model",
                            "member": k,
                            "epoch": epoch + 1,
                            "rm_train_loss": float(np.mean(losses)),
                        }
                    )
            member.eval()
        return self.evaluate(val)

    @torch.no_grad()
    def evaluate(self, comparisons: list[RankedResponses]) -> dict:
        """Accuracy on strict held-out pairs (every pair of a ranking), and P̂[better ≻ worse] for
        calibration."""
        probs: list[float] = []
        outcomes: list[float] = []
        for c in comparisons:
            scores = self.score([c.prompt] * len(c.responses), list(c.responses))
            for i in range(len(scores)):
                for j in range(i + 1, len(scores)):
                    if c.target > 0.5:  # strict pairs (an AI soft label is > ½)
                        p = float(torch.sigmoid(scores[i] - scores[j]))
                        flip = self.rng.random() < 0.5  # report calibration over both orientations
                        probs.append(1 - p if flip else p)
                        outcomes.append(0.0 if flip else 1.0)
        if not probs:
            return {"rm_val_pairs": 0}
        prob, outcome = np.array(probs), np.array(outcomes)
        return {
            "rm_val_pairs": len(prob),
            "rm_val_acc": float(np.mean((prob > 0.5) == (outcome == 1))),
            "rm_val_probs": prob.tolist(),
            "rm_val_outcomes": outcome.tolist(),
        }
