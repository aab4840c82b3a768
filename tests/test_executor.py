"""The executor: a run gives the same result in-process and on a local 2-CPU Ray cluster; an
unreachable cluster is named; a dead rollout worker is restarted, or, with no restarts left,
stops the run with a checkpoint."""

import json
import os
import signal

import numpy as np
import pytest
import torch

from rlhflab.cli import main
from rlhflab.config import build_config
from rlhflab.control_loop import ControlLoop, RunError
from rlhflab.diagnostics.goodhart import Options, control_jobs, goodhart
from rlhflab.executor import LocalExecutor, RayExecutor
from rlhflab.feedback.store import FeedbackStore
from rlhflab.runs import RunDir

ray = pytest.importorskip("ray")  # the `ray` extra (`make install` installs it)

TINY = [
    "seed=3",
    "env=Pendulum-v1",
    "horizon=64",
    "env_steps=768",  # initial rollouts + two RL iterations of 4 envs × 64 steps
    "env.num_envs=4",
    "policy.n_steps=64",
    "policy.epochs=2",
    "policy.minibatches=4",
    "eval_episodes=2",
    "labels=24",
    "feedback.segment_length=16",
    "reward.ensemble=4",
    "reward.min_steps=20",
    "reward.max_epochs=3",
    "baseline=false",
    "executor.rollout_workers=2",
    "executor.reward_shards=2",
]


def test_an_unreachable_cluster_is_named_and_no_run_directory_is_made(tmp_path, capsys):
    """Runs before the module's cluster starts (a Ray already running would be used)."""
    out = tmp_path / "run"
    code = main(["run", "executor=ray", "executor.address=127.0.0.1:1", "--out", str(out)])
    assert code == 1 and not out.exists()
    assert "executor.address '127.0.0.1:1'" in capsys.readouterr().err
    # `rlhflab goodhart`: the same, before any point is computed; --address wants Ray
    goodhart_ray = ["goodhart", str(tmp_path), "--executor", "ray", "--address", "127.0.0.1:1"]
    assert main(goodhart_ray) == 1 and "'127.0.0.1:1'" in capsys.readouterr().err
    assert main(["goodhart", str(tmp_path), "--address", "127.0.0.1:1"]) == 2
    assert "--address is for --executor ray" in capsys.readouterr().err


def test_a_sweep_runs_each_seed_into_its_own_directory(tmp_path, capsys):
    out = tmp_path / "sweep"
    tiny = [o for o in TINY if not o.startswith(("seed=", "executor."))]
    assert main(["sweep", "--seeds", "0,1", "--out", str(out), *tiny]) == 0
    summaries = [json.loads((out / f"seed-{s}" / "summary.json").read_text()) for s in (0, 1)]
    assert [s["seed"] for s in summaries] == [0, 1] and all(s["labels"] == 24 for s in summaries)
    assert summaries[0]["true_return"]["rlhf"] != summaries[1]["true_return"]["rlhf"]
    assert "2 runs on the local executor" in capsys.readouterr().out
    assert main(["sweep", "--seeds", "0", "--out", str(out), *tiny]) == 2  # never overwritten


@pytest.fixture(scope="module")
def cluster():
    """One local Ray cluster of 2 CPUs for the module (starting one takes seconds). Its workers
    run at the test's priority: Ray's default (nice 15) starves them on a busy machine."""
    os.environ.setdefault("RAY_worker_niceness", "0")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _run(tmp_path, name, executor, on_log=None, resume=False):
    cfg = build_config(None, TINY)
    run = RunDir(tmp_path / name)
    if not resume:
        run.write_config(cfg)
    loop = ControlLoop(cfg, run, on_log, resume, executor)
    policy = loop.run()
    return run, policy, loop.reward_model


