"""AI feedback on the built-in text task: RLHF from synthetic people, RLAIF (a reward model on the
AI judge's labels) and the judge as a reward (no reward model), on the same gold.

The judge is the scripted one (`judge.model=scripted`: the constitution's two principles
applied by their rules, with a position bias and logit noise of known size); `--builtin` adds
the tiny GPT-2 judge trained on judge-format examples, once per seed. Step 0 (the base model) is
pretrained once per seed and shared; each run is SFT → labels → reward (learned, or the judge)
→ best-of-n and PPO, and Gao et al.'s Goodhart forms are fitted to its best-of-n samples and
PPO iterations (`rlhflab goodhart`).

Prints one table (means over seeds, ± the standard deviation when there are several) and
writes bench/results/ai_feedback.json.

    .venv/bin/python bench/ai_feedback.py [--seeds 0 1 2] [--labels 400] [--steps 40]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from rlhflab.config import build_config
from rlhflab.diagnostics.goodhart import goodhart
from rlhflab.policy.sft import pretrain_builtin, pretrain_builtin_judge
from rlhflab.runs import RunDir
from rlhflab.text_loop import TextLoop

SETTINGS = {
    "RLHF (synthetic people)": ["feedback.annotator.kind=synthetic"],
    "RLAIF, scripted judge": ["feedback.annotator.kind=ai", "judge.model=scripted"],
    "judge reward, scripted judge": ["text.reward.kind=judge", "judge.model=scripted"],
    "judge reward, positive-only constitution": [
        "text.reward.kind=judge",
        "judge.model=scripted",
        "judge.constitution=examples/text/constitution_positive.md",
    ],
}
BUILTIN = {  # --builtin: the same two with the tiny GPT-2 judge trained on judge examples
    "RLAIF, built-in judge": ["feedback.annotator.kind=ai", "judge.model=BUILTIN"],
    "judge reward, built-in judge": ["text.reward.kind=judge", "judge.model=BUILTIN"],
}
COLUMNS = [
    "SFT gold",
    "best-of-n gold",
    "PPO gold",
    "PPO KL",
    "RM acc",
    "AI–gold agree",
    "AI–human agree",
    "position bias",
    "BoN d*",
    "RL d*",
    "wall s",
]


def one_run(extra: list[str], args, seed: int, base: str, judge: str | None) -> dict:
    run = RunDir(tempfile.mkdtemp(prefix="aifb-"))
    cfg = build_config(
        None,
        [
            f"seed={seed}",
            f"task=ai-feedback-{seed}",
            f"text.model={base}",
            "feedback.annotator.temperature=0.2",
            f"text.sft.demonstrations={args.demonstrations}",
            f"text.eval_prompts={args.eval_prompts}",
            f"text.ppo.batch_size={args.batch_size}",
            f"judge.references={args.references}",
            f"judge.scripted_bias={args.judge_bias}",
            f"judge.scripted_noise={args.judge_noise}",
            f"text.labels={args.labels}",
            "text.methods=[ppo,best_of_n]",
            f"text.ppo.steps={args.steps}",
            f"text.ppo.beta={args.beta}",
            f"text.goodhart_samples={args.goodhart_samples}",
            *(e.replace("BUILTIN", str(judge)) for e in extra),
        ],
    )
    started = time.time()
    summary = TextLoop(cfg, run).run()
    wall = time.time() - started
    _, fitted = goodhart(run.path)
    m = summary["methods"]
    ai = next((r for r in run.metrics() if r.get("phase") == "ai_feedback"), {})
    return {
        "SFT gold": m["sft"]["gold"],
        "best-of-n gold": m[f"best_of_{cfg.text.best_of_n}"]["gold"],
        "PPO gold": m["ppo"]["gold"],
        "PPO KL": m["ppo"]["kl"],
        "RM acc": summary["reward_model"].get("rm_val_acc", float("nan")),
        "AI–gold agree": ai.get("ai_gold_agreement", float("nan")),
        "AI–human agree": ai.get("ai_human_agreement", float("nan")),
        "position bias": ai.get("position_bias", float("nan")),
        "BoN d*": fitted["best_of_n"].d_star if "best_of_n" in fitted else float("nan"),
        "RL d*": fitted["rl"].d_star if "rl" in fitted else float("nan"),
        "wall s": wall,
        "run_dir": str(run.path),
    }


def judge_agreement_row(rows: list[dict]) -> None:
    """The AI judge's agreement is measured on the RLAIF run's labels; the judge-reward run uses
    the same judge, so it shows the same figures."""
    for r in rows:
        if r["setting"].startswith("judge"):
            same = f"RLAIF, {r['setting'].split(', ', 1)[1]}"  # the RLAIF run with its judge
            twin = next((x for x in rows if x["seed"] == r["seed"] and x["setting"] == same), None)
            if twin is None:
                continue
            for k in ("AI–gold agree", "AI–human agree", "position bias"):
                r[k] = twin[k]


def fmt(values: list[float], column: str = "") -> str:
    v = np.array(values, dtype=float)
    if column == "wall s":
        return f"{np.mean(v):.0f}"
    if np.all(np.isnan(v)):
        return "–"
    if np.any(np.isinf(v)):
        return "∞" if len(v) == 1 else f"{np.median(v):.3g} (median)"
    mean = f"{np.nanmean(v):.3f}" if abs(np.nanmean(v)) < 10 else f"{np.nanmean(v):.1f}"
    return mean + (f" ± {np.nanstd(v):.3f}" if len(v) > 1 else "")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--labels", type=int, default=300)
    ap.add_argument("--steps", type=int, default=25, help="PPO iterations")
    ap.add_argument("--batch-size", type=int, default=32, help="PPO prompts per iteration")
    ap.add_argument("--demonstrations", type=int, default=1000, help="SFT demonstrations")
    ap.add_argument("--eval-prompts", type=int, default=64)
    ap.add_argument("--references", type=int, default=1, help="judge reward: references")
    ap.add_argument("--beta", type=float, default=0.05, help="PPO's KL coefficient")
    ap.add_argument("--goodhart-samples", type=int, default=32)
    ap.add_argument("--judge-bias", type=float, default=1.0, help="scripted judge: position bias")
    ap.add_argument("--judge-noise", type=float, default=1.0, help="scripted judge: logit noise")
    ap.add_argument(
        "--builtin", action="store_true", help="also the tiny GPT-2 judge (trained per seed)"
    )
    ap.add_argument("--only", nargs="+", help="run only the settings whose names start so")
    ap.add_argument("--base", help="a saved Step-0 model to start from (one seed only)")
    ap.add_argument("--out", default="bench/results/ai_feedback.json")
    args = ap.parse_args()
    console = Console(width=200)
    rows, judges = [], {}
    settings = SETTINGS | (BUILTIN if args.builtin else {})
    if args.only:
        settings = {k: v for k, v in settings.items() if k.startswith(tuple(args.only))}
    for seed in args.seeds:
        path = None
        base = Path(args.base) if args.base else Path(tempfile.mkdtemp(prefix="aifb-")) / "base"
        if not args.base:
            with console.status(f"Step 0: the built-in base model (seed {seed})"):
                pretrain_builtin(build_config(None, [f"seed={seed}", "text.task=reviews"]), base)
        if args.builtin:
            started = time.time()
            cfg = build_config(None, [f"seed={seed}", "judge.model=builtin", "text.task=reviews"])
            with console.status(f"training the built-in judge (seed {seed})"):
                path = pretrain_builtin_judge(cfg, Path(tempfile.mkdtemp(prefix="judge-")))
            judges[seed] = time.time() - started
        for name, extra in settings.items():
            with console.status(f"{name}, seed {seed}"):
                rows.append(
                    {"setting": name, "seed": seed}
                    | one_run(extra, args, seed, str(base), str(path))
                )
    judge_agreement_row(rows)
    table = Table(
        title=f"AI feedback on the built-in text task: {args.labels} labels, PPO {args.steps} "
        f"iterations (β = {args.beta}), seeds {args.seeds}; scripted judge bias "
        f"{args.judge_bias}, noise {args.judge_noise}"
        + (f"; built-in judge trained in {np.mean(list(judges.values())):.0f} s" if judges else "")
    )
    table.add_column("setting")
    for c in COLUMNS:
        table.add_column(c, justify="right")
    for name in settings:
        mine = [r for r in rows if r["setting"] == name]
        table.add_row(name, *(fmt([r[c] for r in mine], c) for c in COLUMNS))
    console.print(table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    clean = [{k: None if v != v else v for k, v in r.items()} for r in rows]  # NaN → null
    out.write_text(
        json.dumps({"args": vars(args), "judge_seconds": judges, "rows": clean}, indent=2) + "\n"
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
