#!/usr/bin/env python
"""Benchmark: two learned objectives optimised by PPO, weighted or under a constraint with a
Lagrange multiplier updated by dual ascent during RL (issue 14 §4; docs/annotators.md).

CartPole-v1 (fixed 200-step horizon), two objectives with their own true rewards per step:

  helpful    the env's reward: 1 while the pole is up (0 in the absorbing state after a fall);
  harmless   −|x| / 2.4 while the pole is up (stay near the centre of the track), 0 after a
             fall — so falling early is *harmless* and the two objectives pull apart.

A synthetic annotator (τ = 0.1, ε = 0.05) judges `--pairs` pairs of 25-step segments of the
untrained policy's rollouts on each objective; a reward ensemble (`reward/model.py`, 3 members)
is fitted to each objective's labels. PPO (`objectives_loop.train_objectives`) then optimises,
per step,

  helpful only     z_helpful
  weighted         z_helpful + z_harmless                      (`reward/objectives.weighted`)
  constrained b    z_helpful + λ·z_harmless, λ ← max(0, λ + η·(b − mean z_harmless)) after
                   every rollout (η = 0.5; `LagrangeMultiplier`)

with z_k = r̂_k standardised over the untrained policy's steps (`ObjectiveRewards`). Reported per
seed: the gold return of each objective (mean of the last 5 iterations' rollouts, per 200-step
episode), the final λ and mean z_harmless against the bound b, and CPU seconds (the reward
models' fit shared out among the modes).

Departure from a full RLHF run: the labels are gathered once, before RL, on the untrained
policy's behaviour (the run's initial share), and the reward models are not refitted.

    python bench/constrained_control.py --seeds 3 --out bench/results/constrained_control.md
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from rlhflab.config import AnnotatorConfig, RewardConfig, build_config
from rlhflab.feedback.population import judge_pairs
from rlhflab.feedback.synthetic import SyntheticAnnotator
from rlhflab.objectives_loop import train_objectives
from rlhflab.policy.control import ControlPolicy
from rlhflab.policy.rollout import Rollout, sample_segments
from rlhflab.reward.model import RewardEnsemble
from rlhflab.reward.objectives import LagrangeMultiplier, ObjectiveRewards

ANNOTATOR = AnnotatorConfig(temperature=0.1, error_rate=0.05)


def harm(obs: np.ndarray, absorbing: np.ndarray) -> np.ndarray:
    """The harmless objective's true reward per step: −|x|/2.4 while up, 0 after a fall."""
    return np.where(absorbing, 0.0, -np.abs(obs[..., 0]) / 2.4).astype(np.float32)


GOLD = {
    "helpful": lambda r: r.true_rewards,
    "harmless": lambda r: harm(r.raw_obs, r.absorbing),
}


def reward_models(cfg, seed: int, pairs: int) -> tuple[ObjectiveRewards, Rollout]:
    """A reward ensemble per objective, fitted to synthetic labels on the untrained policy's
    segments, standardised over that policy's steps."""
    policy = ControlPolicy(cfg.env, cfg.policy, seed)
    rollouts = [policy.collect() for _ in range(4)]
    space = policy.action_space
    policy.close()
    segs = sample_segments(rollouts, 2 * pairs, 25, np.random.default_rng(seed))
    scorers = {}
    for k, objective in enumerate(("helpful", "harmless")):
        if objective == "harmless":
            segs = [replace(s, judged_rewards=harm(s.obs, s.absorbing_mask)) for s in segs]
        annotator = SyntheticAnnotator(ANNOTATOR, seed + 10 + k)
        labels = judge_pairs(annotator, [(segs[2 * i], segs[2 * i + 1]) for i in range(pairs)])
        ensemble = RewardEnsemble(segs[0].obs.shape[1], space, RewardConfig(), seed + 20 + k)
        ensemble.fit(labels)
        scorers[objective] = _scorer(ensemble)
    ref = Rollout.concat(rollouts)
    return ObjectiveRewards(scorers, ref.raw_obs, ref.actions, ref.absorbing), ref


