#!/usr/bin/env python
"""Benchmark: the Hopper backflip of Christiano et al. 2017, learned from a scripted judge.

Trains `examples/hopper_backflip_scripted.yaml` (RLHF with the synthetic annotator judging
`backflip_reward`, src/rlhflab/envs/backflip.py) for each seed, then plays evaluation
episodes with the trained policy (deterministic actions) and scores each one: its
backward rotation (the most reached, unwrapped, in turns) and whether it completed a flip
(≥ 1 turn, then upright for 20 consecutive steps). The policy is also scored at every
checkpoint of the run, so the best figure on the way is reported too. Target (issue 11):
flips in ≥ 50% of evaluation episodes, from ≤ 900 judgements, in ≤ 2 hours on 2 cores.

    python bench/backflip.py                                    # seed 0, the example's budget
    python bench/backflip.py --seeds 0,1 --jobs 2 --out bench/results/backflip.md
    python bench/backflip.py --env-steps 20000 --labels 100 --out /tmp/smoke.md   # a smoke run

It writes a clip (H.264, `rlhflab.feedback.clips`) of the best evaluation episode of the
first seed beside `--out` (or to `--clip`). This is a benchmark, not a test: hours.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from rlhflab.config import EnvConfig, RunConfig, build_config
from rlhflab.control_loop import ControlLoop, train_true_reward
from rlhflab.envs.backflip import score_flips
from rlhflab.envs.wrappers import make_env, render_size
from rlhflab.feedback.clips import make_clip
from rlhflab.policy.control import ControlPolicy
from rlhflab.policy.rollout import play_episodes
from rlhflab.runs import RunDir

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "examples" / "hopper_backflip_scripted.yaml"
TARGET_SUCCESS, TARGET_LABELS, TARGET_SECONDS = 0.5, 900, 2 * 3600
EVAL_SEED = 20_000
console = Console(width=160)


# -- scoring ------------------------------------------------------------------------------
@torch.no_grad()
def flip_eval(env_cfg: EnvConfig, act, episodes: int, seed: int = EVAL_SEED) -> dict:
    """Success rate, rotations and true return of `act` over `episodes` episodes."""
    played = play_episodes(env_cfg, episodes, act, seed)
    scores = score_flips(played.obs)
    turns = [s.turns for s in scores]
    return {
        "success": float(np.mean([s.completed for s in scores])),
        "flips": int(sum(s.completed for s in scores)),
        "episodes": episodes,
        "turns": float(np.mean(turns)),
        "turns_std": float(np.std(turns)),
        "true_return": float(played.returns()["true_reward"].mean()),
        "best_episode": max(range(episodes), key=lambda e: (scores[e].completed, turns[e])),
    }


@torch.no_grad()
def write_clip(env_cfg: EnvConfig, act, seed: int, path: Path) -> str:
    """Render one evaluation episode (every step, played at half speed) to `path`."""
    kwargs = {**env_cfg.kwargs, **render_size(env_cfg.id)}
    env = make_env(env_cfg.id, env_cfg.horizon, kwargs, render_mode="rgb_array")
    obs, _ = env.reset(seed=seed)
    frames = []
    for _ in range(env_cfg.horizon):
        frames.append(env.render())
        obs, *_ = env.step(act(obs[None])[0])
    fps = 0.5 / env.unwrapped.dt
    env.close()
    clip = make_clip(np.stack(frames), fps)
    out = path.with_suffix(clip.suffix)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(clip.data)
    return str(out)


# -- one run ------------------------------------------------------------------------------
def run_seed(
    cfg: RunConfig, episodes: int, runs: str | None, clip: str | None, true_reward: bool = False
) -> dict:
    """Train one seed, scoring the policy at every checkpoint and at the end. With
    `true_reward` the same PPO trains on the judge's reward itself (no labels, no reward
    model): the upper bound of what RLHF from this judge can reach at this budget."""
    torch.set_num_threads(cfg.threads)
    curve: list[dict] = []
    last: dict = {}
    with tempfile.TemporaryDirectory(prefix="backflip-") as tmp:
        run = RunDir(Path(runs) / f"seed{cfg.seed}" if runs else tmp)
        run.write_config(cfg)
        loop: ControlLoop
        policy: ControlPolicy | None = None

        def on_log(record: dict) -> None:
            last.update(record)
            record.setdefault("labels", 0)
            if "eval_true_return" in record:
                acting = policy if true_reward else loop.policy
                assert acting is not None
                score = flip_eval(cfg.env, acting.act_fn(), episodes)
                curve.append(
                    {"env_steps": record["env_steps"], "labels": record["labels"], **score}
                )
                progress(cfg.seed, record, score)

        started, load = time.perf_counter(), _load()
        if true_reward:  # train_true_reward logs through on_log, which reads `policy`
            policy = ControlPolicy(cfg.env, cfg.policy, cfg.seed)
            train_true_reward(cfg, run, on_log, policy=policy)
        else:
            loop = ControlLoop(cfg, run, on_log)
            policy = loop.run()
        wall = time.perf_counter() - started
        final = flip_eval(cfg.env, policy.act_fn(), episodes)
        clip_path = clip and write_clip(
            cfg.env, policy.act_fn(), EVAL_SEED + final["best_episode"], Path(clip)
        )
        result = summary(cfg, policy, last, final, curve, wall)
        policy.close()
    return {**result, "clip": clip_path, "loadavg": [load, _load()]}


def summary(cfg, policy: ControlPolicy, last: dict, final: dict, curve: list, wall: float):
    best = max([*curve, final], key=lambda c: (c["success"], c["turns"]))
    return {
        "seed": cfg.seed,
        # the reward model's labels and those that chose the kept policy (feedback.select_policy)
        "labels": (last.get("labels") or 0) + last.get("selection_labels", 0),
        "selection_labels": last.get("selection_labels", 0),
        "selected_iteration": last.get("selected_iteration"),
        "env_steps": policy.env_steps,
        "wall_seconds": wall,
        "steps_per_second": policy.env_steps / wall,
        **final,
        "best": {k: best.get(k) for k in ("env_steps", "labels", "success", "turns")},
        "curve": curve,
    }


def progress(seed: int, record: dict, score: dict) -> None:
    console.print(
        f"seed {seed} · {record['env_steps']:,} steps · {record['labels']} labels · "
        f"true return {record['eval_true_return']:.1f} · flips {score['flips']}/"
        f"{score['episodes']} · rotation {score['turns']:.2f} turns",
        highlight=False,
    )


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# -- tables -------------------------------------------------------------------------------
COLUMNS = [
    "seed",
    "labels",
    "env steps",
    "wall",
    "steps/s",
    "success",
    "rotations / episode",
    "true return",
    "best on the way",
]


def row(r: dict) -> list[str]:
    best = r["best"]
    return [
        str(r["seed"]),
        str(r["labels"]),
        f"{r['env_steps']:,}",
        f"{r['wall_seconds'] / 60:.1f} min",
        f"{r['steps_per_second']:,.0f}",
        f"{r['success']:.0%} ({r['flips']}/{r['episodes']})",
        f"{r['turns']:.2f} ± {r['turns_std']:.2f}",
        f"{r['true_return']:.1f}",
        f"{best['success']:.0%}, {best['turns']:.2f} turns @ {best['env_steps']:,}",
    ]


def verdict(results: list[dict]) -> str:
    """The issue's target, over the seeds: mean success, most labels, longest wall time."""
    success = statistics.mean(r["success"] for r in results)
    labels = max(r["labels"] or 0 for r in results)
    wall = max(r["wall_seconds"] for r in results)
    met = success >= TARGET_SUCCESS and labels <= TARGET_LABELS and wall <= TARGET_SECONDS
    return (
        f"mean success {success:.0%} (target ≥ {TARGET_SUCCESS:.0%}), at most {labels} labels "
        f"(≤ {TARGET_LABELS}), longest run {wall / 60:.1f} min (≤ {TARGET_SECONDS // 60} min): "
        f"{'met' if met else 'NOT met'}"
    )


