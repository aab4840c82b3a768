#!/usr/bin/env python
"""Benchmark: deep RL from synthetic preferences on control tasks (Christiano et al. 2017).

For every task × label budget × seed it trains a policy from preferences (`run_rlhf`)
and compares its true return with PPO trained on the env's true reward for the same
number of env steps (`train_true_reward`, trained once per task and seed and reused
across label budgets) and with a uniformly random policy:

    normalised score = (RLHF − random) / (true-reward PPO − random)

so random = 0 and parity with RL on the true reward = 1. It also measures speed: env
steps per second of the whole RLHF loop (rollouts, reward-model predictions and refits,
queries, PPO updates), of plain PPO on the true reward, and of Stable-Baselines3's PPO
on the same task with the same batch settings, all with one torch thread.

    python bench/control_preferences.py --quick
    python bench/control_preferences.py --tasks cartpole,pendulum --seeds 5 \\
        --out bench/results/control_preferences_classic.md
    python bench/control_preferences.py --render a.json b.json --out combined.md  # saved results

Per-task settings live in examples/<task>.yaml (any config key can be overridden with
--set key=value). This is a benchmark, not a test: it takes minutes to an hour.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from datetime import datetime, timezone
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from rlhflab.config import RunConfig, build_config
from rlhflab.control_loop import run_experiment, train_true_reward
from rlhflab.policy.rollout import evaluate_true_return
from rlhflab.runs import RunDir

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
TASKS = {
    "cartpole": "cartpole.yaml",
    "pendulum": "pendulum.yaml",
    "hopper": "hopper.yaml",
    "halfcheetah": "halfcheetah.yaml",
}
DEFAULT_TASKS = ["cartpole", "pendulum", "halfcheetah"]
DEFAULT_BUDGETS = [175, 700, 1400]
# Targets from the issue: normalised score at a label budget, for these tasks.
TARGETS = {
    ("cartpole", 700): 1.0,
    ("cartpole", 175): 0.9,
    ("pendulum", 700): 1.0,
    ("pendulum", 175): 0.9,
}
SPEED_TARGET = 2.0  # whole RLHF loop steps/s ÷ SB3 PPO steps/s
REFERENCE_BUDGET = 700  # the budget whose RLHF loop speed goes in the speed table
# --quick: a smoke configuration that finishes in about a minute.
QUICK = {
    "tasks": ["cartpole", "pendulum"],
    "budgets": [175, 700],
    "seeds": [0],
    "env_steps": {"cartpole": 16384, "pendulum": 16384},
    "sb3_steps": 8192,
}

console = Console()
if not console.is_terminal:  # a log file: wide enough for the tables
    console = Console(width=220)


# -- configs ------------------------------------------------------------------------------
def task_config(task: str, overrides: list[str]) -> RunConfig:
    """The task's example config (a name from TASKS or a path to a YAML file) plus overrides."""
    path = (
        Path(task)
        if task.endswith((".yaml", ".yml"))
        else EXAMPLES / TASKS.get(task, f"{task}.yaml")
    )
    return build_config(path, overrides)


def task_name(task: str) -> str:
    return Path(task).stem if task.endswith((".yaml", ".yml")) else task


def parse_seeds(text: str) -> list[int]:
    """'3' → seeds 0, 1, 2; '0,4,7' → those seeds."""
    return [int(s) for s in text.split(",") if s.strip()] if "," in text else list(range(int(text)))


# -- single runs --------------------------------------------------------------------------
def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def run_rlhf_once(cfg: RunConfig, on_log=None) -> dict:
    """One whole RLHF run as a user lives it — `rlhflab run baseline=false`: the loop, its
    evaluations, probes, checkpoints, the final evaluation and the report — in a temporary
    run directory."""
    cfg = cfg.model_copy(update={"baseline": False})
    with tempfile.TemporaryDirectory(prefix="rlhf-bench-") as tmp:
        load = _load()
        started = time.perf_counter()
        summary = run_experiment(cfg, RunDir(tmp), on_log)
        wall = time.perf_counter() - started
        metrics = [m for m in RunDir(tmp).metrics() if m.get("phase") == "rlhf"]
    last = metrics[-1] if metrics else {}
    return {
        "true_return": summary["true_return"]["rlhf"],
        "wall_seconds": wall,
        "env_steps": cfg.env_steps,
        "steps_per_second": cfg.env_steps / wall,
        "labels": summary["labels"],
        "rm_val_acc": last.get("rm_val_acc"),
        "proxy_return": last.get("proxy_return"),
        "loadavg": [load, _load()],
    }


