"""Environments: construction at a fixed horizon (`wrappers`), the misspecification lab
(`misspec`), reward shaping (`shaping`) and exactly solvable tabular MDPs (`tabular`).

Importing this package (which `import rlhflab` does) registers the `rlhflab/*` gymnasium ids.
"""

from rlhflab.envs.misspec import register as _register

_register()

from rlhflab.envs.demos import register as _register_demos  # noqa: E402

_register_demos()
