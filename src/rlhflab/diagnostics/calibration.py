"""Calibration of a preference model: expected calibration error and the reliability diagram.

A reward model predicts p = P̂[σ¹ ≻ σ²] for each held-out query; y = 1 if the annotator chose
σ¹, 0 if σ². Sort the predictions into M equal-width bins B_b of [0, 1]; in each bin compare the
mean prediction with how often σ¹ was chosen:
    ECE = Σ_b (|B_b| / N) · |ȳ_b − p̄_b|
(Naeini et al. 2015; Guo et al. 2017 use the same estimator on top-label confidence). A
calibrated model has ECE → 0 as N grows; the reliability diagram plots ȳ_b against p̄_b, on the
diagonal when calibrated. Here the bins cover both sides of the preference, so over- and
under-confidence about "left" and about "right" both show.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Reliability:
    """Per-bin data for a reliability diagram, and the ECE."""

    edges: np.ndarray  # [M+1]
    mean_prediction: np.ndarray  # [M] p̄_b (NaN for empty bins)
    frequency: np.ndarray  # [M] ȳ_b (NaN for empty bins)
    count: np.ndarray  # [M] |B_b|
    ece: float


def reliability(predictions: np.ndarray, outcomes: np.ndarray, bins: int = 10) -> Reliability:
    """Reliability-diagram data and ECE for probabilities `predictions` of binary `outcomes`."""
    p, y = np.asarray(predictions, float), np.asarray(outcomes, float)
    if p.shape != y.shape or p.ndim != 1:
        raise ValueError(
            f"predictions and outcomes must be 1-d and the same length, got {p.shape} and {y.shape}"
        )
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.bincount(which, p, bins) / count
        freq = np.bincount(which, y, bins) / count
    filled = count > 0
    ece = (
        float(np.sum(count[filled] / max(len(p), 1) * np.abs(freq[filled] - mean_p[filled])))
        if len(p)
        else float("nan")
    )
    return Reliability(edges, mean_p, freq, count, ece)


def expected_calibration_error(
    predictions: np.ndarray, outcomes: np.ndarray, bins: int = 10
) -> float:
    return reliability(predictions, outcomes, bins).ece
