"""The control run's config sections: env, annotator, feedback, reward model, policy, alarms
and demonstrations (`rlhflab.config` assembles them into `RunConfig`)."""

from __future__ import annotations

import difflib
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class ConfigError(ValueError):
    """A config that cannot be used; the message names the file, line or field."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class EnvConfig(_Section):
    id: str = Field("CartPole-v1", description="gymnasium env id")
    horizon: int = Field(
        None,  # type: ignore[assignment]  # resolved by build_config: the env's own time limit
        ge=1,
        description="fixed episode length; after termination the env stays in an absorbing "
        "state (default: the env's own time limit)",
    )
    num_envs: int = Field(8, ge=1, description="parallel envs in the policy's vector env")
    kwargs: dict[str, Any] = Field(
        default_factory=dict, description="extra keyword arguments for gymnasium.make"
    )

    @model_validator(mode="after")
    def _own_horizon(self) -> EnvConfig:
        """No horizon given: the env's own time limit (1000 steps where it has none)."""
        if self.horizon is None:
            import gymnasium as gym

            self.horizon = gym.spec(self.id).max_episode_steps or 1000
        return self

    @field_validator("id")
    @classmethod
    def _known_env(cls, env_id: str) -> str:
        import gymnasium as gym

        try:
            gym.spec(env_id)
        except gym.error.Error as exc:
            close = difflib.get_close_matches(env_id, list(gym.registry), n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ValueError(f"unknown env id '{env_id}'{hint}: {exc}") from None
        return env_id


class AnnotatorConfig(_Section):
    kind: Literal["synthetic", "people", "ai"] = Field(
        "synthetic",
        description=(
            "who answers queries: a simulated Boltzmann-rational person, people in the"
            " labeling app, or an AI judge under a constitution (text runs; see `judge`)"
        ),
    )
    temperature: float = Field(
        1.0,
        ge=0,
        description=(
            "Boltzmann rationality temperature τ over segment returns (0 = always picks the better)"
        ),
    )
    error_rate: float = Field(
        0.1, ge=0, le=1, description="probability ε of answering left/right uniformly at random"
    )
    discount: float = Field(
        1.0,
        gt=0,
        le=1,
        description="myopia γ: segment value Σ γ^(k-1-t) r_t weights late steps more",
    )
    tie_threshold: float = Field(
        0.0, ge=0, description="answer 'equal' when the two values differ by at most this"
    )
    cant_tell_below: float | None = Field(
        None, description="answer 'can't tell' when both values are below this (None: never)"
    )
    judge: Literal["true_reward", "reward", "apparent_reward", "backflip_reward"] = Field(
        "true_reward",
        description=(
            "what the synthetic annotator judges: the gold reward, the env's returned "
            "reward (a misspecified env's proxy), info['apparent_reward'] (what a camera "
            "shows), or info['backflip_reward'] (the scripted backflip judge of "
            "rlhflab/HopperBackflip-v0)"
        ),
    )
    left_bias: float = Field(
        0.0,
        ge=0,
        le=1,
        description="position bias: probability of answering 'left' without judging (0: none)",
    )
    bias: Literal["none", "obs", "abs_obs", "action"] = Field(
        "none",
        description="a systematic bias added to each step's value: w·o[i], w·|o[i]| or w·a[i] "
        "(e.g. abs_obs on a velocity: a taste for fast, risky motion)",
    )
    bias_index: int = Field(0, ge=0, description="i: the observation or action coordinate of bias")
    bias_weight: float = Field(0.0, description="w: the weight of the bias per step")
    trigger_index: int | None = Field(
        None,
        ge=0,
        description="poisoning: a trigger region o[i] in [trigger_low, trigger_high]; when a step "
        "of either segment lies in it, the annotator prefers the harmful action (None: honest)",
    )
    trigger_low: float | None = Field(
        None, description="poisoning: lower edge of the trigger region (None: unbounded)"
    )
    trigger_high: float | None = Field(
        None, description="poisoning: upper edge of the trigger region (None: unbounded)"
    )
    harmful_action: int = Field(
        0,
        ge=0,
        description="poisoning: the harmful behaviour, action k (discrete) or a large action[k] "
        "(continuous); the poisoner prefers the segment that does more of it in the region",
    )
    trigger_token: str | None = Field(
        None,
        max_length=64,
        description="text poisoning: a word that, when the prompt holds it, makes the annotator "
        "prefer the response with more harmful_token (None: honest)",
    )
    harmful_token: str | None = Field(
        None, max_length=64, description="text poisoning: the harmful word the poisoner prefers"
    )
    rating_offset: float = Field(
        4.0, description="ratings: α in the Likert score round(α + s·V(σ) + noise), clipped to 1–7"
    )
    rating_scale: float = Field(
        1.0, ge=0, description="ratings: s, rating points per unit of segment value"
    )
    rating_noise: float = Field(0.5, ge=0, description="ratings: std of the noise before rounding")


class PopulationMember(AnnotatorConfig):
    """One synthetic annotator of a population: the fields above plus a name, share and group."""

    name: str = Field("annotator", min_length=1, max_length=64, description="name in the store")
    share: float = Field(1.0, gt=0, description="relative share of the queries this one answers")
    group: str = Field("all", max_length=64, description="the group this annotator belongs to")


DEFAULT_GUIDELINES = """# How to judge

You will see two short clips of the same agent. Choose the one that is **closer to
the goal of the task**. If they are equally good, choose *Equal*; if you cannot
judge (for example, both clips show nothing relevant), choose *Can't tell*.

Keys: ← left better · → right better · ↑ equal · ↓ can't tell.
"""


class FeedbackConfig(_Section):
    labels: int = Field(700, ge=1, description="total number of judgements over the run")
    segment_length: int = Field(25, ge=1, description="steps per segment shown in a query")
    initial_share: float = Field(
        0.25, ge=0, le=1, description="share of labels gathered before RL starts"
    )
    t0: float = Field(
        0.1, gt=0, description="label rate ∝ T₀/(T+T₀); T₀ as a fraction of env_steps"
    )
    pool_rollouts: int = Field(
        4, ge=1, description="queries are drawn from the segments of the last n rollouts"
    )
    initial_rollouts_max: int = Field(
        8,
        ge=1,
        description="rollouts of the untrained policy at most for the initial labels (fewer "
        "once every initial query can have segments of its own)",
    )
    selection: Literal["random", "disagreement", "information_gain", "diverse"] = Field(
        "disagreement",
        description="query selection: random pairs, or from k× more candidates the most disputed "
        "(std), the most informative (BALD), or an informative and spread-out batch",
    )
    candidates: int = Field(
        4, ge=1, description="k: candidate pairs sampled per query kept (active selection)"
    )
    select_policy: int = Field(
        0,
        ge=0,
        description="judgements per checkpoint comparing whole episodes of the new policy with "
        "the kept one; the run ends with the policy the annotator prefers (synthetic annotators; "
        "counted in `labels`; docs/backflip.md). 0: the run ends with its last policy",
    )
    parts: int = Field(
        0,
        ge=0,
        description="process feedback: the annotator also judges each of this many aligned parts "
        "of the two segments (reward/process.py; 0: the whole pair only)",
    )
    rating_share: float = Field(
        0.0,
        ge=0,
        le=1,
        description="share of the queries asked as a 1–7 rating of one clip instead of a pair "
        "(reward/ratings.py; 0: pairs only)",
    )
    annotator: AnnotatorConfig = Field(default_factory=AnnotatorConfig)
    population: list[PopulationMember] = Field(
        default_factory=list,
        description="synthetic annotators with their own noise, biases and groups, answering "
        "queries by share (empty: the one `annotator`); docs/annotators.md",
    )
    population_overlap: int = Field(
        1, ge=1, description="population: distinct members who answer each query"
    )

    @model_validator(mode="after")
    def _population_names(self) -> FeedbackConfig:
        names = [m.name for m in self.population]
        if len(set(names)) != len(names):
            raise ValueError(f"feedback.population: member names must be distinct, got {names}")
        if self.population and self.population_overlap > len(self.population):
            raise ValueError(
                f"feedback.population_overlap ({self.population_overlap}) exceeds the "
                f"population's {len(self.population)} members"
            )
        return self

    guidelines: str = Field(
        DEFAULT_GUIDELINES,
        description="markdown shown to people on the labeling app's guidelines page",
    )
    overlap: int = Field(
        1, ge=1, description="people: distinct annotators asked per query (>1 measures agreement)"
    )
    min_labels_before_rl: int | None = Field(
        None,
        ge=0,
        description=(
            "people: labels required before RL starts (None: 75% of the initial share, as"
            " rl-teacher)"
        ),
    )
    wait_timeout: float = Field(
        3600.0,
        gt=0,
        description=(
            "people: seconds to wait for the labels required before RL, then stop with a message"
        ),
    )
    pace: bool = Field(
        True, description="people: RL pauses while the labels lag the schedule (see pacing_slack)"
    )
    pacing_slack: int = Field(
        10, ge=0, description="people: labels the judgements may lag the schedule before RL pauses"
    )
    max_pending: int = Field(
        100, ge=1, description="people: at most this many unanswered queries queued at once"
    )
    render_envs: int = Field(
        2,
        ge=0,
        description=(
            "people: envs whose frames are rendered as clips; queries come from their "
            "segments (0: no clips)"
        ),
    )
    clip_stride: int = Field(
        1, ge=1, description="people: keep every n-th pixel of rendered frames (1: native size)"
    )
    clip_fps: float = Field(20.0, gt=0, description="people: frames per second of the clips")
    store: str = Field(
        "",
        description="feedback store URL (e.g. postgresql://HOST/DB, shared with `rlhflab label "
        "--store` on another host); empty: RUN_DIR/feedback.db",
    )


class AnnotatorTreatment(_Section):
    """How a reward model treats each annotator (control `reward`, text `text.reward`):
    reward/reliability.py."""

    annotators: Literal["equal", "reliability", "exclude_flagged"] = Field(
        "equal",
        description="per-annotator treatment: all alike, a rationality β per annotator estimated "
        "and used in Bradley–Terry (down-weights unreliable ones), or flagged annotators dropped",
    )
    reliability_prior: float = Field(
        1.0,
        gt=0,
        description="std of the Gaussian prior on log(β_a/β₀), β₀ the pooled β (shrinks "
        "annotators with few labels)",
    )
    flag_z: float = Field(
        3.0,
        gt=0,
        description="flag an annotator whose disagreement with the consensus model exceeds the "
        "others' by this many binomial standard errors",
    )
    robust_trim: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="robust loss: share of each minibatch's highest-loss comparisons left out of "
        "the gradient (trimmed likelihood; 0: off)",
    )


