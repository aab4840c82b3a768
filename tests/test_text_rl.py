"""GRPO, RLOO and the review fixes of the text path (issue 15), each against a hand-computed value
or a run on a tiny model the tests make themselves."""

import math

import pytest
import torch

from rlhflab.config import ConfigError, TextDPOConfig, build_config
from rlhflab.feedback.store import FeedbackStore
from rlhflab.feedback.text import ask_for_comparisons, gather_comparisons
from rlhflab.policy.dpo import train_dpo
from rlhflab.policy.ppo import (
    AdaptiveKLController,
    group_advantages,
    kl_loss,
    leave_one_out_advantages,
)
from rlhflab.policy.text import TextRL, per_token_rewards
from rlhflab.reward.functions import RewardFunctionError, RewardFunctions
from rlhflab.reward.model import is_validation
from rlhflab.reward.text import TextRewardEnsemble, split_by_query
from rlhflab.runs import RunDir
from rlhflab.text.models import (
    TextRewardModel,
    build_word_tokenizer,
    load_causal_lm,
    load_tokenizer,
    tiny_gpt2,
)
from rlhflab.text.sequences import SeqBatch, encode, generate, token_logprobs
from rlhflab.text.task import TASKS
from rlhflab.text_loop import TextInterrupted, TextLoop, TextRunError
from rlhflab.types import RankedResponses

PROMPT = "review of the film :"


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-gpt2")
    tokenizer = build_word_tokenizer(TASKS["reviews"].vocabulary)
    model = tiny_gpt2(len(tokenizer), n_layer=1, n_embd=32, n_head=2, tokenizer=tokenizer)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def tiny_config(tiny_path, *more):
    return build_config(
        None,
        [
            f"text.model={tiny_path}",
            "text.labels=8",
            "text.eval_prompts=8",
            "text.sft.demonstrations=32",
            "text.sft.epochs=1",
            "text.reward.epochs=1",
            "text.max_new_tokens=6",
            "text.goodhart_samples=0",
            "text.best_of_n=2",
            *more,
        ],
    )


# -- GRPO, RLOO and KL in the loss: the maths -----------------------------------------------------
def test_grpo_advantages_match_a_hand_computed_group():
    # group 1: rewards 1, 2, 3, 6: mean 3, unbiased std √(14/3) = 2.160247
    # group 2: all equal: advantage 0 (no signal), not NaN
    r = torch.tensor([1.0, 2.0, 3.0, 6.0, 5.0, 5.0, 5.0, 5.0])
    adv = group_advantages(r, group_size=4)
    s = math.sqrt(14 / 3) + 1e-4
    assert adv[:4].tolist() == pytest.approx([-2 / s, -1 / s, 0.0, 3 / s], abs=1e-6)
    assert adv[4:].tolist() == [0.0] * 4
    # Dr. GRPO: no division by the standard deviation
    assert group_advantages(r, 4, scale=False)[:4].tolist() == [-2.0, -1.0, 0.0, 3.0]


def test_rloo_baseline_excludes_the_sample_itself():
    r = torch.tensor([1.0, 2.0, 3.0, 6.0])
    adv = leave_one_out_advantages(r, group_size=4)
    # sample 0: 1 − (2 + 3 + 6)/3 = −8/3; sample 3: 6 − (1 + 2 + 3)/3 = 4
    assert adv.tolist() == pytest.approx([1 - 11 / 3, 2 - 10 / 3, 3 - 9 / 3, 6 - 2], abs=1e-6)
    # changing a sample's own reward leaves its baseline unchanged
    r2 = r.clone()
    r2[0] = 100.0
    assert float(r2[0] - leave_one_out_advantages(r2, 4)[0]) == pytest.approx(11 / 3)
    # k/(k−1)·(r − mean): the unbiased, centred form
    assert adv.tolist() == pytest.approx((4 / 3 * (r - r.mean())).tolist(), abs=1e-6)


