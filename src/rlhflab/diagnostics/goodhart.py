"""Goodhart curves: the gold score against optimisation pressure (Gao, Schulman & Hilton 2022).

Optimise a proxy (a learned reward r̂) harder and harder, and watch the gold reward:
it rises, peaks, and falls. Pressure is measured as d = √KL(π‖π₀).

Best-of-n. Draw n samples from π₀ and keep the one the proxy likes best. With a
continuous proxy (no ties) its KL from π₀ is (Stiennon et al. 2020, appendix)
    KL_bon(n) = log n − (n − 1)/n
(an upper bound when the proxy has ties — Beirami et al. 2024). Its expected gold is
estimated without bias from N ≥ n samples of π₀ (Gao et al. 2022, appendix): rank
them by proxy; the i-th lowest (i = 1…N) is the best of a uniformly random n-subset
with probability C(i−1, n−1)/C(N, n), so
    Ĝ(n) = Σᵢ C(i−1, n−1)/C(N, n) · goldᵢ        (the average over all n-subsets)

Language-model runs (`text_points`): best-of-n over N saved samples of π_SFT per prompt,
averaged over prompts, and PPO's iterations with the KL it measured on its own samples.

RL. The policy's snapshots π_t during training (`checkpoints/policy_XXXX.pt`); for a
control task the KL between trajectory distributions is measured exactly on states
π_t visits — the dynamics cancel:
    KL(π_t‖π₀) = E_{τ∼π_t} Σ_s KL(π_t(·|s) ‖ π₀(·|s))   (steps in absorbing states left out)

Functional forms (Gao et al. eqs. 1–2), R(d) the gold gain over π₀:
    best-of-n   R(d) = d·(α − β·d)          peak d* = α / (2β)
    RL          R(d) = d·(α − β·log d)      peak d* = exp(α/β − 1)
Both are linear in (α, β), so they are fitted by least squares; R² is reported.
Departure: Gao et al. fix the reward model; in an RLHF run it is refit as labels
arrive, so the proxy here is the run's *final* reward model, the one whose over-
optimisation the curves show.

`rlhflab goodhart RUN_DIR` writes `RUN_DIR/goodhart/{goodhart.png, goodhart.md,
goodhart.json}`. Points come from a *point source* chosen by the run's config
(`POINT_SOURCES`): control runs and language-model runs.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

KINDS = ("best_of_n", "rl")


# -- best-of-n ------------------------------------------------------------------------
def best_of_n_weights(N: int, n: int) -> np.ndarray:
    """[N] probability that the i-th lowest of N samples is the best of a random n-subset: C(i−1,
    n−1)/C(N, n)."""
    if not 1 <= n <= N:
        raise ValueError(f"best-of-n needs 1 ≤ n ≤ N samples, got n={n}, N={N}")
    total = math.comb(N, n)
    return np.array([math.comb(i - 1, n - 1) / total for i in range(1, N + 1)])


def best_of_n_estimate(proxy: np.ndarray, gold: np.ndarray, n: int) -> float:
    """Unbiased estimate of E[gold of the proxy's favourite among n samples], from N ≥ n samples."""
    proxy, gold = np.asarray(proxy, dtype=np.float64), np.asarray(gold, dtype=np.float64)
    if proxy.shape != gold.shape or proxy.ndim != 1:
        raise ValueError(
            f"proxy and gold must be 1-d arrays of equal length, got {proxy.shape} and {gold.shape}"
        )
    order = np.argsort(proxy, kind="stable")
    return float(best_of_n_weights(len(proxy), n) @ gold[order])


# -- the functional forms and their fit ------------------------------------------------
def goodhart_form(d: np.ndarray, alpha: float, beta: float, kind: str) -> np.ndarray:
    """R(d) = d(α − βd) for best-of-n, d(α − β log d) for RL (R(0) = 0)."""
    d = np.asarray(d, dtype=np.float64)
    return d * (alpha - beta * _shape(d, kind))


def _shape(d: np.ndarray, kind: str) -> np.ndarray:
    if kind == "best_of_n":
        return d
    if kind == "rl":
        return np.log(np.where(d > 0, d, 1.0))  # d·log d → 0 as d → 0
    raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")


@dataclass
class GoodhartFit:
    kind: str
    alpha: float
    beta: float
    d_star: float  # √KL at the peak of the fitted gold (inf: no peak, gold still rising)
    gold_star: float  # the fitted gold gain at the peak
    r2: float
    points: int

    @property
    def kl_star(self) -> float:
        return self.d_star**2


def fit_goodhart(d: np.ndarray, gain: np.ndarray, kind: str) -> GoodhartFit:
    """Least-squares α, β of R(d) for gold gains `gain` over the initial policy at d = √KL."""
    d, gain = np.asarray(d, dtype=np.float64), np.asarray(gain, dtype=np.float64)
    if d.shape != gain.shape or len(d) < 2:
        raise ValueError(
            f"a fit needs at least 2 points with d and gain of equal length, got {d.shape} and "
            f"{gain.shape}"
        )
    X = np.stack([d, -d * _shape(d, kind)], axis=1)
    (alpha, beta), *_ = np.linalg.lstsq(X, gain, rcond=None)
    residual = gain - X @ np.array([alpha, beta])
    total = np.sum((gain - gain.mean()) ** 2)
    r2 = 1.0 - float(np.sum(residual**2) / total) if total > 0 else float("nan")
    if beta > 0:
        d_star = alpha / (2 * beta) if kind == "best_of_n" else math.exp(min(alpha / beta - 1, 700))
    else:
        d_star = math.inf
    d_star = max(d_star, 0.0)
    gold_star = (
        float(goodhart_form(np.array(d_star), alpha, beta, kind))
        if math.isfinite(d_star)
        else math.inf
    )
    return GoodhartFit(kind, float(alpha), float(beta), float(d_star), gold_star, r2, len(d))


# -- points ---------------------------------------------------------------------------
@dataclass
class Point:
    kind: str  # best_of_n | rl
    label: str  # n=4, iteration 30, …
    kl: float
    proxy: float  # the proxy's expected score (learned reward)
    gold: float  # the gold's expected score

    @property
    def d(self) -> float:
        return math.sqrt(max(self.kl, 0.0))


def best_of_n_points(proxy: np.ndarray, gold: np.ndarray, max_n: int = 256) -> list[Point]:
    """Best-of-n for n = 1, 2, 4, … ≤ min(max_n, N) from N samples of the base policy scored by
    proxy and gold."""
    from rlhflab.policy.best_of_n import best_of_n_kl  # here: torch stays out of `rlhflab --help`

    N = len(proxy)
    ns = [2**k for k in range(int(math.log2(min(max_n, N))) + 1)]
    return [
        Point(
            "best_of_n",
            f"n={n}",
            best_of_n_kl(n),
            best_of_n_estimate(proxy, proxy, n),
            best_of_n_estimate(proxy, gold, n),
        )
        for n in ns
    ]


def fits(points: list[Point]) -> dict[str, GoodhartFit]:
    """One fit per kind, on gold gains over the kind's first point (n = 1; the first RL
    snapshot)."""
    out = {}
    for kind in KINDS:
        pts = [p for p in points if p.kind == kind]
        if len(pts) >= 2:
            out[kind] = fit_goodhart(
                np.array([p.d for p in pts]), np.array([p.gold - pts[0].gold for p in pts]), kind
            )
    return out


# -- control runs -----------------------------------------------------------------------
@dataclass
class Options:
    samples: int = 512  # N episodes of π₀ for best-of-n
    episodes: int = 32  # episodes per RL snapshot
    max_n: int = 256
    seed: int = 12_345


def control_jobs(run_dir: Path, opts: Options) -> list[tuple]:
    """The independent pieces of a control run's points, one per policy snapshot (iteration 0:
    best-of-n over π₀'s episodes, and π₀'s RL point); checked here, before any is run."""
    from rlhflab.runs import RunDir

    run = RunDir(run_dir)
    snapshots = run.policy_snapshots()
    ckpt = run.load_checkpoint()
    if ckpt is None or "reward_model" not in ckpt:
        raise FileNotFoundError(
            f"{run.path}: no reward model in checkpoints/latest.pt (Goodhart curves need an RLHF "
            f"run)"
        )
    if 0 not in snapshots:
        raise FileNotFoundError(
            f"{run.path}: no checkpoints/policy_0000.pt (π₀); runs made before policy snapshots "
            f"existed cannot be analysed"
        )
    return [(run_dir, opts, iteration) for iteration in snapshots]


def control_points(run_dir: Path, opts: Options, iteration: int) -> list[Point]:
    """The points of one policy snapshot of a control run, scored by the final r̂ and the gold
    reward: best-of-n over π₀'s episodes and π₀ itself (iteration 0), else π_t's RL point."""
    import torch

    from rlhflab.policy.control import ControlPolicy
    from rlhflab.policy.rollout import play_episodes
    from rlhflab.reward.model import RewardEnsemble
    from rlhflab.runs import RunDir

    run = RunDir(run_dir)
    cfg = run.read_config()
    snapshots = run.policy_snapshots()
    torch.set_num_threads(cfg.threads)
    env_cfg = cfg.env.model_copy(update={"num_envs": 1})

    def load(path) -> ControlPolicy:
        policy = ControlPolicy(env_cfg, cfg.policy, cfg.seed)
        policy.load_state_dict(torch.load(path, weights_only=False))
        policy.close()
        return policy

    base = load(snapshots[0])
    reward_model = RewardEnsemble(base.obs_dim, base.action_space, cfg.reward, cfg.seed + 1)
    reward_model.load_state_dict(run.load_checkpoint()["reward_model"])  # type: ignore[index]

    def play(policy: ControlPolicy, episodes: int, seed: int):
        torch.manual_seed(seed)
        eps = play_episodes(cfg.env, episodes, policy.act_fn(deterministic=False), seed)
        return (
            eps,
            reward_model.predict(eps.obs, eps.actions, eps.absorbing).sum(0),
            eps.returns()["true_reward"],
        )

    if iteration == 0:
        _, proxy, gold = play(base, opts.samples, opts.seed)
        return [
            *best_of_n_points(proxy, gold, opts.max_n),
            Point("rl", "iteration 0 (0 env steps)", 0.0, float(proxy.mean()), float(gold.mean())),
        ]  # π₀ from all N samples
    policy = load(snapshots[iteration])
    eps, proxy, gold = play(policy, opts.episodes, opts.seed + iteration)
    what = f"iteration {iteration} ({policy.env_steps} env steps)"
    return [
        Point("rl", what, _episode_kl(policy, base, eps), float(proxy.mean()), float(gold.mean()))
    ]


def _episode_kl(policy, base, eps) -> float:
    """KL(π‖π₀) summed over an episode's acting steps, averaged over episodes."""
    from rlhflab.policy.control import kl_per_step

    kl_steps = kl_per_step(policy, base, eps.obs)  # [T, E]
    return float((kl_steps * ~eps.absorbing).sum(0).mean())


# -- language-model runs ------------------------------------------------------------------
def text_points(run_dir: Path, opts: Options) -> list[Point]:
    """Best-of-n over the SFT samples a text run saved (`goodhart_samples.npz`: proxy and gold,
    [prompts, N]), averaged over prompts; and PPO's iterations, whose KL from the SFT policy
    (Σ_t log π/π_SFT over each sampled response, batch mean), proxy and gold the run logged."""
    from rlhflab.runs import RunDir

    run = RunDir(run_dir)
    samples = run.path / "goodhart_samples.npz"
    if not samples.exists():
        raise FileNotFoundError(
            f"{run.path}: no goodhart_samples.npz (set text.goodhart_samples > 0)"
        )
    with np.load(samples) as f:
        proxy, gold = f["proxy"], f["gold"]
    per_prompt = [best_of_n_points(p, g, opts.max_n) for p, g in zip(proxy, gold)]
    points = [
        Point(
            "best_of_n",
            pts[0].label,
            pts[0].kl,
            float(np.mean([q.proxy for q in pts])),
            float(np.mean([q.gold for q in pts])),
        )
        for pts in zip(*per_prompt)
    ]
    metrics = run.metrics()
    sft = next((r for r in metrics if r.get("phase") == "eval" and r.get("method") == "sft"), None)
    ppo = [r for r in metrics if r.get("phase") == "ppo" and r.get("gold") is not None]
    if sft and ppo:
        points.append(Point("rl", "SFT (iteration 0)", 0.0, sft["proxy"], sft["gold"]))
        points += [
            Point("rl", f"iteration {r['iteration']}", r["kl"], r["proxy"], r["gold"]) for r in ppo
        ]
    return points


# Point sources, first match wins: (does this run's raw config belong to me?, the run's jobs,
# one job's points). A job is the arguments of the points function; a run's jobs are
# independent, so `rlhflab goodhart` runs them as tasks of the executor (in parallel on Ray).
POINT_SOURCES: list[tuple[Callable[[dict], bool], Callable[..., list[tuple]], Callable]] = [
    (lambda raw: bool(raw.get("text")), lambda run_dir, opts: [(run_dir, opts)], text_points),
    (lambda raw: "env" in raw, control_jobs, control_points),
]
Map = Callable[[Callable, Sequence], list]  # [fn(item) for item in items], as tasks or in a loop


def _serial(fn: Callable, items: Sequence) -> list:
    return [fn(item) for item in items]


def _source(run_dir: Path) -> int:
    """The index of the point source that handles the run in `run_dir`."""
    import yaml

    config = run_dir / "config.yaml"
    if not config.exists():
        raise FileNotFoundError(f"{run_dir}: not a run directory (no config.yaml)")
    raw = yaml.safe_load(config.read_text()) or {}
    for index, (handles, _, _) in enumerate(POINT_SOURCES):
        if handles(raw):
            return index
    raise NotImplementedError(f"{run_dir}: no Goodhart point source handles this kind of run")


def _point_task(job: tuple) -> list[Point]:
    index, args = job
    return POINT_SOURCES[index][2](*args)


def points_of_runs(
    run_dirs: Sequence[str | Path], opts: Options, map_fn: Map = _serial
) -> list[list[Point]]:
    """Each run's points. Every run is checked first; then the jobs of all runs (a control run's
    policy snapshots, …) run as one batch of independent tasks through `map_fn` (an executor's
    `map`), and each run's points are its jobs' points in order, whatever ran them."""
    jobs, owner = [], []
    for i, run_dir in enumerate(Path(d) for d in run_dirs):
        index = _source(run_dir)
        for args in POINT_SOURCES[index][1](run_dir, opts):
            jobs.append((index, args))
            owner.append(i)
    per_run: list[list[Point]] = [[] for _ in run_dirs]
    for i, points in zip(owner, map_fn(_point_task, jobs)):
        per_run[i] += points
    return per_run


def goodhart(
    run_dir: str | Path, opts: Options | None = None, map_fn: Map = _serial
) -> tuple[list[Point], dict[str, GoodhartFit]]:
    """Points and fits for a run directory, from the point source that handles its config."""
    points = points_of_runs([run_dir], opts or Options(), map_fn)[0]
    return points, fits(points)


# -- outputs ----------------------------------------------------------------------------
def goodhart_over_seeds(
    run_dirs: list[str | Path], opts: Options | None = None, map_fn: Map = _serial
) -> tuple[list[Point], dict[str, GoodhartFit]]:
    """Points averaged over runs (seeds of one setting) and fits on the averages: each point
    (best-of-n's n, RL's iteration) is the mean KL, proxy and gold over the runs that have it,
    kept where every run has it. One seed's RL path is noisy; its fit's R² is not the form's."""
    per_run = points_of_runs(run_dirs, opts or Options(), map_fn)
    keyed = [{(p.kind, p.label): p for p in pts} for pts in per_run]
    points = []
    for p in per_run[0]:
        same = [k[(p.kind, p.label)] for k in keyed if (p.kind, p.label) in k]
        if len(same) == len(per_run):
            points.append(
                Point(
                    p.kind,
                    p.label,
                    float(np.mean([q.kl for q in same])),
                    float(np.mean([q.proxy for q in same])),
                    float(np.mean([q.gold for q in same])),
                )
            )
    return points, fits(points)


def write_outputs(
    out: Path, points: list[Point], fitted: dict[str, GoodhartFit], title: str = ""
) -> None:
    """goodhart.json, goodhart.md (tables) and goodhart.png (gold and proxy against √KL, with the
    fits)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "goodhart.json").write_text(
        json.dumps(
            {
                "points": [asdict(p) | {"d": p.d} for p in points],
                "fits": {k: asdict(f) | {"kl_star": f.kl_star} for k, f in fitted.items()},
            },
            indent=2,
            default=lambda v: None,
        )
        + "\n"
    )
    (out / "goodhart.md").write_text(markdown_tables(points, fitted, title))
    _plot(out / "goodhart.png", points, fitted, title)


def _num(v: float, spec: str = ".3g") -> str:
    return "∞" if math.isinf(v) else "–" if math.isnan(v) else format(v, spec)


def markdown_tables(points: list[Point], fitted: dict[str, GoodhartFit], title: str = "") -> str:
    lines = [
        f"# Goodhart curves{': ' + title if title else ''}",
        "",
        "| method | α | β | peak d* = √KL* | KL* | peak gold gain | R² | points |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for kind, f in fitted.items():
        lines.append(
            f"| {kind} | {_num(f.alpha)} | {_num(f.beta)} | {_num(f.d_star)} | {_num(f.kl_star)} "
            f"| {_num(f.gold_star)} | {_num(f.r2, '.3f')} | {f.points} |"
        )
    lines += [
        "",
        "| method | point | KL | d = √KL | proxy (r̂) | gold |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for p in points:
        lines.append(
            f"| {p.kind} | {p.label} | {p.kl:.3f} | {p.d:.3f} | {p.proxy:.3f} | {p.gold:.3f} |"
        )
    return "\n".join(lines) + "\n"


def _plot(path: Path, points: list[Point], fitted: dict[str, GoodhartFit], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = [k for k in KINDS if any(p.kind == k for p in points)]
    fig, axes = plt.subplots(1, len(kinds), figsize=(5.5 * len(kinds), 4), squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        pts = [p for p in points if p.kind == kind]
        d = np.array([p.d for p in pts])
        gain = np.array([p.gold - pts[0].gold for p in pts])
        ax.plot(d, gain, "o", color="tab:orange", label="gold (gain over π₀)")
        if kind in fitted:
            f = fitted[kind]
            grid = np.linspace(0, max(d.max(), 1e-6) * 1.1, 200)
            ax.plot(
                grid,
                goodhart_form(grid, f.alpha, f.beta, kind),
                "-",
                color="tab:orange",
                alpha=0.6,
                label=f"fit α={f.alpha:.3g} β={f.beta:.3g} R²={_num(f.r2, '.2f')}",
            )
            if math.isfinite(f.d_star) and f.d_star <= grid[-1]:
                ax.axvline(f.d_star, color="grey", ls=":", label=f"peak d*={f.d_star:.3g}")
        twin = ax.twinx()
        twin.plot(
            d,
            [p.proxy - pts[0].proxy for p in pts],
            "s",
            color="tab:blue",
            alpha=0.5,
            label="proxy r̂ (gain)",
        )
        twin.set_ylabel("proxy gain", color="tab:blue")
        ax.set_xlabel("d = √KL(π ‖ π₀)")
        ax.set_ylabel("gold gain")
        ax.set_title({"best_of_n": "best-of-n", "rl": "RL checkpoints"}[kind])
        handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
        ax.legend(handles=handles, fontsize=8, loc="best")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- the command ------------------------------------------------------------------------
def _positive(text: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number ≥ 1, got {text!r}")
    return value


def add_goodhart_arguments(p) -> None:
    """The arguments of `rlhflab goodhart RUN_DIR` (the CLI makes the subparser)."""
    p.add_argument(
        "run_dir", nargs="+", help="a run, or several (seeds): points averaged, then fitted"
    )
    p.add_argument(
        "--samples",
        type=_positive,
        default=Options.samples,
        help="N: episodes of the initial policy for best-of-n (N ≥ n)",
    )
    p.add_argument(
        "--episodes", type=_positive, default=Options.episodes, help="episodes per RL checkpoint"
    )
    p.add_argument(
        "--max-n", type=_positive, default=Options.max_n, help="largest n (powers of two up to it)"
    )
    p.add_argument("--seed", type=int, default=Options.seed)
    p.add_argument("--out", help="output directory (default: RUN_DIR/goodhart)")
    p.add_argument(
        "--executor",
        choices=("local", "ray"),
        default="local",
        help="where the points are computed, one task per policy snapshot of each run: in this "
        "process, or as Ray tasks in parallel (docs/scaling.md)",
    )
    p.add_argument(
        "--address",
        help="--executor ray: the cluster to join (ray.init(address=...)); default: start a "
        "local one",
    )


def cmd_goodhart(args, map_fn: Map = _serial) -> int:
    """`rlhflab goodhart`; `map_fn` runs the points' tasks (the CLI passes its executor's)."""
    from rich.console import Console
    from rich.table import Table

    opts = Options(args.samples, args.episodes, args.max_n, args.seed)
    runs = list(args.run_dir)
    if len(runs) == 1:
        points, fitted = goodhart(runs[0], opts, map_fn)
    else:
        points, fitted = goodhart_over_seeds(runs, opts, map_fn)
    title = runs[0] if len(runs) == 1 else f"{len(runs)} runs: " + ", ".join(runs)
    out = Path(args.out) if args.out else Path(runs[0]) / "goodhart"
    write_outputs(out, points, fitted, title=title)
    table = Table(title=f"Goodhart fits: {title}")
    for column in ("method", "α", "β", "peak d*", "KL*", "peak gold gain", "R²", "points"):
        table.add_column(column, justify="left" if column == "method" else "right")
    for kind, f in fitted.items():
        table.add_row(
            kind,
            _num(f.alpha),
            _num(f.beta),
            _num(f.d_star),
            _num(f.kl_star),
            _num(f.gold_star),
            _num(f.r2, ".3f"),
            str(f.points),
        )
    Console().print(table)
    print(f"wrote {out / 'goodhart.png'}, {out / 'goodhart.md'}, {out / 'goodhart.json'}")
    return 0
