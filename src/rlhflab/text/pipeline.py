"""Language-model RLHF end to end, as InstructGPT (Ouyang et al. 2022) lays it out:

  Step 0  pretraining — for the built-in task, a tiny GPT-2 learns the task's corpus;
  Step 1  SFT — behavioural cloning on demonstrations (the better half of the corpus by gold);
  Step 2  reward model — from comparisons of SFT samples (pairs or K-wise rankings), judged by a
          Boltzmann-noisy synthetic annotator over the gold reward, or by people in the labeling app;
  Step 3  PPO against the reward model with a per-token KL penalty;
plus DPO on the same comparisons and best-of-n against the same reward model.

Every method is scored on held-out prompts by the gold reward (the task's own), the proxy
(the reward model), the KL from the SFT policy, and distinct-2 (diversity).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from rlhflab.config import RunConfig
from rlhflab.diagnostics.calibration import expected_calibration_error
from rlhflab.diagnostics.diversity import distinct_n, diversity
from rlhflab.diagnostics.report import build_report
from rlhflab.feedback.people import LabelTimeout, people_hint, wait_for_labels
from rlhflab.feedback.store import FeedbackStore
from rlhflab.feedback.synthetic import SyntheticAnnotator
from rlhflab.policy.best_of_n import best_of_n, best_of_n_kl
from rlhflab.policy.dpo import train_dpo
from rlhflab.policy.sft import train_sft
from rlhflab.policy.text import TextPPO
from rlhflab.reward.text import RankedResponses, TextRewardEnsemble
from rlhflab.runs import RunDir
from rlhflab.text.data import load_prompts_and_demos
from rlhflab.text.models import (
    TextRewardModel,
    add_lora,
    build_word_tokenizer,
    load_causal_lm,
    load_tokenizer,
    save_model,
    tiny_gpt2,
)
from rlhflab.text.sequences import generate, token_logprobs
from rlhflab.text.task import TASKS
from rlhflab.types import Judgement


class TextRunError(RuntimeError):
    pass


def pretrain_builtin(cfg: RunConfig, out: Path, on_log=None) -> Path:
    """Step 0: a tiny GPT-2 and a word-level tokenizer trained on the task's corpus, saved with save_pretrained.

    Language modelling is SFT's loss with an empty prompt, so it reuses `train_sft`."""
    tc, task = cfg.text, TASKS[cfg.text.task]
    tokenizer = build_word_tokenizer(task.vocabulary)
    model = tiny_gpt2(
        len(tokenizer),
        tc.n_layer,
        tc.n_embd,
        n_head=4,
        n_positions=64,
        seed=cfg.seed,
        tokenizer=tokenizer,
    )
    corpus = [f"{p} {r}" for p, r in task.corpus(tc.pretrain_sequences, cfg.seed + 11)]
    train_sft(
        model,
        tokenizer,
        [""] * len(corpus),
        corpus,
        tc.pretrain_epochs,
        3e-3,
        64,
        cfg.seed,
        on_log=lambda r: on_log and on_log({**r, "phase": "pretrain"}),
    )
    return save_model(model, tokenizer, out)


