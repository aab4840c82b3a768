"""The misspecification lab: environments whose hand-written reward can be gamed.

Every env returns a proxy reward and reports the hidden true objective beside it in
`info` (see `base.py`); `docs/misspecification.md` describes each one, its hack and
how to run it.

| id | phenomenon (seed chapter §) |
|---|---|
| `rlhflab/CoastRunners-v0` | specification gaming: farming shaping rewards in a loop (6.4.3) |
| `rlhflab/CleaningRobot-v0` | reward hacking: making a mess to clean it (6.3.1, 6.4.3) |
| `rlhflab/TomatoWatering-v0` | reward tampering; `tampering=sensor|reward_function|wireheading`
(6.4.4) |
| `rlhflab/CoinRun-v0` | goal misgeneralisation; `coin_elsewhere=1` is the test distribution |
| `rlhflab/CameraGrasp-v0` | an evaluator fooled by the camera view: RLHF itself gamed |
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from rlhflab.envs.misspec.base import MisspecEnv

ENVS = {
    "rlhflab/CoastRunners-v0": "rlhflab.envs.misspec.coast_runners:CoastRunners",
    "rlhflab/CleaningRobot-v0": "rlhflab.envs.misspec.cleaning_robot:CleaningRobot",
    "rlhflab/TomatoWatering-v0": "rlhflab.envs.misspec.tomato_watering:TomatoWatering",
    "rlhflab/CoinRun-v0": "rlhflab.envs.misspec.coin_run:CoinRun",
    "rlhflab/CameraGrasp-v0": "rlhflab.envs.misspec.camera_grasp:CameraGrasp",
}


def register() -> None:
    """Register the env ids with gymnasium (entry points are imported only when an env is made)."""
    for env_id, entry_point in ENVS.items():
        if env_id not in gym.registry:
            gym.register(env_id, entry_point=entry_point)


def scripted_act(env_id: str, behaviour: str, kwargs: dict | None = None):
    """A batch policy (raw obs [E, D] → actions [E]) playing an env's scripted `honest` or `hack`
    behaviour."""
    env = gym.make(env_id, **(kwargs or {})).unwrapped
    if not isinstance(env, MisspecEnv):
        raise ValueError(f"{env_id} is not a misspecification-lab env (no scripted behaviours)")
    env.scripted_action(np.zeros(env.observation_space.shape or ()), behaviour)  # refuses unknown

    def act(obs: np.ndarray) -> np.ndarray:
        return np.array([env.scripted_action(o, behaviour) for o in obs])

    return act