def run_baseline_once(cfg: RunConfig, on_log=None) -> dict:
    """PPO on the true reward with the same config and env-step budget."""
    load = _load()
    started = time.perf_counter()
    policy = train_true_reward(cfg, None, on_log)
    wall = time.perf_counter() - started
    true_return = policy.evaluate(cfg.eval_episodes)
    env_steps = policy.env_steps
    policy.close()
    return {
        "true_return": true_return,
        "wall_seconds": wall,
        "env_steps": env_steps,
        "steps_per_second": env_steps / wall,
        "loadavg": [load, _load()],
    }


def sb3_available() -> bool:
    try:
        import stable_baselines3  # noqa: F401
    except ImportError:
        return False
    return True


def run_sb3_once(cfg: RunConfig, steps: int, seed: int, on_progress=None) -> dict:
    """Stable-Baselines3 PPO on the same fixed-horizon env with the same batch settings.

    Same num_envs, n_steps, epochs, minibatch size (n_steps·num_envs / minibatches), lr,
    gamma, GAE λ, clip, entropy/value coefficients, grad-norm clip, 64x64 tanh actor and
    critic (separate, orthogonal init), initial action log σ, observation and reward
    normalisation (VecNormalize).
    """
    import gymnasium as gym
    import stable_baselines3
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    from rlhflab.envs.wrappers import make_env

    p, e = cfg.policy, cfg.env
    torch.set_num_threads(cfg.threads)
    venv = DummyVecEnv([lambda: make_env(e.id, e.horizon, e.kwargs) for _ in range(e.num_envs)])
    is_box = isinstance(venv.action_space, gym.spaces.Box)
    venv = VecNormalize(
        venv, norm_obs=p.normalize_obs, norm_reward=p.normalize_rewards, gamma=p.gamma
    )
    model = PPO(
        "MlpPolicy",
        venv,
        learning_rate=p.lr,
        n_steps=p.n_steps,
        batch_size=p.n_steps * e.num_envs // p.minibatches,
        n_epochs=p.epochs,
        gamma=p.gamma,
        gae_lambda=p.gae_lambda,
        clip_range=p.clip,
        clip_range_vf=p.clip_value,
        ent_coef=p.ent_coef,
        vf_coef=p.vf_coef,
        max_grad_norm=p.max_grad_norm,
        policy_kwargs={
            "net_arch": {"pi": [p.hidden, p.hidden], "vf": [p.hidden, p.hidden]},
            "activation_fn": torch.nn.Tanh,
            **({"log_std_init": p.log_std_init} if is_box else {}),
        },
        seed=seed,
        device="cpu",
        verbose=0,
    )

    class Progress(BaseCallback):
        def _on_rollout_end(self) -> None:
            if on_progress is not None:
                on_progress(self.num_timesteps)

        def _on_step(self) -> bool:
            return True

    load = _load()
    started = time.perf_counter()
    model.learn(steps, callback=Progress())
    wall = time.perf_counter() - started
    env_steps = int(model.num_timesteps)

    def act(raw_obs: np.ndarray) -> np.ndarray:
        action, _ = model.predict(venv.normalize_obs(raw_obs), deterministic=True)
        return action

    true_return = evaluate_true_return(e, cfg.eval_episodes, act)
    venv.close()
    return {
        "true_return": true_return,
        "wall_seconds": wall,
        "env_steps": env_steps,
        "steps_per_second": env_steps / wall,
        "version": stable_baselines3.__version__,
        "seed": seed,
        "loadavg": [load, _load()],
    }