def run_text(cfg: RunConfig, run: RunDir, on_log=None) -> dict:
    tc, started = cfg.text, time.time()
    task = TASKS[tc.task]
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)

    def log(record: dict) -> None:
        record = {**record, "wall_seconds": round(time.time() - started, 2)}
        run.log(record)
        if on_log:
            on_log(record)

    run.write_config(cfg)
    # Step 0: the base model
    model_path = (
        str(pretrain_builtin(cfg, run.path / "base", log)) if tc.model == "builtin" else tc.model
    )
    tokenizer = load_tokenizer(model_path)
    train_prompts, eval_prompts, demos = load_prompts_and_demos(tc, task, cfg.seed)

    # Step 1: SFT on demonstrations
    sft = load_causal_lm(model_path, tc.lora_r)
    train_sft(
        sft,
        tokenizer,
        [p for p, _ in demos],
        [r for _, r in demos],
        tc.sft.epochs,
        tc.sft.lr,
        tc.sft.batch_size,
        cfg.seed,
        log,
    )
    if (
        tc.lora_r
    ):  # SFT lives in its adapter: merge it, so that SFT is the base of every later adapter
        sft = sft.merge_and_unload()
    sft.eval()
    for p in sft.parameters():  # the SFT policy is the reference from here on: frozen
        p.requires_grad_(False)

    # Step 2: comparisons of SFT samples, judged; then the reward model
    store = FeedbackStore(run.store_url)
    comparisons = gather_comparisons(cfg, sft, tokenizer, train_prompts, store, run, log)
    rm_tokenizer = load_tokenizer(tc.reward.model) if tc.reward.model else tokenizer
    rm = TextRewardEnsemble(
        TextRewardModel.from_pretrained(tc.reward.model or model_path, tc.reward.pooling),
        rm_tokenizer,
        tc.reward.ensemble,
        cfg.seed,
    )
    rm_metrics = rm.fit(
        comparisons,
        tc.reward.epochs,
        tc.reward.lr,
        tc.reward.batch_size,
        tc.reward.margin,
        tc.reward.label_noise,
        log,
    )
    probs, outcomes = rm_metrics.pop("rm_val_probs", []), rm_metrics.pop("rm_val_outcomes", [])
    if probs:
        rm_metrics["rm_val_ece"] = expected_calibration_error(np.array(probs), np.array(outcomes))
    log({"phase": "reward_model", **rm_metrics})

    def proxy(prompts: list[str], texts: list[str]) -> torch.Tensor:
        return rm.score(prompts, texts)

    def gold(texts: list[str]) -> np.ndarray:
        return np.array([task.gold(t) for t in texts])

    def evaluate(
        name: str, model=None, texts: list[str] | None = None, kl: float | None = None
    ) -> dict:
        if texts is None:
            batch, texts, _ = generate(
                model,
                tokenizer,
                eval_prompts,
                tc.max_new_tokens,
                tc.temperature,
                seed=cfg.seed + 12345,
            )
            with torch.no_grad():
                logp = token_logprobs(model, batch, tc.temperature)
                logp_ref = token_logprobs(sft, batch, tc.temperature) if model is not sft else logp
            kl = float((logp - logp_ref).sum(1).mean())
        result = {
            "gold": float(gold(texts).mean()),
            "proxy": float(proxy(eval_prompts, texts).mean()),
            "kl": kl,
            "distinct_2": distinct_n([t.split() for t in texts], 2),
            "response_words": float(np.mean([len(t.split()) for t in texts])),
            "samples": texts[:5],
        }
        log(
            {"phase": "eval", "method": name, **{k: v for k, v in result.items() if k != "samples"}}
        )
        return result

    if (
        tc.goodhart_samples
    ):  # for `rlhflab goodhart`: N samples of π_SFT per prompt, scored by proxy and gold
        prompts = eval_prompts[:32]
        texts = [
            generate(
                sft,
                tokenizer,
                prompts,
                tc.max_new_tokens,
                tc.temperature,
                seed=cfg.seed + 50_000 + k,
            )[1]
            for k in range(tc.goodhart_samples)
        ]
        np.savez_compressed(
            run.path / "goodhart_samples.npz",
            proxy=np.stack([proxy(prompts, t).numpy() for t in texts], 1),
            gold=np.stack([gold(t) for t in texts], 1),
        )

    methods = {"sft": evaluate("sft", sft)}
    if "ppo" in tc.methods:
        policy = trainable_copy(sft, tc.lora_r)
        # with LoRA the reference is the policy with its adapter disabled (= SFT); otherwise SFT itself
        ppo = TextPPO(
            policy,
            None if tc.lora_r else sft,
            tokenizer,
            proxy,
            tc.ppo,
            tc.max_new_tokens,
            tc.temperature,
            gold,
            cfg.seed,
        )
        rng = np.random.default_rng(cfg.seed + 5)
        for _ in range(tc.ppo.steps):
            record = ppo.step(
                [train_prompts[i] for i in rng.integers(len(train_prompts), size=tc.ppo.batch_size)]
            )
            log(record | diversity(ppo.samples))
        methods["ppo"] = evaluate("ppo", policy)
    if "dpo" in tc.methods:
        pairs = [
            (c.prompt, c.responses[0], c.responses[-1]) for c in comparisons if c.target == 1.0
        ]
        policy = trainable_copy(sft, tc.lora_r)
        train_dpo(policy, sft, tokenizer, pairs, tc.dpo, cfg.seed, log)
        methods["dpo"] = evaluate("dpo", policy)
    if "best_of_n" in tc.methods:
        texts, _ = best_of_n(
            sft,
            tokenizer,
            eval_prompts,
            tc.best_of_n,
            proxy,
            tc.max_new_tokens,
            tc.temperature,
            seed=cfg.seed + 999,
        )
        methods[f"best_of_{tc.best_of_n}"] = evaluate(
            f"best_of_{tc.best_of_n}", texts=texts, kl=best_of_n_kl(tc.best_of_n)
        )
    summary = {
        "task": tc.task,
        "model": tc.model,
        "labels": store.count_judgements(),
        "seed": cfg.seed,
        "wall_seconds": round(time.time() - started, 2),
        "reward_model": rm_metrics,
        "methods": methods,
    }
    store.close()
    run.write_summary(summary)
    build_report(run.path)
    return summary


