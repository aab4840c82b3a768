"""The RLHF loop for control tasks: deep RL from human preferences (Christiano et al. 2017).

Three processes in a loop (Casper et al. 2023, Fig. 1):
  1. feedback — pairs of trajectory segments are shown to an annotator, who says
     which is better (or equal, or can't tell); judgements go to the feedback store;
  2. reward model — an ensemble r̂ is fit so that the judgements are likely under
     P̂[σ¹ ≻ σ²] = σ(Σ r̂(σ¹) − Σ r̂(σ²)) (Bradley–Terry, with an ε error term);
  3. policy — PPO (or A2C) maximises the normalised r̂ on fresh rollouts.

The label schedule is the paper's: a share of the labels (25%) before RL, then a
rate ∝ T₀/(T + T₀) that decays with env steps T. Integrated, the number of labels
wanted by step T is
    N(T) = N₀ + (N − N₀)·log(1 + T/T₀) / log(1 + T_total/T₀).
Departures: the reward model is refit synchronously between policy phases (the
paper runs the three processes asynchronously) whenever the labels have grown by
`reward.refit_growth`.

Wherever the env has its own reward, it is the gold standard: every log step
reports the true return beside the proxy return r̂ the policy optimises.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from rlhflab.config import RunConfig
from rlhflab.feedback.clips import encode_gif
from rlhflab.feedback.selection import select_pairs
from rlhflab.feedback.store import FeedbackStore
from rlhflab.feedback.synthetic import SyntheticAnnotator
from rlhflab.policy.control import ControlPolicy, evaluate_true_return
from rlhflab.reward.model import NonFiniteRewardError, RewardEnsemble
from rlhflab.runs import RunDir

OnLog = Callable[[dict], None]


class RunError(RuntimeError):
    """A run that stopped cleanly (with a checkpoint) because something went wrong."""


@dataclass
class LabelSchedule:
    total: int
    initial: int
    t0: float
    env_steps: int

    @classmethod
    def from_config(cls, cfg: RunConfig) -> "LabelSchedule":
        fb = cfg.feedback
        initial = max(2, round(fb.labels * fb.initial_share)) if fb.initial_share > 0 else 0
        return cls(fb.labels, min(initial, fb.labels), fb.t0 * cfg.env_steps, cfg.env_steps)

    def wanted(self, env_steps: int) -> int:
        """Labels that should exist once the policy has taken `env_steps` steps."""
        frac = math.log1p(min(env_steps, self.env_steps) / self.t0) / math.log1p(self.env_steps / self.t0)
        return min(self.total, self.initial + round((self.total - self.initial) * frac))


def run_rlhf(cfg: RunConfig, run: RunDir, on_log: OnLog | None = None, resume: bool = False) -> ControlPolicy:
    """Train a policy from preferences; returns the trained policy."""
    on_log = on_log or (lambda record: None)
    torch.set_num_threads(cfg.threads)
    fb = cfg.feedback
    people = fb.annotator.kind == "people"  # judgements arrive through the labeling app, at people's pace
    policy = ControlPolicy(cfg.env, cfg.policy, cfg.seed, render_envs=fb.render_envs if people else 0, render_stride=fb.clip_stride)
    reward_model = RewardEnsemble(policy.obs_dim, policy.action_space, cfg.reward, cfg.seed + 1)
    annotator = SyntheticAnnotator(fb.annotator, cfg.seed + 2)
    store = FeedbackStore(run.store_url)
    store.set_setting("guidelines", fb.guidelines)
    rng = np.random.default_rng(cfg.seed + 3)
    schedule = LabelSchedule.from_config(cfg)
    iteration, labels_at_fit, rm_metrics = 0, 0, {}

    if resume and (ckpt := run.load_checkpoint()) is not None:
        policy.load_state_dict(ckpt["policy"])
        reward_model.load_state_dict(ckpt["reward_model"])
        annotator.load_state_dict(ckpt["annotator"])
        rng.bit_generator.state = ckpt["rng"]
        iteration, labels_at_fit, rm_metrics = ckpt["iteration"], ckpt["labels_at_fit"], ckpt["rm_metrics"]
        if ckpt.get("done"):
            return policy

    def checkpoint(done: bool = False) -> None:
        run.save_checkpoint({
            "policy": policy.state_dict(), "reward_model": reward_model.state_dict(), "annotator": annotator.state_dict(),
            "rng": rng.bit_generator.state, "iteration": iteration, "labels_at_fit": labels_at_fit, "rm_metrics": rm_metrics, "done": done,
        })

    def ask(rollout, n: int) -> None:
        """Select n queries from the rollout's segments and store them; a synthetic annotator answers at once."""
        pairs = select_pairs(
            rollout.sample_segments(max(2, 2 * n * fb.candidates), fb.segment_length, rng, judge=fb.annotator.judge),
            n, fb.selection if reward_model.fits else "random", rng, fb.candidates, reward_model.disagreement,
        )
        for left, right in pairs:
            clips = (encode_gif(left.frames, fb.clip_fps), encode_gif(right.frames, fb.clip_fps)) if left.frames is not None else None
            store.add_query(left, right, clips=clips, overlap=fb.overlap if people else 1)
        answer_pending()

    def answer_pending() -> None:
        if people:
            return
        for query in store.pending_queries():
            store.add_judgement(query.id, annotator.judge(query.left, query.right), annotator.name)

    def wait_for_people() -> None:
        """Block (visibly, and at most wait_timeout) until the labels required before RL have arrived."""
        need = fb.min_labels_before_rl if fb.min_labels_before_rl is not None else round(0.75 * schedule.initial)
        started = time.monotonic()
        while (have := store.count_judgements()) < need:
            if time.monotonic() - started > fb.wait_timeout:
                raise RunError(
                    f"waited {fb.wait_timeout:.0f} s for the {need} labels required before RL; {have} arrived. "
                    f"Serve the labeling app with `rlhflab label {run.path}`, add people with "
                    f"`rlhflab annotators add NAME {run.path}`, then `rlhflab run --resume {run.path}`"
                )
            on_log({"phase": "waiting", "env_steps": policy.env_steps, "labels": have, "waiting_for": need})
            time.sleep(0.5)

    def refit() -> None:
        nonlocal labels_at_fit, rm_metrics
        labels = store.count_judgements()
        if labels > labels_at_fit * (1 + cfg.reward.refit_growth) or (labels and not reward_model.fits):
            rm_metrics = reward_model.fit(store.comparisons())
            labels_at_fit = labels

    answer_pending()  # a crash may have left queries unanswered
    try:
        # 1. Before RL: the initial share of labels, on the untrained policy's behaviour.
        if policy.env_steps == 0:
            if schedule.initial > store.count_queries():
                ask(policy.collect(), schedule.initial - store.count_queries())
            if people:
                wait_for_people()
            refit()
        if iteration == 0:
            run.save_policy(0, policy.state_dict())  # π₀, the reference of Goodhart curves over RL

        # 2. RL against r̂, with labels arriving at a decaying rate and the reward model refit.
        while policy.env_steps < cfg.env_steps:
            started = time.perf_counter()
            rollout = policy.collect()
            try:
                r_hat = reward_model.predict(rollout.raw_obs, rollout.actions)
            except NonFiniteRewardError as exc:
                checkpoint()
                raise RunError(f"{exc} at env step {policy.env_steps} (iteration {iteration}); checkpoint saved in {run.checkpoint_path}") from None
            stats = policy.update(rollout, r_hat)

            missing = schedule.wanted(policy.env_steps) - store.count_queries()
            if people:  # keep a bounded queue of unanswered queries
                missing = min(missing, fb.max_pending - store.count_unanswered())
            if missing > 0:
                ask(rollout, missing)
            refit()  # on whatever labels have arrived

            iteration += 1
            record = {
                "phase": "rlhf", "iteration": iteration, "env_steps": policy.env_steps, "labels": store.count_judgements(),
                "true_return": float(rollout.true_rewards.mean() * cfg.env.horizon),
                "proxy_return": float(r_hat.mean() * cfg.env.horizon),
                **rm_metrics, **stats, "steps_per_second": rollout.true_rewards.size / (time.perf_counter() - started),
            }
            if iteration % cfg.checkpoint_every == 0 or policy.env_steps >= cfg.env_steps:
                record["eval_true_return"] = policy.evaluate(cfg.eval_episodes)
                checkpoint(done=policy.env_steps >= cfg.env_steps)
                run.save_policy(iteration, policy.state_dict())
            run.log(record)
            on_log(record)
    except KeyboardInterrupt:
        checkpoint()
        raise
    finally:
        store.close()
    return policy


