"""Typed run configs.

Every field has a default and a one-line help (its `description`); the CLI exposes
each as a dotted `key=value` override (`policy.lr=1e-3`) and the common ones under
short names (`env=`, `labels=`, `temperature=`, `error_rate=`, `selection=`, `horizon=`,
`algo=`). A YAML file and the overrides are merged by OmegaConf (its dotlist parses each
value as YAML) and validated by pydantic. Errors name the file and line, or the field, that is
wrong, and an unknown key comes with the nearest known ones ("did you mean …?").
"""

from __future__ import annotations

import difflib
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from pydantic import BaseModel, Field, ValidationError, model_validator

from rlhflab.config.sections import (
    AlarmConfig,
    AnnotatorConfig,
    ConfigError,
    DemonstrationsConfig,
    EnvConfig,
    ExecutorConfig,
    FeedbackConfig,
    PolicyConfig,
    PopulationMember,
    RewardConfig,
    _Section,
)
from rlhflab.config.text import (
    DEFAULT_JUDGE_TEMPLATE,
    JudgeConfig,
    TextConfig,
    TextDPOConfig,
    TextGRPOConfig,
    TextPPOConfig,
    TextRewardConfig,
    TextRLOOConfig,
    TextSFTConfig,
)

__all__ = [
    "DEFAULT_JUDGE_TEMPLATE",
    "FAMILY_PRESET",
    "PRESETS",
    "SHORT_NAMES",
    "AlarmConfig",
    "AnnotatorConfig",
    "ConfigError",
    "DemonstrationsConfig",
    "EnvConfig",
    "ExecutorConfig",
    "FeedbackConfig",
    "JudgeConfig",
    "PolicyConfig",
    "PopulationMember",
    "RewardConfig",
    "RunConfig",
    "TextConfig",
    "TextDPOConfig",
    "TextGRPOConfig",
    "TextPPOConfig",
    "TextRLOOConfig",
    "TextRewardConfig",
    "TextSFTConfig",
    "build_config",
    "field_help",
    "load_yaml",
    "parse_overrides",
    "preset_for",
    "preset_path",
    "selection_reserve",
    "to_yaml",
]


