"""Per-annotator reliability for a reward model — the control ensemble (segments) and the text
ensemble (`reward/text.py`, pairs of responses) alike: estimate each annotator's rationality β_a,
down-weight the unreliable, and flag those who disagree with the rest.

The model (Bradley–Terry with one inverse temperature per annotator, `reward/losses.py`):
    P[a says σ¹ ≻ σ²] = (1 − ε)·σ(β_a·Δ) + ε/2,   Δ = R̂(σ¹) − R̂(σ²)
fitted by alternating maximisation, one step per reward-model refit:
  1. the ensemble is fitted with every label's loss using its annotator's β_a (all 1 at first);
  2. with r̂ fixed, each β_a is the MAP estimate on a log-spaced grid, under a Gaussian prior
     on log(β_a/β₀) with std `reward.reliability_prior` around the pooled β₀ (shrinks
     annotators with few labels), from the *out-of-bag* margins Δ of their comparisons (the
     members that did not train on a label judge it, so an annotator cannot agree with a model
     fitted to their own noise);
  3. β is normalised to a label-weighted mean of 1 (the reward's scale is free) and used by the
     next fit. The first fit runs steps 1–3 and then fits again.
This is the per-annotator temperature of the issue; it is Dawid–Skene's idea (Dawid & Skene
1979: estimate each rater's confusion and the truth together, `feedback/dawid_skene.py`) with
the reward model in place of the latent true label, so it needs no query judged twice.

Detection by disagreement: annotator a's strict answers that contradict the sign of the
out-of-bag margin, d_a of n_a, are compared with the rate p of everyone else's:
    z_a = (d_a − n_a·p) / √(n_a·p·(1 − p))
and z_a > `reward.flag_z` flags a. `reward.annotators=exclude_flagged` gives flagged annotators
β = 0 (their labels no longer move the model) and everyone else β = 1; when someone is newly
flagged the ensemble is re-initialised and fitted again at once, since a warm-started model
keeps whatever the excluded labels taught it (a backdoor no other label pushes back on).
Departure: β and the flags of a refit are computed after it and used by the next one.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Protocol

import numpy as np
import torch

from rlhflab.config import RewardConfig
from rlhflab.config.text import TextRewardConfig
from rlhflab.reward.losses import bradley_terry_loss
from rlhflab.types import Comparison, RankedResponses

Judged = Comparison | RankedResponses


class WeightedEnsemble(Protocol):
    """What reliability needs of a reward ensemble (`RewardEnsemble`, `TextRewardEnsemble`)."""

    fits: int
    annotator_scale: dict[str, float]

    def fit(self, comparisons: list) -> dict: ...

    def held_out_margins(self, comparisons: list) -> np.ndarray: ...

    def reset_weights(self) -> None: ...


def target_of(c: Judged) -> float | None:
    """P(first ≻ second) a judgement states: a segment pair's target (None: can't tell), a text
    pair's target, None for a K > 2 ranking (β and flags are estimated on pairs)."""
    if isinstance(c, Comparison):
        return c.judgement.target
    return c.target if len(c.responses) == 2 else None


GRID = torch.cat([torch.zeros(1), torch.logspace(-3, 3, 241)])  # candidate β


@dataclass
class AnnotatorEstimate:
    """One annotator as the reward model sees them."""

    annotator: str
    labels: int  # usable labels (not can't-tell)
    beta: float  # rationality, normalised to a label-weighted mean of 1
    consensus_agreement: float | None  # strict answers agreeing with the out-of-bag margin
    estimated_accuracy: float | None  # P(agree with the margin's side) under the fitted model
    z: float | None  # disagreement z-score against everyone else
    flagged: bool

    def to_dict(self) -> dict:
        return asdict(self)


def map_beta(
    delta: np.ndarray, target: np.ndarray, label_noise: float, center: float, prior_std: float
) -> float:
    """The MAP β on GRID: Bradley–Terry log-likelihood of the answers plus a Gaussian prior on
    log(β/center) (none when center is 0, which gives the pooled maximum likelihood)."""
    x = torch.as_tensor(delta, dtype=torch.float32)[None]
    y = torch.as_tensor(target, dtype=torch.float32)[None]
    nll = bradley_terry_loss(
        x.expand(len(GRID), -1),
        torch.zeros_like(x),
        y.expand(len(GRID), -1),
        label_noise,
        "none",
        GRID[:, None],
    ).sum(1)
    if center > 0:
        log_ratio = torch.log(GRID.clamp_min(1e-12) / center)
        nll = nll + 0.5 * (log_ratio / prior_std) ** 2
    return float(GRID[int(torch.argmin(nll))])