# -- summaries ----------------------------------------------------------------------------
def mean_std(xs: list[float]) -> tuple[float, float]:
    """Over the finite values (a seed whose baseline equals random has no paired score)."""
    xs = [x for x in xs if x is not None and math.isfinite(x)]
    if not xs:
        return float("nan"), float("nan")
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def fmt(m: float, s: float | None = None, digits: int = 1) -> str:
    if m != m:  # nan
        return "–"
    return f"{m:.{digits}f}" if s is None else f"{m:.{digits}f} ± {s:.{digits}f}"


def batch_cell(cfg: dict) -> str:
    env, ppo = cfg["env"], cfg["policy"]
    minibatch = env["num_envs"] * ppo["n_steps"] // ppo["minibatches"]
    return (
        f"{env['num_envs']}×{ppo['n_steps']}, {ppo['epochs']} epochs × "
        f"{ppo['minibatches']} minibatches of {minibatch}"
    )


def summarise(results: dict) -> tuple[list[dict], list[dict]]:
    """Rows of the score table and of the speed table from raw results."""
    score_rows, speed_rows = [], []
    for task, t in results["tasks"].items():
        random_return = t["random"]
        base = [b["true_return"] for b in t["baseline"].values()]
        base_mean, base_std = mean_std(base)
        gap = base_mean - random_return
        for budget in sorted({int(k) for k in t["rlhf"]}):
            runs = t["rlhf"][str(budget)]
            seeds = sorted(runs, key=int)
            rl = [runs[s]["true_return"] for s in seeds]
            # normalised against the mean baseline over seeds (robust to one baseline seed failing)
            norm = [(r - random_return) / gap if abs(gap) > 1e-9 else float("nan") for r in rl]
            # … and paired with the same seed's baseline (kept in the JSON / markdown for reference)
            paired = [
                (runs[s]["true_return"] - random_return)
                / (t["baseline"][s]["true_return"] - random_return)
                if s in t["baseline"]
                and abs(t["baseline"][s]["true_return"] - random_return) > 1e-9
                else float("nan")
                for s in seeds
            ]
            n_mean, n_std = mean_std(norm)
            target = TARGETS.get((task, budget))
            score_rows.append(
                {
                    "task": task,
                    "env": t["env"],
                    "env_steps": t["env_steps"],
                    "labels": budget,
                    "seeds": len(seeds),
                    "rlhf": mean_std(rl),
                    "per_seed": norm,
                    "baseline": (base_mean, base_std),
                    "random": random_return,
                    "normalised": (n_mean, n_std),
                    "normalised_paired": mean_std(paired),
                    "rm_val_acc": mean_std([runs[s].get("rm_val_acc") for s in seeds]),
                    "wall": mean_std([runs[s]["wall_seconds"] for s in seeds]),
                    "steps_per_second": mean_std([runs[s]["steps_per_second"] for s in seeds]),
                    "target": target,
                    "met": None if target is None else bool(n_mean >= target),
                }
            )
        budgets = sorted(int(k) for k in t["rlhf"])
        ref = (
            REFERENCE_BUDGET if REFERENCE_BUDGET in budgets else (budgets[-1] if budgets else None)
        )
        rlhf_sps = (
            mean_std([r["steps_per_second"] for r in t["rlhf"][str(ref)].values()])
            if ref is not None
            else (float("nan"), float("nan"))
        )
        by_budget = {
            b: mean_std([r["steps_per_second"] for r in t["rlhf"][str(b)].values()])[0]
            for b in budgets
        }
        ppo_sps = mean_std([b["steps_per_second"] for b in t["baseline"].values()])
        sb3 = t.get("sb3")
        sb3_sps = sb3["steps_per_second"] if sb3 else float("nan")
        cfg = t["config"]
        speed_rows.append(
            {
                "task": task,
                "env": t["env"],
                "batch": batch_cell(cfg),
                "reference_budget": ref,
                "rlhf_sps": rlhf_sps,
                "rlhf_sps_by_budget": by_budget,
                "ppo_sps": ppo_sps,
                "sb3_sps": sb3_sps,
                "sb3_steps": sb3["env_steps"] if sb3 else None,
                "sb3_return": sb3["true_return"] if sb3 else None,
                "rlhf_over_sb3": rlhf_sps[0] / sb3_sps if sb3 else float("nan"),
                "ppo_over_sb3": ppo_sps[0] / sb3_sps if sb3 else float("nan"),
                "met": None if not sb3 else bool(rlhf_sps[0] / sb3_sps >= SPEED_TARGET),
            }
        )
    return score_rows, speed_rows