class RunConfig(_Section):
    task: str = Field(
        None,  # type: ignore[assignment]  # resolved by build_config: named after the env
        description="name of this experiment (default: '<env>-preferences')",
    )
    seed: int = Field(0, description="seed for envs, networks, annotator and query selection")
    env_steps: int = Field(
        100_000,
        ge=1,
        description="policy env steps in all, the rollouts that pre-RL labels come from included",
    )
    baseline: bool = Field(
        True, description="also train PPO on the true reward with the same env steps"
    )
    eval_episodes: int = Field(16, ge=1, description="episodes for each true-return evaluation")
    checkpoint_every: int = Field(10, ge=1, description="iterations between checkpoints")
    threads: int = Field(1, ge=1, description="torch CPU threads (small nets run fastest on one)")
    env: EnvConfig = Field(default_factory=EnvConfig)
    feedback: FeedbackConfig = Field(default_factory=FeedbackConfig)
    reward: RewardConfig = Field(default_factory=RewardConfig)
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    text: TextConfig | None = Field(
        None,
        description=(
            "language-model RLHF (SFT → reward model → PPO, GRPO, RLOO, DPO, best-of-n) instead "
            "of control"
        ),
    )
    alarms: AlarmConfig = Field(default_factory=AlarmConfig)
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)
    judge: JudgeConfig = Field(default_factory=JudgeConfig)
    demonstrations: DemonstrationsConfig | None = Field(
        None, description="learn from demonstrations (BC, DAgger, PC, IRL, GAIL, AIRL, CIRL)"
    )

    @model_validator(mode="after")
    def _population_fits_the_task(self) -> RunConfig:
        """Text populations judge gold values of responses: the segment flaws (systematic bias,
        state-region trigger) are for control runs, the word trigger for text runs."""
        fb = self.feedback
        for i, m in enumerate(fb.population):
            where = f"feedback.population[{i}] ({m.name})"
            if self.text is not None and (m.bias != "none" or m.trigger_index is not None):
                raise ValueError(
                    f"{where}: bias and trigger_index are for control runs only; a text "
                    "poisoner uses trigger_token and harmful_token"
                )
            if self.text is None and m.trigger_token is not None:
                raise ValueError(f"{where}: trigger_token is for text runs; use trigger_index")
            if (m.trigger_token is None) != (m.harmful_token is None):
                raise ValueError(f"{where}: trigger_token and harmful_token go together")
        if self.text is not None and fb.population and fb.population_overlap > 1:
            raise ValueError("feedback.population_overlap: text runs ask each query once")
        return self

    @model_validator(mode="after")
    def _groups_for_aggregation(self) -> RunConfig:
        rule = self.reward.aggregation
        if rule == "pooled":
            return self
        groups = {m.group for m in self.feedback.population}
        if len(groups) < 2:
            raise ValueError(
                f"reward.aggregation={rule} needs feedback.population members of at least two "
                f"groups (their 'group' field); found {sorted(groups) or 'no population'}"
            )
        if self.reward.background:
            raise ValueError(f"reward.aggregation={rule} does not run with reward.background")
        return self

    @model_validator(mode="after")
    def _workers_fit(self) -> RunConfig:
        ex = self.executor
        if ex.rollout_workers > self.env.num_envs:
            raise ValueError(
                f"executor.rollout_workers ({ex.rollout_workers}) must not exceed env.num_envs "
                f"({self.env.num_envs}): each worker steps a shard of the envs"
            )
        if ex.reward_shards > self.reward.ensemble:
            raise ValueError(
                f"executor.reward_shards ({ex.reward_shards}) must not exceed reward.ensemble "
                f"({self.reward.ensemble}): each shard fits some of the members"
            )
        if ex.reward_shards > 1 and self.reward.background:
            raise ValueError(
                "executor.reward_shards > 1 and reward.background: choose one way of taking "
                "the reward fit off the loop's process"
            )
        if ex.rollout_workers and self.feedback.annotator.kind == "people":
            raise ValueError(
                "executor.rollout_workers: people see clips rendered by in-process envs; use "
                "rollout_workers=0 with feedback.annotator.kind=people"
            )
        return self

    @model_validator(mode="after")
    def _selection_fits(self) -> RunConfig:
        fb = self.feedback
        if fb.select_policy and fb.annotator.kind == "people":
            raise ValueError(
                "feedback.select_policy: the annotator compares whole episodes in the loop, which "
                "only a synthetic annotator can; with people, compare the report's checkpoint clips"
            )
        if fb.select_policy and selection_reserve(self) >= fb.labels // 2:
            raise ValueError(
                f"feedback.select_policy ({fb.select_policy} per checkpoint) would take "
                f"{selection_reserve(self)} of feedback.labels ({fb.labels}): raise "
                "checkpoint_every or lower select_policy"
            )
        return self

    @model_validator(mode="after")
    def _segments_fit_rollouts(self) -> RunConfig:
        fb, n_steps, horizon = self.feedback, self.policy.n_steps, self.env.horizon
        if fb.segment_length > min(n_steps, horizon):
            raise ValueError(
                f"feedback.segment_length ({fb.segment_length}) must not exceed "
                f"policy.n_steps ({n_steps}) or env.horizon ({horizon})"
            )
        if fb.parts == 1 or fb.parts > fb.segment_length:
            raise ValueError(
                f"feedback.parts ({fb.parts}) must be 0 (off) or from 2 to feedback.segment_length "
                f"({fb.segment_length})"
            )
        return self

    @model_validator(mode="after")
    def _ratings_fit(self) -> RunConfig:
        """Ratings are fitted jointly with comparisons on one reward ensemble, in the loop's
        process (`reward/ratings.py`)."""
        if self.feedback.rating_share > 0 and (
            self.reward.aggregation != "pooled"
            or self.reward.background
            or self.executor.reward_shards > 1
        ):
            raise ValueError(
                "feedback.rating_share > 0 needs reward.aggregation=pooled, reward.background="
                "false and executor.reward_shards=1 (ratings fit one ensemble in-process)"
            )
        return self

    @model_validator(mode="after")
    def _judge_given(self) -> RunConfig:
        uses = self.feedback.annotator.kind == "ai" or (
            self.text is not None and self.text.reward.kind == "judge"
        )
        if uses and self.judge.model is None and self.judge.url is None:
            raise ValueError(
                "an AI judge (feedback.annotator.kind=ai or text.reward.kind=judge) needs "
                "judge.model or judge.url"
            )
        if self.feedback.annotator.kind == "ai" and self.text is None:
            raise ValueError("feedback.annotator.kind=ai needs a text run (a `text:` section)")
        return self


