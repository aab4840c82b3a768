"""Demonstrations: trajectories of (observation, action), stored, validated and exchanged.

A trajectory follows the imitation library's `Trajectory` (Gleave et al. 2022):
    obs       [T+1, D]  every observation, the final one included
    acts      [T] int (Discrete) or [T, A] float (Box)
    infos     [T] dicts, or None
    terminal  True when the episode ended in a terminal state, False when it was cut off
    rews      [T] the env's rewards, when known (imitation's `TrajectoryWithRew`)

Files. `save` writes one `.npz` (no pickles): the imitation library's flat layout — `obs`,
`acts`, `terminal`, `indices` (where each trajectory's actions start, first one left out),
`rews` — plus `infos_json` (one JSON string per step), `env_id`, `source` and `extra__*`
arrays (a method's side data, e.g. the maze expert's search states). In a run directory the
file is `demonstrations/<name>.npz`. `export_imitation` writes what `imitation.data.serialize
.load` reads: the same npz with `infos` as an object array, or a Hugging Face datasets
directory when the path has no `.npz` suffix. `load` reads all three; it refuses the pickled
`infos` of an npz unless `allow_pickle=True` (a pickle can run code).

Bad input is refused whole: a file that does not parse, is truncated, holds non-finite values
or shapes that disagree with the env's spaces raises `DemonstrationError` naming the file,
episode and field, and nothing is written. Writes go to a temporary file that is renamed.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np


class DemonstrationError(ValueError):
    """Demonstrations that cannot be used; the message names the file, episode and field."""


@dataclass(frozen=True)
class Trajectory:
    obs: np.ndarray
    acts: np.ndarray
    infos: list[dict] | None = None
    terminal: bool = False
    rews: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.acts)


@dataclass
class Demonstrations:
    trajectories: list[Trajectory]
    env_id: str = ""
    source: str = ""
    extras: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.trajectories)

    @property
    def steps(self) -> int:
        return sum(len(t) for t in self.trajectories)

    def transitions(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(obs [N, D], acts [N] or [N, A], next_obs [N, D]) over every trajectory."""
        obs = np.concatenate([t.obs[:-1] for t in self.trajectories]).astype(np.float32)
        nxt = np.concatenate([t.obs[1:] for t in self.trajectories]).astype(np.float32)
        acts = np.concatenate([t.acts for t in self.trajectories])
        return obs, acts, nxt

    def returns(self) -> np.ndarray:
        """[n] the return of each trajectory (NaN where rewards were not recorded)."""
        return np.array(
            [np.nan if t.rews is None else float(t.rews.sum()) for t in self.trajectories]
        )

    def validate(self, env: gym.Env | None = None, source: str = "demonstrations") -> None:
        """Raise `DemonstrationError` on the first bad episode or field (see `check_trajectory`)."""
        if not self.trajectories:
            raise DemonstrationError(f"{source}: no trajectories")
        for i, traj in enumerate(self.trajectories):
            check_trajectory(traj, env, f"{source}: episode {i}")


def _fail(where: str, fieldname: str, problem: str) -> None:
    raise DemonstrationError(f"{where}: field '{fieldname}': {problem}")


def check_trajectory(traj: Trajectory, env: gym.Env | None, where: str) -> None:
    """Shapes, lengths, finiteness, and (given an env) agreement with its spaces."""
    obs, acts = np.asarray(traj.obs), np.asarray(traj.acts)
    if len(acts) < 1:
        _fail(where, "acts", "empty trajectory")
    if obs.ndim != 2 or len(obs) != len(acts) + 1:
        _fail(
            where, "obs", f"expected [T+1, D] with T = {len(acts)} actions, got shape {obs.shape}"
        )
    for name, arr in (("obs", obs), ("acts", acts), ("rews", traj.rews)):
        if arr is None:
            continue
        arr = np.asarray(arr)
        if not np.issubdtype(arr.dtype, np.number):
            _fail(where, name, f"not numeric (dtype {arr.dtype})")
        if not np.all(np.isfinite(arr)):
            _fail(where, name, "holds NaN or infinite values")
    if traj.rews is not None and np.asarray(traj.rews).shape != (len(acts),):
        _fail(where, "rews", f"expected [{len(acts)}], got shape {np.asarray(traj.rews).shape}")
    if traj.infos is not None and len(traj.infos) != len(acts):
        _fail(where, "infos", f"expected {len(acts)} entries, got {len(traj.infos)}")
    if env is not None:
        _check_spaces(obs, acts, env, where)