def _scorer(ensemble: RewardEnsemble):
    return lambda obs, actions, absorbing: torch.from_numpy(
        ensemble.predict(obs, actions, absorbing)
    )


def run(seed: int, mode: str, bound: float, env_steps: int, objectives) -> dict:
    started = time.process_time()
    cfg = build_config(None, ["env=CartPole-v1", f"seed={seed}", f"env_steps={env_steps}"])
    torch.manual_seed(seed)
    multiplier = LagrangeMultiplier(bound=bound, lr=0.5)
    combine = {
        "helpful only": {"helpful": 1.0},
        "weighted": {"helpful": 1.0, "harmless": 1.0},
        "constrained": ("helpful", "harmless", multiplier),
    }[mode]
    log: list[dict] = []
    policy = train_objectives(cfg, objectives, combine, GOLD, on_log=log.append)
    policy.close()
    last = log[-5:]
    return {
        "seed": seed,
        "mode": mode,
        "helpful": statistics.mean(r["gold_helpful"] for r in last),
        "harmless": statistics.mean(r["gold_harmless"] for r in last),
        "z_harmless": statistics.mean(r["z_harmless"] for r in last),
        "lambda": log[-1].get("lambda"),
        "cpu": time.process_time() - started,
    }


def render(results: list[dict], bound: float) -> str:
    header = [
        "objective",
        "gold helpful (per seed)",
        "gold harmless −Σ abs(x)/2.4 (per seed)",
        f"mean z_harmless (bound {bound})",
        "final λ",
        "CPU s",
    ]
    table = Table(title="CartPole: PPO on two learned rewards (last 5 iterations)")
    md = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for h in header:
        table.add_column(h)
    for mode in ("helpful only", "weighted", "constrained"):
        rows = [r for r in results if r["mode"] == mode]
        if not rows:
            continue

        def cell(key: str, spec: str, rows=rows) -> str:
            xs = [r[key] for r in rows]
            return f"{statistics.mean(xs):{spec}}; " + " ".join(f"{x:{spec}}" for x in xs)

        lam = " ".join("–" if r["lambda"] is None else f"{r['lambda']:.2f}" for r in rows)
        cells = [
            mode,
            cell("helpful", ".1f"),
            cell("harmless", ".1f"),
            cell("z_harmless", ".2f"),
            lam,
            " ".join(f"{r['cpu']:.0f}" for r in rows),
        ]
        table.add_row(*cells)
        md.append("| " + " | ".join(cells) + " |")
    Console(width=200).print(table)
    return "\n".join(md) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--bound", type=float, default=0.0, help="b, in reference std")
    parser.add_argument("--env-steps", type=int, default=16384)
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--modes", default="constrained,helpful only,weighted")
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--render", type=Path, help="only print the tables of the JSON lines a run printed"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.render:  # the table of a stopped run's printed lines
        lines = args.render.read_text().splitlines()
        print(render([json.loads(x) for x in lines if x.startswith("{")], args.bound))
        return
    wall = time.time()
    results = []
    for seed in range(args.seeds):
        cfg = build_config(None, ["env=CartPole-v1", f"seed={seed}"])
        fitted = time.process_time()
        objectives, _ = reward_models(cfg, seed, args.pairs)  # one pair of reward models a seed
        fitted = time.process_time() - fitted
        for mode in args.modes.split(","):
            results.append(run(seed, mode, args.bound, args.env_steps, objectives))
            results[-1]["cpu"] += fitted / len(args.modes.split(","))
            print(json.dumps(results[-1]), flush=True)  # partial results survive a stop
    text = render(results, args.bound)
    if args.out:
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        command = "python bench/constrained_control.py " + " ".join(sys.argv[1:])
        args.out.write_text(
            f"Command: `{command}` ({stamp}, {time.time() - wall:.0f} s wall)\n\n{text}"
        )


if __name__ == "__main__":
    main()
