"""The language-model run's config sections (`text`: SFT, reward model, PPO, GRPO, RLOO, DPO)
and the AI judge's (`judge`); `rlhflab.config` assembles them into `RunConfig`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from rlhflab.config.sections import AnnotatorTreatment, _Section


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


class TextRewardConfig(AnnotatorTreatment):
    """The text reward model. `annotators` (β per annotator, flags) acts on pairs: a K > 2
    ranking keeps β = 1."""

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
    epochs: int = Field(
        3, ge=1, description="reward-model epochs at most (early stopping on the held-out loss)"
    )
    lr: float = Field(5e-4, gt=0, description="reward-model learning rate (AdamW)")
    weight_decay: float = Field(0.01, ge=0, description="reward-model AdamW weight decay")
    batch_size: int = Field(16, ge=1, description="prompts (groups of K responses) per step")
    patience: int = Field(
        3, ge=1, description="validation checks without improvement before stopping"
    )
    min_steps: int = Field(0, ge=0, description="gradient steps at least, despite early stopping")
    margin: float = Field(0.0, ge=0, description="margin m in −log σ(r_w − r_l − m) (Llama 2)")
    label_noise: float = Field(0.0, ge=0, lt=1, description="ε of the Bradley–Terry error term")
    part_weight: float = Field(
        1.0,
        ge=0,
        description="per-step feedback: weight λ of the preferences on each aligned step "
        "(sentence) of two responses (reward/process.py; only pairs that carry step labels)",
    )
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
    value_model: Literal["head", "reward_model"] = Field(
        "head",
        description="head: a linear value head on the policy's hidden state; reward_model: a "
        "separate value network initialised from the reward model (InstructGPT; needs a fitted "
        "reward model with the policy's tokenizer)",
    )
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


class TextPHFConfig(_Section):
    """Pretraining with human feedback (Korbak et al. 2023): Step 0's objective."""

    objective: Literal["mle", "filtering", "conditional", "unlikelihood"] = Field(
        "mle",
        description="Step 0 of the built-in model: ordinary language modelling (mle), or with the "
        "task's gold detector folded in: undesirable documents dropped (filtering), control tokens "
        "<|good|>/<|bad|> prepended and samples conditioned on <|good|> (conditional), or "
        "unlikelihood on undesirable spans (unlikelihood); policy/phf.py",
    )
    unlikelihood_alpha: float = Field(
        1.0,
        ge=0,
        description="α, the weight of the unlikelihood term −log(1 − π) on undesirable tokens",
    )


class TextSLCAIConfig(_Section):
    """Constitutional AI's supervised stage (policy/constitutional.py): critique, revise, SFT."""

    prompts: int = Field(
        0, ge=0, description="red-team prompts the policy answers, critiques and revises (0: off)"
    )
    critic: Literal["policy", "base", "scripted"] = Field(
        "policy",
        description="who critiques and revises: the policy itself, the Step-0 model, or the "
        "task's gold critique and revision (a scripted stand-in, not a model)",
    )
    principle: str = Field(
        "harmless", description="id of the constitution's principle the critique is asked under"
    )
    template: str = Field(
        "{prompt} {response} critique :",
        description="the critic's prompt with {prompt}, {response} (and {principle}: the "
        "principle's text); its continuation is read as '<critique> revision : <revision>'",
    )
    epochs: int = Field(2, ge=1, description="fine-tuning epochs over revisions and demonstrations")
    lr: float = Field(1e-3, gt=0, description="fine-tuning learning rate (AdamW)")


class TextConfig(_Section):
    task: Literal["reviews", "reviews-insults"] = Field(
        "reviews",
        description="built-in task with a gold reward; 'reviews-insults' adds insults aimed at "
        "people (a gold detector, red-team prompts, critique examples): docs/ai-feedback.md",
    )
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
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto",
        description="where models and batches live: 'auto' is cuda:LOCAL_RANK when CUDA is "
        "available, else the CPU (docs/scaling.md)",
    )
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
    phf: TextPHFConfig = Field(default_factory=TextPHFConfig)
    sft: TextSFTConfig = Field(default_factory=TextSFTConfig)
    sl_cai: TextSLCAIConfig = Field(default_factory=TextSLCAIConfig)
    reward: TextRewardConfig = Field(default_factory=TextRewardConfig)
    ppo: TextPPOConfig = Field(default_factory=TextPPOConfig)
    grpo: TextGRPOConfig = Field(default_factory=TextGRPOConfig)
    rloo: TextRLOOConfig = Field(default_factory=TextRLOOConfig)
    dpo: TextDPOConfig = Field(default_factory=TextDPOConfig)

    @model_validator(mode="after")
    def _phf_needs_a_detector(self):
        if self.phf.objective != "mle" and (self.model != "builtin" or self.task == "reviews"):
            raise ValueError(
                f"text.phf.objective={self.phf.objective} pretrains the built-in model on a task "
                "with a gold detector of undesirable content: set text.model=builtin and "
                "text.task=reviews-insults"
            )
        return self

    @field_validator("reward_functions")
    @classmethod
    def _module_colon_function(cls, value: list[str]) -> list[str]:
        for spec in value:
            module, _, name = spec.partition(":")
            if not module or not name:
                raise ValueError(f"reward function '{spec}': expected 'module:function'")
        return value


# the format of the judge examples in the reviews-insults corpus (`text/task.py`), which
# `judge.model: base` is asked in
BASE_JUDGE_TEMPLATE = "{principle} {prompt} A : {first} B : {second} answer :"
DEFAULT_JUDGE_TEMPLATE = (
    "{principle}\nPrompt: {prompt}\nResponse A: {first}\nResponse B: {second}\nAnswer with A or B:"
)


class JudgeConfig(_Section):
    """An AI judge (`feedback.annotator.kind=ai`, `text.reward.kind=judge`): docs/ai-feedback.md."""

    model: str | None = Field(
        None,
        description="local causal LM judge (hub name or path, loaded with from_pretrained); "
        "'base': the run's own Step-0 model (reviews-insults: its corpus holds judge examples, "
        "asked in their format); 'builtin': a tiny GPT-2 trained on the reviews task's judge "
        "examples; 'scripted': a simulated judge that applies the reviews principles' rules "
        "(scripted_* below)",
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
    read_critiques: bool = Field(
        False,
        description="critiques in the store (people's, or imported) are read by the judge into "
        "comparisons for the reward model (feedback/critiques.py); needs judge.model or judge.url",
    )
    human_share: float = Field(
        0.0,
        ge=0,
        le=1,
        description="share of queries sent to the synthetic human annotator instead of the AI "
        "(besides those whose principle says `by: human`)",
    )
    humans: Literal["synthetic", "people"] = Field(
        "synthetic",
        description="who answers the queries routed to humans: the synthetic annotator, or "
        "people in the labeling app (`rlhflab label RUN_DIR`; the run waits for them)",
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
        if self.model == "base" and self.template == DEFAULT_JUDGE_TEMPLATE:
            self.template = BASE_JUDGE_TEMPLATE  # the format of the judge examples Step 0 learned
        return self
