"""Scaling out on one machine: rollout workers and parallel reward-ensemble fits, measured.

Rollouts: `ControlPolicy.collect()` of --envs envs × --steps steps, --rollouts times (after one
warm-up), with the envs in-process, in 2 local rollout workers (the executor's bookkeeping
alone), and in 1 and 2 Ray rollout workers on a local Ray cluster of 2 CPUs. Reports env
steps/s (wall) and the driver's own CPU seconds per rollout; the PPO update on one rollout is
timed too (it stays in the driver).

Reward fit: a fresh `reward.ensemble`-member ensemble fitted on --pairs synthetic comparisons
(random segments of the env's observation size, labelled by a random linear reward), serially
(one batched network, `RewardEnsemble.fit`) and in 2 shards (`reward/parallel.py`), locally and
on Ray; wall seconds, median of --repeats fits.

Data-parallel SFT (`rlhflab/distributed.py`): `train_sft` of the built-in model's size (a GPT-2
of 2 layers, 64 wide) on --sft-examples demonstrations of the reviews task, global batch 32, in
1 process and in 2 gloo processes (forked, one thread each), alternated --repeats times;
response tokens per second (wall, from the start of training to its end on rank 0).
`--sft-only` measures only this.

The numbers are per-worker rates for docs/scaling.md. The machine is shared (other jobs ran):
compare the ratios within one run, not the absolute rates across runs.

    .venv/bin/python bench/scale.py [--env HalfCheetah-v5] [--envs 8] [--steps 256]
        [--rollouts 4] [--pairs 400] [--repeats 3] [--sft-examples 512] [--sft-only]
        [--out bench/results/scale.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import ray
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from rich.console import Console
from rich.table import Table

from rlhflab.config import build_config
from rlhflab.executor import LocalExecutor, RayExecutor
from rlhflab.policy.control import ControlPolicy
from rlhflab.reward.model import RewardEnsemble
from rlhflab.reward.parallel import ShardedRewardEnsemble
from rlhflab.types import Comparison, Judgement, Segment

console = Console()


def rollout_rates(cfg, executor, workers: int, rollouts: int) -> dict:
    policy = ControlPolicy(
        cfg.env, cfg.policy, cfg.seed, executor=executor, rollout_workers=workers
    )
    policy.collect()  # warm-up: workers started, imports done
    wall, cpu = [], []
    for _ in range(rollouts):
        w0, c0 = time.perf_counter(), time.process_time()
        rollout = policy.collect()
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    steps = rollout.true_rewards.size
    w0 = time.perf_counter()
    policy.update(rollout, rollout.true_rewards)
    update = time.perf_counter() - w0
    policy.close()
    return {
        "steps_per_rollout": steps,
        "env_steps_per_s": steps / statistics.median(wall),
        "driver_cpu_s_per_rollout": statistics.median(cpu),
        "update_s": update,
        "wall_s": wall,
    }


def comparisons(obs_dim: int, n: int, length: int, seed: int) -> list[Comparison]:
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(obs_dim)
    out = []
    for i in range(n):
        segs = [
            Segment(
                obs=rng.standard_normal((length, obs_dim)).astype(np.float32),
                actions=np.zeros((length, 1), np.float32),
                judged_rewards=np.zeros(length, np.float32),
            )
            for _ in range(2)
        ]
        better = float(segs[0].obs.sum(0) @ w) > float(segs[1].obs.sum(0) @ w)
        label = Judgement.LEFT if better else Judgement.RIGHT
        out.append(Comparison(query_id=i + 1, left=segs[0], right=segs[1], judgement=label))
    return out


def fit_seconds(make, data: list[Comparison], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        model = make()
        t0 = time.perf_counter()
        model.fit(data)
        times.append(time.perf_counter() - t0)
    return times


def sft_data(n: int):
    from rlhflab.text.task import TASKS

    task = TASKS["reviews"]
    demos = task.demonstrations(n, 0)
    return task, [p for p, _ in demos], [r for _, r in demos]


def sft_run(rank: int, world: int, port: int, n: int, out: str) -> None:
    """One process of a data-parallel SFT epoch; rank 0 writes its wall seconds and tokens."""
    from rlhflab.policy.sft import train_sft
    from rlhflab.text.models import build_word_tokenizer, tiny_gpt2
    from rlhflab.text.sequences import encode

    torch.set_num_threads(1)
    if world > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        dist.init_process_group("gloo", rank=rank, world_size=world)
    task, prompts, responses = sft_data(n)
    tokenizer = build_word_tokenizer(task.vocabulary)
    model = tiny_gpt2(len(tokenizer), 2, 64, n_head=4, n_positions=64, tokenizer=tokenizer)
    tokens = float(encode(tokenizer, prompts, responses, 64).response_mask.sum())
    if world > 1:
        dist.barrier()
    t0 = time.perf_counter()
    train_sft(model, tokenizer, prompts, responses, 1, 1e-3, 32)
    wall = time.perf_counter() - t0
    if rank == 0:
        Path(out).write_text(json.dumps({"wall": wall, "tokens": tokens}))
    if world > 1:
        dist.destroy_process_group()


def sft_rates(n: int, repeats: int) -> dict:
    import socket
    import tempfile

    rates: dict = {"1 process": [], "2 processes (gloo)": []}
    for _ in range(repeats):
        for name, world in (("1 process", 1), ("2 processes (gloo)", 2)):
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            out = tempfile.mktemp(suffix=".json")
            mp.start_processes(sft_run, (world, port, n, out), nprocs=world, start_method="fork")
            r = json.loads(Path(out).read_text())
            os.remove(out)
            rates[name].append(r["tokens"] / r["wall"])
    return rates


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--env", default="HalfCheetah-v5")
    ap.add_argument("--envs", type=int, default=8)
    ap.add_argument("--steps", type=int, default=256)
    ap.add_argument("--rollouts", type=int, default=4)
    ap.add_argument("--pairs", type=int, default=400)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sft-examples", type=int, default=512)
    ap.add_argument("--sft-only", action="store_true")
    ap.add_argument("--out", default="bench/results/scale.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.sft_only:
        results = {"args": vars(args), "load_at_start": os.getloadavg()}
        results["sft_tokens_per_s"] = sft_rates(args.sft_examples, args.repeats)
        results["load_at_end"] = os.getloadavg()
        Path(args.out).write_text(json.dumps(results, indent=1))
        report_sft(results)
        return
    cfg = build_config(
        None, [f"env={args.env}", f"env.num_envs={args.envs}", f"policy.n_steps={args.steps}"]
    )
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    results: dict = {"args": vars(args), "load_at_start": os.getloadavg(), "rollouts": {}}
    try:
        local, remote = LocalExecutor(), RayExecutor()
        for name, executor, workers in (
            ("in-process (rollout_workers=0)", local, 0),
            ("local executor, 2 workers", local, 2),
            ("Ray, 1 worker", remote, 1),
            ("Ray, 2 workers", remote, 2),
        ):
            console.print(f"rollouts: {name}")
            results["rollouts"][name] = rollout_rates(cfg, executor, workers, args.rollouts)
            remote.close()  # its actors; the cluster stays up
        policy = ControlPolicy(cfg.env, cfg.policy)
        obs_dim, space = policy.obs_dim, policy.action_space
        policy.close()
        data = comparisons(obs_dim, args.pairs, cfg.feedback.segment_length, 0)
        rc = cfg.reward
        fits = {
            "serial (one batched network)": lambda: RewardEnsemble(obs_dim, space, rc, 1),
            "local executor, 2 shards": lambda: ShardedRewardEnsemble(
                obs_dim, space, rc, 1, local, 2
            ),
            "Ray, 2 shards": lambda: ShardedRewardEnsemble(obs_dim, space, rc, 1, remote, 2),
        }
        results["reward_fit"] = {}
        for name, make in fits.items():
            console.print(f"reward fit: {name}")
            results["reward_fit"][name] = fit_seconds(make, data, args.repeats)
    finally:
        ray.shutdown()
    results["sft_tokens_per_s"] = sft_rates(args.sft_examples, args.repeats)
    results["load_at_end"] = os.getloadavg()
    Path(args.out).write_text(json.dumps(results, indent=1))
    report(results, cfg.reward.ensemble)
    report_sft(results)


def report_sft(results: dict) -> None:
    t = Table(title="data-parallel SFT (response tokens per s, wall)")
    for c in ("set-up", "per repeat", "median", "× 1 process"):
        t.add_column(c, justify="right")
    rates = results["sft_tokens_per_s"]
    base = statistics.median(rates["1 process"])
    for name, xs in rates.items():
        m = statistics.median(xs)
        t.add_row(name, ", ".join(f"{x:,.0f}" for x in xs), f"{m:,.0f}", f"{m / base:.2f}")
    console.print(t)
    console.print(f"load average at start {results['load_at_start']}, end {results['load_at_end']}")


def report(results: dict, members: int) -> None:
    t = Table(title="rollouts (env steps per s, wall, median)")
    for c in ("set-up", "steps/rollout", "env steps/s", "× in-process", "driver CPU s/rollout"):
        t.add_column(c, justify="right")
    base = results["rollouts"]["in-process (rollout_workers=0)"]["env_steps_per_s"]
    for name, r in results["rollouts"].items():
        t.add_row(
            name,
            str(r["steps_per_rollout"]),
            f"{r['env_steps_per_s']:,.0f}",
            f"{r['env_steps_per_s'] / base:.2f}",
            f"{r['driver_cpu_s_per_rollout']:.2f}",
        )
    console.print(t)
    update = results["rollouts"]["in-process (rollout_workers=0)"]["update_s"]
    console.print(f"PPO update of one rollout, in the driver: {update:.2f} s")
    f = Table(title=f"reward-ensemble fit ({members} members), wall seconds")
    for c in ("set-up", "per fit", "median", "× serial"):
        f.add_column(c, justify="right")
    serial = statistics.median(results["reward_fit"]["serial (one batched network)"])
    for name, xs in results["reward_fit"].items():
        m = statistics.median(xs)
        f.add_row(name, ", ".join(f"{x:.2f}" for x in xs), f"{m:.2f}", f"{serial / m:.2f}")
    console.print(f)
    console.print(f"load average at start {results['load_at_start']}, end {results['load_at_end']}")


if __name__ == "__main__":
    main()
