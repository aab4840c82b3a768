"""Environment construction: any gymnasium env id, at a fixed horizon.

With variable-length episodes, the episode's end leaks information about reward:
any learned reward that is positive on average teaches the agent to survive, any
negative one to die (Christiano et al. 2017, §3.1 and appendix; Kostrikov et al.
2019 on absorbing states). `FixedHorizon` removes that channel: when the
underlying env terminates, the episode carries on in an absorbing state — the
final observation repeated, true reward 0 — until exactly `horizon` steps.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, SyncVectorEnv


class UnsupportedEnvError(ValueError):
    pass


class FixedHorizon(gym.Wrapper):
    """Every episode lasts exactly `horizon` steps; termination becomes an absorbing state."""

    def __init__(self, env: gym.Env, horizon: int):
        super().__init__(env)
        self.horizon = horizon
        self._t = 0
        self._absorbing_obs = None

    @property
    def absorbing(self) -> bool:
        """True once the underlying episode has ended: steps change nothing."""
        return self._absorbing_obs is not None

    def reset(self, **kwargs):
        self._t, self._absorbing_obs = 0, None
        return self.env.reset(**kwargs)

    def step(self, action):
        self._t += 1
        truncated = self._t >= self.horizon
        if self._absorbing_obs is not None:
            return self._absorbing_obs, 0.0, False, truncated, {"absorbing": True}
        obs, reward, terminated, inner_truncated, info = self.env.step(action)
        if (terminated or inner_truncated) and not truncated:
            self._absorbing_obs = obs
        info["absorbing"] = False
        return obs, float(reward), False, truncated, info


def make_env(
    env_id: str, horizon: int, kwargs: dict | None = None, render_mode: str | None = None
) -> gym.Env:
    """One env: observations flattened to a vector, a Discrete or Box action, a fixed horizon."""
    extra: dict[str, Any] = {"render_mode": render_mode} if render_mode else {}
    if render_mode and not os.environ.get(
        "DISPLAY"
    ):  # MuJoCo renders offscreen through OSMesa (Debian's libosmesa6)
        os.environ.setdefault("MUJOCO_GL", "osmesa")
        os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")
    if is_mujoco(env_id):
        quiet_mujoco()
    env = gym.make(env_id, max_episode_steps=horizon, **extra, **(kwargs or {}))
    if render_mode and is_mujoco(env_id):
        plain_scene(env.unwrapped.model)  # type: ignore[attr-defined]
    obs_space = env.observation_space
    if isinstance(
        obs_space,
        (spaces.Dict, spaces.Tuple, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary),
    ) or (isinstance(obs_space, spaces.Box) and len(obs_space.shape) != 1):
        try:
            env = gym.wrappers.FlattenObservation(
                env
            )  # Dict/Tuple/images → one flat vector (one-hot for discrete parts)
        except NotImplementedError as exc:
            raise UnsupportedEnvError(
                f"{env_id}: observation space {obs_space} cannot be flattened: {exc}"
            ) from None
    elif not isinstance(obs_space, spaces.Box):
        raise UnsupportedEnvError(
            f"{env_id}: unsupported observation space {obs_space}; rlhflab needs a Box, Discrete,"
            f" Dict or Tuple space"
        )
    if not isinstance(env.action_space, (spaces.Discrete, spaces.Box)):
        raise UnsupportedEnvError(
            f"{env_id}: unsupported action space {env.action_space}; rlhflab supports Discrete "
            f"and Box actions"
        )
    return FixedHorizon(env, horizon)


MUJOCO_ENTRY_POINTS = ("gymnasium.envs.mujoco", "rlhflab.envs.backflip")


def is_mujoco(env_id: str) -> bool:
    entry = gym.spec(env_id).entry_point
    return isinstance(entry, str) and entry.startswith(MUJOCO_ENTRY_POINTS)


def render_size(env_id: str) -> dict:
    """gymnasium.make keywords for frames small enough to render in software: MuJoCo
    renders 240×240 instead of 480×480 (OSMesa on a CPU takes ~4× less time)."""
    return {"width": 240, "height": 240} if is_mujoco(env_id) else {}


def plain_scene(model) -> None:
    """No shadows and no mirror floor in MuJoCo's frames: OSMesa renders a 240×240
    HalfCheetah frame in ~9 ms instead of ~45 ms, and the floor no longer reflects the body
    (which read as a second, ghostly body). Visual fields only; the physics is unchanged."""
    model.light_castshadow[:] = 0
    model.mat_reflectance[:] = 0


def _mujoco_warning(message: str) -> None:
    """MuJoCo's warnings as Python warnings (shown once), less a deprecation notice that
    gymnasium's own model files trigger at every env creation (HalfCheetah's settotalmass)."""
    if "is deprecated" not in message:
        warnings.warn(f"MuJoCo: {message}", RuntimeWarning, stacklevel=2)


def quiet_mujoco() -> None:
    import mujoco

    mujoco.set_mju_user_warning(_mujoco_warning)


def make_vec_env(
    env_id: str,
    horizon: int,
    num_envs: int,
    kwargs: dict | None = None,
    render_mode: str | None = None,
) -> SyncVectorEnv:
    """Vector env that resets finished envs in the same step (final obs in info['final_obs'])."""
    return SyncVectorEnv(
        [lambda: make_env(env_id, horizon, kwargs, render_mode) for _ in range(num_envs)],
        autoreset_mode=AutoresetMode.SAME_STEP,
    )


def action_features(action_space: gym.Space, actions: np.ndarray) -> np.ndarray:
    """Actions as reward-model inputs: one-hot for Discrete, the (clipped) vector for Box."""
    if isinstance(action_space, spaces.Discrete):
        return np.eye(action_space.n, dtype=np.float32)[
            np.asarray(actions, dtype=np.int64) - action_space.start
        ]
    a = np.asarray(actions, dtype=np.float32)
    assert isinstance(action_space, spaces.Box)
    return np.clip(a, action_space.low, action_space.high)


def action_dim(action_space: gym.Space) -> int:
    return (
        int(action_space.n)
        if isinstance(action_space, spaces.Discrete)
        else int(np.prod(action_space.shape or ()))
    )
