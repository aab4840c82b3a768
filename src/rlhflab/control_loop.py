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
`reward.refit_growth`; the initial labels come from as many rollouts of the untrained
policy as give every query its own segments (`feedback.initial_rollouts_max` caps
them), and later queries from the segments of the last `feedback.pool_rollouts`
rollouts, drawn without replacement.

Wherever the env has its own reward, it is the gold standard: every log step
reports the true return beside the proxy return r̂ the policy optimises.

`ControlLoop.run()` reads top to bottom: restore → initial feedback → RL iterations
(rollout, r̂, policy update, feedback, refit, measure) → done. Where its workers run (rollout
workers, reward-ensemble shards) is the executor's business (`rlhflab.executor`: in-process, or
a Ray cluster); the loop reads the same on both.
"""

from __future__ import annotations

import json
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from rlhflab.config import RunConfig, selection_reserve
from rlhflab.diagnostics.alarms import AlarmMonitor
from rlhflab.diagnostics.annotators import group_true_returns
from rlhflab.diagnostics.probe import Probe
from rlhflab.diagnostics.report import build_report
from rlhflab.executor import Executor, LocalExecutor, WorkerLost, make_executor
from rlhflab.feedback.clips import make_clip, mark_episode_over
from rlhflab.feedback.people import LabelTimeout, people_hint, wait_for_labels
from rlhflab.feedback.policy_selection import PolicySelection
from rlhflab.feedback.population import make_annotator
from rlhflab.feedback.selection import select_pairs
from rlhflab.feedback.store import FeedbackStore
from rlhflab.policy.control import ControlPolicy
from rlhflab.policy.rollout import Rollout, evaluate_true_return, play_episodes, sample_segments
from rlhflab.reward.aggregation import GroupRewards, groups_of
from rlhflab.reward.background import BackgroundFitter
from rlhflab.reward.model import NonFiniteRewardError, RewardEnsemble
from rlhflab.reward.parallel import ShardedRewardEnsemble
from rlhflab.reward.ratings import Rating, fit_ratings
from rlhflab.reward.reliability import fit_reward
from rlhflab.runs import RunDir
from rlhflab.stats import RunningMeanStd
from rlhflab.types import Comparison, Segment

OnLog = Callable[[dict], None]


def _ignore(record: dict) -> None:
    """The default `on_log`: nothing to show."""


class RunError(RuntimeError):
    """A run that stopped cleanly (with a checkpoint) because something went wrong."""


@dataclass
class LabelSchedule:
    total: int
    initial: int
    t0: float
    env_steps: int

    @classmethod
    def from_config(cls, cfg: RunConfig, rl_start: int = 0) -> LabelSchedule:
        """The run's schedule over its RL env steps: those after `rl_start`."""
        fb = cfg.feedback
        total = fb.labels - selection_reserve(cfg, rl_start)  # the rest choose the policy
        initial = max(2, round(fb.labels * fb.initial_share)) if fb.initial_share > 0 else 0
        span = max(1, cfg.env_steps - rl_start)
        return cls(total, min(initial, total), fb.t0 * span, span)

    def wanted(self, env_steps: int) -> int:
        """Labels that should exist once the policy has taken `env_steps` steps."""
        done = math.log1p(min(env_steps, self.env_steps) / self.t0)
        frac = done / math.log1p(self.env_steps / self.t0)
        return min(self.total, self.initial + round((self.total - self.initial) * frac))


