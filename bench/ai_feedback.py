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

`--harm` runs the reviews-insults task instead (insults aimed at people, a gold detector,
red-team prompts): Step 0 pretrained by MLE or by PHF (conditional training, filtering,
unlikelihood; the same sequences and epochs each), then SFT; RLHF from synthetic people;
SL-CAI → RL-CAI with the run's own Step-0 model as the harmlessness judge (positive and fluent
from synthetic people, examples/text/constitution_mixed.yaml); RLAIF and SL-CAI → RL-CAI with the
scripted judge; the judge as reward. Columns: gold, the undesirable rate on the evaluation
prompts and on red-team prompts, KL from SFT (from the run's own reference: SL-CAI's own for
SL-CAI → RL-CAI), and the run's CPU seconds (Step 0's apart, in the title). A second table tests
the Step-0 judge on policy samples (`--judge-pairs` pairs of Step 0's and SFT's answers to
red-team prompts and of SFT's to task prompts; agreement with the harmlessness rule where the
two differ in insults, with gold, position bias). Writes bench/results/ai_feedback_harm.json
after every run; runs made apart (one process per seed) are tabled together with
`--tables FILE…`.
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
# --harm: the reviews-insults task (undesirable content: insults at people), every setting with
# the harmlessness constitution; (run, method) pairs: a run is one TextLoop, its methods rows
HARM_RUNS = {  # in the order they run: what this stop's questions need first
    "rlhf": ["feedback.annotator.kind=synthetic", "text.methods=[ppo]"],
    "rl_cai_base": [  # the Step-0 model as judge of harmlessness, people (synthetic) the rest
        "feedback.annotator.kind=ai",
        "judge.model=base",
        "judge.constitution=examples/text/constitution_mixed.yaml",
        "text.methods=[ppo]",
        "text.sl_cai.prompts=SL_CAI",
    ],
    **{f"phf_{o}": ["text.methods=[]"] for o in ("conditional", "filtering", "unlikelihood")},
    "sl_cai": [
        "feedback.annotator.kind=ai",
        "judge.model=scripted",
        "text.methods=[ppo]",
        "text.sl_cai.prompts=SL_CAI",
    ],
    "sl_cai_scripted": [
        "text.methods=[]",
        "text.sl_cai.prompts=SL_CAI",
        "text.sl_cai.critic=scripted",
    ],
    "rlaif": ["feedback.annotator.kind=ai", "judge.model=scripted", "text.methods=[ppo]"],
    "judge": ["text.reward.kind=judge", "judge.model=scripted", "text.methods=[ppo]"],
}
HARM_ROWS = {
    "Step 0, MLE": ("rlhf", "base"),
    "MLE → SFT": ("rlhf", "sft"),
    "MLE → SFT → RLHF (PPO, synthetic people)": ("rlhf", "ppo"),
    "MLE → SFT → RLAIF (PPO, scripted judge)": ("rlaif", "ppo"),
    "SL-CAI (the policy critiques and revises)": ("rl_cai_base", "sft"),  # = sl_cai's
    "SL-CAI → RL-CAI (PPO, scripted judge)": ("sl_cai", "ppo"),
    "SL-CAI → RL-CAI (PPO, Step-0 judge; people: positive, fluent)": ("rl_cai_base", "ppo"),
    "SL-CAI, scripted critic (a stand-in: the gold critique and revision)": (
        "sl_cai_scripted",
        "sft",
    ),
    "judge reward (PPO, scripted judge, no RM)": ("judge", "ppo"),
    **{
        row: (f"phf_{o}", m)
        for o in ("conditional", "filtering", "unlikelihood")
        for row, m in ((f"Step 0, PHF {o}", "base"), (f"PHF {o} → SFT", "sft"))
    },
}
HARM_COLUMNS = ["gold", "undesirable", "red-team undesirable", "KL", "run CPU s"]
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


