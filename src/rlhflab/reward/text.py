"""Reward models for text (InstructGPT Step 2): r̂(x, y) from pairwise preferences and K-wise
rankings.

Each comparison is one prompt with K ≥ 2 responses, best first. All C(K,2) pairs of a
prompt go through the model together, in one batch element (InstructGPT §3.5: "we
train on all C(K,2) comparisons from each prompt as a single batch element", which
avoids overfitting to responses seen in many pairs). Pairs may be ties (target ½).
The loss is `ranking_loss` / `bradley_terry_loss`. Fitting is the routine every reward model
shares (`reward/fitting.py`: bootstrap per member, split by query id with
`text.reward.val_fraction`, early stopping on the held-out queries, warm start, AdamW weight
decay); this module only says how a member scores a prompt and response. The ensemble's mean
is the reward. Departure from InstructGPT: a single epoch there; here up to `epochs`, stopped
early when the held-out loss stops improving, and each member's gradient clipped to norm 1
(TRL's default).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch

from rlhflab.config.text import TextRewardConfig
from rlhflab.reward.fitting import Schedule, fit_members, is_validation, split
from rlhflab.reward.losses import bradley_terry_loss, ranking_loss
from rlhflab.text.models import TextRewardModel, context_length
from rlhflab.text.sequences import encode
from rlhflab.types import RankedResponses


def query_ids(comparisons: list[RankedResponses]) -> list[int]:
    """Each comparison's query id; list position stands in for comparisons that have none."""
    return [i if c.query_id is None else c.query_id for i, c in enumerate(comparisons)]


def split_by_query(
    comparisons: list[RankedResponses], val_fraction: float
) -> tuple[list[RankedResponses], list[RankedResponses]]:
    """(training, validation) comparisons: a query is held out by its id (`is_validation`), so
    every judgement of one query lands on the same side."""
    held = [is_validation(q, val_fraction) for q in query_ids(comparisons)]
    return (
        [c for c, h in zip(comparisons, held) if not h],
        [c for c, h in zip(comparisons, held) if h],
    )


@dataclass
class _Members:
    """The ensemble on one fit's comparisons, as `reward/fitting.py` sees it."""

    ensemble: TextRewardEnsemble
    comparisons: list[RankedResponses]
    chunk: int = 64  # groups per forward when validating

    def member_losses(self, idx: torch.Tensor, train: bool) -> torch.Tensor:
        out = []
        for member, rows in zip(self.ensemble.members, idx.tolist()):
            member.train(train)
            step = len(rows) if train else self.chunk
            out.append(
                torch.cat(
                    [
                        self.ensemble.group_losses(
                            member, [self.comparisons[i] for i in rows[s : s + step]]
                        )
                        for s in range(0, len(rows), step)
                    ]
                )
            )
        return torch.stack(out)

    def member_parameters(self) -> list[list[torch.Tensor]]:
        return [list(m.parameters()) for m in self.ensemble.members]


class TextRewardEnsemble:
    def __init__(
        self,
        base: TextRewardModel,
        tokenizer,
        members: int = 1,
        seed: int = 0,
        cfg: TextRewardConfig | None = None,
    ):
        self.cfg = cfg or TextRewardConfig()
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
        self.optimizer = torch.optim.AdamW(
            [p for m in self.members for p in m.parameters()],
            lr=self.cfg.lr,
            weight_decay=self.cfg.weight_decay,
        )
        self.fits = 0

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

    def group_losses(self, member, groups: list[RankedResponses]) -> torch.Tensor:
        """[G] the loss of each comparison under one member: Bradley–Terry for a pair (ties as
        ½), InstructGPT's all-pairs ranking loss for K > 2, with `margin` and `label_noise`."""
        margin, noise = self.cfg.margin, self.cfg.label_noise
        batch = encode(
            self.tokenizer,
            [g.prompt for g in groups for _ in g.responses],
            [r for g in groups for r in g.responses],
            self.max_length,
        )
        scores = member(batch.input_ids, batch.attention_mask).float()  # bf16 under autocast
        sizes = [len(g.responses) for g in groups]
        starts = np.cumsum([0, *sizes[:-1]])
        out = scores.new_zeros(len(groups))
        for K in sorted(set(sizes)):  # one batched loss per ranking size
            rows = [i for i, k in enumerate(sizes) if k == K]
            s = scores[torch.as_tensor(starts[rows])[:, None] + torch.arange(K)]
            if K == 2:  # pairs may be ties
                target = torch.tensor([groups[i].target for i in rows])
                loss = bradley_terry_loss(
                    s[:, 0] - margin * (target == 1), s[:, 1], target, noise, "none"
                )
            else:
                loss = ranking_loss(s, margin, noise, "none")
            out = out.index_put((torch.as_tensor(rows),), loss)
        return out

    def fit(self, comparisons: list[RankedResponses], on_log=None) -> dict:
        """Fit every member by the shared routine (`reward/fitting.py`) on the training queries;
        returns held-out accuracy and calibration. The split is by query id, with
        `val_fraction` of the queries held out; the held-out loss stops the fit early."""
        cfg = self.cfg
        parts = split(
            query_ids(comparisons), len(self.members), "held_out", cfg.val_fraction, self.rng
        )
        if parts is None:
            return {"rm_val_pairs": 0}
        schedule = Schedule(
            cfg.batch_size, cfg.epochs, cfg.patience, cfg.min_steps, max_grad_norm=1.0
        )

        def on_check(step: int, train_loss: torch.Tensor, val_loss: torch.Tensor) -> None:
            if on_log:
                on_log(
                    {
                        "phase": "reward_model",
                        "step": step,
                        "rm_train_loss": float(train_loss.mean()),
                        "rm_val_loss": float(val_loss.mean()),
                    }
                )

        steps = fit_members(
            _Members(self, comparisons),
            self.optimizer,
            parts,
            schedule,
            self.rng,
            self.fits == 0,
            on_check,
        )
        self.fits += 1
        for m in self.members:
            m.eval()
        val = [c for c, h in zip(comparisons, parts.held) if h]
        return {"rm_steps": steps, **self.evaluate(val)}

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
