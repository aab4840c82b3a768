"""The reward–KL frontier on the built-in text task: every method on one gold-against-√KL plot.

For each seed, one run of examples/text/reviews.yaml with PPO, GRPO and RLOO (their paths over
training iterations and their final scores on the held-out prompts), DPO and IPO at several β
(each from the run's SFT checkpoint, on its comparisons), and best-of-n for n = 1 … 64 (from
the run's saved SFT samples; KL in closed form). Every point is scored by the gold reward.

Rafailov et al. (2023, fig. 2) report that DPO's frontier dominates PPO's: at any KL from the
reference, DPO reaches a higher reward. `--out DIR` writes frontier.json, frontier.png and
frontier.md, whose last lines answer that question for this task: for each DPO or IPO point,
PPO's gold at the same KL (interpolated along its path, averaged over seeds).

    .venv/bin/python bench/text_frontier.py --seeds 0 1 2 --jobs 2 --out bench/results/text_frontier
    [--steps 40] [--labels 400] [--betas 0.03 0.1 0.3 1.0]
"""

from __future__ import annotations

import argparse
import json
import math
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

RL = ("ppo", "grpo", "rloo")


def run_seed(seed: int, args: argparse.Namespace) -> dict:
    """One seed: the run, then DPO and IPO at each β from its checkpoints."""
    import torch

    from rlhflab.config import build_config
    from rlhflab.diagnostics.goodhart import best_of_n_points
    from rlhflab.policy.dpo import train_dpo
    from rlhflab.runs import RunDir
    from rlhflab.text.models import trainable_copy
    from rlhflab.text_loop import TextLoop

    torch.set_num_threads(args.threads)
    out = Path(args.out) / f"seed{seed}"
    overrides = [
        f"seed={seed}",
        f"threads={args.threads}",
        f"text.labels={args.labels}",
        "text.methods=[ppo,grpo,rloo,dpo]",
        "text.goodhart_samples=64",
        *(f"text.{m}.steps={args.steps}" for m in RL),
        *args.set,
    ]
    cfg = build_config("examples/text/reviews.yaml", overrides)
    run = RunDir(out)
    done = (out / "summary.json").exists()
    loop = TextLoop(cfg, run, resume=(out / "config.yaml").exists())
    summary = run.summary() if done else loop.run()
    points: dict[str, list] = {}
    for method in RL:
        path = [r for r in run.metrics() if r.get("phase") == method]
        points[f"{method} path"] = [(0.0, summary["methods"]["sft"]["gold"])] + [
            (r["kl"], r["gold"]) for r in path
        ]
        points[method] = [(summary["methods"][method]["kl"], summary["methods"][method]["gold"])]
    with np.load(out / "goodhart_samples.npz") as f:
        per_prompt = [best_of_n_points(p, g, 64) for p, g in zip(f["proxy"], f["gold"])]
    points["best-of-n"] = [
        (pts[0].kl, float(np.mean([q.gold for q in pts]))) for pts in zip(*per_prompt)
    ]
    # DPO and IPO at each β, from the run's SFT checkpoint and comparisons
    loop = TextLoop(cfg, run, resume=True)
    loop.ckpt.load()
    loop.load_base_model()
    loop.fine_tune()
    loop.gather_feedback()
    loop.fit_reward_model()
    pairs = [
        (c.prompt, c.responses[0], c.responses[-1]) for c in loop.comparisons if c.target == 1.0
    ]
    for loss in ("sigmoid", "ipo"):
        name = "DPO" if loss == "sigmoid" else "IPO"
        points[name] = []
        for beta in args.betas:
            dpo_cfg = cfg.text.dpo.model_copy(update={"loss": loss, "beta": beta})
            policy = trainable_copy(loop.sft)
            train_dpo(policy, loop.sft, loop.tokenizer, pairs, dpo_cfg, seed)
            scored = loop.evaluate(f"{name.lower()}_beta{beta}", policy)
            points[name].append((scored["kl"], scored["gold"]))
    if loop.store is not None:
        loop.store.close()
    return {"seed": seed, "sft_gold": summary["methods"]["sft"]["gold"], "points": points}


def mean_over_seeds(results: list[dict], key: str) -> np.ndarray:
    """[n, 2] (KL, gold) averaged over seeds point by point (paths cut to the shortest)."""
    arrays = [np.array(r["points"][key], dtype=float) for r in results]
    n = min(len(a) for a in arrays)
    return np.mean([a[:n] for a in arrays], 0)


def frontier_at(path: np.ndarray, kl: float) -> float:
    """A path's frontier: the best gold among its points with KL ≤ `kl` (NaN if none)."""
    inside = path[path[:, 0] <= kl]
    return float(inside[:, 1].max()) if len(inside) else math.nan


