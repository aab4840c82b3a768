"""Process feedback in the control reward model: a preference on each part of two segments,
trained beside the preference on the whole (process-based supervision).

Outcome feedback says which of two segments is better. Process feedback also says, for each of
n aligned parts P_1 … P_n of the two segments (contiguous, `types.part_of_step`), which side's
part is better — the label on one step of a multi-step answer of Uesato et al. 2022 ("Solving
math word problems with process- and outcome-based feedback") and Lightman et al. 2023 ("Let's
verify step by step"), here on the parts of a trajectory (Casper et al. 2023, §3.2.2). Each
part is a Bradley–Terry comparison (`reward/losses.py`) of the part returns
    R̂_j(σ) = Σ_{t ∈ P_j} r̂(o_t, a_t),
so one comparison's loss becomes
    ℓ = ℓ_BT(R̂(σ¹) − R̂(σ²); y) + λ · mean_{j labelled} ℓ_BT(R̂_j(σ¹) − R̂_j(σ²); y_j)
with λ = `reward.part_weight`. Parts answered "can't tell", and comparisons without part
labels, add nothing. The part labels ride on the comparison (`Comparison.extra["parts"]`: one
judgement per part, as `SyntheticAnnotator.judge_parts` gives them).

Per-step feedback on text (`TextRewardEnsemble`): a response y is cut into its steps y_1 … y_n
(`response_steps`: sentences), and a step's reward is what it adds to the sequence score,
    r̂_j(x, y) = r̂(x, y_1 … y_j) − r̂(x, y_1 … y_{j−1}),
so the steps' rewards sum to r̂(x, y) − r̂(x, ∅) and a label on step j of two responses (their
j-th sentences, the later steps of the shorter one unlabelled) is the same Bradley–Terry part
term, `part_loss` with one step per part.

Departure from Lightman et al.: they train a classifier of each step as correct or not against
solutions known to be right or wrong; a control segment has no such reference, so each part
is judged against the other segment's aligned part instead.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F

from rlhflab.reward.losses import bradley_terry_loss
from rlhflab.types import Comparison, Judgement, part_of_step


def part_targets(comparisons: list[Comparison]) -> torch.Tensor | None:
    """[n, parts] each comparison's part targets (1, ½, 0; NaN: no label), or None when no
    comparison carries part labels."""
    labels = [c.extra.get("parts") for c in comparisons]
    sizes = {len(p) for p in labels if p}
    if not sizes:
        return None
    if len(sizes) > 1:
        raise ValueError(
            f"process feedback: comparisons cut into different numbers of parts {sizes}"
        )
    n = sizes.pop()
    nan = float("nan")
    rows = []
    for c, p in zip(comparisons, labels):
        if not p:
            rows.append([nan] * n)
            continue
        try:
            targets = [Judgement(j).target for j in p]
        except ValueError as e:
            raise ValueError(f"process feedback: query {c.query_id}, parts {p!r}: {e}") from None
        rows.append([nan if t is None else t for t in targets])
    return torch.tensor(rows, dtype=torch.float32)


def part_loss(
    left_steps: torch.Tensor,
    right_steps: torch.Tensor,
    targets: torch.Tensor,
    label_noise: float = 0.0,
    scale: torch.Tensor | float = 1.0,
) -> torch.Tensor:
    """[..., B] the mean Bradley–Terry loss over each comparison's labelled parts (0 where none).

    left_steps, right_steps: [..., B, k] per-step rewards r̂ of the two segments;
    targets: [..., B, parts] (NaN: no label); scale: the annotator's β, one or [..., B]."""
    n = targets.shape[-1]
    onehot = F.one_hot(torch.as_tensor(part_of_step(left_steps.shape[-1], n)), n)
    onehot = onehot.to(left_steps.dtype)
    left, right = left_steps @ onehot, right_steps @ onehot  # [..., B, parts] part returns
    labelled = ~torch.isnan(targets)
    beta = scale.unsqueeze(-1) if isinstance(scale, torch.Tensor) else scale
    loss = bradley_terry_loss(left, right, targets.nan_to_num(), label_noise, "none", beta)
    return (loss * labelled).sum(-1) / labelled.sum(-1).clamp_min(1)


STEP_END = re.compile(r"(?<=[.!?\n])\s+")  # a step ends after . ! ? or a newline


def response_steps(response: str) -> list[str]:
    """The steps of a text response, sentences with their trailing space kept, so that
    "".join(steps) == response."""
    cuts = [m.end() for m in STEP_END.finditer(response)]
    return [response[a:b] for a, b in zip([0, *cuts], [*cuts, len(response)]) if response[a:b]]


def step_prefixes(response: str) -> list[str]:
    """["", y_1, y_1 y_2, …, y]: the prefixes whose score differences are the steps' rewards."""
    steps = response_steps(response)
    return ["".join(steps[:j]) for j in range(len(steps) + 1)]
