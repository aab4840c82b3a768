#!/usr/bin/env python
"""Benchmark: helpful and harmless as two objectives, a reward model each (issue 14 §4; docs/
annotators.md), on the built-in `reviews-insults` task.

One synthetic annotator (τ = 0.2, ε = 0.1) judges the same response pairs on each objective —
helpful = sentiment + fluency, harmless = −#insults by the task's gold detector
(`feedback/objectives.py`) — and on their sum, the task's gold (`overall`: the one bit a single
reward model learns from). A tiny GPT-2 reward model is fitted to each objective's labels
(`reward/text.py`, one member). The policy is best-of-8 among samples of the task's own response
generator (what the Step-0 model imitates; half the prompts are about a person, where insults
live), choosing by

  overall                      the single reward fitted to one-bit labels
  helpful only                 z_helpful
  weighted w                   z_helpful + w·z_harmless       (`reward/objectives.weighted`)
  constrained b                max z_helpful s.t. mean z_harmless ≥ b, λ by dual ascent on
                               batches of 20 training prompts, then fixed on test prompts
                               (`reward/objectives.py`: `LagrangeMultiplier`, `constrained_choice`)

and reports, on 300 test prompts, gold on each objective of the chosen responses (helpful, the
insult rate: share with at least one insult) and the task's gold, per seed.

    python bench/helpful_harmless.py --seeds 3 --out bench/results/helpful_harmless.md
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from rlhflab.config import AnnotatorConfig
from rlhflab.config.text import TextRewardConfig
from rlhflab.feedback.objectives import judge_objectives, objective_values
from rlhflab.feedback.synthetic import SyntheticAnnotator
from rlhflab.reward.objectives import (
    LagrangeMultiplier,
    ObjectiveRewards,
    constrained_choice,
    weighted,
)
from rlhflab.reward.text import TextRewardEnsemble
from rlhflab.text.models import TextRewardModel, build_word_tokenizer, tiny_gpt2
from rlhflab.text.task import TASKS

TASK = TASKS["reviews-insults"]
N = 8  # candidates per prompt
ANNOTATOR = AnnotatorConfig(temperature=0.2, error_rate=0.1)


def prompts(n: int, seed: int) -> list[str]:
    """Half film prompts, half prompts about a person (the red-team ones)."""
    return [*TASK.prompts(n - n // 2, seed), *TASK.red_team_prompts(n // 2, seed + 1)]


def candidates(ps: list[str], seed: int) -> list[list[str]]:
    rng = np.random.default_rng([seed, 8])
    return [[TASK.response(rng, prompt=p) for _ in range(N)] for p in ps]


def reward_model(comparisons, tokenizer, seed: int) -> TextRewardEnsemble:
    torch.manual_seed(seed)
    backbone = tiny_gpt2(len(tokenizer), n_layer=1, n_embd=32, n_head=2, tokenizer=tokenizer)
    cfg = TextRewardConfig(epochs=12, lr=3e-3, batch_size=16, val_fraction=0.1)
    rm = TextRewardEnsemble(TextRewardModel(backbone.transformer), tokenizer, seed=seed, cfg=cfg)
    rm.fit(comparisons)
    return rm


def score_all(score, ps: list[str], cands: list[list[str]]) -> torch.Tensor:
    """[P, N] scores of every candidate."""
    flat_p = [p for p, c in zip(ps, cands) for _ in c]
    return score(flat_p, [r for c in cands for r in c]).reshape(len(ps), N)


def gold_of(chosen: list[str]) -> dict:
    values = [objective_values(TASK, r) for r in chosen]
    return {
        "helpful": float(np.mean([v["helpful"] for v in values])),
        "insult_rate": float(np.mean([v["harmless"] < 0 for v in values])),
        "gold": float(np.mean([v["overall"] for v in values])),
    }


def study(labels: int, seed: int, weights: list[float], bounds: list[float]) -> dict:
    tokenizer = build_word_tokenizer(TASK.vocabulary)
    label_prompts = prompts(labels, seed)
    rng = np.random.default_rng([seed, 2])
    queries = [
        (p, TASK.response(rng, prompt=p), TASK.response(rng, prompt=p)) for p in label_prompts
    ]
    judged = judge_objectives(SyntheticAnnotator(ANNOTATOR, seed), TASK, queries)
    started = time.process_time()
    rms = {k: reward_model(c, tokenizer, seed + i) for i, (k, c) in enumerate(judged.items())}
    fit_seconds = time.process_time() - started
    train_p, test_p = prompts(400, seed + 10), prompts(300, seed + 20)
    train_c, test_c = candidates(train_p, seed + 10), candidates(test_p, seed + 20)
    ref_p = [p for p, c in zip(train_p, train_c) for _ in c]
    objectives = ObjectiveRewards(
        {k: rms[k].score for k in ("helpful", "harmless")}, ref_p, [r for c in train_c for r in c]
    )

    def z(ps, cands) -> dict[str, torch.Tensor]:
        return {
            k: score_all(lambda a, b, k=k: objectives(a, b)[k], ps, cands)
            for k in rms
            if k != "overall"
        }

    z_train, z_test = z(train_p, train_c), z(test_p, test_c)
    overall = score_all(rms["overall"].score, test_p, test_c)
    rules: dict[str, torch.Tensor] = {
        "random choice": torch.zeros(len(test_p), dtype=torch.long),
        "overall (one reward)": overall.argmax(1),
        "helpful only": z_test["helpful"].argmax(1),
    }
    for w in weights:
        rules[f"weighted w = {w:g}"] = weighted(z_test, {"helpful": 1.0, "harmless": w}).argmax(1)
    lambdas = {}
    for b in bounds:
        lam = LagrangeMultiplier(bound=b)
        for _ in range(5):  # dual ascent over the training prompts, five passes
            constrained_choice(z_train["helpful"], z_train["harmless"], lam, batch=20)
        lam.value = lam.average  # then fixed at the iterates' mean
        name = f"constrained b = {b:g}"
        rules[name] = constrained_choice(z_test["helpful"], z_test["harmless"], lam)
        lambdas[name] = lam.value
    out: dict = {"seed": seed, "labels": labels, "fit_cpu_seconds": fit_seconds, "rules": {}}
    for name, idx in rules.items():
        chosen = [c[int(i)] for c, i in zip(test_c, idx)]
        z_harm = float(z_test["harmless"].gather(1, idx[:, None]).mean())
        out["rules"][name] = gold_of(chosen) | {"z_harmless": z_harm, "lambda": lambdas.get(name)}
    return out


def mean_std(xs: list[float], spec: str = ".3f") -> str:
    if len(xs) < 2:
        return format(xs[0], spec)
    return f"{statistics.mean(xs):{spec}} ± {statistics.stdev(xs):{spec}}"


def render(results: list[dict]) -> str:
    header = [
        "choice of best-of-8",
        "gold helpful",
        "per seed",
        "insult rate",
        "per seed",
        "task gold",
        "per seed",
        "mean z_harmless",
        "λ",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for rule in results[0]["rules"]:
        cs = [r["rules"][rule] for r in results]
        row = [rule]
        for key in ("helpful", "insult_rate", "gold"):
            xs = [c[key] for c in cs]
            row += [mean_std(xs), " ".join(f"{x:.3f}" for x in xs)]
        row.append(mean_std([c["z_harmless"] for c in cs], ".2f"))
        lam = [c["lambda"] for c in cs if c["lambda"] is not None]
        row.append(" ".join(f"{x:.2f}" for x in lam) if lam else "–")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument(
        "--labels", type=int, default=300, help="labelled pairs (each on every objective)"
    )
    ap.add_argument("--weights", default="1,3", help="w of z_harmless in the weighted rule")
    ap.add_argument("--bounds", default="0.4,0.5", help="b of the constraint mean z_harmless ≥ b")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    weights = [float(x) for x in args.weights.split(",")]
    bounds = [float(x) for x in args.bounds.split(",")]
    started = time.time()
    results = []
    for seed in range(args.seeds):
        results.append(study(args.labels, seed, weights, bounds))
        print(f"seed {seed} done at {time.time() - started:.0f} s", file=sys.stderr, flush=True)
    when = datetime.now(timezone.utc).isoformat(timespec="seconds")
    fit = statistics.mean(r["fit_cpu_seconds"] for r in results)
    md = (
        f"# Helpful and harmless ({TASK.name})\n\nGenerated {when} by `helpful_harmless.py "
        f"{' '.join(sys.argv[1:])}`; {args.seeds} seed(s), {time.time() - started:.0f} s wall on "
        f"a shared 2-CPU machine; {fit:.0f} CPU-s per seed for the three reward models."
        " λ: the constrained rule's multiplier (mean of its dual-ascent iterates), per seed.\n\n"
        + render(results)
        + "\n"
    )
    print(md)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(md)
        args.out.with_suffix(".json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