def _check_spaces(obs: np.ndarray, acts: np.ndarray, env: gym.Env, where: str) -> None:
    dim = int(np.prod(env.observation_space.shape or ()))
    if obs.shape[1] != dim:
        _fail(where, "obs", f"observations have {obs.shape[1]} features, the env has {dim}")
    space = env.action_space
    if isinstance(space, gym.spaces.Discrete):
        if acts.ndim != 1 or not np.all(np.equal(np.mod(acts, 1), 0)):
            _fail(where, "acts", f"expected [T] integer actions for {space}, got {acts.shape}")
        if acts.min() < space.start or acts.max() >= space.start + space.n:
            _fail(where, "acts", f"actions outside {space}: [{acts.min()}, {acts.max()}]")
    elif isinstance(space, gym.spaces.Box) and acts.shape[1:] != space.shape:
        _fail(where, "acts", f"expected [T, {space.shape}] for {space}, got {acts.shape}")


# -- our npz (no pickles) and imitation's flat layout ------------------------------------------


def _flat(demos: Demonstrations) -> dict[str, np.ndarray]:
    trajs = demos.trajectories
    out = {
        "obs": np.concatenate([t.obs for t in trajs]).astype(np.float32),
        "acts": np.concatenate([t.acts for t in trajs]),
        "terminal": np.array([bool(t.terminal) for t in trajs]),
        "indices": np.cumsum([len(t) for t in trajs])[:-1].astype(np.int64),
    }
    if all(t.rews is not None for t in trajs):
        out["rews"] = np.concatenate([np.asarray(t.rews, np.float32) for t in trajs])
    return out