def shared_overrides(args, seed: int, base: str) -> list[str]:
    """The settings every run of this bench shares: Step 0, annotator, judge, budgets."""
    return [
        f"seed={seed}",
        f"text.model={base}",
        "feedback.annotator.temperature=0.2",
        f"text.sft.demonstrations={args.demonstrations}",
        f"text.eval_prompts={args.eval_prompts}",
        f"text.ppo.batch_size={args.batch_size}",
        f"judge.references={args.references}",
        f"judge.scripted_bias={args.judge_bias}",
        f"judge.scripted_noise={args.judge_noise}",
        f"text.labels={args.labels}",
        f"text.ppo.steps={args.steps}",
        f"text.ppo.beta={args.beta}",
    ]


def one_run(extra: list[str], args, seed: int, base: str, judge: str | None) -> dict:
    run = RunDir(tempfile.mkdtemp(prefix="aifb-"))
    cfg = build_config(
        None,
        [
            *shared_overrides(args, seed, base),
            f"task=ai-feedback-{seed}",
            "text.methods=[ppo,best_of_n]",
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


def harm_run(extra: list[str], args, seed: int, base: str) -> dict:
    """One reviews-insults run; its methods' rows, and its wall time and SL-CAI record."""
    run = RunDir(tempfile.mkdtemp(prefix="aifb-harm-"))
    cfg = build_config(
        None,
        [
            *shared_overrides(args, seed, base),
            f"task=ai-feedback-harm-{seed}",
            "text.task=reviews-insults",
            "judge.constitution=examples/text/constitution_harmless.yaml",
            "text.goodhart_samples=0",
            *(e.replace("SL_CAI", str(args.sl_cai_prompts)) for e in extra),
        ],
    )
    started, cpu = time.time(), time.process_time()
    summary = TextLoop(cfg, run).run()
    sl_cai = next(
        (r for r in run.metrics() if r.get("phase") == "sl_cai" and "revisions" in r), None
    )
    ai = next((r for r in run.metrics() if r.get("phase") == "ai_feedback"), None)
    return {
        "methods": summary["methods"],
        "wall s": time.time() - started,
        "cpu s": time.process_time() - cpu,
        "sl_cai": sl_cai,
        "ai_feedback": ai,
        "run_dir": str(run.path),
    }


def judge_on_policy_samples(args, seed: int, base: str, sft: str) -> dict:
    """The Step-0 judge (`judge.model=base`) asked the harmlessness principle about pairs of
    samples, as in a run (both orders): Step 0's and the SFT policy's answers to red-team
    prompts, and the SFT policy's to the task's prompts. Measured against the principle's rule
    (fewer insults), the whole gold and a synthetic person (`feedback.ai.judge_report`)."""
    from rlhflab.feedback.ai import judge_report
    from rlhflab.feedback.synthetic import SyntheticAnnotator
    from rlhflab.text.constitution import HARMLESS
    from rlhflab.text.judge import HFJudge
    from rlhflab.text.models import load_causal_lm, load_tokenizer
    from rlhflab.text.sequences import generate
    from rlhflab.text.task import TASKS

    cfg = build_config(None, [f"seed={seed}", "text.task=reviews-insults", "judge.model=base"])
    task, tc = TASKS["reviews-insults"], cfg.text
    judge, tokenizer = HFJudge(base, cfg.judge.batch_size), load_tokenizer(base)
    n = args.judge_pairs
    sets = {
        "Step 0, red-team prompts": (base, task.red_team_prompts(n, seed + 71)),
        "SFT, red-team prompts": (sft, task.red_team_prompts(n, seed + 71)),
        "SFT, task prompts": (sft, task.prompts(n, seed + 72)),
    }
    out = {}
    for name, (path, prompts) in sets.items():
        model = load_causal_lm(path).eval()
        x, y = (
            generate(model, tokenizer, prompts, tc.max_new_tokens, tc.temperature, seed + s)[1]
            for s in (300, 301)
        )
        person = SyntheticAnnotator(cfg.feedback.annotator, seed + 4)
        out[name] = judge_report(
            judge, cfg.judge.template, HARMLESS, "reviews-insults", list(zip(prompts, x, y)), person
        )
    return out


def harm(args, console: Console) -> None:
    """--harm: the undesirable-content table (PHF, SL-CAI, RL-CAI, RLHF) over seeds. The runs
    go in HARM_RUNS' order, each Step 0 pretrained when first needed, so a run cut short has
    its most important rows first."""
    runs: dict[tuple[int, str], dict] = {}
    pretrain_s: dict[tuple[int, str], float] = {}
    judged: dict[int, dict] = {}
    only = args.only or list(HARM_RUNS)

    def base(seed: int, objective: str, bases: dict[str, str]) -> str:
        """Step 0 by `objective`, pretrained when first asked for (its CPU seconds kept);
        `--base`: a saved MLE Step 0 (made with the same seed and settings) instead."""
        if objective == "mle" and args.base:
            bases[objective] = args.base
        if objective not in bases:
            path = Path(tempfile.mkdtemp(prefix="aifb-base-")) / "base"
            cfg = build_config(
                None,
                [
                    f"seed={seed}",
                    "text.task=reviews-insults",
                    f"text.phf.objective={objective}",
                    f"text.pretrain_sequences={args.pretrain_sequences}",
                ],
            )
            started = time.process_time()
            with console.status(f"Step 0 ({objective}), seed {seed}"):
                bases[objective] = str(pretrain_builtin(cfg, path))
            pretrain_s[seed, objective] = time.process_time() - started
        return bases[objective]

    for seed in args.seeds:
        bases: dict[str, str] = {}

        for name, extra in HARM_RUNS.items():
            if name not in only:
                continue
            objective = name.removeprefix("phf_") if name.startswith("phf_") else "mle"
            with console.status(f"{name}, seed {seed}"):
                runs[seed, name] = harm_run(extra, args, seed, base(seed, objective, bases))
            if name == "rlhf" and args.judge_pairs:
                sft = str(Path(runs[seed, name]["run_dir"]) / "checkpoints" / "sft")
                with console.status(f"the Step-0 judge on policy samples, seed {seed}"):
                    judged[seed] = judge_on_policy_samples(args, seed, bases["mle"], sft)
            write_harm(args, runs, pretrain_s, judged)
    harm_tables(args, runs, pretrain_s, judged, console)


def harm_tables(args, runs: dict, pretrain_s: dict, judged: dict, console: Console) -> None:
    seeds = sorted({s for s, _ in runs})
    table = Table(
        title=f"Undesirable content (reviews-insults): {args.labels} labels, PPO {args.steps} "
        f"iterations (β = {args.beta}), seeds {seeds}; Step 0 CPU s: "
        + ", ".join(
            f"{o} {np.mean([v for (_, k), v in pretrain_s.items() if k == o]):.0f}"
            for o in dict.fromkeys(k for _, k in pretrain_s)
        )
    )
    table.add_column("setting")
    table.add_column("seeds", justify="right")
    for c in HARM_COLUMNS:
        table.add_column(c, justify="right")
    for row, (name, method) in HARM_ROWS.items():
        got = [runs[s, name] for s in seeds if (s, name) in runs]
        if not got or method not in got[0]["methods"]:
            continue
        ms = [g["methods"][method] for g in got]
        values = {
            "gold": [m["gold"] for m in ms],
            "undesirable": [m["undesirable"] for m in ms],
            "red-team undesirable": [m["red_team_undesirable"] for m in ms],
            "KL": [m["kl"] for m in ms],
            "run CPU s": [g["cpu s"] for g in got],
        }
        table.add_row(row, str(len(got)), *(fmt(values[c], c) for c in HARM_COLUMNS))
    console.print(table)
    per_seed = Table(title="Per seed: gold / undesirable / red-team undesirable / KL")
    per_seed.add_column("setting")
    for seed in seeds:
        per_seed.add_column(f"seed {seed}", justify="right")
    for row, (name, method) in HARM_ROWS.items():
        cells = [runs[s, name]["methods"].get(method) if (s, name) in runs else None for s in seeds]
        if any(cells):
            per_seed.add_row(
                row,
                *(
                    "–"
                    if m is None
                    else f"{m['gold']:.3f} / {m['undesirable']:.3f} / "
                    f"{m['red_team_undesirable']:.3f} / {m['kl']:.2f}"
                    for m in cells
                ),
            )
    console.print(per_seed)
    for (seed, name), r in sorted(runs.items()):
        if r["sl_cai"]:
            shown = {
                k: v for k, v in r["sl_cai"].items() if k not in ("critique_examples", "phase")
            }
            console.print(f"SL-CAI ({name}), seed {seed}: {shown}")
    judge_table(judged, runs, console)


JUDGE_COLUMNS = {
    "pairs": "pairs",
    "principle_pairs": "differ in insults",
    "ai_principle_agreement": "agree: fewer insults",
    "ai_principle_agreement_first_order": "same, first order only",
    "ai_gold_agreement": "agree: gold",
    "ai_human_agreement": "agree: person",
    "position_bias": "position bias",
    "order_consistency": "order consistency",
}


def judge_table(judged: dict, runs: dict, console: Console) -> None:
    """The Step-0 judge on sample pairs, per set, and on the RL-CAI run's own queries."""
    sets: dict[str, list[dict]] = {}
    for by_set in judged.values():
        for name, rec in by_set.items():
            sets.setdefault(name, []).append(rec)
    in_run = [r["ai_feedback"] for (_, n), r in sorted(runs.items()) if n == "rl_cai_base"]
    if any(in_run):
        sets["RL-CAI run's own AI queries (SL-CAI samples)"] = [r for r in in_run if r]
    if not sets:
        return
    table = Table(
        title=f"The Step-0 judge, harmlessness principle, both orders (seeds {sorted(judged)})"
    )
    table.add_column("sample pairs")
    for c in JUDGE_COLUMNS.values():
        table.add_column(c, justify="right")
    for name, recs in sets.items():
        table.add_row(name, *(fmt([r.get(k, float("nan")) for r in recs]) for k in JUDGE_COLUMNS))
    console.print(table)


def write_harm(args, runs: dict, pretrain_s: dict, judged: dict) -> None:
    out = Path(args.out.replace(".json", "_harm.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = [
        {"seed": s, "run": name, "wall_seconds": r["wall s"], "cpu_seconds": r["cpu s"]}
        | {k: r[k] for k in ("sl_cai", "ai_feedback", "run_dir")}
        | {
            "methods": {
                m: {k: v for k, v in x.items() if not k.endswith("samples")}
                | {
                    "samples": x["samples"][:3],
                    "red_team_samples": x.get("red_team_samples", [])[:3],
                }
                for m, x in r["methods"].items()
            }
        }
        for (s, name), r in runs.items()
    ]
    pre = [{"seed": s, "objective": o, "cpu_seconds": v} for (s, o), v in pretrain_s.items()]
    out.write_text(
        json.dumps(
            {"args": vars(args), "pretrain": pre, "runs": rows, "judge_on_samples": judged},
            indent=1,
        )
        + "\n"
    )


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
    if column in ("wall s", "run CPU s"):
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
    ap.add_argument(
        "--pretrain-sequences", type=int, default=6000, help="--harm: Step 0's documents"
    )
    ap.add_argument(
        "--harm",
        action="store_true",
        help="the reviews-insults table instead: PHF, SL-CAI, RL-CAI, RLHF on undesirable content",
    )
    ap.add_argument(
        "--judge-pairs",
        type=int,
        default=256,
        help="--harm: sample pairs per set for the Step-0 judge's test on policy samples (0: none)",
    )
    ap.add_argument(
        "--sl-cai-prompts", type=int, default=512, help="--harm: red-team prompts SL-CAI revises"
    )
    ap.add_argument("--tables", nargs="+", help="--harm's tables from its JSON files, merged")
    ap.add_argument("--out", default="bench/results/ai_feedback.json")
    args = ap.parse_args()
    console = Console(width=200)
    if args.tables:  # --harm's tables from the JSON files of runs made apart (one per seed)
        runs, pretrain_s, judged = {}, {}, {}
        for f in args.tables:
            data = json.loads(Path(f).read_text())
            for r in data["runs"]:
                runs[r["seed"], r["run"]] = r | {"cpu s": r["cpu_seconds"]}
            pretrain_s |= {(p["seed"], p["objective"]): p["cpu_seconds"] for p in data["pretrain"]}
            judged |= {int(k): v for k, v in data["judge_on_samples"].items()}
        harm_tables(argparse.Namespace(**data["args"]), runs, pretrain_s, judged, console)
        return
    if args.harm:
        harm(args, console)
        return
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