def test_kl_in_the_loss_matches_k3s_closed_form():
    # two rows; masked tokens must not count
    logp = torch.tensor([[0.0, -1.0, -2.0], [-0.5, -0.5, 0.0]])
    logp_ref = torch.tensor([[0.0, -1.5, -1.0], [-1.0, -0.2, 0.0]])
    mask = torch.tensor([[0.0, 1.0, 1.0], [1.0, 1.0, 0.0]])

    def k3(x):  # x = log π − log π_ref:  e^{−x} − 1 + x
        return math.exp(-x) - 1 + x

    expected = (k3(0.5) + k3(-1.0) + k3(0.5) + k3(-0.3)) / 4
    assert float(kl_loss(logp, logp_ref, mask)) == pytest.approx(expected, abs=1e-6)
    # its gradient w.r.t. log π is 1 − π_ref/π = 1 − e^{−x} per token (then averaged)
    lp = logp.clone().requires_grad_(True)
    kl_loss(lp, logp_ref, mask).backward()
    assert float(lp.grad[0, 1]) == pytest.approx((1 - math.exp(-0.5)) / 4, abs=1e-6)


def test_k3_is_not_a_per_token_reward():
    batch = SeqBatch(torch.zeros(1, 3, dtype=torch.long), torch.ones(1, 3), torch.ones(1, 3))
    with pytest.raises(ValueError, match="k3"):
        per_token_rewards(torch.zeros(1), torch.zeros(1, 3), torch.zeros(1, 3), batch, 0.1, "k3")
    with pytest.raises(ConfigError, match="kl_estimator"):
        build_config(None, ["text.ppo.kl_estimator=k3"])
    _, kl = per_token_rewards(
        torch.zeros(1), torch.full((1, 3), -1.0), torch.full((1, 3), -2.0), batch, 0.1, "k2"
    )
    assert kl.tolist() == [[0.5, 0.5, 0.5]]  # ½·x² with x = 1


def test_adaptive_kl_horizon_scales_with_the_batch():
    """With n = 64 against a horizon of 10,000, β could move 8% in 60 steps; the default horizon
    is now 10 × batch_size (K_β = 0.1 per step, Ziegler et al. 2019), and config can set it."""
    cfg = build_config(None, ["text.ppo.kl_target=1.0", "text.ppo.batch_size=64"]).text
    assert cfg is not None
    policy = tiny_gpt2(16, n_layer=1, n_embd=8, n_head=2)
    rl = TextRL(policy, policy, None, None, cfg.ppo, 4, 1.0)
    assert isinstance(rl.kl_ctl, AdaptiveKLController) and rl.kl_ctl.horizon == 640
    beta = rl.kl_ctl.beta
    for _ in range(60):
        rl.kl_ctl.update(kl=2.0, n_steps=64)  # twice the target: +2% a step
    assert rl.kl_ctl.beta / beta == pytest.approx(1.02**60)  # 3.3×, not 1.08×
    cfg = build_config(None, ["text.ppo.kl_target=1.0", "text.ppo.kl_horizon=100"]).text
    assert cfg is not None
    assert TextRL(policy, policy, None, None, cfg.ppo, 4, 1.0).kl_ctl.horizon == 100


def test_group_batches_must_be_whole_groups():
    with pytest.raises(ConfigError, match="multiple of group_size"):
        build_config(None, ["text.grpo.batch_size=12"])  # G = 8


# -- review fixes -----------------------------------------------------------------------------
def test_dpo_trains_without_dropout_so_the_log_ratio_starts_at_zero(tiny_path):
    """A model with dropout (as hub models have): at a vanishing learning rate every DPO loss is
    log 2 only if the policy's log-probs come from eval mode, as the reference's do."""
    tokenizer = load_tokenizer(tiny_path)
    policy = tiny_gpt2(len(tokenizer), n_layer=1, n_embd=32, n_head=2, tokenizer=tokenizer)
    policy.config.resid_pdrop = policy.config.embd_pdrop = 0.5
    for m in policy.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.5
    reference = tiny_gpt2(len(tokenizer), n_layer=1, n_embd=32, n_head=2, tokenizer=tokenizer)
    reference.load_state_dict(policy.state_dict())
    for m in reference.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.5
    pairs = [(PROMPT, "great film", "dull film")] * 8
    cfg = TextDPOConfig(lr=1e-12, epochs=1, batch_size=4)
    losses = train_dpo(policy, reference, tokenizer, pairs, cfg)
    assert losses == [pytest.approx(math.log(2), abs=1e-6)]


