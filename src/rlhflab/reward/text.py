"""Reward models for text (InstructGPT Step 2): r̂(x, y) from pairwise preferences and K-wise
rankings.

Each comparison is one prompt with K ≥ 2 responses, best first. All C(K,2) pairs of a
prompt go through the model together, in one batch element (InstructGPT §3.5: "we
train on all C(K,2) comparisons from each prompt as a single batch element", which
avoids overfitting to responses seen in many pairs). Pairs may be ties (target ½).
The loss is `ranking_loss` / `bradley_terry_loss`, plus, for pairs with step labels, the
per-step term of `reward/process.py` (weight `text.reward.part_weight`). Fitting is the routine
every reward model shares (`reward/fitting.py`: bootstrap per member, split by query id with
`text.reward.val_fraction`, early stopping on the held-out queries, warm start, AdamW weight
decay); this module only says how a member scores a prompt and response. The ensemble's mean
is the reward. Departure from InstructGPT: a single epoch there; here up to `epochs`, stopped
early when the held-out loss stops improving, and each member's gradient clipped to norm 1
(TRL's default).

Per-annotator treatment is the control reward model's (`reward/reliability.py`, one copy): a
pair judged by annotator a is fitted with their rationality β_a (`annotator_scale`),
P̂ = (1 − ε)·σ(β_a·(r̂(y₁) − r̂(y₂))) + ε/2, estimated from each member's out-of-bag margins
(`held_out_margins`, members that did not train on the pair); `text.reward.robust_trim` is the
shared trimmed loss.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from rlhflab.config.text import TextRewardConfig
from rlhflab.reward.fitting import Schedule, fit_members, is_validation, split
from rlhflab.reward.losses import bradley_terry_loss, ranking_loss
from rlhflab.reward.process import part_loss, step_prefixes
from rlhflab.text.models import TextRewardModel, context_length
from rlhflab.text.sequences import encode
from rlhflab.types import Judgement, RankedResponses


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
        self.optimizer = self._optimizer()
        self.fits = 0
        self.trained_on: list[set[int]] = [set() for _ in self.members]
        self.annotator_scale: dict[str, float] = {}  # β per annotator (reward/reliability.py)
        # a reset (an excluded annotator's labels forgotten) starts again from these weights
        self._initial = (
            [copy.deepcopy(m.state_dict()) for m in self.members]
            if self.cfg.annotators == "exclude_flagged"
            else None
        )

    def _optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(
            [p for m in self.members for p in m.parameters()],
            lr=self.cfg.lr,
            weight_decay=self.cfg.weight_decay,
        )

    def reset_weights(self) -> None:
        """Members back to their initial weights, a fresh optimiser; the next fit is a first
        one. Only with `annotators=exclude_flagged` (the initial weights are kept for it)."""
        if self._initial is None:
            raise ValueError("reset_weights needs text.reward.annotators=exclude_flagged")
        for m, state in zip(self.members, self._initial):
            m.load_state_dict(state)
        self.optimizer = self._optimizer()
        self.fits = 0

    def state_dict(self) -> dict:
        return {
            "members": [m.state_dict() for m in self.members],
            "annotator_scale": self.annotator_scale,
            "trained_on": [sorted(s) for s in self.trained_on],
        }

    def load_state_dict(self, state: dict) -> None:
        for m, weights in zip(self.members, state["members"], strict=True):
            m.load_state_dict(weights)
            m.eval()
        self.annotator_scale = dict(state.get("annotator_scale", {}))
        self.trained_on = [set(s) for s in state.get("trained_on", [[] for _ in self.members])]

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
                beta = torch.tensor(
                    [self.annotator_scale.get(groups[i].annotator or "", 1.0) for i in rows]
                )
                loss = bradley_terry_loss(
                    s[:, 0] - margin * (target == 1), s[:, 1], target, noise, "none", beta
                )
            else:
                loss = ranking_loss(s, margin, noise, "none")
            out = out.index_put((torch.as_tensor(rows),), loss)
        stepped = [i for i, g in enumerate(groups) if g.parts]
        if stepped and self.cfg.part_weight:  # per-step feedback (reward/process.py)
            steps = self.step_losses(member, [groups[i] for i in stepped])
            out = out.index_add(0, torch.as_tensor(stepped), self.cfg.part_weight * steps)
        return out

    def step_losses(self, member, pairs: list[RankedResponses]) -> torch.Tensor:
        """[P] each pair's mean Bradley–Terry loss over its labelled steps, a step's reward being
        the score it adds to its response's prefix (`reward/process.py`)."""
        prefixes = [step_prefixes(r) for g in pairs for r in g.responses]
        batch = encode(
            self.tokenizer,
            [g.prompt for g in pairs for r in g.responses for _ in step_prefixes(r)],
            [p for ps in prefixes for p in ps],
            self.max_length,
        )
        scores = member(batch.input_ids, batch.attention_mask).split([len(p) for p in prefixes])
        n = max(len(g.parts) for g in pairs)
        sides, targets = [], torch.full((len(pairs), n), float("nan"))
        for i, g in enumerate(pairs):
            first, second = scores[2 * i].diff(), scores[2 * i + 1].diff()
            k = min(len(first), len(second), len(g.parts))
            sides.append([F.pad(s[:k], (0, n - k)) for s in (first, second)])
            for j, label in enumerate(g.parts[:k]):
                t = Judgement(label).target
                targets[i, j] = float("nan") if t is None else t
        left, right = (torch.stack([s[side] for s in sides]) for side in (0, 1))
        return part_loss(left, right, targets, self.cfg.label_noise)

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
            cfg.batch_size, cfg.epochs, cfg.patience, cfg.min_steps, cfg.robust_trim, 1.0
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
        ids = query_ids(comparisons)
        self.trained_on = [{ids[i] for i in b} for b in parts.boot]
        for m in self.members:
            m.eval()
        val = [c for c, h in zip(comparisons, parts.held) if h]
        return {"rm_steps": steps, **self.evaluate(val)}

    @torch.no_grad()
    def held_out_margins(self, pairs: list[RankedResponses]) -> np.ndarray:
        """r̂(first) − r̂(second) of each pair, averaged over the members that did not train on
        its query (over every member where all did): the consensus an annotator is checked
        against (`reward/reliability.py`)."""
        for m in self.members:
            m.eval()
        scores = torch.cat(
            [
                self.member_scores(
                    [c.prompt for c in pairs[i : i + 128] for _ in (0, 1)],
                    [r for c in pairs[i : i + 128] for r in c.responses[:2]],
                )
                for i in range(0, len(pairs), 128)
            ],
            dim=1,
        )
        delta = scores[:, 0::2] - scores[:, 1::2]  # [M, n]
        ids = query_ids(pairs)
        unseen = torch.tensor([[q not in seen for q in ids] for seen in self.trained_on]).float()
        unseen[:, unseen.sum(0) == 0] = 1.0
        return ((delta * unseen).sum(0) / unseen.sum(0)).numpy()

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
