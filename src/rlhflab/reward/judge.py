"""A reward read straight from a written specification: the AI judge scores each response under
the constitution, and nothing is learned (Casper et al. 2023 §4.2; Bai et al. 2022b use the
judge's labels to train a preference model instead — `feedback/ai.py`).

If the judge's choices follow Bradley–Terry, P(y ≻ y′) = σ(r(y) − r(y′)), then r is known up to
a constant from comparisons with fixed reference responses y_ref (SFT samples). Asked in both
orders to cancel position bias, and averaged over the constitution's principles (weights w_k)
and the references:

    r(x, y) = Σ_k w_k/Σw · mean_ref ½·[logit P_A(y, y_ref | k) − logit P_A(y_ref, y | k)]

(one order: logit P_A(y, y_ref | k)). P_A is clipped to [1e-6, 1 − 1e-6], so a judge that gives
hard labels (no log-probabilities) yields scores of about ±14. The cost is 2·|principles|·|refs|
judge calls per response — the price of having no reward model.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from rlhflab.text.constitution import Principle
from rlhflab.text.judge import verdicts


def _logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


class JudgeReward:
    """`score(prompts, texts) -> [N]`: the judge's verdict against references, as a reward."""

    def __init__(
        self,
        judge,
        principles: list[Principle],
        template: str,
        references: list[str],
        both_orders: bool = True,
    ):
        if not references:
            raise ValueError("a judge reward needs at least one reference response")
        self.judge, self.principles, self.template = judge, principles, template
        self.references, self.both_orders = references, both_orders
        w = np.array([p.weight for p in principles], dtype=np.float64)
        self.weights = w / w.sum()

    @torch.no_grad()
    def score(self, prompts: list[str], texts: list[str], batch_size: int = 0) -> torch.Tensor:
        """r(x, y) for each (prompt, response); `batch_size` is accepted for the reward-model
        interface and unused."""
        combos = [(k, ref) for k in range(len(self.principles)) for ref in self.references]
        items = [
            (self.principles[k].text, x, y, ref)
            for x, y in zip(prompts, texts)
            for k, ref in combos
        ]
        found = verdicts(self.judge, self.template, items, self.both_orders)
        per = np.array(
            [
                0.5 * (_logit(v.p_first_xy) - _logit(v.p_first_yx))
                if self.both_orders
                else _logit(v.p_first_xy)
                for v in found
            ]
        ).reshape(len(texts), len(self.principles), len(self.references))
        return torch.tensor(per.mean(2) @ self.weights, dtype=torch.float32)


def judge_reward(cfg, judge, sft, tokenizer, prompts: list[str]) -> JudgeReward:
    """The run's judge reward: its constitution, and SFT responses to the first
    `judge.references` training prompts as the references (the same for every response)."""
    from rlhflab.text.constitution import load_constitution
    from rlhflab.text.sequences import generate

    jc, tc = cfg.judge, cfg.text
    _, refs, _ = generate(
        sft, tokenizer, prompts[: jc.references], tc.max_new_tokens, tc.temperature, cfg.seed + 77
    )
    return JudgeReward(judge, load_constitution(jc.constitution), jc.template, refs, jc.both_orders)
