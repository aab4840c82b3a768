"""The disclosure sheet: what an auditor should be told about an RLHF run.

Casper et al. 2023 ("Open problems and fundamental limitations of RLHF", §5, Transparency and
auditing) list the details whose disclosure makes a run's risks visible: the pretraining; how
human evaluators were selected and trained; how examples were selected for feedback; the types of
feedback; quality assurance and inter-rater consistency; the reward model's loss and how
disagreement was modelled; reward-model evaluation; policy evaluation; audits and red teaming;
expected risks and failure modes; plans for monitoring and correcting failures. Policy-optimisation
details are added (rlhflab issue 5). Each item is filled from the run's config and data; what a
run cannot know is marked for its owner to complete.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rlhflab.config import RunConfig
from rlhflab.diagnostics.report_base import render
from rlhflab.feedback.agreement import AnnotatorStats
from rlhflab.types import Judgement

OWNER = "To complete by the run's owner"
LABELS = {"left": "left", "right": "right", "equal": "equal", "cant_tell": "can't tell"}


@dataclass
class Item:
    topic: str
    asks: str  # what Casper et al. §5 ask for, and why
    facts: list[str] = field(default_factory=list)  # filled from the run
    to_complete: str | None = None  # what the run cannot know


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.0%}"


def _people_items(cfg: RunConfig, stats: list[AnnotatorStats], humans: bool) -> list[Item]:
    """Pretraining; who the annotators were and how examples were chosen for them."""
    fb, rm, pol, ann = cfg.feedback, cfg.reward, cfg.policy, cfg.feedback.annotator
    return [
        Item(
            "Pretraining",
            "the pretraining process and data, to make possible biases apparent",
            [
                f"None: the policy (actor-critic MLPs, {pol.hidden} hidden units) and the "
                f"reward model ({rm.ensemble} MLPs, "
                f"{rm.layers}×{rm.hidden}) start from random initialisation (seed "
                f"{cfg.seed}); no pretrained weights or data."
            ],
        ),
        Item(
            "Annotators: selection and training",
            "how evaluators were selected and trained (risks: malicious, unrepresentative "
            "or incapable evaluators)",
            [f"{s.annotator}: {s.labels} judgement{'' if s.labels == 1 else 's'}" for s in stats]
            + (
                [
                    f"'synthetic' is a simulated, Boltzmann-rational annotator judging "
                    f"segments by the env's true reward: temperature τ = {ann.temperature}, "
                    f"error rate ε = {ann.error_rate}, myopia γ = {ann.discount}, tie "
                    f"threshold {ann.tie_threshold}, can't tell "
                    f"{'never' if ann.cant_tell_below is None else f'below {ann.cant_tell_below}'}."
                ]
                if any(s.annotator == "synthetic" for s in stats)
                else []
            ),
            f"{OWNER}: how the people named above were recruited, selected, trained and "
            f"paid, and the instructions they were given."
            if humans
            else None,
        ),
        Item(
            "Selection of examples",
            "how examples were selected for feedback (representativeness, adversarial "
            "examples, data poisoning)",
            [
                f"Pairs of {fb.segment_length}-step segments cut from the policy's own "
                f"rollouts on {cfg.env.id} (fixed horizon {cfg.env.horizon}).",
                f"{fb.initial_share:.0%} of the {fb.labels} labels before RL, then a rate ∝ "
                f"T₀/(T+T₀) with T₀ = {fb.t0:g}·env_steps.",
                "Query selection: "
                + (
                    "random pairs."
                    if fb.selection == "random"
                    else f"ensemble disagreement — {fb.candidates}× candidate pairs, the "
                    f"most disputed kept (Christiano et al. 2017 §2.2.4)."
                ),
            ],
            f"{OWNER}: measures against data poisoning if examples or labels came from "
            f"outside this run."
            if humans
            else None,
        ),
    ]


def _feedback_items(
    stats: list[AnnotatorStats], inter_rater: tuple[float | None, int], humans: bool
) -> list[Item]:
    """The feedback's types and its quality."""
    counts = {j.value: sum(s.counts.get(j.value, 0) for s in stats) for j in Judgement}
    return [
        Item(
            "Types of feedback",
            "the feedback types used (risks of too little or too poor feedback)",
            [
                "Pairwise comparisons of two segments with four answers: "
                + ", ".join(f"{LABELS[k]} {v}" for k, v in counts.items())
                + "."
            ],
        ),
        Item(
            "Quality assurance and inter-rater consistency",
            "measures for quality control in feedback collection and inter-rater consistency",
            [
                f"{s.annotator}: agrees with the gold (true-return) preference on "
                f"{_pct(s.gold_agreement)} of {s.gold_pairs} strict answers; "
                f"says left on {_pct(s.left_share)} of strict answers (position bias; 50% "
                f"expected)."
                for s in stats
            ]
            + [
                f"Inter-rater agreement: {_pct(inter_rater[0])} over {inter_rater[1]} pairs "
                f"of judgements of the same query."
                if inter_rater[1]
                else "No query was judged twice, so inter-rater consistency cannot be measured."
            ],
            f"{OWNER}: the quality-assurance procedure for human feedback (gold questions, "
            f"re-labelling, removal of annotators)."
            if humans
            else None,
        ),
    ]