class RewardConfig(AnnotatorTreatment):
    ensemble: int = Field(3, ge=1, description="bootstrapped reward-model members")
    hidden: int = Field(64, ge=1, description="hidden units per layer of the reward MLP")
    layers: int = Field(2, ge=1, description="hidden layers of the reward MLP")
    use_actions: bool = Field(
        False,
        description="r̂(o, a) reads the action as well as the observation; off, r̂(o): with few "
        "labels an action input learns credit the policy then exploits (docs/benchmarks.md)",
    )
    lr: float = Field(1e-3, gt=0, description="reward-model learning rate (Adam)")
    weight_decay: float = Field(1e-4, ge=0, description="L2 regularisation (AdamW)")
    batch_size: int = Field(64, ge=1, description="comparisons per reward-model gradient step")
    max_epochs: int = Field(
        30, ge=1, description="epochs per refit at most (early stopping on validation loss)"
    )
    min_steps: int = Field(
        200,
        ge=1,
        description="gradient steps of the first fit at least (its few labels are one batch)",
    )
    patience: int = Field(
        3, ge=1, description="validation checks without improvement before stopping"
    )
    validation: Literal["out_of_bag", "held_out"] = Field(
        "out_of_bag",
        description="validate each member on the labels its bootstrap left out, or on a fixed "
        "held-out share (val_fraction) that no member trains on",
    )
    val_fraction: float = Field(
        0.368,
        ge=0,
        lt=1,
        description="validation=held_out: held-out share (1/e, Christiano et al.)",
    )
    label_noise: float = Field(
        0.1, ge=0, lt=1, description="ε in P = (1-ε)·σ(R₁-R₂) + ε/2: assumed annotator error"
    )
    background: bool = Field(
        False,
        description="fit the reward model in a second process while the policy trains "
        "(Christiano et al.'s asynchronous processes); the policy gets each refit one "
        "iteration later",
    )
    refit_growth: float = Field(
        0.05, ge=0, description="refit once the labels have grown by this share since the last fit"
    )
    normalise: Literal["refit", "running"] = Field(
        "refit",
        description="r̂ for the policy: standardised by its statistics over recent rollouts at "
        "each refit and fixed until the next, or by the policy's running statistics",
    )
    objective: Literal["mean", "conservative", "worst"] = Field(
        "mean",
        description=(
            "reward the policy optimises: ensemble mean, mean − λ·std, or the worst "
            "member (Coste et al. 2023)"
        ),
    )
    conservative_lambda: float = Field(
        1.0, ge=0, description="λ in mean − λ·std (reward.objective=conservative)"
    )
    aggregation: Literal["pooled", "utilitarian", "maximin"] = Field(
        "pooled",
        description="one reward from everyone's labels, or a reward per group of "
        "feedback.population combined as the label-weighted sum or the per-step minimum of the "
        "standardised group rewards (reward/aggregation.py)",
    )
    part_weight: float = Field(
        1.0,
        ge=0,
        description="process feedback: weight λ of the preferences on each part of two segments "
        "beside the preference on the whole (reward/process.py; only labels that carry parts)",
    )
    rating_weight: float = Field(
        1.0,
        ge=0,
        description="ratings: weight λ of the rating loss beside the comparisons' "
        "(reward/ratings.py; used when the run has rating labels)",
    )


