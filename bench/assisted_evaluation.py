"""Assisted evaluation on the built-in text task: how a critique moves the accuracy of annotators
with limited attention (`rlhflab.feedback.assisted`; Saunders et al. 2022).

Pairs of reviews (half grammar samples, half degraded the way an over-optimised policy degrades
them); an annotator reads a share of each response's words and is shown no critique, a helpful
one (every real flaw pointed at), or one wrong on purpose (flaws claimed at the better
response's praise). Prints accuracy against gold for each attention share, critic and trust
(the chance a claim is believed unchecked), and writes bench/results/assisted_evaluation.json.

    .venv/bin/python bench/assisted_evaluation.py [--pairs 4000] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from rlhflab.feedback.assisted import assisted_accuracy
from rlhflab.text.judge_world import degraded
from rlhflab.text.task import TASKS

CRITICS = ("none", "helpful", "wrong")


def review_pairs(n: int, seed: int) -> list[tuple[str, str]]:
    task, rng = TASKS["reviews"], np.random.default_rng(seed)

    def one() -> str:
        return degraded(task, rng) if rng.random() < 0.5 else task.response(rng)

    return [(one(), one()) for _ in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--pairs", type=int, default=4000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--attention", type=float, nargs="+", default=[0.3, 0.6, 1.0])
    ap.add_argument("--trust", type=float, nargs="+", default=[0.0, 0.5, 0.9])
    ap.add_argument("--out", default="bench/results/assisted_evaluation.json")
    args = ap.parse_args()
    table = Table(
        title=f"Assisted evaluation: accuracy against gold, {args.pairs} pairs × seeds "
        f"{args.seeds} (mean ± s.d.)"
    )
    for col in ("attention", "trust", *(f"critic: {c}" for c in CRITICS)):
        table.add_column(col, justify="right")
    results = []
    for attention in args.attention:
        for trust in args.trust:
            row = {"attention": attention, "trust": trust}
            for critic in CRITICS:
                row[critic] = [
                    assisted_accuracy(
                        review_pairs(args.pairs, s), attention, critic, trust=trust, seed=s + 1
                    )
                    for s in args.seeds
                ]
            results.append(row)
            table.add_row(
                f"{attention:.0%}",
                f"{trust:.1f}",
                *(f"{np.mean(row[c]):.3f} ± {np.std(row[c]):.3f}" for c in CRITICS),
            )
    Console(width=160).print(table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "rows": results}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