def _reward_items(cfg: RunConfig, rm_eval: dict) -> list[Item]:
    """The reward model's loss and evaluation."""
    rm = cfg.reward
    return [
        Item(
            "Reward-model loss and disagreement",
            "the loss used to fit the reward model and how disagreement was modelled "
            "(misspecification)",
            [
                f"Bradley–Terry over segment sums, P̂ = (1−ε)·σ(R̂₁ − R̂₂) + ε/2 with ε = "
                f"{rm.label_noise} (Christiano et al. 2017 §2.2.3); "
                "'equal' is the target ½; 'can't tell' is dropped.",
                f"An ensemble of {rm.ensemble} members, each fit on a bootstrap of the "
                f"training split; {rm.val_fraction:.1%} of queries held out; "
                f"weight decay {rm.weight_decay}, early stopping after {rm.patience} epochs.",
                "Disagreement between annotators is modelled only as noise (ε), not as "
                "distinct preferences.",
            ],
        ),
        Item(
            "Reward-model evaluation",
            "reward-model evaluation and results, with red teaming",
            [
                f"Held-out accuracy {_pct(rm_eval.get('val_acc'))} (strict judgements of "
                f"the {rm_eval.get('val_pairs', 'n/a')} held-out queries) at the last "
                f"refit; "
                f"expected calibration error {rm_eval['ece']:.3f}."
                if rm_eval.get("ece") is not None
                else f"Held-out accuracy {_pct(rm_eval.get('val_acc'))}; calibration not "
                f"available.",
                f"EPIC distance to the true reward at the last checkpoint: "
                f"{rm_eval['epic']:.3f} (0 = equivalent up to shaping and scale, 1 = "
                f"opposite)."
                if rm_eval.get("epic") is not None
                else "EPIC distance to the true reward: not available.",
            ],
            f"{OWNER}: red teaming of the reward model.",
        ),
    ]


def _policy_items(cfg: RunConfig, summary: dict | None) -> list[Item]:
    """How the policy was optimised and evaluated."""
    pol = cfg.policy
    return [
        Item(
            "Policy optimisation",
            "how the policy was optimised against the reward model",
            [
                f"{pol.algo.upper()} for {cfg.env_steps} env steps: lr {pol.lr}, "
                f"{pol.n_steps} steps × {cfg.env.num_envs} envs per rollout, "
                f"{pol.epochs} epochs × {pol.minibatches} minibatches, clip {pol.clip}, γ = "
                f"{pol.gamma}, GAE λ = {pol.gae_lambda}, entropy bonus {pol.ent_coef}; "
                f"r̂ "
                f"{'normalised by running mean/std' if pol.normalize_rewards else 'used as is'}; "
                f"no KL penalty to a reference policy."
            ],
        ),
        Item(
            "Policy evaluation",
            "policy evaluation and results, with red teaming and assessment of risky capabilities",
            [
                f"True return over {cfg.eval_episodes} episodes: "
                + ", ".join(
                    f"{k.replace('_', ' ')} {v:.1f}" for k, v in summary["true_return"].items()
                )
                + (
                    f"; normalised score {summary['normalised_score']:.2f}."
                    if summary.get("normalised_score") is not None
                    else "."
                )
            ]
            if summary
            else ["The run has no summary.json: it did not finish."],
            f"{OWNER}: red teaming of the policy and assessment of risky capabilities.",
        ),
    ]


def audits_item() -> Item:
    """Audits and red teaming: nothing a run can know; always the owner's to fill in."""
    return Item(
        "Audits and red teaming",
        "internal and external audits and red teaming",
        [],
        f"{OWNER}: audits and red teaming of this run, and their findings.",
    )


def _risk_items(cfg: RunConfig, alarms: dict[str, dict]) -> list[Item]:
    """Audits, expected risks, monitoring."""
    return [
        audits_item(),
        Item(
            "Expected risks and failure modes",
            "expected risks and anticipated failure modes",
            [
                f"Alarm '{name}' fired first at {a['env_steps']} env steps: {a['message']}."
                for name, a in alarms.items()
            ]
            or ["No over-optimisation alarm fired during training."],
            f"{OWNER}: the risks and failure modes expected where the policy is used.",
        ),
        Item(
            "Monitoring and correcting failures",
            "plans for monitoring and correcting failures",
            [
                f"During training: proxy-vs-disagreement band {cfg.alarms.band_width}σ over "
                f"the first {cfg.alarms.early_iterations} iterations; "
                f"KL budget {cfg.alarms.kl_budget or 'off'}; entropy collapse below "
                f"{cfg.alarms.entropy_collapse:.0%}; reward-model accuracy drop "
                f"{cfg.alarms.rm_acc_drop}; "
                f"patience {cfg.alarms.patience}; the run "
                f"{'stops' if cfg.alarms.stop else 'does not stop'} on an alarm."
            ],
            f"{OWNER}: monitoring and correction after deployment.",
        ),
    ]


def disclosure_sheet(
    cfg: RunConfig,
    summary: dict | None,
    alarms: dict[str, dict],
    stats: list[AnnotatorStats],
    inter_rater: tuple[float | None, int],
    rm_eval: dict,
) -> list[Item]:
    """The twelve items of the sheet, in Casper et al.'s order."""
    humans = any(s.annotator != "synthetic" for s in stats)
    return [
        *_people_items(cfg, stats, humans),
        *_feedback_items(stats, inter_rater, humans),
        *_reward_items(cfg, rm_eval),
        *_policy_items(cfg, summary),
        *_risk_items(cfg, alarms),
    ]


def to_markdown(items: list[Item]) -> str:
    return str(render("disclosure.md", items=items))


def to_html(items: list[Item]) -> str:
    return render("disclosure.html", items=items)
