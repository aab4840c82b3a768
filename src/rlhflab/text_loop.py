"""Language-model RLHF end to end, as InstructGPT (Ouyang et al. 2022) lays it out:

  Step 0  pretraining — for the built-in task, a tiny GPT-2 learns the task's corpus;
  Step 1  SFT — behavioural cloning on demonstrations (for the built-in task, reviews of every
          mood: `text/data.py`);
  Step 2  reward model — from comparisons of SFT samples (pairs or K-wise rankings), judged by a
          Boltzmann-noisy synthetic annotator over the gold reward, or by people in the app;
  Step 3  PPO against the reward model with a per-token KL penalty;
plus DPO on the same comparisons and best-of-n against the same reward model.

Every method is scored on held-out prompts by the gold reward (the task's own), the proxy
(the reward model), the KL from the SFT policy, and distinct-2 (diversity).

`TextLoop` has the shape of every driver (see docs/architecture.md): `__init__` builds the
parts, `run()` calls the named steps top to bottom, and the state they share is attributes.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch

from rlhflab.config import RunConfig
from rlhflab.diagnostics.calibration import expected_calibration_error
from rlhflab.diagnostics.diversity import distinct_n, diversity
from rlhflab.diagnostics.report import build_report
from rlhflab.feedback.people import LabelTimeout, people_hint
from rlhflab.feedback.store import FeedbackStore
from rlhflab.feedback.text import gather_comparisons
from rlhflab.policy.best_of_n import best_of_n, best_of_n_kl
from rlhflab.policy.dpo import train_dpo
from rlhflab.policy.judge import make_judge
from rlhflab.policy.sft import pretrain_builtin, train_sft
from rlhflab.policy.text import TextPPO
from rlhflab.reward.judge import JudgeReward, judge_reward
from rlhflab.reward.text import TextRewardEnsemble
from rlhflab.runs import RunDir
from rlhflab.text.data import load_prompts_and_demos
from rlhflab.text.models import TextRewardModel, load_causal_lm, load_tokenizer, trainable_copy
from rlhflab.text.sequences import generate, token_logprobs
from rlhflab.text.task import TASKS
from rlhflab.types import RankedResponses


class TextRunError(RuntimeError):
    pass


class TextLoop:
    """One language-model RLHF run: SFT → feedback → reward model → PPO / DPO / best-of-n."""

    def __init__(
        self,
        cfg: RunConfig,
        run: RunDir,
        on_log: Callable[[dict], None] | None = None,
        resume: bool = False,
    ):
        if cfg.text is None:
            raise TextRunError("a text run needs a `text:` section in its config")
        self.cfg, self.tc, self.run_dir, self.on_log = cfg, cfg.text, run, on_log
        self.resume = resume  # text runs start over: nothing of a text run is checkpointed yet
        self.task = TASKS[self.tc.task]
        self.started = time.time()
        self.store: FeedbackStore | None = None
        self.comparisons: list[RankedResponses] = []
        self.rm_metrics: dict = {}
        self.methods: dict[str, dict] = {}

    def run(self) -> dict:
        torch.set_num_threads(self.cfg.threads)
        torch.manual_seed(self.cfg.seed)
        self.run_dir.write_config(self.cfg)
        self.load_base_model()  # Step 0
        self.fine_tune()  # Step 1: SFT
        self.gather_feedback()  # Step 2: comparisons of SFT samples, judged
        self.fit_reward_model()  # Step 2: the reward model
        self.save_goodhart_samples()
        self.methods["sft"] = self.evaluate("sft", self.sft)
        if "ppo" in self.tc.methods:
            self.methods["ppo"] = self.evaluate("ppo", self.train_ppo())  # Step 3
        if "dpo" in self.tc.methods:
            self.methods["dpo"] = self.evaluate("dpo", self.train_dpo())
        if "best_of_n" in self.tc.methods:
            self.methods[f"best_of_{self.tc.best_of_n}"] = self.best_of_n()
        return self.finish()

    def log(self, record: dict) -> None:
        record = {**record, "wall_seconds": round(time.time() - self.started, 2)}
        self.run_dir.log(record)
        if self.on_log:
            self.on_log(record)

    # -- the steps, in order ---------------------------------------------------------------
    def load_base_model(self) -> None:
        """Step 0: the base model (the built-in one is pretrained here) and the prompts."""
        tc = self.tc
        builtin = tc.model == "builtin"
        path = pretrain_builtin(self.cfg, self.run_dir.path / "base", self.log) if builtin else None
        self.model_path = str(path) if path else tc.model
        self.tokenizer = load_tokenizer(self.model_path)
        self.train_prompts, self.eval_prompts, self.demos = load_prompts_and_demos(
            tc, self.task, self.cfg.seed
        )

    def fine_tune(self) -> None:
        """Step 1: SFT on the demonstrations; the SFT policy is the frozen reference after."""
        tc = self.tc
        sft = load_causal_lm(self.model_path, tc.lora_r)
        prompts, responses = [p for p, _ in self.demos], [r for _, r in self.demos]
        sft_cfg = tc.sft
        train_sft(
            sft,
            self.tokenizer,
            prompts,
            responses,
            sft_cfg.epochs,
            sft_cfg.lr,
            sft_cfg.batch_size,
            self.cfg.seed,
            self.log,
        )
        if tc.lora_r:  # SFT lives in its adapter: merged, SFT is the base of every later adapter
            sft = sft.merge_and_unload()
        sft.eval()
        for p in sft.parameters():
            p.requires_grad_(False)
        self.sft = sft

    def gather_feedback(self) -> None:
        """Step 2: K samples of the SFT policy per prompt, judged (synthetic or people)."""
        self.store = FeedbackStore(self.run_dir.store_url)
        try:
            self.comparisons = gather_comparisons(
                self.cfg,
                self.sft,
                self.tokenizer,
                self.train_prompts,
                self.store,
                self.log,
                judge=self.judge() if self.cfg.feedback.annotator.kind == "ai" else None,
            )
        except LabelTimeout as exc:
            raise TextRunError(f"{exc}. {people_hint(self.run_dir.path)}") from None

    def fit_reward_model(self) -> None:
        """Step 2: the reward model (ensemble) on the comparisons, with held-out calibration."""
        rc = self.tc.reward
        self.rm: TextRewardEnsemble | JudgeReward
        if rc.kind == "judge":  # a reward read from the constitution: nothing to fit
            self.rm = judge_reward(
                self.cfg, self.judge(), self.sft, self.tokenizer, self.train_prompts
            )
            self.rm_metrics = {"reward": "judge"}
            return
        rm_tokenizer = load_tokenizer(rc.model) if rc.model else self.tokenizer
        backbone = TextRewardModel.from_pretrained(rc.model or self.model_path, rc.pooling)
        self.rm = rm = TextRewardEnsemble(backbone, rm_tokenizer, rc.ensemble, self.cfg.seed)
        metrics = rm.fit(
            self.comparisons, rc.epochs, rc.lr, rc.batch_size, rc.margin, rc.label_noise, self.log
        )
        probs, outcomes = metrics.pop("rm_val_probs", []), metrics.pop("rm_val_outcomes", [])
        if probs:
            metrics["rm_val_ece"] = expected_calibration_error(np.array(probs), np.array(outcomes))
        self.log({"phase": "reward_model", **metrics})
        self.rm_metrics = metrics

    def save_goodhart_samples(self) -> None:
        """For `rlhflab goodhart`: N samples of π_SFT per prompt, scored by proxy and gold."""
        tc = self.tc
        if not tc.goodhart_samples:
            return
        prompts = self.eval_prompts[:32]
        texts = [
            self.sample(self.sft, prompts, seed=self.cfg.seed + 50_000 + k)[1]
            for k in range(tc.goodhart_samples)
        ]
        np.savez_compressed(
            self.run_dir.path / "goodhart_samples.npz",
            proxy=np.stack([self.proxy(prompts, t).numpy() for t in texts], 1),
            gold=np.stack([self.gold(t) for t in texts], 1),
        )

    def train_ppo(self):
        """Step 3: PPO against the reward model, with a per-token KL penalty to SFT."""
        tc = self.tc
        policy = trainable_copy(self.sft, tc.lora_r)
        # with LoRA the reference is the policy with its adapter disabled (= SFT); else SFT itself
        reference = None if tc.lora_r else self.sft
        ppo = TextPPO(
            policy,
            reference,
            self.tokenizer,
            self.proxy,
            tc.ppo,
            tc.max_new_tokens,
            tc.temperature,
            self.gold,
            self.cfg.seed,
        )
        rng = np.random.default_rng(self.cfg.seed + 5)
        for _ in range(tc.ppo.steps):
            picks = rng.integers(len(self.train_prompts), size=tc.ppo.batch_size)
            record = ppo.step([self.train_prompts[i] for i in picks])
            self.log(record | diversity(ppo.samples))
        return policy

    def train_dpo(self):
        """DPO on the strict comparisons (best against worst response), from SFT."""
        pairs = [
            (c.prompt, c.responses[0], c.responses[-1]) for c in self.comparisons if c.target > 0.5
        ]
        policy = trainable_copy(self.sft, self.tc.lora_r)
        train_dpo(policy, self.sft, self.tokenizer, pairs, self.tc.dpo, self.cfg.seed, self.log)
        return policy

    def best_of_n(self) -> dict:
        """Best-of-n against the reward model, on the evaluation prompts (KL is analytic)."""
        tc, n = self.tc, self.tc.best_of_n
        texts, _ = best_of_n(
            self.sft,
            self.tokenizer,
            self.eval_prompts,
            n,
            self.proxy,
            tc.max_new_tokens,
            tc.temperature,
            seed=self.cfg.seed + 999,
        )
        return self.score(f"best_of_{n}", texts, best_of_n_kl(n))

    def finish(self) -> dict:
        """summary.json and the report."""
        assert self.store is not None
        summary = {
            "task": self.tc.task,
            "model": self.tc.model,
            "labels": self.store.count_judgements(),
            "seed": self.cfg.seed,
            "wall_seconds": round(time.time() - self.started, 2),
            "reward_model": self.rm_metrics,
            "methods": self.methods,
        }
        self.store.close()
        self.run_dir.write_summary(summary)
        build_report(self.run_dir.path)
        return summary

    def judge(self):
        """The AI judge (built once: the built-in one is trained here, in RUN_DIR/judge)."""
        if getattr(self, "_judge", None) is None:
            self._judge = make_judge(self.cfg, self.run_dir.path / "judge", self.log)
        return self._judge

    # -- scoring -----------------------------------------------------------------------------
    def proxy(self, prompts: list[str], texts: list[str]) -> torch.Tensor:
        return self.rm.score(prompts, texts)

    def gold(self, texts: list[str]) -> np.ndarray:
        return np.array([self.task.gold(t) for t in texts])

    def sample(self, model, prompts: list[str], seed: int):
        tc = self.tc
        return generate(
            model, self.tokenizer, prompts, tc.max_new_tokens, tc.temperature, seed=seed
        )

    def evaluate(self, name: str, model) -> dict:
        """A policy's samples on the evaluation prompts, scored, with its KL from SFT."""
        batch, texts, _ = self.sample(model, self.eval_prompts, seed=self.cfg.seed + 12345)
        with torch.no_grad():
            logp = token_logprobs(model, batch, self.tc.temperature)
            same = model is self.sft
            logp_ref = logp if same else token_logprobs(self.sft, batch, self.tc.temperature)
        return self.score(name, texts, float((logp - logp_ref).sum(1).mean()))

    def score(self, name: str, texts: list[str], kl: float) -> dict:
        """Gold, proxy, KL, diversity and length of one method's responses; logged."""
        result = {
            "gold": float(self.gold(texts).mean()),
            "proxy": float(self.proxy(self.eval_prompts, texts).mean()),
            "kl": kl,
            "distinct_2": distinct_n([t.split() for t in texts], 2),
            "response_words": float(np.mean([len(t.split()) for t in texts])),
            "samples": texts[:5],
        }
        shown = {k: v for k, v in result.items() if k != "samples"}
        self.log({"phase": "eval", "method": name, **shown})
        return result