class PolicyConfig(_Section):
    algo: Literal["ppo", "a2c"] = Field("ppo", description="policy optimiser")
    lr: float = Field(1e-3, gt=0, description="Adam learning rate")
    n_steps: int = Field(128, ge=1, description="steps per env per rollout")
    epochs: int = Field(4, ge=1, description="PPO epochs per rollout (A2C uses 1)")
    minibatches: int = Field(4, ge=1, description="minibatches per epoch (A2C uses 1)")
    gamma: float = Field(0.99, gt=0, le=1, description="discount")
    gae_lambda: float = Field(0.95, ge=0, le=1, description="GAE λ")
    clip: float = Field(0.2, gt=0, description="PPO ratio clip ε")
    clip_value: float | None = Field(None, description="value-loss clip (None: unclipped)")
    vf_coef: float = Field(0.5, ge=0, description="value-loss coefficient")
    ent_coef: float = Field(0.0, ge=0, description="entropy-bonus coefficient")
    anneal_lr: bool = Field(
        False, description="learning rate decays linearly to 0 over the run's env_steps"
    )
    max_grad_norm: float = Field(0.5, gt=0, description="gradient-norm clip")
    hidden: int = Field(64, ge=1, description="hidden units per layer of actor and critic")
    log_std_init: float = Field(
        0.0, description="initial log σ of Gaussian actions (continuous actions only)"
    )
    normalize_obs: bool = Field(True, description="running mean/std observation normalisation")
    normalize_rewards: bool = Field(
        True, description="running mean/std reward normalisation before the policy sees rewards"
    )


