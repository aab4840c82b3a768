"""`rlhflab sweep`: one control run per seed (and per label budget), fanned out as tasks of
the executor (local processes or Ray); inside a run its workers are local."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from rlhflab.config import ConfigError, RunConfig, build_config
from rlhflab.executor import make_executor


def sweep(
    config: str | None,
    overrides: list[str],
    seeds: list[int],
    budgets: list[int] | None,
    out: Path,
    console: Console,
) -> tuple[RunConfig, list[dict]]:
    """Run every seed of the config (of each budget, `labels=B`, when `budgets` are given) into
    `out`; the config and each run's summary. An existing run directory is never overwritten."""
    cfg = build_config(config, overrides)
    if cfg.text is not None or cfg.demonstrations is not None:
        raise ConfigError("rlhflab sweep: control runs from preferences only")
    configs = (  # each budget's config validated as `labels=B` on the command line would be
        {b: build_config(config, [*overrides, f"labels={b}"]) for b in budgets}
        if budgets
        else {None: cfg}
    )
    jobs = sweep_jobs(configs, seeds, out)
    for _, path in jobs:
        if path.exists():
            raise ConfigError(f"{path}: exists; sweep into a new --out directory")
    with make_executor(cfg.executor) as executor:
        console.print(f"{len(jobs)} runs on the {executor.backend} executor, into {out}")
        return cfg, executor.map(seed_run, jobs)


def sweep_jobs(configs: dict, seeds: list[int], out: Path) -> list:
    """(config, run directory) of each run of a sweep: every seed of each config (keyed by its
    label budget, None when the sweep has no --labels). Inside a run the workers are local (the
    sweep's executor runs the runs)."""
    jobs = []
    for budget, cfg in configs.items():
        local = cfg.executor.model_copy(update={"backend": "local", "address": None})
        for seed in seeds:
            name = f"seed-{seed}" if budget is None else f"labels-{budget}-seed-{seed}"
            jobs.append((cfg.model_copy(update={"seed": seed, "executor": local}), out / name))
    return jobs


def seed_run(job) -> dict:
    """A sweep's task: one run, quietly, into its own directory; its summary."""
    from rlhflab.control_loop import run_experiment
    from rlhflab.display import headless_rendering
    from rlhflab.runs import RunDir

    cfg, path = job
    headless_rendering()
    return run_experiment(cfg, RunDir.fresh(path))


def sweep_table(title: str, summaries: list[dict]) -> Table:
    """Per run: seed, labels, true return of RLHF, of true-reward PPO and of a random policy,
    the normalised score and the wall time."""
    table = Table(title=title)
    for column in ("seed", "labels", "RLHF", "true-reward PPO", "random", "normalised", "seconds"):
        table.add_column(column, justify="right")
    for s in summaries:
        r = s["true_return"]
        cells = [r.get("rlhf"), r.get("true_reward_baseline"), r.get("random")]
        score = s["normalised_score"]
        table.add_row(
            str(s["seed"]),
            str(s["labels"]),
            *("—" if v is None else f"{v:.1f}" for v in cells),
            "—" if score is None else f"{score:.2f}",
            f"{s['wall_seconds']:.0f}",
        )
    return table
