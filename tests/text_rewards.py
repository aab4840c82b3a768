"""Reward functions for the text tests, named in config as `text_rewards:NAME` (tests/ is on the
path), as a TRL user names theirs."""

import math

POSITIVE = {"great", "good", "wonderful", "superb", "lovely", "brilliant", "moving", "clever"}


def positive_words(prompts, completions, **kwargs):
    """A verifiable reward: the share of a completion's words that are positive."""
    return [sum(w in POSITIVE for w in c.split()) / max(1, len(c.split())) for c in completions]


def length_only(completions):  # takes only what it names
    return [float(len(c.split())) for c in completions]


def raises(prompts, completions, **kwargs):
    raise KeyError("no such field")


def nan_at_second(prompts, completions, **kwargs):
    return [math.nan if i == 1 else 0.0 for i in range(len(completions))]


def one_short(prompts, completions, **kwargs):
    return [0.0] * (len(completions) - 1)


calls = {"flaky": 0}


def flaky(prompts, completions, **kwargs):
    """Fine twice (SFT's evaluation, RL iteration 1), then raises."""
    calls["flaky"] += 1
    if calls["flaky"] >= 3:
        raise RuntimeError("the grader went away")
    return [0.0] * len(completions)
