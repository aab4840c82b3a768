"""The scripted backflip judge (rlhflab/HopperBackflip-v0): its direction, its preferences, and
the flip detector on exact, synthetic rotations set through MuJoCo's state."""

import copy
import math

import gymnasium as gym
import numpy as np
import pytest

from rlhflab.config import AnnotatorConfig
from rlhflab.diagnostics.probe import counterfactual_rewards
from rlhflab.envs.backflip import (
    LANDING_STEPS,
    PROGRESS_DIMS,
    FlipTracker,
    score_flip,
    score_flips,
    upright,
)
from rlhflab.envs.wrappers import make_env
from rlhflab.feedback.synthetic import SyntheticAnnotator
from rlhflab.types import Judgement, Segment

TURN = 2 * math.pi
STANDING = 1.25  # the torso's height at reset


@pytest.fixture(scope="module")
def env():
    env = gym.make("rlhflab/HopperBackflip-v0")
    env.reset(seed=0)
    yield env
    env.close()


def observed(env, angles, heights=STANDING) -> np.ndarray:
    """[T, 1, D] observations of the torso put at each (angle, height) through set_state."""
    base = env.unwrapped
    heights = np.broadcast_to(heights, np.shape(angles))
    out = []
    for angle, height in zip(angles, heights):
        qpos = base.init_qpos.copy()
        qpos[1], qpos[2] = height, angle
        base.set_state(qpos, base.init_qvel.copy())
        out.append(base._get_obs())
    return np.stack(out)[:, None]


def backflip(steps=60, landing=LANDING_STEPS, end=-TURN) -> np.ndarray:
    """Torso angles: one backward turn in `steps`, then held at `end` for `landing` steps."""
    return np.concatenate([np.linspace(0.0, end, steps), np.full(landing, end)])


def test_backward_is_negative_angle(env):
    """With θ < 0 the top of the torso is behind it (−x); the hopper faces +x (its toes)."""
    base = env.unwrapped
    observed(env, [-0.3])
    torso = base.data.body("torso")
    top = torso.xpos + torso.xmat.reshape(3, 3) @ np.array([0.0, 0.0, 0.2])
    assert top[0] < torso.xpos[0] - 0.05
    ankle = base.data.joint("foot_joint").xanchor
    assert base.data.geom("foot_geom").xpos[0] > ankle[0] + 0.05  # the foot points to +x


def test_detector_counts_an_exact_rotation(env):
    score = score_flips(observed(env, backflip()))[0]
    assert score.turns == pytest.approx(1.0)
    assert score.completed
    partial = score_flips(observed(env, backflip(end=-1.25 * TURN, landing=0)))[0]
    assert partial.turns == pytest.approx(1.25) and not partial.completed
    forward = score_flips(observed(env, backflip(end=TURN)))[0]
    assert forward.turns == pytest.approx(0.0) and not forward.completed
    double = score_flip(backflip(end=-2 * TURN, steps=120), np.full(140, STANDING))
    assert double.turns == pytest.approx(2.0) and double.completed


def test_landing_upright_is_required(env):
    short = score_flips(observed(env, backflip(landing=LANDING_STEPS - 2)))[0]
    assert short.turns == pytest.approx(1.0) and not short.completed
    on_its_back = score_flips(observed(env, backflip(end=-1.25 * TURN)))[0]
    assert not on_its_back.completed
    heights = np.r_[np.full(60, STANDING), np.full(LANDING_STEPS, 0.6)]  # upright but fallen low
    assert not score_flips(observed(env, backflip(), heights))[0].completed
    interrupted = np.r_[backflip(landing=10), np.full(5, -1.2 * TURN), np.full(10, -TURN)]
    assert not score_flip(interrupted, np.full(len(interrupted), STANDING)).completed


def judged(angles, heights=STANDING) -> np.ndarray:
    """The judge's per-step rewards along a torso trajectory."""
    heights = np.broadcast_to(heights, np.shape(angles))
    tracker = FlipTracker.at(float(angles[0]))
    return np.array([tracker.update(float(a), float(h)) for a, h in zip(angles, heights)])


def segment(rewards) -> Segment:
    k = len(rewards)
    return Segment(np.zeros((k, 11), np.float32), np.zeros((k, 3), np.float32), rewards)


def test_judge_prefers_rotation_then_landing():
    annotator = SyntheticAnnotator(AnnotatorConfig(temperature=0, error_rate=0), seed=0)
    standing = judged(np.zeros(80))
    rotating = judged(backflip(landing=0, steps=80))
    assert annotator.judge(segment(rotating), segment(standing)) == Judgement.LEFT
    assert standing.sum() == 0.0
    assert rotating.sum() == pytest.approx(10.0 + 0.5)  # the turn's last step is upright
    landed = judged(backflip(steps=60))
    assert landed.sum() == pytest.approx(10.0 + 0.5 * (LANDING_STEPS + 1))
    assert annotator.judge(segment(rotating[-60:]), segment(landed[-60:])) == Judgement.RIGHT
    half = judged(backflip(landing=0, steps=80, end=-TURN / 2))
    assert annotator.judge(segment(half), segment(rotating)) == Judgement.RIGHT
    rocking = judged(np.r_[np.linspace(0, -3, 20), np.linspace(-3, 0, 20), np.linspace(0, -3, 20)])
    assert rocking.sum() == pytest.approx(10 * 3 / TURN)  # the same rotation pays once
    on_the_ground = judged(backflip(landing=0), heights=0.2)
    assert on_the_ground.sum() == 0.0  # rolling over on the ground earns nothing
    angles = backflip(landing=0, steps=120, end=-2 * TURN)
    spinning = judged(angles)
    upright_after_a_turn = sum(upright(a, STANDING) for a in angles if -a >= TURN)
    assert spinning.sum() == pytest.approx(10.0 + 0.5 * upright_after_a_turn)  # one turn pays


