"""Dawid–Skene: each annotator's confusion matrix and each query's true answer, estimated
together by EM from redundant labels alone (Dawid & Skene 1979).

Items i have a latent true class z_i ∈ {1..K} with prior π; annotator a answers class l for
true class c with probability θ_a[c, l]. Labels are independent given z, so
    E-step: T_ic ∝ π_c · Π_{(a, l) labels of i} θ_a[c, l]
    M-step: π_c = mean_i T_ic,
            θ_a[c, l] = (Σ_{i labelled l by a} T_ic + α) / (Σ_{i labelled by a} T_ic + Kα)
starting from the (soft) majority vote. An annotator's accuracy is Σ_c π_c·θ_a[c, c]; the
two-class confusion also separates a position bias (answering "left" whatever the truth:
θ[right, left] high) from plain noise.

For pairwise judgements the classes are left and right (strict answers only; ties and can't
tell are left out). Departures: a Dirichlet smoothing α (default 1) keeps annotators with few
labels away from 0 and 1; only items with ≥ 2 labels are used, since a lone label is its own
majority and would tell nothing about its annotator but inflate their accuracy.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass
class DawidSkene:
    """The fitted model: class prior, confusion per annotator, and posteriors per item."""

    classes: list[str]
    prior: np.ndarray  # [K]
    confusion: dict[str, np.ndarray]  # annotator → [K, K] rows: true class, columns: answer
    posterior: dict[Hashable, np.ndarray]  # item → [K]
    labels: dict[str, int]  # annotator → labels used
    iterations: int

    def accuracy(self, annotator: str) -> float:
        """P(the annotator's answer is the true class) = Σ_c π_c·θ[c, c]."""
        return float(self.prior @ np.diag(self.confusion[annotator]))


def dawid_skene(
    rows: Sequence[tuple[Hashable, str, str]],
    classes: tuple[str, ...] = ("left", "right"),
    smoothing: float = 1.0,
    max_iter: int = 100,
    tol: float = 1e-6,
) -> DawidSkene:
    """Fit on (item, annotator, label) rows; labels outside `classes` and items with fewer than
    two usable labels are ignored. Raises ValueError when nothing is left."""
    K, index = len(classes), {c: k for k, c in enumerate(classes)}
    by_item: dict[Hashable, list[tuple[str, int]]] = defaultdict(list)
    for item, annotator, label in rows:
        if label in index:
            by_item[item].append((annotator, index[label]))
    by_item = {i: labs for i, labs in by_item.items() if len(labs) >= 2}
    if not by_item:
        raise ValueError("Dawid–Skene needs items judged by at least two annotators")
    items = list(by_item)
    names = sorted({a for labs in by_item.values() for a, _ in labs})
    col = {a: j for j, a in enumerate(names)}
    # counts[i, a, l]: how often annotator a gave label l to item i
    counts = np.zeros((len(items), len(names), K))
    for i, item in enumerate(items):
        for a, lab in by_item[item]:
            counts[i, col[a], lab] += 1
    T = counts.sum(1) + 1e-9  # the soft majority vote
    T /= T.sum(1, keepdims=True)
    it = 0
    while it < max_iter:
        it += 1
        prior = T.mean(0)
        theta = np.einsum("ic,ial->acl", T, counts) + smoothing  # [A, K, K]
        theta /= theta.sum(2, keepdims=True)
        log_t = np.log(prior)[None] + np.einsum("ial,acl->ic", counts, np.log(theta))
        new = np.exp(log_t - log_t.max(1, keepdims=True))
        new /= new.sum(1, keepdims=True)
        done = np.abs(new - T).max() < tol
        T = new
        if done:
            break
    return DawidSkene(
        list(classes),
        prior,
        {a: theta[col[a]] for a in names},
        {item: T[i] for i, item in enumerate(items)},
        {a: int(counts[:, col[a]].sum()) for a in names},
        it,
    )