def test_reward_model_validation_is_split_by_query_id_with_val_fraction():
    # overlap 2: each query judged twice; both judgements on the same side
    comps = [
        RankedResponses(PROMPT, (f"a{q}", f"b{q}"), query_id=q)
        for q in range(1, 41)
        for _ in (0, 1)
    ]
    train, val = split_by_query(comps, 0.25)
    train_ids, val_ids = {c.query_id for c in train}, {c.query_id for c in val}
    assert not train_ids & val_ids and len(train) + len(val) == 80
    assert val_ids == {q for q in range(1, 41) if is_validation(q, 0.25)}
    assert 0.15 < len(val_ids) / 40 < 0.35
    assert len(split_by_query(comps, 0.5)[1]) > len(val)  # val_fraction is used, not 0.2


def test_sampling_ignores_the_hub_models_generation_config(tiny_path):
    """A hub generation_config with repetition penalties must not shape π's samples."""
    tokenizer = load_tokenizer(tiny_path)
    policy = load_causal_lm(tiny_path)
    policy.generation_config.no_repeat_ngram_size = 1
    policy.generation_config.repetition_penalty = 1e6
    policy.generation_config.top_k = 3
    batch, texts, _ = generate(policy, tokenizer, [PROMPT] * 64, max_new_tokens=30, seed=0)
    words = [t.split() for t in texts]
    assert any(len(set(w)) < len(w) for w in words)  # tokens repeat, as π samples them
    assert policy.generation_config.no_repeat_ngram_size == 1  # the model's own is put back
    # the samples' log-probs are those of π: sampled tokens are never impossible under it
    with torch.no_grad():
        logp = token_logprobs(policy, batch)
    assert torch.isfinite(logp).all()


def test_an_unfinished_response_at_exactly_n_positions_scores(tiny_path):
    tokenizer = load_tokenizer(tiny_path)
    model = tiny_gpt2(
        len(tokenizer), n_layer=1, n_embd=32, n_head=2, n_positions=16, tokenizer=tokenizer
    )
    room = 16 - len(tokenizer(PROMPT)["input_ids"])
    batch, texts, ended = generate(model, tokenizer, [PROMPT] * 8, room, seed=0)
    assert batch.input_ids.shape[1] == 16 and not ended.all()
    rm = TextRewardEnsemble(TextRewardModel(model.transformer), tokenizer)
    assert torch.isfinite(rm.score([PROMPT] * 8, texts)).all()  # +EOS would make 17 tokens
    assert encode(tokenizer, [PROMPT] * 8, texts, 16).input_ids.shape[1] <= 16
    with pytest.raises(ValueError, match="leaves room for"):
        generate(model, tokenizer, [PROMPT], room + 1, seed=0)


def test_prompts_longer_than_the_context_are_refused(tiny_path, tmp_path):
    cfg = tiny_config(tiny_path, "text.max_new_tokens=62")  # a context of 64
    with pytest.raises(TextRunError, match=r"prompts are too long: prompt 0 .* leaves room for 2"):
        TextLoop(cfg, RunDir(tmp_path)).run()


# -- resume ---------------------------------------------------------------------------------------
def test_feedback_is_not_gathered_twice(tiny_path, tmp_path):
    """The old bug: pointed at an existing run, gathering added another `labels` queries."""
    cfg = tiny_config(tiny_path)
    store = FeedbackStore(RunDir(tmp_path).store_url)
    policy, tokenizer = load_causal_lm(tiny_path), load_tokenizer(tiny_path)
    prompts = [f"{PROMPT} {i}" for i in range(3)]
    # a run stopped after asking 5 of its 8 queries, none judged
    small = tiny_config(tiny_path, "text.labels=5")
    ask_for_comparisons(small, policy, tokenizer, prompts, store)
    assert store.count_queries() == 5 and store.count_judgements() == 0
    store.finish_run()  # as a stop does: the unanswered queries are withdrawn
    first = gather_comparisons(cfg, policy, tokenizer, prompts, store, lambda r: None)
    again = gather_comparisons(cfg, policy, tokenizer, prompts, store, lambda r: None)
    assert store.count_queries() == 8 and store.count_judgements() == 8
    assert first == again and len({c.query_id for c in first}) == 8