SCORE_HEADER = [
    "task",
    "env steps",
    "labels",
    "seeds",
    "RLHF true return",
    "PPO (true reward)",
    "random",
    "normalised score",
    "per seed (normalised)",
    "paired",
    "RM val acc",
    "RLHF wall s",
    "target",
]
SPEED_HEADER = [
    "task",
    "batch",
    "RLHF loop steps/s",
    "RLHF loop steps/s by label budget",
    "our PPO steps/s",
    "SB3 PPO steps/s",
    "RLHF ÷ SB3",
    "our PPO ÷ SB3",
    "SB3 return",
    "target ≥2×",
]


def _target_cell(target, met) -> str:
    return "" if target is None else f"≥{target:.1f}: {'met' if met else 'not met'}"


def score_cells(r: dict) -> list[str]:
    return [
        f"{r['task']} ({r['env']})",
        f"{r['env_steps']:,}",
        str(r["labels"]),
        str(r["seeds"]),
        fmt(*r["rlhf"]),
        fmt(*r["baseline"]),
        fmt(r["random"]),
        fmt(*r["normalised"], digits=2),
        " ".join(f"{x:.2f}" for x in r["per_seed"]),
        fmt(*r["normalised_paired"], digits=2),
        fmt(*r["rm_val_acc"], digits=2),
        fmt(*r["wall"], digits=0),
        _target_cell(r["target"], r["met"]),
    ]


def speed_cells(r: dict) -> list[str]:
    sb3_ret = (
        "–" if r["sb3_return"] is None else f"{r['sb3_return']:.1f} @ {r['sb3_steps']:,} steps"
    )
    return [
        f"{r['task']} ({r['env']})",
        r["batch"],
        f"{fmt(*r['rlhf_sps'], digits=0)} ({r['reference_budget']} labels)",
        " · ".join(f"{b}: {v:.0f}" for b, v in r["rlhf_sps_by_budget"].items()),
        fmt(*r["ppo_sps"], digits=0),
        fmt(r["sb3_sps"], digits=0),
        fmt(r["rlhf_over_sb3"], digits=2),
        fmt(r["ppo_over_sb3"], digits=2),
        sb3_ret,
        "" if r["met"] is None else ("met" if r["met"] else "not met"),
    ]


def rich_tables(results: dict) -> list[Table]:
    score_rows, speed_rows = summarise(results)
    scores = Table(
        title=(
            "RLHF from synthetic preferences: true return, normalised so random = 0 and "
            "true-reward PPO = 1 (mean ± std over seeds)"
        )
    )
    for h in SCORE_HEADER:
        scores.add_column(h, justify="left" if h in ("task", "target") else "right")
    for r in score_rows:
        style = None if r["met"] is None else ("green" if r["met"] else "red")
        scores.add_row(*score_cells(r), style=style)
    speed = Table(
        title=f"Speed: env steps per second, torch threads = {results['meta']['threads']}"
    )
    for h in SPEED_HEADER:
        speed.add_column(h, justify="left" if h in ("task", "batch") else "right")
    for r in speed_rows:
        speed.add_row(*speed_cells(r))
    return [scores, speed]


