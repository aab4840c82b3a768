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
from typing import Any, Literal, cast

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


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
    selection: Literal["random", "disagreement"] = Field(
        "disagreement",
        description="query selection: random pairs, or the most disputed of k× more candidates",
    )
    candidates: int = Field(
        4, ge=1, description="k: candidate pairs sampled per query kept (disagreement selection)"
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


class RewardConfig(_Section):
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
    max_grad_norm: float = Field(0.5, gt=0, description="gradient-norm clip")
    hidden: int = Field(64, ge=1, description="hidden units per layer of actor and critic")
    log_std_init: float = Field(
        0.0, description="initial log σ of Gaussian actions (continuous actions only)"
    )
    normalize_obs: bool = Field(True, description="running mean/std observation normalisation")
    normalize_rewards: bool = Field(
        True, description="running mean/std reward normalisation before the policy sees rewards"
    )


class TextSFTConfig(_Section):
    demonstrations: int = Field(
        2000,
        ge=1,
        description=(
            "(prompt, response) demonstrations for SFT (built-in task: reviews of every mood)"
        ),
    )
    epochs: int = Field(2, ge=1, description="SFT epochs")
    lr: float = Field(1e-3, gt=0, description="SFT learning rate (AdamW)")
    batch_size: int = Field(32, ge=1, description="sequences per SFT step")


class TextRewardConfig(_Section):
    kind: Literal["learned", "judge"] = Field(
        "learned",
        description="the reward PPO and best-of-n optimise: a reward model learned from the "
        "labels, or the AI judge's verdict under the constitution (`judge`; nothing learned)",
    )
    model: str | None = Field(
        None, description="reward-model backbone (hub name or path); None: the base model"
    )
    pooling: Literal["auto", "last", "mean"] = Field(
        "auto", description="read the score at the last token (causal) or mean-pool (encoder)"
    )
    ensemble: int = Field(
        1, ge=1, description="reward models, each on a bootstrap of the comparisons"
    )
    epochs: int = Field(3, ge=1, description="reward-model epochs")
    lr: float = Field(5e-4, gt=0, description="reward-model learning rate (AdamW)")
    batch_size: int = Field(16, ge=1, description="prompts (groups of K responses) per step")
    margin: float = Field(0.0, ge=0, description="margin m in −log σ(r_w − r_l − m) (Llama 2)")
    label_noise: float = Field(0.0, ge=0, lt=1, description="ε of the Bradley–Terry error term")
    val_fraction: float = Field(
        0.2,
        ge=0,
        lt=1,
        description="share of queries held out for validation, split by query id (every "
        "judgement of a query on one side)",
    )


class _TextRLConfig(_Section):
    """What PPO, GRPO and RLOO share: one epoch-and-minibatch loop (rlhflab.policy.text)."""

    steps: int = Field(60, ge=1, description="RL iterations (one batch of responses each)")
    batch_size: int = Field(64, ge=1, description="responses sampled per iteration")
    minibatches: int = Field(4, ge=1, description="minibatches per epoch")
    epochs: int = Field(2, ge=1, description="epochs over each batch")
    lr: float = Field(3e-4, gt=0, description="learning rate (Adam)")
    clip: float = Field(0.2, gt=0, description="policy ratio clip ε")
    eos_penalty: float = Field(
        -1.0, description="added to the score of a response that never emits EOS"
    )


class TextPPOConfig(_TextRLConfig):
    beta: float = Field(
        0.05, ge=0, description="KL penalty coefficient β (initial β when adaptive)"
    )
    kl_target: float | None = Field(
        None, gt=0, description="adaptive KL controller target (Ziegler et al.); None: fixed β"
    )
    kl_horizon: int | None = Field(
        None,
        ge=1,
        description="adaptive controller horizon in responses: β moves by at most "
        "±0.2·batch_size/horizon a step; None: 10 × batch_size (K_β = 0.1, Ziegler et al. 2019)",
    )
    kl_estimator: Literal["k1", "k2"] = Field(
        "k1",
        description="per-token KL estimator in the reward (k3 is biased there: it belongs in a "
        "loss term, as GRPO uses it)",
    )
    clip_value: float | None = Field(0.2, description="value-loss clip (None: unclipped)")
    vf_coef: float = Field(0.5, ge=0, description="value-loss coefficient")
    gamma: float = Field(1.0, gt=0, le=1, description="discount over tokens")
    lam: float = Field(0.95, ge=0, le=1, description="GAE λ over tokens")


class _GroupConfig(_TextRLConfig):
    group_size: int = Field(4, ge=2, description="responses per prompt in a batch (G, or k)")

    @model_validator(mode="after")
    def _whole_groups(self):
        if self.batch_size % self.group_size:
            raise ValueError(
                f"batch_size ({self.batch_size}) must be a multiple of group_size "
                f"({self.group_size})"
            )
        return self


class TextGRPOConfig(_GroupConfig):
    """GRPO (Shao et al. 2024): group-relative advantages, k3 KL in the loss, no value model."""

    group_size: int = Field(8, ge=2, description="responses per prompt in a batch (G)")
    beta: float = Field(0.04, ge=0, description="coefficient of the k3 KL term in the loss")
    scale_rewards: bool = Field(
        True, description="divide by the group's standard deviation (False: Dr. GRPO)"
    )


class TextRLOOConfig(_GroupConfig):
    """RLOO (Ahmadian et al. 2024): leave-one-out baseline, sequence-level KL in the reward."""

    beta: float = Field(0.05, ge=0, description="KL penalty coefficient β in the reward")
    kl_estimator: Literal["k1", "k2"] = Field(
        "k1", description="KL estimator summed over the response, in the reward"
    )


class TextDPOConfig(_Section):
    loss: Literal["sigmoid", "ipo"] = Field(
        "sigmoid", description="DPO (sigmoid) or IPO (squared) loss"
    )
    beta: float = Field(0.1, gt=0, description="β of DPO / IPO")
    label_smoothing: float = Field(
        0.0, ge=0, lt=0.5, description="conservative DPO: assumed label-flip rate"
    )
    epochs: int = Field(2, ge=1, description="DPO epochs over the preference pairs")
    lr: float = Field(5e-4, gt=0, description="DPO learning rate")
    batch_size: int = Field(16, ge=1, description="pairs per DPO step")


class TextConfig(_Section):
    task: Literal["reviews"] = Field("reviews", description="built-in task with a gold reward")
    model: str = Field(
        "builtin",
        description=(
            "policy model: 'builtin' (Step 0 pretrains a tiny GPT-2) or a hub name / local path"
        ),
    )
    dataset: str | None = Field(
        None,
        description=(
            "prompts and demonstrations: None (the task's own), a JSONL file or a hub dataset"
        ),
    )
    lora_r: int = Field(0, ge=0, description="LoRA rank for the policy (0: full fine-tuning)")
    pretrain_sequences: int = Field(
        6000, ge=1, description="Step 0: corpus size for the built-in model"
    )
    pretrain_epochs: int = Field(3, ge=1, description="Step 0: epochs over the corpus")
    n_layer: int = Field(2, ge=1, description="Step 0: transformer layers of the built-in GPT-2")
    n_embd: int = Field(64, ge=8, description="Step 0: width of the built-in GPT-2")
    labels: int = Field(
        400,
        ge=1,
        description="comparisons from the annotator (pairs, or rankings when ranking_k > 2)",
    )
    ranking_k: int = Field(
        2, ge=2, description="responses per comparison: 2 = pairs, K > 2 = K-wise rankings"
    )
    max_new_tokens: int = Field(24, ge=1, description="longest response")
    temperature: float = Field(
        1.0, gt=0, description="sampling temperature, also used for the log-probabilities"
    )
    eval_prompts: int = Field(128, ge=1, description="held-out prompts for the final table")
    best_of_n: int = Field(16, ge=1, description="n of best-of-n sampling against the reward model")
    goodhart_samples: int = Field(
        256,
        ge=0,
        description=(
            "SFT samples per prompt (32 prompts) scored by proxy and gold for best-of-n "
            "Goodhart curves (0: off)"
        ),
    )
    methods: list[Literal["ppo", "grpo", "rloo", "dpo", "best_of_n"]] = Field(
        ["ppo", "dpo", "best_of_n"],
        description="methods to run after SFT and reward modelling (each scored)",
    )
    reward_functions: list[str] = Field(
        [],
        description="'module:function' callables f(prompts, completions) -> list of floats "
        "(verifiable rewards, as TRL's reward_funcs); given, PPO, GRPO, RLOO and best-of-n "
        "optimise their sum instead of the reward model",
    )
    checkpoint_every: int = Field(
        1, ge=1, description="RL iterations between checkpoints (a resumed run starts there)"
    )
    sft: TextSFTConfig = Field(default_factory=TextSFTConfig)
    reward: TextRewardConfig = Field(default_factory=TextRewardConfig)
    ppo: TextPPOConfig = Field(default_factory=TextPPOConfig)
    grpo: TextGRPOConfig = Field(default_factory=TextGRPOConfig)
    rloo: TextRLOOConfig = Field(default_factory=TextRLOOConfig)
    dpo: TextDPOConfig = Field(default_factory=TextDPOConfig)

    @field_validator("reward_functions")
    @classmethod
    def _module_colon_function(cls, value: list[str]) -> list[str]:
        for spec in value:
            module, _, name = spec.partition(":")
            if not module or not name:
                raise ValueError(f"reward function '{spec}': expected 'module:function'")
        return value


DEFAULT_JUDGE_TEMPLATE = (
    "{principle}\nPrompt: {prompt}\nResponse A: {first}\nResponse B: {second}\nAnswer with A or B:"
)


class JudgeConfig(_Section):
    """An AI judge (`feedback.annotator.kind=ai`, `text.reward.kind=judge`): docs/ai-feedback.md."""

    model: str | None = Field(
        None,
        description="local causal LM judge (hub name or path, loaded with from_pretrained); "
        "'builtin': a tiny GPT-2 trained on the reviews task's judge examples; 'scripted': a "
        "simulated judge that applies the reviews principles' rules (scripted_* below)",
    )
    url: str | None = Field(
        None,
        description="OpenAI-compatible API base URL of a judge server (…/v1); used instead of "
        "`model`",
    )
    api_model: str = Field("judge", description="the `model` field sent to the judge server")
    api_key_env: str | None = Field(
        None, description="environment variable holding the judge server's API key (None: none)"
    )
    timeout: float = Field(30.0, gt=0, description="seconds to wait for one judge answer")
    retries: int = Field(
        2, ge=0, description="judge server: retries after a timeout or a 5xx answer, then an error"
    )
    constitution: str | None = Field(
        None,
        description="YAML or markdown file of principles (None: the built-in reviews principles)",
    )
    template: str = Field(
        DEFAULT_JUDGE_TEMPLATE,
        description="judge prompt with {principle}, {prompt}, {first}, {second}; answered A or B",
    )
    both_orders: bool = Field(
        True, description="ask each pair in both orders and average, cancelling position bias"
    )
    soft_labels: bool = Field(
        True,
        description="fit the reward model to the judge's P(x ≻ y) from its log-probabilities "
        "(False: to its hard choice)",
    )
    human_share: float = Field(
        0.0,
        ge=0,
        le=1,
        description="share of queries sent to the synthetic human annotator instead of the AI "
        "(besides those whose principle says `by: human`)",
    )
    references: int = Field(
        2,
        ge=1,
        description="judge reward: SFT responses each response is compared with "
        "(r = mean logit P(y ≻ y_ref))",
    )
    batch_size: int = Field(64, ge=1, description="local judge: prompts per forward pass")
    scripted_scale: float = Field(
        3.0, ge=0, description="scripted judge: logit P(A) per unit of the principle's rule"
    )
    scripted_bias: float = Field(
        1.0, description="scripted judge: logit added to P(A) (its position bias)"
    )
    scripted_noise: float = Field(
        1.0, ge=0, description="scripted judge: std of its logit noise (fixed per prompt)"
    )
    builtin_examples: int = Field(
        6000, ge=1, description="builtin judge: judge-format training examples"
    )
    builtin_epochs: int = Field(4, ge=1, description="builtin judge: training epochs")

    @field_validator("template")
    @classmethod
    def _placeholders(cls, template: str) -> str:
        try:
            template.format(principle="", prompt="", first="", second="")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"the judge template may use only {{principle}}, {{prompt}}, {{first}} and "
                f"{{second}} ({type(exc).__name__}: {exc})"
            ) from None
        missing = [k for k in ("principle", "first", "second") if "{" + k + "}" not in template]
        if missing:
            raise ValueError(
                f"the judge template lacks {', '.join('{' + k + '}' for k in missing)}"
            )
        return template

    @model_validator(mode="after")
    def _one_judge(self) -> JudgeConfig:
        if self.model is not None and self.url is not None:
            raise ValueError("give judge.model or judge.url, not both")
        return self


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
    judge: JudgeConfig = Field(default_factory=JudgeConfig)
    demonstrations: DemonstrationsConfig | None = Field(
        None, description="learn from demonstrations (BC, DAgger, PC, IRL, GAIL, AIRL, CIRL)"
    )

    @model_validator(mode="after")
    def _population_is_for_control(self) -> RunConfig:
        if self.text is not None and self.feedback.population:
            raise ValueError(
                "feedback.population: annotator populations work in control runs only; a text "
                "run is judged by feedback.annotator"
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
}


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


PRESETS = Path(__file__).parent / "presets"
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