SHORT_NAMES = {
    "env": "env.id",
    "labels": "feedback.labels",
    "temperature": "feedback.annotator.temperature",
    "error_rate": "feedback.annotator.error_rate",
    "selection": "feedback.selection",
    "horizon": "env.horizon",
    "algo": "policy.algo",
    "method": "demonstrations.method",
    "executor": "executor.backend",
}


def selection_reserve(cfg: RunConfig, rl_start: int = 0) -> int:
    """Labels `feedback.select_policy` will take from `feedback.labels`: n at every checkpoint
    of RL after the first (the first is kept without asking), the last iteration included."""
    per_iteration = cfg.policy.n_steps * cfg.env.num_envs
    iterations = -(-max(0, cfg.env_steps - rl_start) // per_iteration)
    offers = -(-iterations // cfg.checkpoint_every)
    return cfg.feedback.select_policy * max(0, offers - 1)


def field_help(model: type[BaseModel] = RunConfig, prefix: str = "") -> list[tuple[str, Any, str]]:
    """(dotted key, default, help) for every leaf field, for `--help` and `config show`."""
    rows = []
    for name, info in model.model_fields.items():
        key = prefix + name
        ann = info.annotation
        members = [  # a list of sections (feedback.population) is one leaf
            a
            for a in typing.get_args(ann)
            if isinstance(a, type)
            and issubclass(a, BaseModel)
            and typing.get_origin(ann) is not list
        ]
        ann = members[0] if members else ann  # an optional section (text: TextConfig | None)
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            rows += field_help(ann, key + ".")
        else:
            default = info.get_default(call_default_factory=True)
            rows.append((key, default, info.description or ""))
    return rows


def _known_keys() -> list[str]:
    return [k for k, _, _ in field_help()]


def _format_validation(exc: ValidationError, source: str) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            close = difflib.get_close_matches(loc, _known_keys(), n=3)
            msg = "unknown config key" + (f" (did you mean {', '.join(close)}?)" if close else "")
        lines.append(
            f"{source}: {loc}: {msg}"
            + (
                f" (got {err['input']!r})"
                if err["type"] != "extra_forbidden"
                and "input" in err
                and not isinstance(err["input"], dict)
                else ""
            )
        )
    return "\n".join(lines)


def load_yaml(path: str | Path) -> dict:
    """Read a YAML mapping; a parse error names the file and line."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}: config does not parse: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: config must be a mapping of keys to values, got {type(data).__name__}"
        )
    return data


def _override_key(item: str) -> tuple[str, str]:
    """(dotted key, raw value) of one `key=value` override: short names expanded, unknown keys
    refused with the nearest known ones."""
    if "=" not in item:
        raise ConfigError(f"override '{item}': expected key=value")
    key, raw = item.split("=", 1)
    key = SHORT_NAMES.get(key.strip(), key.strip())
    if key not in _known_keys() and not key.startswith("env.kwargs."):
        close = difflib.get_close_matches(key, _known_keys() + list(SHORT_NAMES), n=3)
        raise ConfigError(
            f"override '{item}': unknown config key '{key}'"
            + (f" (did you mean {', '.join(close)}?)" if close else "")
        )
    return key, raw


def parse_overrides(items: Sequence[str]) -> DictConfig:
    """`key=value` overrides as one nested config (OmegaConf's dotlist: each value is parsed as
    YAML, so `labels=350`, `text.methods=[ppo,dpo]`, `policy.clip_value=null`; a value that does
    not parse stays a string)."""
    confs = []
    for item in items:
        key, raw = _override_key(item)
        try:
            one = OmegaConf.from_dotlist([f"{key}={raw}"])
        except (OmegaConfBaseException, yaml.YAMLError):
            one = OmegaConf.create()
            OmegaConf.update(one, key, raw)
        confs.append(one)
    return cast(DictConfig, OmegaConf.merge(OmegaConf.create(), *confs))


PRESETS = Path(__file__).parent.parent / "presets"
_DEMO_DEFAULT = DemonstrationsConfig.model_fields["method"].default


def preset_path(env_id: str) -> Path:
    return PRESETS / f"{env_id.replace('/', '__')}.yaml"


def _preset(data: dict) -> dict:
    """The tuned settings of a control run's env (`presets/<env id>.yaml`); for a MuJoCo env
    without one, those of the family (`presets/mujoco.yaml`); else {}."""
    demos = data.get("demonstrations")
    method = "preferences" if demos is None else demos.get("method", _DEMO_DEFAULT)
    if data.get("text") is not None or method != "preferences":
        return {}
    env_id = str((data.get("env") or {}).get("id") or EnvConfig.model_fields["id"].default)
    path = preset_for(env_id)
    return {} if path is None else load_yaml(path)


FAMILY_PRESET = PRESETS / "mujoco.yaml"


def preset_for(env_id: str) -> Path | None:
    """The preset a control run on `env_id` starts from: its own, the MuJoCo family's, or
    None (rlhflab's generic defaults)."""
    own = preset_path(env_id)
    if own.exists():
        return own
    return FAMILY_PRESET if _is_mujoco(env_id) else None


def _is_mujoco(env_id: str) -> bool:
    """A registered gymnasium MuJoCo env (read from the registry; nothing is built)."""
    from gymnasium.envs.registration import registry

    spec = registry.get(env_id)
    entry = spec.entry_point if spec is not None else None
    return isinstance(entry, str) and entry.startswith("gymnasium.envs.mujoco")


def _default_task(data: dict) -> None:
    """A run without a name is named after its env."""
    env_id = str((data.get("env") or {}).get("id") or EnvConfig.model_fields["id"].default)
    if data.get("task") is None:
        name = "text" if data.get("text") is not None else env_id.split("/")[-1].lower()
        data["task"] = f"{name}-preferences"


def build_config(
    path: str | Path | None = None, overrides: Sequence[str] = (), base: dict | None = None
) -> RunConfig:
    """Config from layers, later ones winning (sections merge key by key, by OmegaConf), then
    validated by pydantic: an optional base dict, the env's preset (tuned settings for that
    env id, `presets/`), a YAML file, then key=value overrides."""
    source = "config" if path is None else str(path)
    try:
        layers = [OmegaConf.create(base or {})]
        if path is not None:
            layers.append(OmegaConf.create(load_yaml(path)))
        layers.append(parse_overrides(overrides))
        data = OmegaConf.to_container(OmegaConf.merge(*layers), resolve=False)
        preset = _preset(data)  # type: ignore[arg-type]
        if preset:
            layers.insert(1, OmegaConf.create(preset))
            data = OmegaConf.to_container(OmegaConf.merge(*layers), resolve=False)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"{source} + overrides: {exc}") from None
    _default_task(data)  # type: ignore[arg-type]
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        where = source if not overrides else f"{source} + overrides"
        raise ConfigError(_format_validation(exc, where)) from None


class _Dumper(yaml.SafeDumper):
    pass


def _represent_str(dumper: yaml.SafeDumper, text: str) -> yaml.Node:
    """Multi-line strings (the guidelines) as YAML block scalars."""
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _represent_str)


def to_yaml(cfg: RunConfig) -> str:
    return yaml.dump(
        cfg.model_dump(mode="json"), Dumper=_Dumper, sort_keys=False, allow_unicode=True
    )
