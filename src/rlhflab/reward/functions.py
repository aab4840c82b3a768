"""Reward functions given as Python callables (verifiable rewards), as TRL's `reward_funcs`.

`text.reward_functions: [module:function, ...]` names callables called with keyword arguments,
as TRL calls them:
    f(prompts=[...], completions=[...], **kwargs) -> a sequence of N floats
(only the arguments a function accepts are passed, unless it takes **kwargs). The reward is
their sum. Anything else stops the run with an error that names the function: an exception,
a value of the wrong shape, or a NaN or infinite entry.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable

import numpy as np
import torch


class RewardFunctionError(RuntimeError):
    """A reward function raised, or returned something that is not N finite numbers."""


def load_reward_function(spec: str) -> Callable:
    """`module:function` (a dotted path after the colon reaches an attribute of an attribute)."""
    module_name, _, attr = spec.partition(":")
    try:
        obj = importlib.import_module(module_name)
    except ImportError as exc:
        raise RewardFunctionError(
            f"reward function {spec}: cannot import {module_name}: {exc}"
        ) from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise RewardFunctionError(f"reward function {spec}: {module_name} has no '{attr}'")
        obj = getattr(obj, part)
    if not callable(obj):
        raise RewardFunctionError(f"reward function {spec}: not callable")
    return obj


def _accepted(fn: Callable, kwargs: dict) -> dict:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # builtins without a signature get everything
        return kwargs
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return kwargs
    names = {p.name for p in params}
    return {k: v for k, v in kwargs.items() if k in names}


class RewardFunctions:
    """The sum of named reward functions, checked: `score(prompts, texts) -> [N]`."""

    def __init__(self, specs: list[str]):
        self.functions = [(spec, load_reward_function(spec)) for spec in specs]

    def __call__(self, prompts: list[str], completions: list[str]) -> torch.Tensor:
        total = np.zeros(len(completions))
        for spec, fn in self.functions:
            kwargs = {"prompts": list(prompts), "completions": list(completions)}
            try:
                out = fn(**_accepted(fn, kwargs))
            except Exception as exc:
                raise RewardFunctionError(
                    f"reward function {spec} raised {type(exc).__name__}: {exc}"
                ) from exc
            try:
                values = np.asarray(out, dtype=np.float64)
            except (TypeError, ValueError):
                raise RewardFunctionError(
                    f"reward function {spec} returned {type(out).__name__}, not numbers"
                ) from None
            if values.shape != (len(completions),):
                raise RewardFunctionError(
                    f"reward function {spec} returned shape {values.shape} for "
                    f"{len(completions)} completions (expected ({len(completions)},))"
                )
            bad = np.flatnonzero(~np.isfinite(values))
            if len(bad):
                raise RewardFunctionError(
                    f"reward function {spec} returned {values[bad[0]]} for completion "
                    f"{int(bad[0])} ({completions[bad[0]]!r})"
                )
            total += values
        return torch.as_tensor(total, dtype=torch.float32)
