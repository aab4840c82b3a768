"""Reward functions for `text.reward_functions`, in the form TRL's `reward_funcs` take:
`f(prompts=..., completions=..., **kwargs) -> one float per completion`.

They double as examples: a function of your own is named the same way, `module:function`,
from any module Python can import.
"""

from __future__ import annotations

from rlhflab.text.task import TASKS


def reviews_gold(completions: list[str], **kwargs) -> list[float]:
    """The built-in task's gold reward, as a verifiable reward (GRPO against the truth)."""
    return [TASKS["reviews"].gold(c) for c in completions]


def ends_with_period(completions: list[str], **kwargs) -> list[float]:
    """1 for a completion that ends with " .", else 0: a format reward."""
    return [1.0 if c.rstrip().endswith(".") else 0.0 for c in completions]