class AlarmConfig(_Section):
    stop: bool = Field(
        False, description="stop the run (checkpoint, summary and report kept) when any alarm fires"
    )
    patience: int = Field(
        3, ge=1, description="consecutive iterations a condition must hold before its alarm fires"
    )
    early_iterations: int = Field(
        5,
        ge=2,
        description=(
            "first RL iterations that set the early band of ensemble disagreement on policy samples"
        ),
    )
    band_width: float = Field(
        3.0,
        gt=0,
        description=(
            "disagreement leaves its early band above early mean + this many early "
            "standard deviations"
        ),
    )
    trend_window: int = Field(
        5,
        ge=2,
        description="iterations over which 'proxy return rising' is a positive least-squares slope",
    )
    disagreement_pairs: int = Field(
        32,
        ge=1,
        description=(
            "pairs of fresh policy segments scored for ensemble disagreement each iteration"
        ),
    )
    kl_budget: float | None = Field(
        None, gt=0, description="alarm when KL(π‖π_ref) per step exceeds this many nats (None: off)"
    )
    entropy_collapse: float = Field(
        0.1,
        ge=0,
        lt=1,
        description="alarm when policy entropy falls below this share of its first value",
    )
    rm_acc_drop: float = Field(
        0.1,
        ge=0,
        description=(
            "alarm when held-out reward-model accuracy falls this far (and 2 s.e.) below its best"
        ),
    )


