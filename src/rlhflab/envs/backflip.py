"""The Hopper backflip of Christiano et al. 2017, "Deep reinforcement learning from human
preferences" (§3.2, novel behaviours), with a scripted judge in place of the person.

The paper taught Hopper to do backflips, landing upright after each, from 900 queries
answered by a person in under an hour. Here `rlhflab/HopperBackflip-v0` is Hopper-v5
that never terminates (a flip passes through "unhealthy" poses) and reports the judge's
per-step reward in `info["backflip_reward"]`, which is also the gold `info["true_reward"]`.
Its returned reward stays Hopper's own (hopping forward), reported as channel `reward`.

Let θ_t be the torso's hinge angle (qpos[2], unwrapped by MuJoCo; decreasing θ rotates the
torso backwards, its top towards −x, away from where the hopper faces) and z_t the torso
height (qpos[1], 1.25 standing). The judge tracks

    B_t = max_{s ≤ t} (θ_0 − θ_s) / 2π                    backward rotation reached, in turns
    A_t = Σ_{s ≤ t} [z_s > 0.5] · (θ_{s−1} − θ_s) / 2π     … counting only steps with the
    C_t = max_{s ≤ t} A_s                                    torso off the ground
    upright_t = |wrap(θ_t)| < 0.4 rad  and  z_t > 1.0

and pays, per step,

    r_t = 10 · (min(C_t, 1) − min(C_{t−1}, 1))  +  0.5 · [B_t ≥ 1 and upright_t].

A segment's return (what `SyntheticAnnotator` compares, Boltzmann-rationally) is thus ten
per turn of new backward rotation made with the torso off the ground, up to one full
turn — rocking back and forth earns nothing twice, and flopping or spinning on the ground
earns nothing (a random policy flops over by 0.2–0.8 turns) — plus 0.5 per step spent
upright after a full backward turn: the judge prefers more completed backward rotation,
and landing upright after it. A 20-step landing is worth as much as the flip itself.

Two env keywords vary the judge (docs/backflip.md): `lifted_height` (0.5 above) and
`takeoff_weight` w, which adds w · max(0, z_t − 1.25) · max(0, θ_{t−1} − θ_t)/2π per step
until the first full turn: backward rotation paid in proportion to height above standing.
`observe_progress` appends the judge's memory to the observation: (min(B_t, 2), A_t, C_t).
The judge's reward depends on the episode's history (through the running maxima B and C),
so a reward model r̂(o) of the plain observation cannot represent it: lying on the back
after a fall, or rocking, looks the same whether the rotation was paid already or not.
With the memory in the state, r_t is a function of (o_t, o_{t+1}) again — the standard
cure for a non-Markovian reward, state augmentation (Icarte et al. 2018, reward machines;
Early et al. 2022, non-Markovian reward modelling) — and the policy sees it too.

An episode completed a flip when B reaches one turn and the hopper is then upright for
`LANDING_STEPS` = 20 consecutive steps (`FlipTracker.completed`, `score_flips`): the
verification's criterion, on the plain rotation B.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from gymnasium.envs.mujoco.hopper_v5 import HopperEnv
from gymnasium.spaces import Box

ROTATION_WEIGHT = 10.0  # reward per turn of new backward rotation (up to one turn)
LANDING_WEIGHT = 0.5  # reward per upright step after a completed turn
LIFTED_HEIGHT = 0.5  # torso height above which rotation earns reward (lying: below 0.3)
UPRIGHT_ANGLE = 0.4  # rad: |torso angle mod 2π| below this is upright …
UPRIGHT_HEIGHT = 1.0  # … with the torso at least this high (standing: 1.25)
STANDING_HEIGHT = 1.25  # torso height of the hopper standing still
LANDING_STEPS = 20  # consecutive upright steps after a turn that complete a flip
HEIGHT, ANGLE = 0, 1  # Hopper-v5 observation columns (x excluded): qpos[1], qpos[2]
PROGRESS_DIMS = 3  # observe_progress: (min(B_t, 2), A_t, C_t) appended to the observation


def upright(angle: float, height: float) -> bool:
    """The torso points up (within UPRIGHT_ANGLE, any number of turns) and stands high."""
    wrapped = (angle + math.pi) % (2 * math.pi) - math.pi
    return abs(wrapped) < UPRIGHT_ANGLE and height > UPRIGHT_HEIGHT


@dataclass
class FlipTracker:
    """One episode's backward rotation so far, and whether it made a flip."""

    start: float = 0.0  # θ_0, the torso angle at reset
    last: float = 0.0  # θ_{t−1}
    turns: float = 0.0  # B_t: the most backward rotation reached, in turns
    lifted: float = 0.0  # A_t: backward rotation with the torso off the ground, in turns
    lifted_best: float = 0.0  # C_t: the most of it reached
    upright_run: int = 0  # consecutive upright steps since the turn was completed
    completed: bool = False  # a turn, then LANDING_STEPS upright steps in a row
    lifted_height: float = LIFTED_HEIGHT  # the judge's "off the ground"
    takeoff_weight: float = 0.0  # reward per turn·metre of backward rotation above standing
    potential: bool = False  # the Markov judge: rotation paid as a potential difference

    @classmethod
    def at(
        cls,
        angle: float,
        lifted_height: float = LIFTED_HEIGHT,
        takeoff_weight: float = 0.0,
        potential: bool = False,
    ) -> FlipTracker:
        """A new episode whose torso starts at `angle`."""
        return cls(
            angle,
            angle,
            lifted_height=lifted_height,
            takeoff_weight=takeoff_weight,
            potential=potential,
        )

    def update(self, angle: float, height: float) -> float:
        """Take the torso's new state; returns the judge's reward r_t for the step."""
        if self.potential:
            return self._update_potential(angle, height)
        before = min(self.lifted_best, 1.0)
        backwards = (self.last - angle) / (2 * math.pi)
        if height > self.lifted_height:
            self.lifted += backwards
        takeoff = max(0.0, height - STANDING_HEIGHT) * max(0.0, backwards) * (self.turns < 1.0)
        self.last = angle
        self.lifted_best = max(self.lifted_best, self.lifted)
        landed = self._detect(angle, height)
        rotation = min(self.lifted_best, 1.0) - before
        return ROTATION_WEIGHT * rotation + LANDING_WEIGHT * landed + self.takeoff_weight * takeoff

    def _detect(self, angle: float, height: float) -> bool:
        """The flip detector, the same for every judge: B_t, the upright run after a turn,
        and `completed`; returns whether this step is upright after a turn."""
        self.turns = max(self.turns, (self.start - angle) / (2 * math.pi))
        landed = self.turns >= 1.0 and upright(angle, height)
        self.upright_run = self.upright_run + 1 if landed else 0
        self.completed |= self.upright_run >= LANDING_STEPS
        return landed

    def _update_potential(self, angle: float, height: float) -> float:
        """The Markov judge: r_t = 10 · (Φ_t − Φ_{t−1}) + 0.5 · [ρ_t ≥ 0.9 and upright_t],
        Φ_t = min(ρ_t, 1), ρ_t = (θ_0 − θ_t)/2π — a function of the step's two states."""
        before = min((self.start - self.last) / (2 * math.pi), 1.0)
        rho = (self.start - angle) / (2 * math.pi)
        self.last = angle
        self._detect(angle, height)
        landed = rho >= 0.9 and upright(angle, height)
        return ROTATION_WEIGHT * (min(rho, 1.0) - before) + LANDING_WEIGHT * landed


