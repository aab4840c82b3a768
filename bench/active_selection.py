#!/usr/bin/env python
"""Benchmark: labels-to-target of active query selection (issue 14, item 6; docs/annotators.md).

Pool-based active learning, as a run's feedback step does it but without the policy moving: a
fixed pool of 25-step segments from an untrained policy's rollouts (the same pool for every
rule); the reward ensemble (`reward/model.py`, 3 members, warm-started between refits as in a
run) starts from `--batch`
random pairs, then each round `feedback/selection.py` picks `--batch` more pairs from k = 4×
as many random candidates by its rule (`random`, ensemble `disagreement`, `information_gain`
(BALD), `diverse`), a synthetic annotator (τ = 1, ε = 0.1) judges them, and the ensemble is
refitted. Gold: the share of `--test` held-out pairs (true returns differing) whose better side r̂
ranks higher. Labels-to-target: the fewest labels after which gold accuracy reaches the target
(and, beside it, the accuracy curve), per env, rule and seed; "> cap" when never reached.

This measures the reward model, not the policy's return: whole RLHF runs per label budget,
rule and seed cost hours on the shared 2 CPUs (see docs/annotators.md).

    python bench/active_selection.py --quick
    python bench/active_selection.py --seeds 3 --out bench/results/active_selection.md
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from rlhflab.config import AnnotatorConfig, RewardConfig, build_config
from rlhflab.feedback.population import judge_pairs
from rlhflab.feedback.selection import select_pairs
from rlhflab.feedback.synthetic import SyntheticAnnotator
from rlhflab.policy.control import ControlPolicy
from rlhflab.policy.rollout import sample_segments
from rlhflab.reward.model import RewardEnsemble
from rlhflab.types import Comparison, Segment

ENVS = ("CartPole-v1", "Pendulum-v1")
RULES = ("random", "disagreement", "information_gain", "diverse")
ANNOTATOR = AnnotatorConfig(temperature=1.0, error_rate=0.1)


def pool(env: str, n: int, seed: int) -> tuple[list[Segment], object]:
    """n 25-step windows of an untrained policy's rollouts on `env`, and its action space."""
    cfg = build_config(None, [f"env.id={env}", f"seed={seed}"])
    policy = ControlPolicy(cfg.env, cfg.policy, seed)
    windows = cfg.env.num_envs * (cfg.policy.n_steps // 25)  # 25-step windows per rollout
    rollouts = [policy.collect() for _ in range(n // windows + 2)]
    space = policy.action_space
    policy.close()
    return sample_segments(rollouts, n, 25, np.random.default_rng(seed)), space


def gold_accuracy(ensemble: RewardEnsemble, test: list[tuple[Segment, Segment]]) -> float:
    """Share of held-out pairs (true returns differing) whose better side r̂ ranks higher."""
    with torch.no_grad():
        r = ensemble.segment_returns([s for pair in test for s in pair]).mean(0).numpy()
    truth = np.array([a.judged_return - b.judged_return for a, b in test])
    keep = np.abs(truth) > 1e-6
    return float(np.mean((r[0::2] > r[1::2])[keep] == (truth > 0)[keep]))


def curve(env: str, rule: str, seed: int, batch: int, cap: int, data) -> dict:
    """Gold accuracy after every batch of labels chosen by `rule`, up to `cap` labels, on the
    (env, seed)'s pool `data` = (candidates, test pairs, action space)."""
    started = time.process_time()
    candidates, test, space = data
    rng = np.random.default_rng([seed, 7])
    annotator = SyntheticAnnotator(ANNOTATOR, seed + 1)
    ensemble = RewardEnsemble(candidates[0].obs.shape[1], space, RewardConfig(), seed + 2)
    labels: list[Comparison] = []
    points = []
    while len(labels) < cap:
        method = rule if ensemble.fits else "random"
        pairs = select_pairs(
            candidates,
            batch,
            method,
            rng,
            4,
            ensemble.disagreement,
            ensemble.member_preferences,
        )
        for c in judge_pairs(annotator, pairs):
            labels.append(Comparison(len(labels), c.left, c.right, c.judgement, c.annotator))
        ensemble.fit(labels)
        points.append((len(labels), gold_accuracy(ensemble, test)))
    return {
        "env": env,
        "rule": rule,
        "seed": seed,
        "curve": points,
        "cpu": time.process_time() - started,
    }


def labels_to(points: list[tuple[int, float]], target: float) -> int | None:
    return next((n for n, acc in points if acc >= target), None)


def render(results: list[dict], targets: list[float], cap: int) -> str:
    console = Console(width=200)
    lines = []
    for env in ENVS:
        rows = [r for r in results if r["env"] == env]
        if not rows:
            continue
        header = ["rule"]
        header += [f"labels to {t:.2f} (mean; per seed)" for t in targets]
        header += ["gold acc at cap (per seed)", "CPU s (per seed)"]
        table = Table(title=f"{env}: labels to a gold-accuracy target (cap {cap})")
        for h in header:
            table.add_column(h)
        md = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for rule in RULES:
            runs = [r for r in rows if r["rule"] == rule]
            if not runs:
                continue
            cells = [rule]
            for t in targets:
                n = [labels_to(r["curve"], t) for r in runs]
                shown = " ".join(str(x) if x is not None else f">{cap}" for x in n)
                reached = [x for x in n if x is not None]
                mean = f"{statistics.mean(reached):.0f}" if len(reached) == len(n) else "not all"
                cells.append(f"{mean}; {shown}")
            cells.append(" ".join(f"{r['curve'][-1][1]:.3f}" for r in runs))
            cells.append(" ".join(f"{r['cpu']:.0f}" for r in runs))
            table.add_row(*cells)
            md.append("| " + " | ".join(cells) + " |")
        console.print(table)
        lines += [f"#### {env}", "", *md, ""]
        curves = ["| rule | seed | gold accuracy after each batch |", "|---|---|---|"]
        for r in rows:
            pts = " ".join(f"{n}:{acc:.2f}" for n, acc in r["curve"])
            curves.append(f"| {r['rule']} | {r['seed']} | {pts} |")
        lines += ["<details><summary>curves</summary>", "", *curves, "", "</details>", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=20, help="labels per round")
    parser.add_argument("--cap", type=int, default=80, help="labels at most")
    parser.add_argument("--targets", default="0.8,0.85,0.9")
    parser.add_argument("--candidates", type=int, default=200, help="segments to choose from")
    parser.add_argument("--test", type=int, default=100, help="held-out pairs")
    parser.add_argument("--envs", default=",".join(ENVS))
    parser.add_argument("--rules", default=",".join(RULES))
    parser.add_argument("--quick", action="store_true", help="one seed, Pendulum, two rules")
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--render", type=Path, help="only print the tables of the JSON lines a run printed"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    envs, rules = args.envs.split(","), args.rules.split(",")
    seeds = range(1 if args.quick else args.seeds)
    if args.quick:
        envs, rules, args.cap = ["Pendulum-v1"], ["random", "disagreement"], 60
    targets = [float(t) for t in args.targets.split(",")]
    if args.render:  # the tables of a stopped run's printed lines
        lines = args.render.read_text().splitlines()
        print(render([json.loads(x) for x in lines if x.startswith("{")], targets, args.cap))
        return
    started = time.time()
    results = []
    for seed in seeds:  # seed by seed: a stopped run still has whole seeds
        for env in envs:
            segs, space = pool(env, 2 * args.test + args.candidates, seed)
            held = segs[args.candidates :]
            test = [(held[i], held[i + 1]) for i in range(0, len(held) - 1, 2)]
            data = (segs[: args.candidates], test, space)
            for rule in rules:
                results.append(curve(env, rule, seed, args.batch, args.cap, data))
                print(json.dumps(results[-1]), flush=True)  # partial results survive a stop
    text = render(results, targets, args.cap)
    if args.out:
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        command = "python bench/active_selection.py " + " ".join(sys.argv[1:])
        head = f"Command: `{command}` ({stamp}, {time.time() - started:.0f} s wall)\n\n"
        args.out.write_text(head + text)


if __name__ == "__main__":
    main()
