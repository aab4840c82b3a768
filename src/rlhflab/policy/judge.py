"""The AI judge a run uses, from its `judge` config: a local causal LM (`judge.model`, by hub name
or path; `base` is the run's own Step-0 model, whose reviews-insults corpus holds judge
examples; `builtin` trains the reviews task's tiny judge first, `policy/sft.py`; `scripted` is
the simulated judge of the reviews task) or an OpenAI-compatible server (`judge.url`). The
judges themselves are in `rlhflab.text.judge`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rlhflab.config import RunConfig
from rlhflab.policy.sft import pretrain_builtin_judge
from rlhflab.text.judge import EndpointJudge, HFJudge
from rlhflab.text.judge_world import ScriptedJudge


def make_judge(cfg: RunConfig, out: Path, base: str, log: Callable[[dict], None] | None = None):
    """The judge; `out`: where a built-in judge is trained; `base`: the run's Step-0 model."""
    jc = cfg.judge
    if jc.url is not None:
        return EndpointJudge(jc.url, jc.api_model, jc.api_key_env, jc.timeout, jc.retries)
    if jc.model is None:
        raise ValueError("an AI judge needs judge.model or judge.url")
    if jc.model == "scripted":
        return ScriptedJudge(jc.template, jc.scripted_scale, jc.scripted_bias, jc.scripted_noise)
    if jc.model == "base":
        return HFJudge(base, jc.batch_size)
    path = str(pretrain_builtin_judge(cfg, out, log)) if jc.model == "builtin" else jc.model
    return HFJudge(path, jc.batch_size)