def _atomic_savez(path: Path, arrays: dict[str, Any], allow_pickle: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    with tmp.open("wb") as f:
        np.savez_compressed(f, **arrays)  # object arrays (imitation's infos) pickle themselves
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save(demos: Demonstrations, path: str | Path) -> Path:
    """Write `demos` to `path` (.npz) atomically, after validating them."""
    path = Path(path)
    demos.validate(source=str(path))
    arrays: dict[str, Any] = _flat(demos)
    infos = [info for t in demos.trajectories for info in (t.infos or [{}] * len(t))]
    arrays["infos_json"] = np.array([json.dumps(i, default=_jsonable) for i in infos])
    arrays["env_id"], arrays["source"] = np.array(demos.env_id), np.array(demos.source)
    arrays.update({f"extra__{k}": np.asarray(v) for k, v in demos.extras.items()})
    _atomic_savez(path, arrays)
    return path


def _jsonable(v: Any) -> Any:
    return v.tolist() if hasattr(v, "tolist") else str(v)


def _split(data: Any, path: Path, allow_pickle: bool) -> Demonstrations:
    keys = set(data.files)
    for key in ("obs", "acts", "indices", "terminal"):
        if key not in keys:
            raise DemonstrationError(f"{path}: field '{key}': missing")
    indices, terminal = np.asarray(data["indices"]), np.asarray(data["terminal"])
    obs, acts = np.asarray(data["obs"]), np.asarray(data["acts"])
    n = len(terminal)
    if (
        len(indices) != n - 1
        or np.any(np.diff(indices) < 1)
        or (n > 1 and indices[-1] >= len(acts))
    ):
        raise DemonstrationError(f"{path}: field 'indices': inconsistent with {n} trajectories")
    if len(obs) != len(acts) + n:
        raise DemonstrationError(
            f"{path}: field 'obs': {len(obs)} observations for {len(acts)} actions in {n} "
            f"trajectories (expected {len(acts) + n}: each trajectory keeps its final one)"
        )
    obs_parts = np.split(obs, indices + np.arange(1, n))
    act_parts = np.split(acts, indices)
    rews = np.split(np.asarray(data["rews"]), indices) if "rews" in keys else [None] * n
    infos = _read_infos(data, keys, indices, allow_pickle)
    trajs = [
        Trajectory(o, a, i, bool(t), r)
        for o, a, i, t, r in zip(obs_parts, act_parts, infos, terminal, rews)
    ]
    extras = {
        k.removeprefix("extra__"): np.asarray(data[k]) for k in keys if k.startswith("extra__")
    }
    env_id = str(data["env_id"]) if "env_id" in keys else ""
    source = str(data["source"]) if "source" in keys else f"file:{path.name}"
    return Demonstrations(trajs, env_id, source, extras)


def _read_infos(data: Any, keys: set, indices: np.ndarray, allow_pickle: bool) -> list:
    n = len(indices) + 1
    if "infos_json" in keys:
        flat = [json.loads(s) for s in np.asarray(data["infos_json"]).tolist()]
        return [list(p) for p in np.split(np.array([*flat, None], dtype=object)[:-1], indices)]
    if "infos" in keys and allow_pickle:
        return [list(p) for p in np.split(np.asarray(data["infos"]), indices)]
    return [None] * n


def load(
    path: str | Path, env: gym.Env | None = None, allow_pickle: bool = False
) -> Demonstrations:
    """Read demonstrations (ours, or the imitation library's npz or datasets directory)."""
    path = Path(path)
    if path.is_dir():
        demos = _load_hf(path)
    else:
        try:
            with np.load(path, allow_pickle=allow_pickle) as data:
                demos = _split(data, path, allow_pickle)
        except FileNotFoundError:
            raise
        except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as exc:
            if isinstance(exc, DemonstrationError):
                raise
            raise DemonstrationError(
                f"{path}: not a readable demonstrations file ({exc})"
            ) from None
    demos.validate(env, source=str(path))
    return demos


# -- the imitation library: objects, npz and Hugging Face datasets -----------------------------


def export_imitation(demos: Demonstrations, path: str | Path) -> Path:
    """Write what `imitation.data.serialize.load(path)` reads: npz if `path` ends in .npz,
    else a Hugging Face datasets directory (needs the `datasets` package)."""
    path = Path(path)
    demos.validate(source=str(path))
    if path.suffix != ".npz":
        return _save_hf(demos, path)
    arrays: dict[str, Any] = _flat(demos)
    infos = np.empty(demos.steps, dtype=object)
    infos[:] = [info for t in demos.trajectories for info in (t.infos or [{}] * len(t))]
    arrays["infos"] = infos
    _atomic_savez(path, arrays, allow_pickle=True)
    return path


def _save_hf(demos: Demonstrations, path: Path) -> Path:
    import datasets  # the `text` extra installs it

    trajs = demos.trajectories
    columns: dict[str, list] = {
        "obs": [t.obs for t in trajs],
        "acts": [t.acts for t in trajs],
        "infos": [
            [json.dumps(i, default=_jsonable) for i in (t.infos or [{}] * len(t))] for t in trajs
        ],
        "terminal": [bool(t.terminal) for t in trajs],
    }
    if all(t.rews is not None for t in trajs):
        columns["rews"] = [t.rews for t in trajs]
    tmp = path.with_name(path.name + ".tmp")
    datasets.Dataset.from_dict(columns).save_to_disk(str(tmp))
    os.replace(tmp, path)
    return path


def _load_hf(path: Path) -> Demonstrations:
    try:
        import datasets
    except ImportError:
        raise DemonstrationError(
            f"{path}: a datasets directory needs the `datasets` package"
        ) from None
    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as exc:  # noqa: BLE001 - any failure to parse is the file's fault
        raise DemonstrationError(f"{path}: not a readable datasets directory ({exc})") from None
    trajs = []
    for row in ds:
        infos = [json.loads(s) for s in row["infos"]] if "infos" in row else None
        rews = np.asarray(row["rews"], np.float32) if "rews" in row else None
        trajs.append(
            Trajectory(
                np.asarray(row["obs"], np.float32),
                np.asarray(row["acts"]),
                infos,
                bool(row["terminal"]),
                rews,
            )
        )
    return Demonstrations(trajs, source=f"file:{path.name}")


def from_imitation(trajectories: Sequence[Any], env_id: str = "") -> Demonstrations:
    """From imitation `Trajectory`s (anything with obs, acts, infos, terminal, maybe rews)."""
    trajs = [
        Trajectory(
            np.asarray(t.obs, np.float32),
            np.asarray(t.acts),
            None if t.infos is None else list(t.infos),
            bool(t.terminal),
            None if getattr(t, "rews", None) is None else np.asarray(t.rews, np.float32),
        )
        for t in trajectories
    ]
    return Demonstrations(trajs, env_id, "imitation")


def to_imitation(demos: Demonstrations) -> list[Any]:
    """imitation `Trajectory` objects when the library is installed, else ours."""
    try:
        from imitation.data.types import Trajectory as ITrajectory
        from imitation.data.types import TrajectoryWithRew
    except ImportError:
        return list(demos.trajectories)
    out = []
    for t in demos.trajectories:
        infos = None if t.infos is None else np.array(t.infos, dtype=object)
        if t.rews is not None:
            out.append(
                TrajectoryWithRew(t.obs, t.acts, infos, t.terminal, t.rews.astype(np.float32))
            )
        else:
            out.append(ITrajectory(t.obs, t.acts, infos, t.terminal))
    return out


def run_path(run_dir: str | Path, name: str = "expert") -> Path:
    """Where a run directory keeps a demonstrations file."""
    return Path(run_dir) / "demonstrations" / f"{name}.npz"