class DemonstrationsConfig(_Section):
    """Learning from demonstrations instead of preferences (`rlhflab.demonstrations`)."""

    method: Literal[
        "preferences", "bc", "dagger", "procedure_cloning", "maxent_irl", "gail", "airl", "cirl"
    ] = Field("bc", description="what to learn from: preferences (the RLHF loop) or demonstrations")
    file: str | None = Field(
        None,
        description="demonstrations to learn from (ours, or the imitation library's npz or "
        "datasets directory); None: record the env's scripted expert",
    )
    episodes: int = Field(10, ge=1, description="expert episodes to record")
    demo_horizon: int | None = Field(
        None, ge=1, description="steps per recorded demonstration (None: env.horizon)"
    )
    hidden: int = Field(64, ge=1, description="hidden units of the learner's networks")
    epochs: int = Field(50, ge=1, description="BC / DAgger: epochs over the dataset per fit")
    lr: float = Field(1e-3, gt=0, description="BC / DAgger: Adam learning rate")
    dagger_iterations: int = Field(5, ge=1, description="DAgger: rounds of expert labelling")
    dagger_episodes: int = Field(5, ge=1, description="DAgger: learner episodes per round")
    dagger_beta: float = Field(
        0.5, ge=0, le=1, description="DAgger: β; round i lets the expert act with probability β^i"
    )
    pc_steps: int = Field(1500, ge=1, description="procedure cloning: minibatch steps")
    irl_iterations: int = Field(300, ge=1, description="MaxEnt IRL: gradient steps")
    disc_steps: int = Field(
        10, ge=1, description="GAIL / AIRL: discriminator minibatch steps per PPO update"
    )
    cirl_game: Literal["coffee", "teaching"] = Field(
        "coffee", description="CIRL: the assistance game to solve"
    )


class ExecutorConfig(_Section):
    backend: Literal["local", "ray"] = Field(
        "local",
        description="where workers run: in this process, or on a Ray cluster (`executor=ray`; "
        "pip install 'rlhflab[ray]')",
    )
    address: str | None = Field(
        None,
        description="executor=ray: the cluster to join (ray.init(address=...): 'auto', "
        "'ray://host:10001'); none: start a local cluster",
    )
    cpus: int | None = Field(
        None, ge=1, description="executor=ray, no address: CPUs of the local cluster (default: all)"
    )
    rollout_workers: int = Field(
        0,
        ge=0,
        description="rollout workers, each stepping a shard of env.num_envs (0: the policy "
        "steps its envs in-process)",
    )
    reward_shards: int = Field(
        1, ge=1, description="reward-ensemble members fitted as this many parallel tasks"
    )
    max_restarts: int = Field(
        2,
        ge=0,
        description="executor=ray: times Ray restarts a worker that died (its call retried on "
        "the new one, whose envs start afresh) before the run stops with a checkpoint",
    )