def test_a_killed_text_run_resumes_with_the_same_labels_and_nothing_twice(tiny_path, tmp_path):
    more = ("text.methods=[ppo,dpo,best_of_n]", "text.ppo.steps=4", "text.ppo.batch_size=4")
    cfg = tiny_config(tiny_path, *more)
    whole = TextLoop(cfg, RunDir(tmp_path / "whole")).run()

    def kill_at_ppo_iteration_3(record):
        if record.get("phase") == "ppo" and record["iteration"] == 3:
            raise KeyboardInterrupt

    run = RunDir(tmp_path / "killed")
    with pytest.raises(TextInterrupted) as stopped:
        TextLoop(cfg, run, on_log=kill_at_ppo_iteration_3).run()
    # Ctrl-C promises only what exists: ppo's checkpoint is at iteration 2 (3 was logged, unsaved)
    message = str(stopped.value)
    assert "SFT" in message and "reward model" in message and "ppo at iteration 2" in message
    assert "8 labels" in message and "dpo" not in message

    resumed = TextLoop(tiny_config(tiny_path, *more), run, resume=True).run()
    store = FeedbackStore(run.store_url)
    payloads = [
        (r.query.payload["prompt"], *r.query.payload["responses"]) for r in store.judgement_rows()
    ]
    assert store.count_queries() == 8 and resumed["labels"] == 8 == len(set(payloads))
    log = run.metrics()
    assert [r["iteration"] for r in log if r["phase"] == "ppo"] == [1, 2, 3, 4]
    assert sum(r["phase"] == "reward_model" and "rm_val_pairs" in r for r in log) == 1
    assert [r["method"] for r in log if r["phase"] == "eval"] == ["sft", "ppo", "dpo", "best_of_2"]
    # resumed from its checkpoints, the run is the uninterrupted one
    for name in ("sft", "ppo", "dpo", "best_of_2"):
        assert resumed["methods"][name]["gold"] == pytest.approx(whole["methods"][name]["gold"])
        assert resumed["methods"][name]["kl"] == pytest.approx(
            whole["methods"][name]["kl"], abs=1e-5
        )


def test_ctrl_c_before_any_checkpoint_promises_nothing(tiny_path, tmp_path):
    def kill_in_sft(record):
        if record.get("phase") == "sft":
            raise KeyboardInterrupt

    with pytest.raises(TextInterrupted, match="nothing is checkpointed yet"):
        TextLoop(tiny_config(tiny_path), RunDir(tmp_path), on_log=kill_in_sft).run()


# -- GRPO and RLOO in runs, reward functions ------------------------------------------------
def test_grpo_and_rloo_run_and_are_scored_like_the_others(tiny_path, tmp_path):
    cfg = tiny_config(
        tiny_path,
        "text.methods=[grpo,rloo]",
        "text.grpo.steps=2",
        "text.grpo.batch_size=8",
        "text.grpo.group_size=4",
        "text.rloo.steps=2",
        "text.rloo.batch_size=8",
        "text.rloo.group_size=2",
    )
    summary = TextLoop(cfg, RunDir(tmp_path)).run()
    assert set(summary["methods"]) == {"sft", "grpo", "rloo"}
    for m in summary["methods"].values():
        assert {"gold", "proxy", "kl", "distinct_2"} <= m.keys()
    log = RunDir(tmp_path).metrics()
    grpo = [r for r in log if r["phase"] == "grpo"]
    rloo = [r for r in log if r["phase"] == "rloo"]
    assert len(grpo) == len(rloo) == 2
    assert "kl_loss" in grpo[0] and "value_loss" not in grpo[0] and "kl_loss" not in rloo[0]
    assert abs(grpo[0]["kl"]) < 1e-5  # sampled before any update: π = π_ref
    report = (tmp_path / "report.html").read_text()
    assert "GRPO training" in report and "RLOO training" in report
    sheet = (tmp_path / "disclosure.md").read_text()  # the disclosure sheet, as control runs have
    assert (
        "## 12. Monitoring" in sheet and "GRPO: 2 iterations of 8 responses in groups of 4" in sheet
    )
    assert "Held-out accuracy" in sheet and "Disclosure sheet" in report


