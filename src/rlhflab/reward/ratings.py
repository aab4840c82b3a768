"""Ratings in the control reward model: Likert scores of single segments, with a calibration per
annotator, fitted alone or together with pairwise comparisons.

People use a rating scale differently: one is lenient, another harsh; one uses the whole scale,
another its middle. A rating y of segment σ by annotator a is modelled as an affine image of the
segment's return plus noise (the linear-Gaussian form of an ordinal rating model, cf. the
per-rater offsets of Dawid & Skene 1979 and Casper et al. 2023, §3.1.4 on scalar feedback):
    y = α_a + s_a·R̂(σ) + ξ,   s_a = exp(log s_a) > 0,   ξ ~ N(0, σ²)
so the loss is the squared error averaged over ratings,
    L_rate = mean_i (y_i − α_{a_i} − s_{a_i}·R̂(σ_i))²,
with α_a and s_a learned beside r̂ (a harsh rater's α is low, a rater who uses the scale's
middle has a small s; the sign of s is fixed, so a rating can never reverse an order). With
comparisons too the objective is L = L_BT + λ·L_rate (`weight` λ), where L_BT is
`reward/losses.py`'s Bradley–Terry loss; R̂ and the calibrations are fitted jointly. Comparisons
that carry part labels add the process-feedback term of `reward/process.py`,
λ_part·mean ℓ_BT,part (`reward.part_weight`), as in `RewardEnsemble.fit`.

Departure from `RewardEnsemble.fit`: a fixed number of full-batch Adam steps on every member
alike (no bootstrap, no early stopping), since ratings and comparisons share no validation
split yet; the members stay independent networks with their own initialisation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from rlhflab.reward.losses import bradley_terry_loss
from rlhflab.reward.model import RewardEnsemble
from rlhflab.reward.process import part_loss, part_targets
from rlhflab.types import Comparison, Segment

LIKERT = (1, 7)  # the labeling app's rating scale


@dataclass(frozen=True)
class Rating:
    """One annotator's score of one segment on the Likert scale."""

    segment: Segment
    rating: float
    annotator: str = "synthetic"

    def __post_init__(self) -> None:
        lo, hi = LIKERT
        if not np.isfinite(self.rating) or not lo <= self.rating <= hi:
            raise ValueError(f"rating must be a number from {lo} to {hi}, got {self.rating!r}")


class RatingCalibration(nn.Module):
    """α_a and log s_a of every annotator: [M] members × [A] annotators."""

    def __init__(self, annotators: list[str], members: int):
        super().__init__()
        self.index = {a: i for i, a in enumerate(annotators)}
        lo, hi = LIKERT
        self.offset = nn.Parameter(torch.full((members, len(annotators)), (lo + hi) / 2))
        self.log_scale = nn.Parameter(torch.zeros(members, len(annotators)))

    def forward(self, returns: torch.Tensor, annotators: torch.Tensor) -> torch.Tensor:
        """[M, n] predicted ratings α_a + s_a·R̂ of returns [M, n] given by annotators [n]."""
        return self.offset[:, annotators] + self.log_scale[:, annotators].exp() * returns


def rating_loss(predicted: torch.Tensor, ratings: torch.Tensor) -> torch.Tensor:
    """[M] mean squared error of each member's predicted ratings [M, n] against ratings [n]."""
    return ((predicted - ratings) ** 2).mean(-1)


def fit_ratings(
    ensemble: RewardEnsemble,
    ratings: list[Rating],
    comparisons: list[Comparison] | None = None,
    weight: float = 1.0,
    steps: int = 300,
    lr: float | None = None,
) -> dict:
    """Fit r̂ (every member) and the annotators' calibrations to ratings and, if given,
    comparisons: L = L_BT + weight·L_rate. Returns the final losses and each annotator's
    calibration (offset, scale; averaged over members)."""
    comparisons = [c for c in comparisons or [] if c.judgement.target is not None]
    if not ratings and not comparisons:
        raise ValueError("fit_ratings: no ratings and no usable comparisons")
    segments = [r.segment for r in ratings] + [s for c in comparisons for s in (c.left, c.right)]
    raw = np.concatenate(
        [ensemble.raw_features(s.obs, s.actions, s.absorbing_mask) for s in segments]
    )
    ensemble.feature_rms.update(raw[raw[:, -1] == 0, :-1])
    names = sorted({r.annotator for r in ratings})
    members = len(ensemble.trained_on)
    calibration = RatingCalibration(names, members)
    y = torch.tensor([r.rating for r in ratings], dtype=torch.float32)
    who = torch.tensor([calibration.index[r.annotator] for r in ratings], dtype=torch.long)
    target = torch.tensor([c.judgement.target for c in comparisons], dtype=torch.float32)
    parts = part_targets(comparisons)
    params = list(ensemble.net.parameters()) + list(calibration.parameters())
    optimizer = torch.optim.Adam(params, lr=lr or ensemble.cfg.lr)
    losses: dict[str, float] = {}
    cfg = ensemble.cfg
    for _ in range(steps):
        rewards = ensemble.segment_rewards(segments)  # [M, n_ratings + 2·n_comparisons, k]
        returns = rewards.sum(-1)
        loss = torch.zeros(members)
        if ratings:
            rate = rating_loss(calibration(returns[:, : len(ratings)], who), y)
            loss = loss + weight * rate
            losses["rating_loss"] = float(rate.detach().mean())
        if comparisons:
            pairs = returns[:, len(ratings) :]
            bt = bradley_terry_loss(
                pairs[:, 0::2], pairs[:, 1::2], target, cfg.label_noise, "none"
            ).mean(-1)
            loss = loss + bt
            losses["bt_loss"] = float(bt.detach().mean())
            if parts is not None:  # process feedback on the comparisons that carry it
                steps_of_pairs = rewards[:, len(ratings) :]
                left, right = steps_of_pairs[:, 0::2], steps_of_pairs[:, 1::2]
                part = part_loss(left, right, parts, cfg.label_noise).mean(-1)
                loss = loss + cfg.part_weight * part
                losses["part_loss"] = float(part.detach().mean())
        optimizer.zero_grad()
        loss.sum().backward()
        optimizer.step()
    ensemble.fits += 1
    with torch.no_grad():
        offset, scale = calibration.offset.mean(0), calibration.log_scale.exp().mean(0)
    calibrations = {a: (float(offset[i]), float(scale[i])) for a, i in calibration.index.items()}
    return {**losses, "calibration": calibrations}
