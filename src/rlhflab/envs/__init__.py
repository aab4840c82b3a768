"""Environments: construction at a fixed horizon (`wrappers`), the misspecification lab
(`misspec`), reward shaping (`shaping`), exactly solvable tabular MDPs (`tabular`) and the
Hopper backflip with its scripted judge (`backflip`).

Importing this package (which `import rlhflab` does) registers the `rlhflab/*` gymnasium ids.
"""

from rlhflab.envs.misspec import register as _register

_register()

from rlhflab.envs.demos import register as _register_demos  # noqa: E402

_register_demos()

import gymnasium as _gym  # noqa: E402

if "rlhflab/HopperBackflip-v0" not in _gym.registry:  # imported (with MuJoCo) only when made
    _gym.register(
        "rlhflab/HopperBackflip-v0",
        entry_point="rlhflab.envs.backflip:HopperBackflipEnv",
        max_episode_steps=1000,
    )