def test_a_single_grpo_step_reuses_its_forward_as_the_old_log_probs(tiny_path, monkeypatch):
    """One epoch of one minibatch: log π_old is the update's own forward, not a second one; the
    update and what is logged are those of the two-forward path."""
    from rlhflab.config import TextGRPOConfig

    tokenizer = load_tokenizer(tiny_path)
    cfg = TextGRPOConfig(batch_size=8, group_size=4, epochs=1, minibatches=1, beta=0.1)
    runs = []
    for reuse in (True, False):
        policy = load_causal_lm(tiny_path)
        rl = TextRL(
            policy,
            load_causal_lm(tiny_path),
            tokenizer,
            lambda p, t: torch.tensor([float(len(x)) for x in t]),
            cfg,
            6,
            1.0,
        )
        calls: list[int] = []
        forward = rl._logprobs_values
        monkeypatch.setattr(
            rl, "_logprobs_values", lambda b, c=calls, f=forward: c.append(1) or f(b)
        )
        monkeypatch.setattr(rl, "one_step_on_policy", lambda r=reuse: r)
        records = [rl.step([PROMPT, PROMPT + " x"]) for _ in range(2)]
        runs.append((records, [p.detach().clone() for p in policy.parameters()], len(calls)))
    (ours, w_ours, n_ours), (two, w_two, n_two) = runs
    assert (n_ours, n_two) == (2, 4)  # one forward per step instead of two
    for a, b in zip(ours, two):
        for k in ("kl", "entropy", "policy_loss", "kl_loss", "clip_frac"):
            assert a[k] == pytest.approx(b[k], abs=1e-5), k
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(w_ours, w_two))


def test_reward_functions_stand_in_for_the_reward_model(tiny_path, tmp_path):
    fn = RewardFunctions(["text_rewards:positive_words", "text_rewards:length_only"])
    assert fn(["p", "p"], ["great film", "a good good film"]).tolist() == [2.5, 4.5]
    cfg = tiny_config(
        tiny_path,
        "text.reward_functions=[text_rewards:positive_words]",
        "text.methods=[grpo,best_of_n]",
        "text.grpo.steps=1",
        "text.grpo.batch_size=8",
    )
    summary = TextLoop(cfg, RunDir(tmp_path)).run()
    # no comparisons are needed: no labels, no reward model
    assert summary["labels"] == 0 and summary["reward_model"] == {}
    assert set(summary["methods"]) == {"sft", "grpo", "best_of_2"}
    sheet = (tmp_path / "disclosure.md").read_text()
    assert "No feedback: the reward is given by functions text_rewards:positive_words" in sheet
    assert "No learned reward model" in sheet


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("raises", r"raised KeyError: 'no such field'"),
        ("nan_at_second", r"returned nan for completion 1"),
        ("one_short", r"returned shape \(7,\) for 8 completions"),
    ],
)
def test_a_bad_reward_function_stops_the_run_naming_it_and_the_step(
    tiny_path, tmp_path, name, says
):
    cfg = tiny_config(
        tiny_path,
        f"text.reward_functions=[text_rewards:{name}]",
        "text.methods=[rloo]",
        "text.rloo.batch_size=8",
    )
    with pytest.raises(TextRunError, match=f"text_rewards:{name} {says}") as err:
        TextLoop(cfg, RunDir(tmp_path)).run()
    # it fails on the first call, at the SFT policy's scoring, with what the run has so far
    assert "during sft" in str(err.value) and "checkpointed: SFT" in str(err.value)
    with pytest.raises(RewardFunctionError, match="has no 'missing'"):
        RewardFunctions(["text_rewards:missing"])