@dataclass(frozen=True)
class FlipScore:
    turns: float  # the most backward rotation reached, in turns (unwrapped)
    completed: bool  # ≥ 1 turn, then upright for LANDING_STEPS consecutive steps


def score_flip(angles: np.ndarray, heights: np.ndarray) -> FlipScore:
    """Score one episode from its torso angles and heights, step by step (θ_0 = angles[0])."""
    angles, heights = np.asarray(angles, np.float64), np.asarray(heights, np.float64)
    tracker = FlipTracker.at(float(angles[0]) if len(angles) else 0.0)
    for angle, height in zip(angles, heights):
        tracker.update(float(angle), float(height))
    return FlipScore(tracker.turns, tracker.completed)


def score_flips(obs: np.ndarray) -> list[FlipScore]:
    """Score episodes from Hopper-v5 observations [T, E, D] (time first, x excluded)."""
    obs = np.asarray(obs)
    return [score_flip(obs[:, e, ANGLE], obs[:, e, HEIGHT]) for e in range(obs.shape[1])]


class HopperBackflipEnv(HopperEnv):
    """Hopper-v5 without termination, reporting the scripted backflip judge's reward in
    `info["backflip_reward"]` and `info["true_reward"]`, and `info["backflip_turns"]`.

    `reward_state` (the FlipTracker) is the Python-side state the reward depends on; code
    that steps the simulator speculatively (the probe's counterfactuals) restores it."""

    def __init__(
        self,
        terminate_when_unhealthy: bool = False,
        lifted_height: float = LIFTED_HEIGHT,
        takeoff_weight: float = 0.0,
        observe_progress: bool = False,
        potential: bool = False,
        **kwargs,
    ):
        super().__init__(terminate_when_unhealthy=terminate_when_unhealthy, **kwargs)
        self.judge = (lifted_height, takeoff_weight, potential)  # the judge's, for each episode
        self.reward_state = FlipTracker.at(0.0, *self.judge)
        self.observe_progress = observe_progress
        if observe_progress:
            size = int(np.prod(self.observation_space.shape or ())) + PROGRESS_DIMS
            self.observation_space = Box(-np.inf, np.inf, (size,), np.float64)

    def _get_obs(self) -> np.ndarray:
        obs = super()._get_obs()
        if not self.observe_progress:
            return obs
        tracker = self.reward_state
        memory = [min(tracker.turns, 2.0), tracker.lifted, tracker.lifted_best]
        return np.concatenate([obs, memory])

    def reset_model(self) -> np.ndarray:
        super().reset_model()
        self.reward_state = FlipTracker.at(float(self.data.qpos[2]), *self.judge)
        return self._get_obs()

    def step(self, action):
        _, reward, terminated, truncated, info = super().step(action)
        flip = self.reward_state.update(float(self.data.qpos[2]), float(self.data.qpos[1]))
        info.update(backflip_reward=flip, true_reward=flip, backflip_turns=self.reward_state.turns)
        return self._get_obs(), reward, terminated, truncated, info