def test_env_reports_the_judge_through_physics(env):
    """A hopper thrown up spinning backwards earns the rotation; one left standing does not."""
    base = env.unwrapped

    def episode(spin: float) -> tuple[float, dict]:
        env.reset(seed=0)
        qpos, qvel = base.init_qpos.copy(), base.init_qvel.copy()
        qpos[1], qvel[2] = (3.0, spin) if spin else (qpos[1], 0.0)
        base.set_state(qpos, qvel)
        base.reward_state = FlipTracker.at(float(qpos[2]))
        total = 0.0
        for _ in range(60):
            *_, info = env.step(np.zeros(3))
            assert info["true_reward"] == info["backflip_reward"]
            total += info["backflip_reward"]
        return total, info

    standing, _ = episode(0.0)
    spun, info = episode(-15.0)
    assert spun > 9.0 > 0.5 > standing
    assert info["backflip_turns"] > 1.0


def test_counterfactual_steps_leave_the_judge_alone():
    """The probe's counterfactual rewards step the simulator and restore it: the judge too."""
    env = make_env("rlhflab/HopperBackflip-v0", 100)
    env.reset(seed=0)
    for _ in range(30):
        env.step(np.ones(3))
    before = copy.deepcopy(env.unwrapped.reward_state)
    counterfactual_rewards(env, np.random.default_rng(0).uniform(-1, 1, (4, 3)))
    assert env.unwrapped.reward_state == before
    env.close()


def test_the_judge_counts_rotation_only_above_its_lifted_height():
    """`env.kwargs.lifted_height` sets how high the torso must be for rotation to pay."""
    quarter = [-(math.pi / 2) * i / 10 for i in range(11)]  # a quarter turn backwards

    def paid(lifted_height: float, height: float) -> float:
        tracker = FlipTracker.at(0.0, lifted_height)
        return sum(tracker.update(a, height) for a in quarter[1:])

    assert paid(0.5, 0.8) == pytest.approx(2.5)  # 10 per turn, a quarter turn at 0.8 m
    assert paid(1.0, 0.8) == 0.0  # the same motion, too low for this judge
    assert paid(1.0, 1.2) == pytest.approx(2.5)
    env = gym.make("rlhflab/HopperBackflip-v0", lifted_height=1.0)
    env.reset(seed=0)
    assert env.unwrapped.reward_state.lifted_height == 1.0


def test_a_takeoff_weight_pays_backward_rotation_made_above_standing_height():
    quarter = [-(math.pi / 2) * i / 10 for i in range(11)]

    def paid(height: float) -> float:
        tracker = FlipTracker.at(0.0, takeoff_weight=40.0)
        return sum(tracker.update(a, height) for a in quarter[1:])

    assert paid(1.0) == pytest.approx(2.5)  # rotation only: 10 per turn
    assert paid(1.45) == pytest.approx(2.5 + 40.0 * 0.2 * 0.25)  # + weight · metres · turns


def test_observe_progress_appends_the_judges_memory():
    """`env.kwargs.observe_progress`: (min(B, 2), A, C) ride at the end of the observation, so a
    reward model of the observation can see what the judge's history-dependent reward paid."""
    env = gym.make("rlhflab/HopperBackflip-v0", observe_progress=True)
    obs, _ = env.reset(seed=0)
    assert obs.shape == env.observation_space.shape == (11 + PROGRESS_DIMS,)
    assert np.all(obs[-PROGRESS_DIMS:] == 0.0)
    rng = np.random.default_rng(0)
    for _ in range(40):
        obs, *_ = env.step(rng.uniform(-1, 1, 3))
    tracker = env.unwrapped.reward_state
    assert tracker.turns > 0.01  # the hopper has moved: the memory is not trivially zero
    expected = [min(tracker.turns, 2.0), tracker.lifted, tracker.lifted_best]
    assert obs[-PROGRESS_DIMS:] == pytest.approx(expected)
    assert score_flips(obs[None, None])[0].turns == pytest.approx(0.0)  # columns 0, 1 unchanged
    env.close()


def test_the_potential_judge_pays_net_rotation_once():
    """`env.kwargs.potential`: r_t = 10·(Φ_t − Φ_{t−1}) + 0.5·[ρ_t ≥ 0.9 and upright],
    Φ = min(ρ, 1): a segment's rotation reward is its end's rotation minus its start's, on the
    ground too."""

    def paid(angles, heights=STANDING) -> np.ndarray:
        heights = np.broadcast_to(heights, np.shape(angles))
        tracker = FlipTracker.at(float(angles[0]), potential=True)
        return np.array([tracker.update(float(a), float(h)) for a, h in zip(angles, heights)])

    rocking = np.r_[np.linspace(0, -3, 20), np.linspace(-3, 0, 20)]
    assert paid(rocking).sum() == pytest.approx(0.0, abs=1e-9)  # back and forth nets nothing
    fall = paid(np.linspace(0, -0.6 * TURN, 30), heights=0.2)
    assert fall.sum() == pytest.approx(6.0)  # rotation on the ground counts
    flip = paid(backflip(steps=60))
    upright_steps = sum(upright(a, STANDING) and -a / TURN >= 0.9 for a in backflip(steps=60))
    assert flip.sum() == pytest.approx(10.0 + 0.5 * upright_steps)
    tracker = FlipTracker.at(0.0, potential=True)
    for a in backflip(steps=60):
        tracker.update(float(a), STANDING)
    assert tracker.completed  # the flip detector is the same for every judge