class ControlLoop:
    """Feedback → reward model → policy, for one run directory."""

    def __init__(
        self,
        cfg: RunConfig,
        run: RunDir,
        on_log: OnLog | None = None,
        resume: bool = False,
        executor: Executor | None = None,
    ):
        self.cfg, self.run_dir, self.on_log, self.resume = cfg, run, on_log or _ignore, resume
        torch.set_num_threads(cfg.threads)
        fb, ex = cfg.feedback, cfg.executor
        self.executor = executor or LocalExecutor()
        self.people = fb.annotator.kind == "people"  # judgements arrive at people's pace
        self.policy = ControlPolicy(
            cfg.env,
            cfg.policy,
            cfg.seed,
            render_envs=fb.render_envs if self.people else 0,
            render_stride=fb.clip_stride,
            budget=cfg.env_steps,
            executor=self.executor,
            rollout_workers=ex.rollout_workers,
        )
        obs_dim, space = self.policy.obs_dim, self.policy.action_space
        self.reward_model: RewardEnsemble
        if cfg.reward.aggregation != "pooled":  # a reward per group (reward/aggregation.py)
            self.reward_model = GroupRewards(  # type: ignore[assignment]
                groups_of(fb.population), obs_dim, space, cfg.reward, cfg.seed + 1
            )
        elif ex.reward_shards > 1:
            self.reward_model = ShardedRewardEnsemble(
                obs_dim, space, cfg.reward, cfg.seed + 1, self.executor, ex.reward_shards
            )
        else:
            self.reward_model = RewardEnsemble(obs_dim, space, cfg.reward, cfg.seed + 1)
        self.fitter = None
        if cfg.reward.background:
            self.fitter = BackgroundFitter(
                self.reward_model, self.policy.obs_dim, self.policy.action_space, cfg.seed + 1
            )
        self.probe = Probe(cfg, run, self.policy, self.reward_model)
        self.annotator = make_annotator(fb, cfg.seed + 2)
        self.selection = None  # the checkpoint the annotator prefers (feedback/policy_selection.py)
        if fb.select_policy:
            self.selection = PolicySelection(
                cfg.env, self.annotator, fb.annotator.judge, fb.select_policy
            )
        self.store = FeedbackStore(run.store_url)
        self.store.set_setting("guidelines", fb.guidelines)
        self.rng = np.random.default_rng(cfg.seed + 3)
        self.schedule = LabelSchedule.from_config(cfg)
        self.recent: deque[Rollout] = deque(maxlen=fb.pool_rollouts)  # segments come from these
        self.known: list[Comparison] = []  # judged comparisons, read from the store incrementally
        self.relabels = self.store.setting("relabels", "0")
        self.iteration, self.labels_at_fit = 0, 0
        self.rm_metrics: dict[str, float] = {}
        self.reward_scale = (0.0, 1.0)  # r̂'s mean and std at the last refit
        self.rl_start: int | None = None  # env steps when RL began (after the initial labels)
        self.done = False

    # -- the loop -------------------------------------------------------------------------
    def run(self) -> ControlPolicy:
        """Train a policy from preferences; returns the trained policy."""
        self.restore()
        if self.done:
            self.store.close()
            return self.policy
        monitor = AlarmMonitor(
            self.cfg.alarms,
            [m for m in self.run_dir.metrics() if m.get("phase") == "rlhf"],
        )
        self.store.reopen_withdrawn()  # a stopped run withdrew them; resumed, they count again
        self.answer_pending()  # a crash may have left queries unanswered
        self.store.set_run_state("running")
        try:
            if self.rl_start is None:
                self.gather_initial_feedback()
                self.fit_reward_model()
                self.rl_start = self.policy.env_steps
                self.schedule = LabelSchedule.from_config(self.cfg, self.rl_start)
                self.probe.freeze_reference()  # π₀: the weights and statistics RL starts from
                self.probe.save_samples(0, clip=True)
                self.run_dir.save_policy(0, self.policy.state_dict())  # π₀ of Goodhart curves
            stopped = False
            while self.policy.env_steps < self.cfg.env_steps and not stopped:
                self.keep_pace()
                record = self.rl_iteration()
                record["alarms"] = monitor.check(record)
                stopped = self.end_of_iteration(record)
            if self.people and self.cfg.feedback.pace and not stopped:
                self.gather_last_labels()
        except KeyboardInterrupt:
            self.checkpoint()
            raise
        finally:  # unanswered queries withdrawn; the app says the run is over (until a resume)
            if self.fitter is not None:
                self.fitter.close()
            self.store.finish_run()
            self.store.close()
        return self.policy

    def gather_initial_feedback(self) -> None:
        """Before RL: the initial share of labels, on the untrained policy's behaviour, from
        enough rollouts that the queries need not share segments."""
        want = self.schedule.initial - self.store.count_queries()
        if want > 0:
            fb = self.cfg.feedback
            rollout_steps = self.cfg.policy.n_steps * self.cfg.env.num_envs
            # at most a tenth of the env-step budget goes to the untrained policy's rollouts
            cap = min(fb.initial_rollouts_max, max(1, self.cfg.env_steps // (10 * rollout_steps)))
            self.recent = deque(maxlen=max(cap, fb.pool_rollouts))
            while len(self.recent) < cap and self.windows() < 2 * 2 * want:
                self.recent.append(self.policy.collect())
            self.ask(want)
            self.recent = deque(self.recent, maxlen=fb.pool_rollouts)
        if self.people:
            self.wait_for_people()

    def gather_last_labels(self) -> None:
        """People: after the last policy update, ask what the schedule still lacks, wait for
        every configured label, refit, and only then mark the run done."""
        self.ask(self.schedule.total - self.store.count_queries())
        overlap = self.cfg.feedback.overlap
        self.wait_for(min(self.schedule.total, self.store.count_queries() * overlap), "every label")
        self.fit_reward_model()
        self.checkpoint(done=True)

    def rl_iteration(self) -> dict:
        """One policy phase on r̂, then the feedback the schedule wants, then a refit."""
        started = time.perf_counter()
        try:
            rollout = self.policy.collect()
        except WorkerLost as exc:  # the iteration is lost; everything before it is saved
            self.checkpoint()
            raise RunError(
                f"{exc} at env step {self.policy.env_steps} (iteration {self.iteration + 1}); "
                f"checkpoint saved in {self.run_dir.checkpoint_path}: `rlhflab run --resume "
                f"{self.run_dir.path}` continues on fresh workers"
            ) from None
        r_hat = self.r_hat(rollout)
        stats = self.policy.update(rollout, self.normalise(r_hat), normalized=self.fixed_scale)
        self.recent.append(rollout)
        missing = self.labels_wanted() - self.store.count_queries()
        if self.people:  # keep a bounded queue of unanswered queries
            missing = min(missing, self.cfg.feedback.max_pending - self.store.count_unanswered())
        if missing > 0:
            self.ask(missing)
        self.fit_reward_model(wait=False)  # on whatever labels have arrived
        self.iteration += 1
        horizon = self.cfg.env.horizon
        return {
            "phase": "rlhf",
            "iteration": self.iteration,
            "env_steps": self.policy.env_steps,
            "labels": self.store.count_judgements(),
            "true_return": float(rollout.true_rewards.mean() * horizon),
            "proxy_return": float(r_hat.mean() * horizon),
            **self.rm_metrics,
            **stats,
            **self.probe.measure(rollout, self.iteration),
            "steps_per_second": rollout.true_rewards.size / (time.perf_counter() - started),
        }

    def end_of_iteration(self, record: dict) -> bool:
        """Evaluate, save and checkpoint when due; log. True when the run must stop."""
        finished = self.policy.env_steps >= self.cfg.env_steps
        stop = bool(record["alarms"]) and self.cfg.alarms.stop
        if self.iteration % self.cfg.checkpoint_every == 0 or finished or stop:
            record["eval_true_return"] = self.policy.evaluate(self.cfg.eval_episodes)
            self.probe.save_samples(self.iteration, clip=stop or finished)
            self.run_dir.save_policy(self.iteration, self.policy.state_dict())
            if self.selection is not None:
                self.select_policy(record, last=finished or stop)
            people_wait = self.people and self.cfg.feedback.pace  # done after the last labels
            self.checkpoint(done=finished and not people_wait)
        self.run_dir.log(record)
        self.on_log(record)
        return stop

    def select_policy(self, record: dict, last: bool) -> None:
        """Offer this checkpoint to the annotator against the kept policy; at the end of the
        run, continue with the kept one (its snapshot) and log its true return."""
        assert self.selection is not None
        self.selection.offer(self.iteration, self.policy.act_fn())
        record["selected_iteration"] = self.selection.kept
        record["selection_labels"] = self.selection.judgements
        kept = self.selection.kept
        if last and kept is not None and kept != self.iteration:
            snapshot = self.run_dir.policy_snapshots()[kept]
            spent = self.policy.env_steps  # the steps were taken: the kept weights, not its count
            self.policy.load_state_dict(torch.load(snapshot, weights_only=False))
            self.policy.env_steps = spent
            record["last_policy_eval_true_return"] = record["eval_true_return"]
            record["eval_true_return"] = self.policy.evaluate(self.cfg.eval_episodes)

    # -- feedback -------------------------------------------------------------------------
    def labels_wanted(self) -> int:
        """The schedule's labels by now; its time T counts from the start of RL (the initial
        rollouts of π₀ are the pre-RL share's, not a head start on the decaying rate)."""
        return self.schedule.wanted(self.policy.env_steps - (self.rl_start or 0))

    def windows(self) -> int:
        length = self.cfg.feedback.segment_length
        return sum(len(r.segment_windows(length)) for r in self.recent)

    def ask(self, n: int) -> None:
        """Select n queries from recent segments and store them (a share of them as ratings of
        one clip, `feedback.rating_share`); a synthetic annotator answers at once."""
        fb = self.cfg.feedback
        rated = int(self.rng.binomial(n, fb.rating_share)) if fb.rating_share else 0
        if rated:
            self.ask_ratings(rated)
            n -= rated
        if n <= 0:
            return
        selection = fb.selection if self.reward_model.fits else "random"
        k = 1 if selection == "random" else fb.candidates
        segments = sample_segments(
            list(self.recent), 2 * n * k, fb.segment_length, self.rng, judge=fb.annotator.judge
        )
        if len(segments) < 2:  # the policy spends its time after episode ends: ask later
            return
        pairs = select_pairs(
            segments,
            n,
            selection,
            self.rng,
            fb.candidates,
            self.reward_model.disagreement,
            self.reward_model.member_preferences,
        )
        clips = None
        if pairs and pairs[0][0].frames is not None:  # people see clips; ended steps marked
            clips = [tuple(self.clip(s) for s in pair) for pair in pairs]
        overlap = fb.overlap if self.people else 1
        ids = self.store.add_queries(pairs, clips, overlap=overlap, parts=fb.parts)
        if not self.people:
            items = [(q, a, b) for q, (a, b) in zip(ids, pairs)]
            self.annotator.label(self.store, items, fb.parts)

    def ask_ratings(self, n: int) -> None:
        """n `clip_rating` queries, one random recent segment each (no active selection)."""
        fb = self.cfg.feedback
        segments = sample_segments(
            list(self.recent), n, fb.segment_length, self.rng, judge=fb.annotator.judge
        )
        clips = (
            [self.clip(g) for g in segments]
            if segments[:1] and segments[0].frames is not None
            else None
        )
        ids = self.store.add_rating_queries(segments, clips, fb.overlap if self.people else 1)
        if not self.people:
            self.annotator.label_ratings(self.store, list(zip(ids, segments)))

    def clip(self, segment: Segment):
        frames = mark_episode_over(segment.frames, segment.absorbing_mask)
        return make_clip(frames, self.cfg.feedback.clip_fps)

    def answer_pending(self) -> None:
        if not self.people:
            pending = self.store.pending_queries()
            items = [(int(q.id or 0), q.left, q.right) for q in pending]
            self.annotator.label(self.store, items, self.cfg.feedback.parts)
            self.annotator.label_ratings(self.store, self.store.pending_ratings())

    def sync(self) -> list[Comparison]:
        """Every judged comparison: read once, then incrementally; again after a relabel."""
        relabels = self.store.setting("relabels", "0")
        if relabels != self.relabels:  # someone corrected a label: read everything again
            self.relabels = relabels
            self.known.clear()
            self.labels_at_fit = 0  # and refit on the corrected labels
        after = self.known[-1].judgement_id if self.known else 0
        self.known.extend(self.store.comparisons(after=after))
        return self.known

    def wait_for_people(self) -> None:
        """Before RL: the labels required (75% of the initial share, as rl-teacher)."""
        need = self.cfg.feedback.min_labels_before_rl
        if need is None:
            need = round(0.75 * self.schedule.initial)
        self.wait_for(need, "required before RL")

    def keep_pace(self) -> None:
        """People: RL pauses while the judgements lag the schedule by more than
        `feedback.pacing_slack` labels (`feedback.pace`)."""
        fb = self.cfg.feedback
        if self.people and fb.pace:
            wanted = min(self.labels_wanted(), self.store.count_queries()) * fb.overlap
            self.wait_for(wanted - fb.pacing_slack, "to keep pace")

    def wait_for(self, need: int, why: str) -> None:
        """Block (visibly, at most `feedback.wait_timeout`) until `need` judgements exist."""
        if self.store.count_judgements() >= need:
            return

        def show(have: int, need: int) -> None:
            steps = self.policy.env_steps
            self.on_log(
                {"phase": "waiting", "env_steps": steps, "labels": have, "waiting_for": need}
            )

        self.store.set_run_state("waiting")
        try:
            wait_for_labels(self.store, need, self.cfg.feedback.wait_timeout, show)
        except LabelTimeout as exc:
            if self.iteration:  # before RL a resumed run simply waits again
                self.checkpoint()
            hint = people_hint(self.run_dir.path)
            raise RunError(f"{exc} ({why}). {hint}") from None
        self.store.set_run_state("running")
        self.fit_reward_model()

    # -- reward model ---------------------------------------------------------------------
    def fit_reward_model(self, wait: bool = True) -> None:
        """Refit once the labels have grown by `reward.refit_growth` (or never fit yet).
        `reward.background`: the fit runs in the worker process; unless `wait`, the loop
        goes on and the fit is collected at the next call (the next policy iteration)."""
        self.collect_fit()
        ratings = self.ratings()
        labels = len(self.sync()) + len(ratings)
        grown = labels > self.labels_at_fit * (1 + self.cfg.reward.refit_growth)
        if grown or (labels and not self.reward_model.fits):
            self.labels_at_fit = labels
            if ratings:  # ratings and comparisons, one joint fit (reward/ratings.py)
                weight = self.cfg.reward.rating_weight
                metrics = fit_ratings(self.reward_model, ratings, self.known, weight)
                self.store.set_setting("rating_calibration", json.dumps(metrics.pop("calibration")))
                self.refitted(metrics)
                return
            estimate = bool(self.people or self.cfg.feedback.population)  # per-annotator β
            if isinstance(self.reward_model, GroupRewards):
                self.refitted(*self.reward_model.fit(self.known, estimate))
                return
            if self.fitter is None:
                self.refitted(*fit_reward(self.reward_model, self.known, self.cfg.reward, estimate))
                return
            self.fitter.submit(self.known, estimate)
            if wait:
                self.collect_fit()

    def ratings(self) -> list[Rating]:
        """Every rating of one clip (`feedback.rating_share`), as the rating loss reads them."""
        if not self.cfg.feedback.rating_share:
            return []
        return [Rating(g, y, who) for _, g, y, who in self.store.ratings()]

    def collect_fit(self) -> None:
        """Wait for the background fit, if one runs, and take its reward model."""
        if self.fitter is not None and (metrics := self.fitter.collect()) is not None:
            self.refitted(metrics, metrics.pop("annotator_estimates", []))

    def refitted(self, metrics: dict, annotators: list | None = None) -> None:
        self.rm_metrics = metrics
        if annotators:  # per-annotator β and flags, for the report and /admin
            rows = [a.to_dict() for a in annotators]
            self.store.set_setting("annotator_estimates", json.dumps(rows))
        self.rescale()

    @property
    def fixed_scale(self) -> bool:
        return self.cfg.reward.normalise == "refit"

    def rescale(self) -> None:
        """A refit changes r̂'s offset and scale. `reward.normalise=refit`: standardise the new
        r̂ by its mean and std over the steps of the recent rollouts, fixed until the next
        refit, so the policy optimises one stationary reward between refits; `running`: the
        policy's running statistics, restarted."""
        if not self.fixed_scale:
            self.policy.reward_rms = RunningMeanStd(())
            return
        if not self.recent:  # resumed before any rollout: collect one to measure r̂ on
            self.recent.append(self.policy.collect())
        r = np.concatenate([self.r_hat(rollout).ravel() for rollout in self.recent])
        self.reward_scale = (float(r.mean()), float(r.std()) + 1e-8)

    def r_hat(self, rollout: Rollout) -> np.ndarray:
        """r̂ of every step of the rollout; a non-finite r̂ stops the run with a checkpoint."""
        try:
            return self.reward_model.predict(rollout.raw_obs, rollout.actions, rollout.absorbing)
        except NonFiniteRewardError as exc:
            self.checkpoint()
            raise RunError(
                f"{exc} at env step {self.policy.env_steps} (iteration {self.iteration}); "
                f"checkpoint saved in {self.run_dir.checkpoint_path}"
            ) from None

    def normalise(self, r_hat: np.ndarray) -> np.ndarray:
        if not self.fixed_scale or not self.cfg.policy.normalize_rewards:
            return r_hat
        mean, std = self.reward_scale
        return ((r_hat - mean) / std).astype(np.float32)

    # -- checkpoints ----------------------------------------------------------------------
    def checkpoint(self, done: bool = False) -> None:
        self.collect_fit()  # the checkpoint holds the reward model of its labels_at_fit
        self.run_dir.save_checkpoint(
            {
                "policy": self.policy.state_dict(),
                "reward_model": self.reward_model.state_dict(),
                "annotator": self.annotator.state_dict(),
                "rng": self.rng.bit_generator.state,
                "iteration": self.iteration,
                "labels_at_fit": self.labels_at_fit,
                "rm_metrics": self.rm_metrics,
                "reward_scale": self.reward_scale,
                "rl_start": self.rl_start,
                "recent": [] if self.people else list(self.recent),  # people: frames too big
                "torch_rng": torch.get_rng_state(),
                "selection": self.selection and self.selection.state_dict(),
                "done": done,
            }
        )

    def restore(self) -> None:
        """Continue from the last checkpoint (with --resume); metrics logged after it are
        dropped, to be logged again."""
        if not self.resume or (ckpt := self.run_dir.load_checkpoint()) is None:
            return
        self.policy.load_state_dict(ckpt["policy"])
        self.reward_model.load_state_dict(ckpt["reward_model"])
        self.annotator.load_state_dict(ckpt["annotator"])
        self.rng.bit_generator.state = ckpt["rng"]
        self.iteration = ckpt["iteration"]
        self.labels_at_fit, self.rm_metrics = ckpt["labels_at_fit"], ckpt["rm_metrics"]
        self.reward_scale = tuple(ckpt["reward_scale"])
        self.rl_start = ckpt["rl_start"]
        self.schedule = LabelSchedule.from_config(self.cfg, self.rl_start or 0)
        self.recent.extend(ckpt["recent"])
        torch.set_rng_state(ckpt["torch_rng"])
        if self.selection is not None and ckpt.get("selection"):
            self.selection.load_state_dict(ckpt["selection"])
        if self.rl_start is not None:
            self.probe.freeze_reference(self.run_dir.policy_snapshots().get(0))
        self.run_dir.drop_metrics(
            lambda r: r.get("phase") == "rlhf" and r.get("iteration", 0) > self.iteration
        )
        self.done = bool(ckpt.get("done"))


def run_rlhf(
    cfg: RunConfig,
    run: RunDir,
    on_log: OnLog | None = None,
    resume: bool = False,
    executor: Executor | None = None,
) -> ControlPolicy:
    """Train a policy from preferences; returns the trained policy."""
    return ControlLoop(cfg, run, on_log, resume, executor).run()


def train_true_reward(
    cfg: RunConfig,
    run: RunDir | None = None,
    on_log: OnLog | None = None,
    optimise: str = "true_reward",
    policy: ControlPolicy | None = None,
) -> ControlPolicy:
    """The baseline: the same PPO on the env's true reward, with the same env-step budget.

    `optimise="reward"` trains on the env's returned reward instead — for a misspecified env,
    the hackable proxy — while the log still reports the true return. A caller that scores
    the policy while it trains (at checkpoints, through `on_log`) passes a fresh `policy` in."""
    on_log = on_log or _ignore
    torch.set_num_threads(cfg.threads)
    policy = policy or ControlPolicy(cfg.env, cfg.policy, cfg.seed, budget=cfg.env_steps)
    phase = "baseline" if optimise == "true_reward" else f"ppo_on_{optimise}"
    iteration = 0
    while policy.env_steps < cfg.env_steps:
        rollout = policy.collect()
        stats = policy.update(rollout, rollout.rewards(optimise))
        iteration += 1
        record = {
            "phase": phase,
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
    cfg: RunConfig,
    run: RunDir,
    on_log: OnLog | None = None,
    resume: bool = False,
    executor: Executor | None = None,
) -> dict:
    """RLHF, the true-reward baseline and a random policy, compared on the true return.
    Without an `executor`, the one `cfg.executor` asks for, closed at the end."""
    started = time.time()
    own = executor is None
    executor = executor or make_executor(cfg.executor)
    if not resume:
        run.write_config(cfg)
    try:
        policy = run_rlhf(cfg, run, on_log, resume=resume, executor=executor)
    finally:
        if own:
            executor.close()
    true_return = {"rlhf": policy.evaluate(cfg.eval_episodes)}
    groups = {}
    if len({m.group for m in cfg.feedback.population}) > 1:  # what each group gets
        with torch.no_grad():
            episodes = play_episodes(cfg.env, cfg.eval_episodes, policy.act_fn(True))
        groups = group_true_returns(episodes, cfg.feedback.population)
    policy.close()
    if cfg.baseline:
        baseline = train_true_reward(cfg, run, on_log)
        true_return["true_reward_baseline"] = baseline.evaluate(cfg.eval_episodes)
        baseline.close()
    true_return["random"] = evaluate_true_return(cfg.env, cfg.eval_episodes)
    store = FeedbackStore(run.store_url)
    labels = store.count_judgements()
    store.close()
    last: dict = next((m for m in reversed(run.metrics()) if m.get("phase") == "rlhf"), {})
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
        **({"group_true_return": groups} if groups else {}),
        "wall_seconds": round(time.time() - started, 2),
    }
    run.write_summary(summary)
    build_report(run.path)
    return summary


def normalised_score(true_return: dict) -> float | None:
    """(RLHF − random) / (true-reward baseline − random): 1.0 is parity with RL on the
    true reward."""
    if "true_reward_baseline" not in true_return:
        return None
    gap = true_return["true_reward_baseline"] - true_return["random"]
    return None if abs(gap) < 1e-9 else (true_return["rlhf"] - true_return["random"]) / gap