def train_true_reward(cfg: RunConfig, run: RunDir | None = None, on_log: OnLog | None = None, optimise: str = "true_reward") -> ControlPolicy:
    """The baseline: the same PPO on the env's true reward, with the same env-step budget.

    `optimise="reward"` trains on the env's returned reward instead — for a misspecified env,
    the hackable proxy — while the log still reports the true return."""
    on_log = on_log or (lambda record: None)
    torch.set_num_threads(cfg.threads)
    policy = ControlPolicy(cfg.env, cfg.policy, cfg.seed)
    iteration = 0
    while policy.env_steps < cfg.env_steps:
        rollout = policy.collect()
        stats = policy.update(rollout, rollout.rewards(optimise))
        iteration += 1
        record = {"phase": "baseline" if optimise == "true_reward" else f"ppo_on_{optimise}", "iteration": iteration, "env_steps": policy.env_steps,
                  "true_return": float(rollout.true_rewards.mean() * cfg.env.horizon), **stats}
        if iteration % cfg.checkpoint_every == 0 or policy.env_steps >= cfg.env_steps:
            record["eval_true_return"] = policy.evaluate(cfg.eval_episodes)
        if run is not None:
            run.log(record)
        on_log(record)
    return policy


def run_experiment(cfg: RunConfig, run: RunDir, on_log: OnLog | None = None, resume: bool = False) -> dict:
    """RLHF, the true-reward baseline and a random policy, compared on the true return."""
    started = time.time()
    if not resume:
        run.write_config(cfg)
    policy = run_rlhf(cfg, run, on_log, resume=resume)
    true_return = {"rlhf": policy.evaluate(cfg.eval_episodes)}
    policy.close()
    if cfg.baseline:
        baseline = train_true_reward(cfg, run, on_log)
        true_return["true_reward_baseline"] = baseline.evaluate(cfg.eval_episodes)
        baseline.close()
    true_return["random"] = evaluate_true_return(cfg.env, cfg.eval_episodes)
    store = FeedbackStore(run.store_url)
    labels = store.count_judgements()
    store.close()
    last = next((m for m in reversed(run.metrics()) if m.get("phase") == "rlhf"), {})
    summary = {
        "task": cfg.task, "env": cfg.env.id, "labels": labels, "env_steps": cfg.env_steps, "seed": cfg.seed,
        "true_return": true_return,
        "normalised_score": normalised_score(true_return),
        "proxy_return": last.get("proxy_return"), "rm_val_acc": last.get("rm_val_acc"),
        "wall_seconds": round(time.time() - started, 2),
    }
    run.write_summary(summary)
    return summary


def normalised_score(true_return: dict) -> float | None:
    """(RLHF − random) / (true-reward baseline − random): 1.0 is parity with RL on the true reward."""
    if "true_reward_baseline" not in true_return:
        return None
    gap = true_return["true_reward_baseline"] - true_return["random"]
    return None if abs(gap) < 1e-9 else (true_return["rlhf"] - true_return["random"]) / gap