def rich_table(results: list[dict]) -> Table:
    table = Table(title="Hopper backflip from a scripted judge", caption=verdict(results))
    for c in COLUMNS:
        table.add_column(c, justify="left" if c == "best on the way" else "right")
    for r in results:
        table.add_row(*row(r))
    return table


def markdown(meta: dict, results: list[dict]) -> str:
    lines = [
        "# Hopper backflip from a scripted judge",
        "",
        f"Generated {meta['finished']} by `{meta['command']}` on {meta['machine']}.",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
        *("| " + " | ".join(row(r)) + " |" for r in results),
        "",
        verdict(results) + ".",
        "",
        "success: share of evaluation episodes (deterministic actions) with a completed flip, "
        "≥ 1 backward turn of the torso then upright for 20 consecutive steps; rotations: the "
        "most backward rotation an episode reached, in turns; best on the way: the best "
        "checkpoint's score; labels: the reward model's and those that chose the kept policy "
        "(`feedback.select_policy`; the run ends with that policy). Load averages are in the JSON.",
    ]
    return "\n".join(lines) + "\n"


# -- main ---------------------------------------------------------------------------------
def parse_seeds(text: str) -> list[int]:
    """'3' → seeds 0, 1, 2; '0,4,7' → those seeds."""
    return [int(s) for s in text.split(",") if s.strip()] if "," in text else list(range(int(text)))