def markdown(results: dict) -> str:
    score_rows, speed_rows = summarise(results)
    meta = results["meta"]

    def table(header, rows):
        out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        out += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
        return "\n".join(out)

    lines = [
        "# RLHF from synthetic preferences on control tasks",
        "",
        f"Generated {meta['finished'] or meta['started']} by `{meta['command']}`.",
        f"Machine: {meta['machine']}; torch {meta['torch']} with {meta['threads']} thread(s) for "
        f"every run (ours and SB3); SB3 {meta.get('sb3') or 'not installed'}.",
        "",
        "## Score",
        "",
        "True return of the final policy (deterministic, `eval_episodes` fixed-horizon episodes),"
        " mean ± std over seeds. "
        "Normalised score = (RLHF − random) / (PPO on the true reward − random), with the PPO "
        "baseline averaged over seeds "
        "(trained once per task and seed for the same env steps, reused across label budgets); "
        "*paired* divides each seed by "
        "its own seed's baseline instead. Synthetic annotator: the config's (default Boltzmann τ "
        "= 1, 10% random answers). "
        "RM val acc: the reward ensemble's accuracy on held-out comparisons at the end of the run. "
        "RLHF wall s: seconds of a whole run per seed, as `rlhflab run baseline=false` lives "
        "it (the loop, evaluations, probes, checkpoints, the final evaluation and the report).",
        "",
        table(SCORE_HEADER, [score_cells(r) for r in score_rows]),
        "",
        "## Speed",
        "",
        "Env steps per second over a whole run: for RLHF a whole `rlhflab run baseline=false` "
        "(rollouts, reward-model predictions, queries and the feedback store, refits, PPO "
        "updates, periodic evaluations, probes and checkpoints, the final evaluation and the "
        "report) at the reference label budget; for our PPO `train_true_reward` (with its "
        "periodic evaluations); for SB3 `PPO.learn` with the same env, num_envs, n_steps, "
        "epochs, minibatch size, lr, γ, λ, 64×64 tanh actor and critic and VecNormalize, one "
        "run (seed 0). All with `torch.set_num_threads(1)`, two runs at a time (`--jobs 2`) "
        "on the 2 CPUs, SB3's among them (load averages are in the JSON).",
        "",
        table(SPEED_HEADER, [speed_cells(r) for r in speed_rows]),
        "",
    ]
    return "\n".join(lines)