def test_the_same_seed_gives_the_same_run_locally_and_on_ray(tmp_path, cluster):
    local_run, local_policy, local_rm = _run(tmp_path, "local", LocalExecutor())
    with RayExecutor() as executor:
        ray_run, ray_policy, ray_rm = _run(tmp_path, "ray", executor)
    drop = {"steps_per_second", "alarms"}
    local = [{k: v for k, v in m.items() if k not in drop} for m in local_run.metrics()]
    remote = [{k: v for k, v in m.items() if k not in drop} for m in ray_run.metrics()]
    assert len(local) == 2 and local == remote  # rollouts, labels, reward fits, updates
    for a, b in zip(local_policy.net.parameters(), ray_policy.net.parameters()):
        assert torch.equal(a, b)
    for a, b in zip(local_rm.net.parameters(), ray_rm.net.parameters()):
        assert torch.equal(a, b)
    assert local_rm.trained_on == ray_rm.trained_on and len(local_rm.trained_on) == 4
    assert local[-1]["labels"] == 24 and np.isfinite(local[-1]["rm_val_loss"])
    # `rlhflab goodhart`: one task per policy snapshot, the same points in-process and on Ray
    opts = Options(samples=8, episodes=2, max_n=4)
    snapshots = sorted(local_run.policy_snapshots())
    assert len(control_jobs(local_run.path, opts)) == len(snapshots) >= 2
    here = goodhart(local_run.path, opts, LocalExecutor().map)[0]
    with RayExecutor() as executor:
        there = goodhart(local_run.path, opts, executor.map)[0]
    assert here == there and [p.label for p in here if p.kind == "best_of_n"] == [
        "n=1",
        "n=2",
        "n=4",
    ]
    assert len([p for p in here if p.kind == "rl"]) == len(snapshots)


def test_a_killed_rollout_worker_is_restarted_and_the_run_completes(tmp_path, cluster):
    killed = []

    def kill_a_worker(record):
        if record.get("iteration") == 1:  # between the two RL iterations' rollouts
            killed.append(executor.gather([executor.workers[1].call("pid")])[0])
            os.kill(killed[0], signal.SIGKILL)

    with RayExecutor(max_restarts=1) as executor:
        run, policy, _ = _run(tmp_path, "restarted", executor, kill_a_worker)
        # Ray made worker 1 again (a new process) and the second rollout ran on it
        assert executor.gather([executor.workers[1].call("pid")])[0] != killed[0]
    assert policy.env_steps == 768 and run.load_checkpoint()["done"]
    assert [m["iteration"] for m in run.metrics()] == [1, 2]
    assert FeedbackStore(run.store_url).count_judgements() == 24


def test_a_killed_rollout_worker_stops_the_run_with_a_checkpoint(tmp_path, cluster):
    """With no restarts left (here: none allowed)."""

    def kill_a_worker(record):
        if record.get("iteration") == 1:  # after the first RL iteration's checkpoint-free log
            os.kill(executor.gather([executor.workers[1].call("pid")])[0], signal.SIGKILL)

    executor = RayExecutor(max_restarts=0)
    with executor, pytest.raises(RunError, match="rollout worker 1 died"):
        _run(tmp_path, "killed", executor, kill_a_worker)
    run = RunDir(tmp_path / "killed")
    assert run.load_checkpoint()["iteration"] == 1
    labels = FeedbackStore(run.store_url).count_judgements()
    assert labels > 0
    # resumed on fresh workers (here in-process), the run finishes
    _, policy, _ = _run(tmp_path, "killed", LocalExecutor(), resume=True)
    assert policy.env_steps == 768 and run.load_checkpoint()["done"]
    assert FeedbackStore(run.store_url).count_judgements() == 24 >= labels


def test_a_sweep_over_label_budgets_makes_one_run_per_budget_and_seed(tmp_path):
    from rlhflab.config import ConfigError, build_config
    from rlhflab.sweep import sweep_jobs

    configs = {b: build_config(None, [f"labels={b}"]) for b in (50, 200)}
    jobs = sweep_jobs(configs, [0, 1], tmp_path)
    assert [(c.feedback.labels, c.seed, p.name) for c, p in jobs] == [
        (50, 0, "labels-50-seed-0"),
        (50, 1, "labels-50-seed-1"),
        (200, 0, "labels-200-seed-0"),
        (200, 1, "labels-200-seed-1"),
    ]
    assert all(c.executor.backend == "local" for c, _ in jobs)
    with pytest.raises(ConfigError, match="labels"):  # a budget is validated as labels=L is
        build_config(None, ["labels=0"])