def trainable_copy(sft, lora_r: int = 0):
    """A copy of the SFT policy to optimise: all weights, or fresh LoRA adapters on top of it."""
    import copy

    policy = copy.deepcopy(sft)
    for p in policy.parameters():
        p.requires_grad_(True)
    return add_lora(policy, lora_r) if lora_r else policy


def gather_comparisons(
    cfg: RunConfig, sft, tokenizer, prompts: list[str], store: FeedbackStore, run: RunDir, log
) -> list[RankedResponses]:
    """Sample K responses per prompt from the SFT policy and have them judged (synthetic or people).

    Every query and judgement goes through the feedback store, so a text run's labels can be
    exported, audited and given by people exactly as a control run's."""
    tc, fb = cfg.text, cfg.feedback
    task = TASKS[tc.task]
    K, n = tc.ranking_k, tc.labels
    chosen = [prompts[i % len(prompts)] for i in range(n)]
    samples = [
        generate(
            sft, tokenizer, chosen, tc.max_new_tokens, tc.temperature, seed=cfg.seed + 100 + k
        )[1]
        for k in range(K)
    ]
    kind = "text_pair" if K == 2 else "ranking"
    ids = [
        store.add_text_query(
            kind,
            p,
            [samples[k][i] for k in range(K)],
            overlap=fb.overlap if fb.annotator.kind == "people" else 1,
        )
        for i, p in enumerate(chosen)
    ]
    if fb.annotator.kind == "people":
        try:
            wait_for_labels(
                store,
                n,
                fb.wait_timeout,
                lambda have, need: log({"phase": "waiting", "labels": have, "waiting_for": need}),
            )
        except LabelTimeout as exc:
            raise TextRunError(f"{exc}. {people_hint(run.path)}") from None
    else:
        annotator = SyntheticAnnotator(fb.annotator, cfg.seed + 2)
        for qid, i in zip(ids, range(n)):
            values = [task.gold(samples[k][i]) for k in range(K)]
            if K == 2:
                store.add_judgement(qid, annotator.prefer(*values), annotator.name)
            else:
                store.add_judgement(
                    qid, "ranking", annotator.name, payload={"order": annotator.rank(values)}
                )
    return comparisons_from_store(store)


def comparisons_from_store(store: FeedbackStore) -> list[RankedResponses]:
    """Text judgements as best-first comparisons (can't-tell answers are dropped)."""
    out = []
    for r in store.judgement_rows():
        q = r.query
        responses = q.payload.get("responses", [])
        if q.kind == "text_pair" and r.label != Judgement.CANT_TELL.value:
            first, second = (
                (responses[1], responses[0]) if r.label == "right" else (responses[0], responses[1])
            )
            out.append(
                RankedResponses(
                    q.payload["prompt"], (first, second), 0.5 if r.label == "equal" else 1.0
                )
            )
        elif q.kind == "ranking":
            out.append(
                RankedResponses(
                    q.payload["prompt"], tuple(responses[i] for i in r.payload["order"])
                )
            )
    return out