def test_a_reward_function_failing_mid_rl_names_the_iteration_and_resumes(tiny_path, tmp_path):
    import text_rewards

    text_rewards.calls["flaky"] = 0
    more = ("text.reward_functions=[text_rewards:flaky]", "text.methods=[rloo]")
    cfg = tiny_config(tiny_path, *more, "text.rloo.steps=3", "text.rloo.batch_size=8")
    with pytest.raises(
        TextRunError,
        match=r"flaky raised RuntimeError: the grader went away, during rloo "
        r"iteration 2\. .*rloo at iteration 1",
    ):
        TextLoop(cfg, RunDir(tmp_path)).run()
    text_rewards.calls["flaky"] = -100  # fixed
    summary = TextLoop(cfg, RunDir(tmp_path), resume=True).run()
    assert [r["iteration"] for r in RunDir(tmp_path).metrics() if r["phase"] == "rloo"] == [1, 2, 3]
    assert set(summary["methods"]) == {"sft", "rloo"}


def test_logits_only_for_response_positions_give_the_full_log_probs(tiny_path):
    """token_logprobs skips the prompt's logits (logits_to_keep); the values are the full ones."""
    import torch.nn.functional as F

    tokenizer = load_tokenizer(tiny_path)
    model = load_causal_lm(tiny_path).eval()
    batch = encode(
        tokenizer,
        [PROMPT, "review of the show : it was", "review :"],
        ["great", "a clever plot .", "dull dull"],
        64,
    )
    with torch.no_grad():
        logp, entropy = token_logprobs(model, batch, 0.7, return_entropy=True)
        out = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
        full = F.log_softmax(out.logits[:, :-1] / 0.7, -1)
        want = full.gather(-1, batch.input_ids[:, 1:, None]).squeeze(-1)
        want_ent = -(full.exp() * full).sum(-1)
    m = batch.response_mask[:, 1:]
    assert torch.allclose(logp[:, 1:], want * m, atol=1e-5)
    assert torch.allclose(entropy[:, 1:], want_ent * m, atol=1e-4)


def test_goodhart_averages_text_runs_over_seeds(tmp_path):
    """`rlhflab goodhart RUN RUN …`: each point the mean over the seeds, then one fit."""
    import json

    import numpy as np

    from rlhflab.diagnostics.goodhart import goodhart, goodhart_over_seeds

    rng = np.random.default_rng(0)
    runs = []
    for seed in range(3):
        run = tmp_path / f"seed{seed}"
        run.mkdir()
        (run / "config.yaml").write_text("text:\n  task: reviews\n")
        proxy = rng.normal(size=(4, 16))
        np.savez(run / "goodhart_samples.npz", proxy=proxy, gold=proxy + rng.normal(size=(4, 16)))
        records = [{"phase": "eval", "method": "sft", "proxy": 0.0, "gold": 0.0}]
        for it in range(1, 9):
            kl = 0.5 * it + rng.normal(0, 0.1)
            d = math.sqrt(kl)
            records.append(
                {"phase": "ppo", "iteration": it, "kl": kl, "proxy": d,
                 "gold": d * (1.0 - 0.5 * math.log(d)) + rng.normal(0, 0.05)}
            )  # fmt: skip
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        runs.append(run)
    points, fitted = goodhart_over_seeds(runs)
    single = [goodhart(r)[0] for r in runs]
    assert len(points) == len(single[0])
    for i, p in enumerate(points):
        assert p.gold == pytest.approx(np.mean([s[i].gold for s in single]))
        assert p.kl == pytest.approx(np.mean([s[i].kl for s in single]))
    assert set(fitted) == {"best_of_n", "rl"} and fitted["rl"].points == 9
    # the average is closer to the form than any one seed
    assert fitted["rl"].r2 > max(goodhart(r)[1]["rl"].r2 for r in runs) - 1e-9


