"""PPO on several learned rewards at once: fixed weights or a constraint (PPO-Lagrangian).

Per step z_k = r̂_k standardised (`reward/objectives.py`), and the policy optimises either

    r = Σ_k w_k·z_k                                   (a fixed weighting), or
    r = z_primary + λ·z_constrained,  λ ← max(0, λ + η·(b − mean z_constrained))

with λ updated by projected dual ascent after every rollout — the Lagrangian relaxation of
"maximise the primary objective subject to the constrained one ≥ b" (Ray et al. 2019's
PPO-Lagrangian; Dai et al. 2023, Safe RLHF, for helpful and harmless).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from rlhflab.config import RunConfig
from rlhflab.policy.control import ControlPolicy
from rlhflab.policy.rollout import Rollout
from rlhflab.reward.objectives import LagrangeMultiplier, ObjectiveRewards, weighted


def train_objectives(
    cfg: RunConfig,
    objectives: ObjectiveRewards,
    combine: dict[str, float] | tuple[str, str, LagrangeMultiplier],
    gold: dict[str, Callable[[Rollout], np.ndarray]],
    policy: ControlPolicy | None = None,
    on_log: Callable[[dict], None] | None = None,
) -> ControlPolicy:
    """PPO on several learned rewards at once (`reward/objectives.py`): per step z_k = r̂_k
    standardised, combined by fixed weights {k: w_k} (r = Σ w_k·z_k), or by a constraint
    (primary, constrained, λ): r = z_primary + λ·z_constrained with λ updated by projected
    dual ascent after every rollout on its mean z_constrained (PPO-Lagrangian, Safe RLHF).
    Every iteration logs λ, the mean z_k, and the gold return of each objective (`gold[k]`:
    its true reward per step of a rollout, [T, N])."""
    on_log = on_log or (lambda record: None)
    torch.set_num_threads(cfg.threads)
    policy = policy or ControlPolicy(cfg.env, cfg.policy, cfg.seed, budget=cfg.env_steps)
    iteration = 0
    while policy.env_steps < cfg.env_steps:
        rollout = policy.collect()
        z = objectives(rollout.raw_obs, rollout.actions, rollout.absorbing)
        record: dict = {"phase": "objectives", "iteration": iteration + 1}
        if isinstance(combine, dict):
            r = weighted(z, combine)
        else:
            primary, constrained, multiplier = combine
            r = multiplier.reward(z[primary], z[constrained])
            record["lambda"] = multiplier.update(float(z[constrained].mean()))
        stats = policy.update(rollout, r.numpy())
        iteration += 1
        record |= {
            "env_steps": policy.env_steps,
            **{f"z_{k}": float(v.mean()) for k, v in z.items()},
            **{f"gold_{k}": float(f(rollout).mean() * cfg.env.horizon) for k, f in gold.items()},
            **stats,
        }
        on_log(record)
    return policy