def arguments(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--config", default=str(CONFIG), help="run config (default: %(default)s)")
    ap.add_argument("--seeds", default="1", help="N for seeds 0..N-1, or a list: 0,3")
    ap.add_argument("--labels", type=int, help="label budget (default: the config's)")
    ap.add_argument("--env-steps", type=int, help="env steps per run (default: the config's)")
    ap.add_argument("--episodes", type=int, default=20, help="evaluation episodes per score")
    ap.add_argument("--jobs", type=int, default=1, help="seeds trained at once (one core each)")
    ap.add_argument("--runs", help="keep the run directories here (DIR/seedN); default: none")
    ap.add_argument("--out", help="write the table as markdown here, the results as JSON beside")
    ap.add_argument("--clip", help="clip of the first seed's best episode (default: beside --out)")
    ap.add_argument(
        "--true-reward",
        action="store_true",
        help="PPO on the judge's reward itself, no labels: the upper bound for RLHF",
    )
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    return ap.parse_args(argv)


def configs(args: argparse.Namespace) -> list[RunConfig]:
    extra = list(args.overrides)
    if args.labels is not None:
        extra.append(f"feedback.labels={args.labels}")
    if args.env_steps is not None:
        extra.append(f"env_steps={args.env_steps}")
    return [build_config(args.config, [*extra, f"seed={s}"]) for s in parse_seeds(args.seeds)]


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    cfgs = configs(args)
    clip = args.clip or (
        str(Path(args.out).with_name(Path(args.out).stem + "_clip")) if args.out else None
    )
    meta = {
        "command": " ".join(
            [Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]
        ),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
        "torch": torch.__version__,
    }
    jobs = [
        (cfg, args.episodes, args.runs, clip if i == 0 else None, args.true_reward)
        for i, cfg in enumerate(cfgs)
    ]
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs) as pool:
            results = list(pool.map(run_seed, *zip(*jobs)))
    else:
        results = [run_seed(*job) for job in jobs]
    meta["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    console.print(rich_table(results))
    if results[0]["clip"]:
        console.print(f"clip: {results[0]['clip']}")
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(markdown(meta, results))
        out.with_suffix(".json").write_text(
            json.dumps({"meta": meta, "results": results}, indent=1) + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
