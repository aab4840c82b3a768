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
from rlhflab.feedback.people import LabelTimeout, people_hint, wait_for_labels
from rlhflab.diagnostics.alarms import AlarmMonitor
from rlhflab.diagnostics.probe import Probe
from rlhflab.diagnostics.report import build_report
from rlhflab.feedback.selection import select_pairs
from rlhflab.feedback.store import FeedbackStore
from rlhflab.feedback.synthetic import SyntheticAnnotator
from rlhflab.policy.control import ControlPolicy, evaluate_true_return
from rlhflab.reward.model import NonFiniteRewardError, RewardEnsemble
from rlhflab.runs import RunDir
from rlhflab.stats import RunningMeanStd

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
        frac = math.log1p(min(env_steps, self.env_steps) / self.t0) / math.log1p(
            self.env_steps / self.t0
        )
        return min(self.total, self.initial + round((self.total - self.initial) * frac))


def run_rlhf(
    cfg: RunConfig, run: RunDir, on_log: OnLog | None = None, resume: bool = False
) -> ControlPolicy:
    """Train a policy from preferences; returns the trained policy."""
    on_log = on_log or (lambda record: None)
    torch.set_num_threads(cfg.threads)
    fb = cfg.feedback
    people = (
        fb.annotator.kind == "people"
    )  # judgements arrive through the labeling app, at people's pace
    policy = ControlPolicy(
        cfg.env,
        cfg.policy,
        cfg.seed,
        render_envs=fb.render_envs if people else 0,
        render_stride=fb.clip_stride,
    )
    reward_model = RewardEnsemble(policy.obs_dim, policy.action_space, cfg.reward, cfg.seed + 1)
    probe = Probe(
        cfg, run, policy, reward_model
    )  # KL, disagreement on policy samples, samples/ and clips/
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
        iteration, labels_at_fit, rm_metrics = (
            ckpt["iteration"],
            ckpt["labels_at_fit"],
            ckpt["rm_metrics"],
        )
        run.drop_metrics(
            lambda r: r.get("phase") == "rlhf" and r.get("iteration", 0) > iteration
        )  # logged after the checkpoint: redone now
        if ckpt.get("done"):
            return policy
    monitor = AlarmMonitor(
        cfg.alarms,
        [m for m in run.metrics() if m.get("phase") == "rlhf" and m["iteration"] <= iteration],
    )

    def checkpoint(done: bool = False) -> None:
        run.save_checkpoint(
            {
                "policy": policy.state_dict(),
                "reward_model": reward_model.state_dict(),
                "annotator": annotator.state_dict(),
                "rng": rng.bit_generator.state,
                "iteration": iteration,
                "labels_at_fit": labels_at_fit,
                "rm_metrics": rm_metrics,
                "done": done,
            }
        )

    def ask(rollout, n: int) -> None:
        """Select n queries from the rollout's segments and store them; a synthetic annotator answers at once."""
        pairs = select_pairs(
            rollout.sample_segments(
                max(2, 2 * n * fb.candidates), fb.segment_length, rng, judge=fb.annotator.judge
            ),
            n,
            fb.selection if reward_model.fits else "random",
            rng,
            fb.candidates,
            reward_model.disagreement,
        )
        clips = (
            [
                (encode_gif(a.frames, fb.clip_fps), encode_gif(b.frames, fb.clip_fps))
                for a, b in pairs
            ]
            if pairs and pairs[0][0].frames is not None
            else None
        )
        ids = store.add_queries(pairs, clips, overlap=fb.overlap if people else 1)
        if not people:
            store.add_judgements(
                [(qid, annotator.judge(a, b)) for qid, (a, b) in zip(ids, pairs)], annotator.name
            )

    def answer_pending() -> None:
        if not people:
            store.add_judgements(
                [(q.id, annotator.judge(q.left, q.right)) for q in store.pending_queries()],
                annotator.name,
            )

    known: list = []  # every judged segment comparison, read from the store once and then incrementally

    relabels = [store.setting("relabels", "0")]

    def sync() -> list:
        if (
            store.setting("relabels", "0") != relabels[0]
        ):  # someone corrected a label: read everything again
            relabels[0] = store.setting("relabels", "0")
            known.clear()
        known.extend(store.comparisons(after=known[-1].judgement_id if known else 0))
        return known

    def wait_for_people() -> None:
        """Block (visibly, and at most wait_timeout) until the labels required before RL have arrived."""
        need = (
            fb.min_labels_before_rl
            if fb.min_labels_before_rl is not None
            else round(0.75 * schedule.initial)
        )
        try:
            wait_for_labels(
                store,
                need,
                fb.wait_timeout,
                lambda have, need: on_log(
                    {
                        "phase": "waiting",
                        "env_steps": policy.env_steps,
                        "labels": have,
                        "waiting_for": need,
                    }
                ),
            )
        except LabelTimeout as exc:
            raise RunError(f"{exc} (required before RL). {people_hint(run.path)}") from None

    def refit() -> None:
        nonlocal labels_at_fit, rm_metrics
        labels = len(sync())
        if labels > labels_at_fit * (1 + cfg.reward.refit_growth) or (
            labels and not reward_model.fits
        ):
            rm_metrics = reward_model.fit(known)
            labels_at_fit = labels
            policy.reward_rms = RunningMeanStd(
                ()
            )  # a refit changes r̂'s offset and scale: normalise the new r̂ afresh

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
            probe.save_samples(0, clip=True)
            run.save_policy(0, policy.state_dict())  # π₀, the reference of Goodhart curves over RL

        # 2. RL against r̂, with labels arriving at a decaying rate and the reward model refit.
        while policy.env_steps < cfg.env_steps:
            started = time.perf_counter()
            rollout = policy.collect()
            try:
                r_hat = reward_model.predict(rollout.raw_obs, rollout.actions)
            except NonFiniteRewardError as exc:
                checkpoint()
                raise RunError(
                    f"{exc} at env step {policy.env_steps} (iteration {iteration}); checkpoint saved in {run.checkpoint_path}"
                ) from None
            stats = policy.update(rollout, r_hat)

            missing = schedule.wanted(policy.env_steps) - store.count_queries()
            if people:  # keep a bounded queue of unanswered queries
                missing = min(missing, fb.max_pending - store.count_unanswered())
            if missing > 0:
                ask(rollout, missing)
            refit()  # on whatever labels have arrived

            iteration += 1
            record = {
                "phase": "rlhf",
                "iteration": iteration,
                "env_steps": policy.env_steps,
                "labels": store.count_judgements(),
                "true_return": float(rollout.true_rewards.mean() * cfg.env.horizon),
                "proxy_return": float(r_hat.mean() * cfg.env.horizon),
                **rm_metrics,
                **stats,
                **probe.measure(rollout, iteration),
                "steps_per_second": rollout.true_rewards.size / (time.perf_counter() - started),
            }
            record["alarms"] = monitor.check(record)
            stop = bool(record["alarms"]) and cfg.alarms.stop
            if iteration % cfg.checkpoint_every == 0 or policy.env_steps >= cfg.env_steps or stop:
                record["eval_true_return"] = policy.evaluate(cfg.eval_episodes)
                probe.save_samples(iteration, clip=stop or policy.env_steps >= cfg.env_steps)
                checkpoint(done=policy.env_steps >= cfg.env_steps)
                run.save_policy(iteration, policy.state_dict())
            run.log(record)
            on_log(record)
            if stop:
                break
    except KeyboardInterrupt:
        checkpoint()
        raise
    finally:
        store.close()
    return policy