# -- the benchmark ------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--tasks",
        help=(
            f"comma-separated task names ({', '.join(TASKS)}) or YAML paths (default: "
            f"{','.join(DEFAULT_TASKS)})"
        ),
    )
    ap.add_argument(
        "--budgets",
        help=f"comma-separated label budgets (default: {','.join(map(str, DEFAULT_BUDGETS))})",
    )
    ap.add_argument("--seeds", help="N for seeds 0..N-1, or a comma-separated list (default: 3)")
    ap.add_argument(
        "--quick", action="store_true", help="a smoke configuration finishing in about a minute"
    )
    ap.add_argument(
        "--out",
        help="write the tables as markdown here and the raw results as JSON beside it (.json)",
    )
    ap.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override for every task (repeatable)",
    )
    ap.add_argument(
        "--jobs", type=int, default=2, help="runs at a time, each in its own process (default: 2)"
    )
    ap.add_argument(
        "--no-sb3", action="store_true", help="skip the Stable-Baselines3 speed reference"
    )
    ap.add_argument(
        "--sb3-steps", type=int, help="env steps for the SB3 run (default: the task's env_steps)"
    )
    ap.add_argument(
        "--render",
        nargs="+",
        metavar="JSON",
        help="do not run: print (and with --out write) the tables of saved results, merged",
    )
    args = ap.parse_args(argv)

    if args.render:
        results = merge([json.loads(Path(p).read_text()) for p in args.render])
        return report(results, args.out)

    tasks = (
        args.tasks.split(",") if args.tasks else (QUICK["tasks"] if args.quick else DEFAULT_TASKS)
    )
    budgets = (
        [int(b) for b in args.budgets.split(",")]
        if args.budgets
        else (QUICK["budgets"] if args.quick else DEFAULT_BUDGETS)
    )
    seeds = (
        parse_seeds(args.seeds)
        if args.seeds
        else (QUICK["seeds"] if args.quick else [0, 1, 2, 3, 4])
    )
    use_sb3 = not args.no_sb3 and sb3_available()
    if not args.no_sb3 and not use_sb3:
        console.print(
            "[yellow]stable-baselines3 is not installed (pip install -e '.[bench]'): skipping the"
            " SB3 speed reference[/]"
        )

    configs = {}
    for task in tasks:
        overrides = list(args.overrides)
        if args.quick and task_name(task) in QUICK["env_steps"]:
            overrides.append(f"env_steps={QUICK['env_steps'][task_name(task)]}")
        configs[task_name(task)] = task_config(task, overrides)
    threads = {c.threads for c in configs.values()}
    torch.set_num_threads(min(threads))

    results = {
        "meta": {
            "command": " ".join(
                [Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]
            ),
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "finished": None,
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
            f"Python {platform.python_version()}",
            "torch": torch.__version__,
            "threads": min(threads),
            "sb3": _sb3_version() if use_sb3 else None,
            "budgets": budgets,
            "seeds": seeds,
        },
        "tasks": {},
    }

    def save() -> None:
        if args.out:
            out = Path(args.out)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.with_suffix(".json").write_text(json.dumps(results, indent=1, default=float) + "\n")

    jobs = []  # (kind, task, seed, budget): SB3 and baselines first, then budget by budget
    for name, cfg in configs.items():
        results["tasks"][name] = {
            "env": cfg.env.id,
            "env_steps": cfg.env_steps,
            "config": cfg.model_dump(mode="json"),
            "random": evaluate_true_return(cfg.env, cfg.eval_episodes),
            "baseline": {},
            "rlhf": {},
            "sb3": None,
        }
        if use_sb3:
            jobs.append(("sb3", name, seeds[0], None))
        jobs += [("baseline", name, seed, None) for seed in seeds]
    jobs += [("rlhf", n, seed, b) for b in budgets for n in configs for seed in seeds]
    sb3_steps = args.sb3_steps or (QUICK["sb3_steps"] if args.quick else None)
    started = time.perf_counter()
    with (
        Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
        ) as progress,
        ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool,
    ):
        bar = progress.add_task(f"{len(jobs)} runs, {args.jobs} at a time", total=len(jobs))
        futures = {
            pool.submit(run_job, kind, configs[name], seed, budget, sb3_steps): (
                kind,
                name,
                seed,
                budget,
            )
            for kind, name, seed, budget in jobs
        }
        for future in as_completed(futures):
            kind, name, seed, budget = futures[future]
            result, t = future.result(), results["tasks"][name]
            if kind == "sb3":
                t["sb3"] = result
            elif kind == "baseline":
                t["baseline"][str(seed)] = result
            else:
                t["rlhf"].setdefault(str(budget), {})[str(seed)] = result
            what = f"{name} {kind}" + (f" {budget} labels" if budget else "") + f" seed {seed}"
            progress.console.log(
                f"{what}: true return {result['true_return']:.1f}, "
                f"{result['wall_seconds']:.0f} s, {result['steps_per_second']:.0f} steps/s"
            )
            progress.advance(bar)
            save()
    results["meta"]["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    results["meta"]["wall_seconds"] = round(time.perf_counter() - started, 1)
    save()
    return report(results, args.out)


def run_job(kind: str, cfg: RunConfig, seed: int, budget: int | None, sb3_steps: int | None):
    """One benchmark run in a worker process, with the config's torch threads."""
    torch.set_num_threads(cfg.threads)
    cfg = cfg.model_copy(update={"seed": seed})
    if kind == "sb3":
        return run_sb3_once(cfg, sb3_steps or cfg.env_steps, seed)
    if kind == "baseline":
        return run_baseline_once(cfg)
    feedback = cfg.feedback.model_copy(update={"labels": budget})
    return run_rlhf_once(cfg.model_copy(update={"feedback": feedback}))


def _sb3_version() -> str:
    import stable_baselines3

    return stable_baselines3.__version__


def merge(parts: list[dict]) -> dict:
    """Results of several benchmark runs as one (later files win for a repeated task)."""
    merged = {"meta": dict(parts[0]["meta"]), "tasks": {}}
    merged["meta"]["command"] = " + ".join(p["meta"]["command"] for p in parts)
    merged["meta"]["finished"] = max((p["meta"]["finished"] or "") for p in parts) or None
    merged["meta"]["sb3"] = next((p["meta"]["sb3"] for p in parts if p["meta"].get("sb3")), None)
    for p in parts:
        merged["tasks"].update(p["tasks"])
    return merged


def report(results: dict, out: str | None) -> int:
    for table in rich_tables(results):
        console.print(table)
    if out:
        out_path = Path(out)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(markdown(results))
        out_path.with_suffix(".json").write_text(
            json.dumps(results, indent=1, default=float) + "\n"
        )
        console.print(f"wrote {out_path} and {out_path.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
