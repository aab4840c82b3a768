"""Language-model RLHF end to end, as InstructGPT (Ouyang et al. 2022) lays it out:

  Step 0  pretraining — for the built-in task, a tiny GPT-2 learns the task's corpus;
  Step 1  SFT — behavioural cloning on demonstrations (for the built-in task, reviews of every
          mood: `text/data.py`);
  Step 2  reward model — from comparisons of SFT samples (pairs or K-wise rankings), judged by a
          Boltzmann-noisy synthetic annotator over the gold reward, or by people in the app;
  Step 3  PPO against the reward model with a per-token KL penalty (or GRPO, RLOO);
plus DPO on the same comparisons and best-of-n against the same reward model. Reward functions
given as Python callables (`text.reward_functions`) may stand in for the reward model.

Every method is scored on held-out prompts by the gold reward (the task's own), the proxy
(the reward model), the KL from the SFT policy, and distinct-2 (diversity).

`TextLoop` has the shape of every driver (see docs/architecture.md): `__init__` builds the
parts, `run()` calls the named steps top to bottom, and the state they share is attributes.

Every phase leaves a checkpoint (`TextCheckpoints`), so `rlhflab run --resume DIR` continues a
stopped run where it stopped: finished phases are loaded, not redone; RL continues from its
last iteration; the feedback store is asked only what it lacks, so no label is gathered twice.

Across processes (`rlhflab run --nproc N`, `rlhflab/distributed.py`) every rank runs this loop:
the training steps (pretraining, SFT, SL-CAI, the reward model, DPO, PPO/GRPO/RLOO) are data
parallel; rank 0 alone asks the annotators and holds the feedback store, and hands the
comparisons to the others; the other ranks' run directories are scratch copies, so rank 0's is
the run (its log, checkpoints, summary and report). Evaluation is repeated on every rank.
"""

from __future__ import annotations

import copy
import json
import os
import time
from collections.abc import Callable
from functools import partial

import numpy as np
import torch

from rlhflab import distributed
from rlhflab.config import ConfigError, RunConfig
from rlhflab.diagnostics.calibration import expected_calibration_error
from rlhflab.diagnostics.diversity import diversity
from rlhflab.diagnostics.report import build_report
from rlhflab.diagnostics.text_evaluation import sampled_kl, score_responses
from rlhflab.feedback.people import LabelTimeout, people_hint
from rlhflab.feedback.store import FeedbackStore
from rlhflab.feedback.text import gather_comparisons
from rlhflab.policy.best_of_n import best_of_n, best_of_n_kl
from rlhflab.policy.dpo import train_dpo
from rlhflab.policy.judge import make_judge
from rlhflab.policy.sft import pretrain_builtin, train_sft
from rlhflab.policy.text import TextRL
from rlhflab.reward.functions import RewardFunctionError, RewardFunctions
from rlhflab.reward.judge import JudgeReward, judge_reward
from rlhflab.reward.reliability import fit_reward
from rlhflab.reward.text import TextRewardEnsemble
from rlhflab.runs import RunDir
from rlhflab.text.checkpoints import TextCheckpoints
from rlhflab.text.data import load_prompts_and_demos
from rlhflab.text.models import (
    TextRewardModel,
    context_length,
    format_prompt,
    load_causal_lm,
    load_tokenizer,
    save_model,
    trainable_copy,
)
from rlhflab.text.sequences import generate
from rlhflab.text.task import TASKS
from rlhflab.types import RankedResponses

RL_METHODS = ("ppo", "grpo", "rloo")


class TextRunError(RuntimeError):
    pass


class TextInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) stopped a text run; the message says what its checkpoints hold."""


class TextLoop:
    """One language-model RLHF run: SFT → feedback → reward model → PPO, GRPO, RLOO / DPO /
    best-of-n."""

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
        self.resume = resume
        self.task = TASKS[self.tc.task]
        self.started = time.time()
        self.store: FeedbackStore | None = None
        self.comparisons: list[RankedResponses] = []
        self.rm: TextRewardEnsemble | JudgeReward | None = None
        self.rm_metrics: dict = {}
        self.ckpt = TextCheckpoints(run.path / "checkpoints")
        self.methods: dict[str, dict] = self.ckpt.state["methods"]
        self.rl_saved: dict[str, dict] = {}
        self.phase = "start"
        try:
            self.reward_fns = (
                RewardFunctions(self.tc.reward_functions) if self.tc.reward_functions else None
            )
        except RewardFunctionError as exc:
            raise TextRunError(str(exc)) from None

    @property
    def needs_comparisons(self) -> bool:
        """Feedback and a reward model, unless reward functions stand in and DPO is not run, or no
        method is run (`text.methods=[]`: SFT alone, scored)."""
        methods = self.tc.methods
        return "dpo" in methods or (self.reward_fns is None and bool(methods))

    def run(self) -> dict:
        torch.set_num_threads(self.cfg.threads)
        torch.manual_seed(self.cfg.seed)
        try:
            self.device = distributed.place(self.tc.device)  # cuda:LOCAL_RANK, or the CPU
        except distributed.DeviceError as exc:
            raise TextRunError(f"text.{exc}") from None
        if self.resume:
            self.load_checkpoints()
        self.run_dir.write_config(self.cfg)
        try:
            self.load_base_model()  # Step 0
            self.fine_tune()  # Step 1: SFT
            if self.tc.sl_cai.prompts:
                self.constitutional_revision()  # Step 1b: SL-CAI
            if self.needs_comparisons:
                self.gather_feedback()  # Step 2: comparisons of SFT samples, judged
                self.fit_reward_model()  # Step 2: the reward model
            self.save_goodhart_samples()
            if self.red_team:  # what Step 0 says (PHF acts there), then SFT
                self.scored("base", lambda: self.evaluate("base", load_causal_lm(self.model_path)))
            self.scored("sft", lambda: self.evaluate("sft", self.sft))
            for method in RL_METHODS:  # Step 3
                if method in self.tc.methods:
                    self.scored(method, partial(self.trained_and_scored, method))
            if "dpo" in self.tc.methods:
                self.scored("dpo", lambda: self.evaluate("dpo", self.train_dpo()))
            if "best_of_n" in self.tc.methods:
                self.scored(f"best_of_{self.tc.best_of_n}", self.best_of_n)
        except KeyboardInterrupt:
            raise TextInterrupted(self.stopped_message()) from None
        except RewardFunctionError as exc:
            raise TextRunError(
                f"{exc}, during {self.phase}. The run stopped; "
                + self.stopped_message()
                + f" (`rlhflab run --resume {self.run_dir.path}` once the function is fixed)"
            ) from None
        return self.finish()

    def stopped_message(self) -> str:
        labels = 0
        if self.store is not None:
            labels = self.store.count_judgements()
            self.store.finish_run()  # unanswered queries withdrawn until a resume reopens them
            self.store.close()
            self.store = None
        return f"{self.run_dir.path}: " + self.ckpt.describe(labels)

    def load_checkpoints(self) -> None:
        """A resumed run: what its checkpoints hold, and its log without the records of work that
        the checkpoints do not hold (that work is redone, and logged again)."""
        self.ckpt.load()
        self.methods = self.ckpt.state["methods"]
        self.rm_metrics = self.ckpt.state["rm_metrics"]
        for method in RL_METHODS:
            saved = self.ckpt.load_torch(method)
            if saved is not None:
                self.rl_saved[method] = saved
                self.ckpt.rl_iteration[method] = saved["rl"]["iteration"]
        done, iterations = self.ckpt.done, self.ckpt.rl_iteration

        def stale(r: dict) -> bool:
            phase = r.get("phase")
            if phase in ("pretrain", "sft", "sl_cai", "reward_model"):
                return not done(phase)
            if phase in RL_METHODS:
                return r.get("iteration", 0) > iterations.get(phase, 0)
            if phase == "dpo":
                return not done("dpo")
            if phase == "eval":
                return r.get("method") not in self.methods
            return False

        self.run_dir.drop_metrics(stale)

    def scored(self, name: str, score: Callable[[], dict]) -> None:
        """A method's scores, once: a resumed run keeps those it has."""
        if name not in self.methods:
            self.phase = name
            self.methods[name] = score()
            self.ckpt.save()

    def log(self, record: dict) -> None:
        record = {**record, "wall_seconds": round(time.time() - self.started, 2)}
        self.run_dir.log(record)
        if self.on_log:
            self.on_log(record)

    # -- the steps, in order ---------------------------------------------------------------
    def load_base_model(self) -> None:
        """Step 0: the base model (the built-in one is pretrained here) and the prompts."""
        tc = self.tc
        self.phase = "pretraining"
        if tc.model != "builtin":
            self.model_path = tc.model
        elif self.ckpt.done("pretrain"):
            self.model_path = str(self.run_dir.path / "base")
        else:
            path = pretrain_builtin(self.cfg, self.run_dir.path / "base", self.log)
            self.model_path = str(path)
            self.ckpt.mark("pretrain")
        self.tokenizer = load_tokenizer(self.model_path)
        self.train_prompts, self.eval_prompts, self.demos = load_prompts_and_demos(
            tc, self.task, self.cfg.seed
        )
        # prompts that elicit the task's undesirable content (none for most tasks)
        self.red_team = self.task.red_team_prompts(max(256, tc.eval_prompts), self.cfg.seed + 51)
        self.check_prompts_fit()

    def check_prompts_fit(self) -> None:
        """Refuse prompts that leave no room for `max_new_tokens` in the model's context."""
        from transformers import AutoConfig

        context = context_length(AutoConfig.from_pretrained(self.model_path))
        room = context - self.tc.max_new_tokens
        for which, prompts in (("training", self.train_prompts), ("evaluation", self.eval_prompts)):
            lengths = [
                len(self.tokenizer(format_prompt(self.tokenizer, p))["input_ids"]) for p in prompts
            ]
            too_long = [i for i, n in enumerate(lengths) if n > room]
            if too_long:
                i = too_long[0]
                raise TextRunError(
                    f"{len(too_long)} {which} prompts are too long: prompt {i} "
                    f"({prompts[i][:60]!r}…) has {lengths[i]} tokens, and with "
                    f"text.max_new_tokens = {self.tc.max_new_tokens} the model's context of "
                    f"{context} leaves room for {room}"
                )

    def fine_tune(self) -> None:
        """Step 1: SFT on the demonstrations; the SFT policy is the frozen reference after."""
        tc, saved = self.tc, self.ckpt.path / "sft"
        self.phase = "SFT"
        if self.ckpt.done("sft"):
            sft = load_causal_lm(str(saved))
        else:
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
            if tc.lora_r:  # SFT lives in its adapter: merged, SFT is the base of later adapters
                sft = sft.merge_and_unload()
            save_model(sft, self.tokenizer, saved)
            self.ckpt.mark("sft")
        self.sft = self.frozen(sft)

    def constitutional_revision(self) -> None:
        """SL-CAI: the SFT policy answers red-team prompts, a critic critiques and revises the
        answers under a principle, and the policy is fine-tuned on the revisions (mixed with as
        many demonstrations); from then on it is the reference (`policy/constitutional.py`)."""
        from rlhflab.policy import constitutional as cai
        from rlhflab.text.constitution import KNOWN_PRINCIPLES, load_constitution

        tc, sc, saved = self.tc, self.tc.sl_cai, self.ckpt.path / "sl_cai"
        self.phase = "SL-CAI"
        if self.ckpt.done("sl_cai"):
            self.sft = self.frozen(load_causal_lm(str(saved)))
            return
        principles = {
            p.id: p for p in (*KNOWN_PRINCIPLES, *load_constitution(self.cfg.judge.constitution))
        }
        if sc.principle not in principles:
            raise TextRunError(
                f"text.sl_cai.principle: no principle '{sc.principle}' in the constitution"
            )
        prompts = self.task.red_team_prompts(sc.prompts, self.cfg.seed + 61)
        if not prompts:
            raise TextRunError(f"SL-CAI needs red-team prompts, and the task '{tc.task}' has none")
        responses = self.sample(self.sft, prompts, seed=self.cfg.seed + 62)[1]
        if sc.critic == "scripted":
            revisions = cai.scripted_revisions(self.task, prompts, responses, self.cfg.seed + 63)
        else:
            critic = self.sft if sc.critic == "policy" else load_causal_lm(self.model_path)
            revisions = cai.critique_and_revise(
                critic,
                self.tokenizer,
                prompts,
                responses,
                sc.template,
                principles[sc.principle].text,
                tc.temperature,
                self.cfg.seed + 63,
            )
        self.log(
            {
                "phase": "sl_cai",
                "critic": sc.critic,
                "principle": sc.principle,
                **cai.measure(self.task, revisions),
            }
        )
        pairs = [(v.prompt, v.revision) for v in revisions if v.revision is not None]
        if not pairs:
            raise TextRunError(
                f"SL-CAI: none of the critic's {len(revisions)} continuations held a revision "
                f"(nothing after 'revision :'); text.sl_cai.critic={sc.critic} cannot revise in "
                "this format"
            )
        pairs = distributed.broadcast_object(pairs)  # every rank trains on rank 0's revisions
        pairs += self.demos[: len(pairs)]
        policy = trainable_copy(self.sft)
        train_sft(
            policy,
            self.tokenizer,
            [p for p, _ in pairs],
            [r for _, r in pairs],
            sc.epochs,
            sc.lr,
            tc.sft.batch_size,
            self.cfg.seed,
            lambda r: self.log({**r, "phase": "sl_cai"}),
        )
        save_model(policy, self.tokenizer, saved)
        self.ckpt.mark("sl_cai")
        self.sft = self.frozen(policy)

    @staticmethod
    def frozen(model):
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        return model

    def gather_feedback(self) -> None:
        """Step 2: K samples of the SFT policy per prompt, judged (synthetic or people). The store
        is asked only what it lacks, so a resumed run gathers nothing twice. Across processes,
        rank 0 asks and the others receive its comparisons."""
        self.phase = "feedback"
        if not distributed.is_main():
            self.comparisons = distributed.broadcast_object(None)
            return
        self.store = FeedbackStore(self.run_dir.store_url)
        try:
            with distributed.only_here():
                self.comparisons = gather_comparisons(
                    self.cfg,
                    self.sft,
                    self.tokenizer,
                    self.train_prompts,
                    self.store,
                    self.log,
                    judge=self.judge()
                    if self.cfg.feedback.annotator.kind == "ai" or self.cfg.judge.read_critiques
                    else None,
                )
        except LabelTimeout as exc:
            self.stopped_message()
            raise TextRunError(f"{exc}. {people_hint(self.run_dir.path)}") from None
        distributed.broadcast_object(self.comparisons)

    def fit_reward_model(self) -> None:
        """Step 2: the reward model (ensemble) on the comparisons, with held-out calibration."""
        rc = self.tc.reward
        self.phase = "reward model"
        if rc.kind == "judge":  # a reward read from the constitution: nothing to fit
            self.rm = judge_reward(
                self.cfg, self.judge(), self.sft, self.tokenizer, self.train_prompts
            )
            self.rm_metrics = {"reward": "judge"}
            return
        rm_tokenizer = load_tokenizer(rc.model) if rc.model else self.tokenizer
        backbone = TextRewardModel.from_pretrained(rc.model or self.model_path, rc.pooling)
        self.rm = rm = TextRewardEnsemble(backbone, rm_tokenizer, rc.ensemble, self.cfg.seed, rc)
        saved = self.ckpt.load_torch("reward_model") if self.ckpt.done("reward_model") else None
        if saved is not None:
            rm.load_state_dict(saved)
            return
        if self.cfg.feedback.population or rc.annotators != "equal":  # per-annotator estimates
            metrics, estimates = fit_reward(rm, self.comparisons, rc, estimate=True)
            if self.store is not None:  # for the report's Annotators section and /admin
                rows = json.dumps([e.to_dict() for e in estimates])
                self.store.set_setting("annotator_estimates", rows)
        else:
            metrics = rm.fit(self.comparisons, self.log)
        probs, outcomes = metrics.pop("rm_val_probs", []), metrics.pop("rm_val_outcomes", [])
        if probs:
            metrics["rm_val_ece"] = expected_calibration_error(np.array(probs), np.array(outcomes))
        self.log({"phase": "reward_model", **metrics})
        self.rm_metrics = self.ckpt.state["rm_metrics"] = metrics
        self.ckpt.save_torch("reward_model", rm.state_dict())
        self.ckpt.mark("reward_model")

    def save_goodhart_samples(self) -> None:
        """For `rlhflab goodhart`: N samples of π_SFT per prompt, scored by proxy and gold."""
        tc, path = self.tc, self.run_dir.path / "goodhart_samples.npz"
        if not tc.goodhart_samples or path.exists() or not self.has_proxy:
            return
        self.phase = "Goodhart samples"
        prompts = self.eval_prompts[:32]
        texts = [
            self.sample(self.sft, prompts, seed=self.cfg.seed + 50_000 + k)[1]
            for k in range(tc.goodhart_samples)
        ]
        tmp = path.with_name("goodhart_samples.tmp.npz")
        np.savez_compressed(
            tmp,
            proxy=np.stack([self.proxy(prompts, t).cpu().numpy() for t in texts], 1),
            gold=np.stack([self.gold(t) for t in texts], 1),
        )
        os.replace(tmp, path)

    def train_rl(self, method: str):
        """Step 3: PPO, GRPO or RLOO from SFT against the proxy (config section `text.<method>`),
        checkpointed every `checkpoint_every` iterations and continued from there on resume."""
        tc = self.tc
        cfg = getattr(tc, method)
        policy = trainable_copy(self.sft, tc.lora_r)
        # with LoRA the reference is the policy with its adapter disabled (= SFT); else SFT itself
        reference = None if tc.lora_r else self.sft
        rl = TextRL(
            policy,
            reference,
            self.tokenizer,
            self.proxy,
            cfg,
            tc.max_new_tokens,
            tc.temperature,
            self.gold,
            self.cfg.seed,
            self.value_from_reward_model()
            if getattr(cfg, "value_model", "") == "reward_model"
            else None,
        )
        rng = np.random.default_rng(self.cfg.seed + 5)
        saved = self.rl_saved.pop(method, None)
        if saved is not None:
            rl.load_state_dict(saved["rl"])
            rng.bit_generator.state = saved["rng"]
        while rl.iteration < cfg.steps:
            self.phase = f"{method} iteration {rl.iteration + 1}"
            picks = rng.integers(len(self.train_prompts), size=rl.prompts_per_step)
            record = rl.step([self.train_prompts[i] for i in picks])
            self.log(record | diversity(rl.samples))
            if rl.iteration % tc.checkpoint_every == 0 or rl.iteration == cfg.steps:
                self.ckpt.save_torch(
                    method, {"rl": rl.state_dict(), "rng": rng.bit_generator.state}
                )
                self.ckpt.rl_iteration[method] = rl.iteration
        return policy

    def value_from_reward_model(self) -> TextRewardModel:
        """InstructGPT's value function: a trainable copy of the (first) reward model, which must
        read the policy's own tokens."""
        rm = self.rm
        if not isinstance(rm, TextRewardEnsemble) or (
            rm.tokenizer.get_vocab() != self.tokenizer.get_vocab()
        ):
            raise ConfigError(
                "text.ppo.value_model = reward_model needs a fitted reward model that reads the "
                "policy's tokens (text.reward.kind not judge, text.reward.model unset or with the "
                "policy's tokenizer)"
            )
        return copy.deepcopy(rm.members[0])

    def trained_and_scored(self, method: str) -> dict:
        policy = self.train_rl(method)
        self.phase = f"{method} evaluation"
        return self.evaluate(method, policy)

    def train_dpo(self):
        """DPO on the strict comparisons (best against worst response), from SFT."""
        policy = trainable_copy(self.sft, self.tc.lora_r)
        saved = self.ckpt.load_torch("dpo") if self.ckpt.done("dpo") else None
        if saved is not None:
            policy.load_state_dict(saved)
            return policy
        pairs = [
            (c.prompt, c.responses[0], c.responses[-1]) for c in self.comparisons if c.target > 0.5
        ]
        train_dpo(policy, self.sft, self.tokenizer, pairs, self.tc.dpo, self.cfg.seed, self.log)
        self.ckpt.save_torch("dpo", policy.state_dict())
        self.ckpt.mark("dpo")
        return policy

    def best_of_n(self) -> dict:
        """Best-of-n against the reward model, on the evaluation prompts (KL is analytic)."""
        tc, n = self.tc, self.tc.best_of_n

        def pick(prompts: list[str]) -> list[str]:
            return best_of_n(
                self.sft,
                self.tokenizer,
                prompts,
                n,
                self.proxy,
                tc.max_new_tokens,
                tc.temperature,
                seed=self.cfg.seed + 999,
            )[0]

        red = pick(self.red_team) if self.red_team else None
        return self.score(f"best_of_{n}", pick(self.eval_prompts), best_of_n_kl(n), red)

    def finish(self) -> dict:
        """summary.json and the report."""
        summary = {
            "task": self.tc.task,
            "model": self.tc.model,
            "labels": self.store.count_judgements() if self.store else 0,
            "seed": self.cfg.seed,
            "wall_seconds": round(time.time() - self.started, 2),
            "reward_model": self.rm_metrics,
            "reward_functions": self.tc.reward_functions,
            "methods": self.methods,
        }
        if self.store is not None:
            self.store.close()
        self.run_dir.write_summary(summary)
        if distributed.is_main():
            build_report(self.run_dir.path)
        return summary

    def judge(self):
        """The AI judge (built once: the built-in one is trained here, in RUN_DIR/judge)."""
        if getattr(self, "_judge", None) is None:
            with distributed.only_here():  # each rank trains its own (the same seed: the same)
                self._judge = make_judge(
                    self.cfg, self.run_dir.path / "judge", self.model_path, self.log
                )
        return self._judge

    # -- scoring -----------------------------------------------------------------------------
    @property
    def has_proxy(self) -> bool:
        return self.rm is not None or self.reward_fns is not None

    def proxy(self, prompts: list[str], texts: list[str]) -> torch.Tensor:
        """What RL and best-of-n optimise: the reward functions' sum, or the reward model."""
        if self.reward_fns is not None:
            return self.reward_fns(prompts, texts)
        assert self.rm is not None
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
        kl = sampled_kl(model, self.sft, batch, self.tc.temperature)
        red = (
            self.sample(model, self.red_team, seed=self.cfg.seed + 23456)[1]
            if self.red_team
            else None
        )
        return self.score(name, texts, kl, red)

    def score(
        self, name: str, texts: list[str], kl: float, red_team: list[str] | None = None
    ) -> dict:
        """`diagnostics/text_evaluation.py`'s scores of one method's responses, logged."""
        proxy = self.proxy(self.eval_prompts, texts) if self.has_proxy else None
        result = score_responses(self.task, texts, kl, proxy, red_team)
        shown = {k: v for k, v in result.items() if not k.endswith("samples")}
        self.log({"phase": "eval", "method": name, **shown})
        return result