def estimate_annotators(
    ensemble: WeightedEnsemble, comparisons: list, cfg: RewardConfig | TextRewardConfig
) -> list[AnnotatorEstimate]:
    """β, agreement with the consensus model and the disagreement flag of every annotator."""
    usable = [c for c in comparisons if target_of(c) is not None]
    if not usable or not ensemble.fits:
        return []
    delta = ensemble.held_out_margins(usable)
    target = np.array([target_of(c) for c in usable], dtype=np.float64)
    names = np.array([c.annotator or "" for c in usable])
    label_noise = cfg.label_noise
    pooled = map_beta(delta, target, label_noise, 0.0, cfg.reliability_prior)
    strict = (target != 0.5) & (delta != 0)
    wrong = strict & ((delta > 0) != (target > 0.5))  # a soft target > ½ says "first"
    raw, out = {}, []
    for name in sorted(set(names)):
        mine = names == name
        raw[name] = map_beta(delta[mine], target[mine], label_noise, pooled, cfg.reliability_prior)
    total = sum(raw[n] * int((names == n).sum()) for n in raw) / len(names)
    for name, beta in raw.items():
        mine, others = names == name, names != name
        n, d = int((mine & strict).sum()), int((mine & wrong).sum())
        p = (wrong & others).sum() / max(1, (strict & others).sum())
        z = None
        if n and 0 < p < 1:
            z = (d - n * p) / math.sqrt(n * p * (1 - p))
        eps = label_noise
        acc = eps / 2 + (1 - eps) / (1 + np.exp(-beta * np.abs(delta[mine & strict])))
        out.append(
            AnnotatorEstimate(
                str(name),
                int(mine.sum()),
                beta / total if total > 0 else 1.0,
                1 - d / n if n else None,
                float(acc.mean()) if n else None,
                None if z is None else float(z),
                bool(z is not None and z > cfg.flag_z),
            )
        )
    return out


def apply_estimates(
    ensemble: WeightedEnsemble, estimates: list[AnnotatorEstimate], mode: str
) -> bool:
    """Set the ensemble's per-annotator β for its next fit, as `reward.annotators` says; True
    when `exclude_flagged` newly excludes someone (the members are then reset: a warm start
    would keep the backdoor the excluded labels taught)."""
    if mode == "reliability":
        ensemble.annotator_scale = {e.annotator: e.beta for e in estimates}
    elif mode == "exclude_flagged":
        before = {a for a, b in ensemble.annotator_scale.items() if b == 0.0}
        ensemble.annotator_scale = {e.annotator: 0.0 if e.flagged else 1.0 for e in estimates}
        if {e.annotator for e in estimates if e.flagged} - before:
            ensemble.reset_weights()
            return True
    return False


def fit_reward(
    ensemble: WeightedEnsemble,
    comparisons: list,
    cfg: RewardConfig | TextRewardConfig,
    estimate: bool = False,
) -> tuple[dict, list[AnnotatorEstimate]]:
    """Fit the ensemble; then, when `estimate` or `reward.annotators` is not `equal`, estimate
    every annotator (and unless `equal`, weight them for the next fit: the first fit is repeated
    with its own estimates)."""
    first = ensemble.fits == 0
    metrics = ensemble.fit(comparisons)
    if not estimate and cfg.annotators == "equal":
        return metrics, []
    estimates = estimate_annotators(ensemble, comparisons, cfg)
    if cfg.annotators != "equal" and estimates:
        reset = apply_estimates(ensemble, estimates, cfg.annotators)
        if first or reset:
            metrics = ensemble.fit(comparisons)
            estimates = estimate_annotators(ensemble, comparisons, cfg)
            apply_estimates(ensemble, estimates, cfg.annotators)
    return metrics, estimates
