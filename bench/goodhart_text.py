"""Goodhart parameters on the built-in text task: small vs larger label budget, single vs ensemble
reward model.

For each setting, one language-model run (Step 0 → SFT → reward model → PPO with β = 0, so
nothing holds the policy back), then Gao et al.'s forms fitted with d = √KL:
best-of-n gold(d) = d(α − β·d) over 256 saved SFT samples per prompt, and RL
gold(d) = d(α − β·log d) over PPO's iterations. Prints α, β, the peak d*, R², and each
method's final gold and proxy.

    .venv/bin/python bench/goodhart_text.py [--labels 100 400] [--ensembles 1 3] [--steps 60]
    [--seed 0]
"""

from __future__ import annotations

import argparse
import tempfile

from rich.console import Console
from rich.table import Table

from rlhflab.config import build_config
from rlhflab.diagnostics.goodhart import goodhart
from rlhflab.runs import RunDir
from rlhflab.text_loop import TextLoop


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--labels", type=int, nargs="+", default=[100, 400])
    ap.add_argument("--ensembles", type=int, nargs="+", default=[1, 3])
    ap.add_argument("--steps", type=int, default=60, help="PPO iterations")
    ap.add_argument("--beta", type=float, default=0.0, help="PPO's KL coefficient")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    table = Table(
        title=f"Goodhart fits on the built-in text task (PPO β = {args.beta}, {args.steps} "
        f"iterations, seed {args.seed})"
    )
    for col in (
        "labels",
        "RM ensemble",
        "RM held-out acc",
        "fit",
        "α",
        "β",
        "peak d*",
        "R²",
        "SFT gold",
        "PPO gold",
        "PPO proxy",
        "PPO KL",
    ):
        table.add_column(col, justify="right")
    console = Console(width=160)
    for labels in args.labels:
        for ensemble in args.ensembles:
            run = RunDir(tempfile.mkdtemp())
            cfg = build_config(
                None,
                [
                    f"seed={args.seed}",
                    "feedback.annotator.temperature=0.2",
                    f"text.labels={labels}",
                    f"text.reward.ensemble={ensemble}",
                    "text.methods=[ppo]",
                    f"text.ppo.steps={args.steps}",
                    f"text.ppo.beta={args.beta}",
                    "task=goodhart-text",
                ],
            )
            with console.status(f"labels {labels}, ensemble {ensemble}"):
                summary = TextLoop(cfg, run).run()
                _, fitted = goodhart(run.path)
            m = summary["methods"]
            for kind, fit in fitted.items():
                table.add_row(
                    str(labels),
                    str(ensemble),
                    f"{summary['reward_model'].get('rm_val_acc', float('nan')):.2f}",
                    kind,
                    f"{fit.alpha:.3f}",
                    f"{fit.beta:.3f}",
                    f"{fit.d_star:.2f}",
                    f"{fit.r2:.2f}",
                    f"{m['sft']['gold']:.3f}",
                    f"{m['ppo']['gold']:.3f}",
                    f"{m['ppo']['proxy']:.3f}",
                    f"{m['ppo']['kl']:.1f}",
                )
    console.print(table)


if __name__ == "__main__":
    main()