def test_ppo_value_model_starts_from_the_reward_model(tiny_path):
    """text.ppo.value_model = reward_model (InstructGPT): V starts as a copy of the reward model
    (V before response token t is the reward model's score of the prefix up to t − 1) and then
    trains on its own, leaving the reward model as it was."""
    import copy

    from rlhflab.config import TextPPOConfig

    tokenizer = load_tokenizer(tiny_path)
    rm = TextRewardModel.from_pretrained(tiny_path)
    torch.nn.init.normal_(rm.head.weight, std=0.5)
    rm_before = copy.deepcopy(rm.state_dict())
    policy = load_causal_lm(tiny_path)
    cfg = TextPPOConfig(batch_size=4, minibatches=1, epochs=1, lr=1e-2)
    rl = TextRL(
        policy,
        load_causal_lm(tiny_path),
        tokenizer,
        lambda p, t: torch.tensor([float(len(x)) for x in t]),
        cfg,
        6,
        1.0,
        value_model=copy.deepcopy(rm),
    )
    assert rl.value_head is None and rl.value_model is not None
    batch = encode(tokenizer, [PROMPT, "review :"], ["great fun", "dull"], 64)
    with torch.no_grad():
        _, _, values = rl._logprobs_values(batch)
        for row in range(2):
            for t in batch.response_mask[row].nonzero().flatten().tolist():
                prefix = rm(
                    batch.input_ids[row : row + 1, :t], batch.attention_mask[row : row + 1, :t]
                )
                assert float(values[row, t]) == pytest.approx(float(prefix), abs=1e-5)
    record = rl.step([PROMPT, "review :", PROMPT, "review :"])
    assert math.isfinite(record["value_loss"])
    moved = [
        not torch.equal(a, b)
        for a, b in zip(rl.value_model.state_dict().values(), rm_before.values())
    ]
    assert any(moved)  # the value model trained ...
    assert all(torch.equal(rm.state_dict()[k], v) for k, v in rm_before.items())  # ... the RM not
    assert rl.state_dict()["value_model"] is not None


def test_value_model_from_the_reward_model_needs_one_that_reads_the_policys_tokens(
    tiny_path, tmp_path
):
    cfg = tiny_config(tiny_path, "text.ppo.value_model=reward_model")
    loop = TextLoop(cfg, RunDir(tmp_path))
    loop.rm = None  # no reward model fitted (a judge or reward functions instead)
    with pytest.raises(ConfigError, match=r"text\.ppo\.value_model"):
        loop.value_from_reward_model()


def test_a_prompt_is_cut_only_as_far_as_the_context_needs(tiny_path):
    """encode keeps the whole prompt while [prompt | response | EOS] fits in max_length, and only
    its last tokens when it does not (a regression: room between len(prompt) and twice that
    used to cut the prompt by a negative slice)."""
    tokenizer = load_tokenizer(tiny_path)
    prompt, n_prompt = PROMPT, 5
    for n_response in (3, 7, 9, 12):  # + EOS: totals 9, 13, 15, 18 against max_length 16
        response = " ".join(["great"] * n_response)
        batch = encode(tokenizer, [prompt], [response], 16)
        kept = min(n_prompt, 16 - n_response - 1)
        assert int(batch.attention_mask.sum()) == kept + n_response + 1
        assert int(batch.response_mask.sum()) == n_response + 1
        ids = batch.input_ids[0, :kept].tolist()
        assert ids == tokenizer(prompt, add_special_tokens=False)["input_ids"][n_prompt - kept :]


def test_reward_model_losses_under_bf16_autocast(tiny_path):
    """Under CPU bf16 autocast the scores come out in bf16; the losses are taken in fp32 (a
    regression: pairs and rankings in one batch failed to write bf16 losses into fp32)."""
    tokenizer = load_tokenizer(tiny_path)
    ensemble = TextRewardEnsemble(TextRewardModel.from_pretrained(tiny_path), tokenizer, 1)
    groups = [
        RankedResponses(PROMPT, ("great fun", "dull")),
        RankedResponses(PROMPT, ("great", "fine", "dull")),
    ]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses = ensemble.group_losses(ensemble.members[0], groups)
    assert losses.dtype == torch.float32
    assert torch.isfinite(losses).all() and (losses > 0).all()