def train_true_reward(
    cfg: RunConfig,
    run: RunDir | None = None,
    on_log: OnLog | None = None,
    optimise: str = "true_reward",
) -> ControlPolicy:
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
        record = {
            "phase": "baseline" if optimise == "true_reward" else f"ppo_on_{optimise}",
            "iteration": iteration,
            "env_steps": policy.env_steps,
            "true_return": float(rollout.true_rewards.mean() * cfg.env.horizon),
            **stats,
        }
        if iteration % cfg.checkpoint_every == 0 or policy.env_steps >= cfg.env_steps:
            record["eval_true_return"] = policy.evaluate(cfg.eval_episodes)
        if run is not None:
            run.log(record)
        on_log(record)
    return policy


def run_experiment(
    cfg: RunConfig, run: RunDir, on_log: OnLog | None = None, resume: bool = False
) -> dict:
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
        "task": cfg.task,
        "env": cfg.env.id,
        "labels": labels,
        "env_steps": cfg.env_steps,
        "seed": cfg.seed,
        "true_return": true_return,
        "normalised_score": normalised_score(true_return),
        "proxy_return": last.get("proxy_return"),
        "rm_val_acc": last.get("rm_val_acc"),
        "wall_seconds": round(time.time() - started, 2),
    }
    run.write_summary(summary)
    build_report(run.path)
    return summary


def normalised_score(true_return: dict) -> float | None:
    """(RLHF − random) / (true-reward baseline − random): 1.0 is parity with RL on the true reward."""
    if "true_reward_baseline" not in true_return:
        return None
    gap = true_return["true_reward_baseline"] - true_return["random"]
    return None if abs(gap) < 1e-9 else (true_return["rlhf"] - true_return["random"]) / gap