def dominance(results: list[dict]) -> list[str]:
    """For each DPO / IPO point: the best gold PPO's mean path reached at no more KL."""
    ppo = mean_over_seeds(results, "ppo path")
    lines = []
    for name in ("DPO", "IPO"):
        pts = mean_over_seeds(results, name)
        for (kl, gold), beta in zip(pts, results[0]["betas"]):
            at = frontier_at(ppo, kl)
            verdict = "above" if gold > at else "below"
            lines.append(
                f"- {name} β = {beta}: KL {kl:.2f}, gold {gold:.3f}; PPO's best at KL ≤ {kl:.2f}: "
                f"{at:.3f} ({name} {verdict})"
            )
    return lines


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    styles = {
        "ppo path": ("C0", "-"),
        "grpo path": ("C1", "-"),
        "rloo path": ("C2", "-"),
        "best-of-n": ("C3", "--"),
    }
    for key, (color, line) in styles.items():
        pts = mean_over_seeds(results, key)
        ax.plot(np.sqrt(np.maximum(pts[:, 0], 0)), pts[:, 1], line, color=color, label=key)
    for key, marker in (("ppo", "o"), ("grpo", "o"), ("rloo", "o"), ("DPO", "s"), ("IPO", "^")):
        for r in results:  # every seed's point, faint; the mean, solid
            pts = np.array(r["points"][key])
            ax.plot(
                np.sqrt(np.maximum(pts[:, 0], 0)),
                pts[:, 1],
                marker,
                ms=3,
                alpha=0.3,
                color=_color(key),
            )
        pts = mean_over_seeds(results, key)
        ax.plot(
            np.sqrt(np.maximum(pts[:, 0], 0)),
            pts[:, 1],
            marker,
            ms=7,
            color=_color(key),
            label=f"{key} (eval)" if key in RL else f"{key} (β sweep)",
        )
    ax.axhline(np.mean([r["sft_gold"] for r in results]), color="grey", lw=0.8, ls=":")
    ax.set_xlabel("√KL from SFT (nats)")
    ax.set_ylabel("gold reward")
    ax.set_title(f"Reward–KL frontier, built-in reviews task ({len(results)} seeds)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _color(key: str) -> str:
    return {"ppo": "C0", "grpo": "C1", "rloo": "C2", "DPO": "C4", "IPO": "C5"}[key]


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=40, help="iterations of PPO, GRPO and RLOO")
    ap.add_argument("--labels", type=int, default=400)
    ap.add_argument("--betas", type=float, nargs="+", default=[0.03, 0.1, 0.3, 1.0])
    ap.add_argument("--jobs", type=int, default=1, help="seeds run in parallel")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per job")
    ap.add_argument("--set", nargs="*", default=[], help="more config overrides (key=value)")
    ap.add_argument("--out", default="bench/results/text_frontier")
    ap.add_argument(
        "--replot", action="store_true", help="redraw from OUT/frontier.json, running nothing"
    )
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.replot:
        results = json.loads((out / "frontier.json").read_text())
        args.seeds, args.betas = [r["seed"] for r in results], results[0]["betas"]
    else:
        with ProcessPoolExecutor(args.jobs) as pool:
            results = list(pool.map(run_seed, args.seeds, [args] * len(args.seeds)))
        for r in results:
            r["betas"] = args.betas
        (out / "frontier.json").write_text(json.dumps(results, indent=1))
    plot(results, out / "frontier.png")
    rows = []
    for key in ("ppo", "grpo", "rloo"):
        pts = np.array([r["points"][key][0] for r in results])
        rows.append(
            f"| {key} | {pts[:, 1].mean():.3f} ± {pts[:, 1].std():.3f} | "
            f"{pts[:, 0].mean():.2f} | {math.sqrt(max(pts[:, 0].mean(), 0)):.2f} |"
        )
    for key in ("DPO", "IPO"):
        for i, beta in enumerate(args.betas):
            pts = np.array([r["points"][key][i] for r in results])
            rows.append(
                f"| {key} β = {beta} | {pts[:, 1].mean():.3f} ± {pts[:, 1].std():.3f} | "
                f"{pts[:, 0].mean():.2f} | {math.sqrt(max(pts[:, 0].mean(), 0)):.2f} |"
            )
    bon = mean_over_seeds(results, "best-of-n")
    rows += [
        f"| best-of-{2**i} | {g:.3f} | {kl:.2f} | {math.sqrt(kl):.2f} |"
        for i, (kl, g) in enumerate(bon)
    ]
    sft = np.mean([r["sft_gold"] for r in results])
    md = [
        f"# Reward–KL frontier on the built-in text task ({len(results)} seeds: "
        f"{', '.join(map(str, args.seeds))})",
        "",
        f"SFT gold {sft:.3f}. {args.labels} labels; PPO, GRPO and RLOO {args.steps} iterations "
        "of examples/text/reviews.yaml's batch; DPO and IPO from the same SFT policy and "
        "comparisons. Gold and KL on the held-out prompts (mean ± sd over seeds); "
        "best-of-n from 64 SFT samples of 32 prompts, KL in closed form.",
        "",
        "| method | gold | KL | √KL |",
        "|---|---|---|---|",
        *rows,
        "",
        "![frontier](frontier.png)",
        "",
        "Does DPO's frontier dominate PPO's (Rafailov et al. 2023)? For each DPO / IPO point, "
        "the best gold PPO's mean path (over seeds, by iteration) reached at no more KL:",
        "",
        *dominance(results),
        "",
    ]
    (out / "frontier.md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
