"""Language-model RLHF end to end on tiny models the tests make themselves."""

import json
import threading

import pytest
import torch
from labeling import AppProcess, answer_text_pairs, make_run

from rlhflab.config import build_config
from rlhflab.diagnostics.goodhart import goodhart
from rlhflab.feedback.exchange import DataError
from rlhflab.feedback.text import comparisons_from_store, gather_comparisons
from rlhflab.policy.text import reference_logprobs
from rlhflab.runs import RunDir
from rlhflab.text.data import load_prompts_and_demos
from rlhflab.text.models import (
    TextRewardModel,
    build_word_tokenizer,
    load_causal_lm,
    load_tokenizer,
    tiny_gpt2,
)
from rlhflab.text.sequences import generate, token_logprobs
from rlhflab.text.task import TASKS
from rlhflab.text_loop import TextLoop


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    """A tiny GPT-2 and word-level tokenizer, saved with save_pretrained like any hub model."""
    path = tmp_path_factory.mktemp("tiny-gpt2")
    tokenizer = build_word_tokenizer(TASKS["reviews"].vocabulary)
    model = tiny_gpt2(len(tokenizer), n_layer=1, n_embd=32, n_head=2)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def test_tiny_model_loads_by_path_through_the_normal_code_path(tiny_path):
    tokenizer = load_tokenizer(tiny_path)
    policy = load_causal_lm(tiny_path)
    batch, texts, _ended = generate(
        policy, tokenizer, ["review of the film :"] * 4, max_new_tokens=6, seed=0
    )
    assert (
        len(texts) == 4
        and batch.response_mask.sum(1).min() >= 1
        and batch.response_mask.sum(1).max() <= 6
    )
    _again, texts2, _ = generate(
        policy, tokenizer, ["review of the film :"] * 4, max_new_tokens=6, seed=0
    )
    assert texts == texts2  # seeded sampling is reproducible
    rm = TextRewardModel.from_pretrained(tiny_path)
    assert rm.pooling == "last" and rm(batch.input_ids, batch.attention_mask).shape == (4,)
    # LoRA: the reference is the policy with its adapter disabled; a fresh adapter changes
    # nothing yet
    lora = load_causal_lm(tiny_path, lora_r=4)
    assert (
        sum(p.numel() for p in lora.parameters() if p.requires_grad)
        < sum(p.numel() for p in policy.parameters()) / 5
    )
    with torch.no_grad():
        assert torch.allclose(
            reference_logprobs(lora, None, batch, 1.0), token_logprobs(policy, batch), atol=1e-5
        )


def test_run_text_on_a_model_given_by_path(tiny_path, tmp_path):
    cfg = build_config(
        None,
        [
            f"text.model={tiny_path}",
            "text.labels=16",
            "text.eval_prompts=8",
            "text.methods=[best_of_n]",
            "text.best_of_n=2",
            "text.sft.demonstrations=64",
            "text.sft.epochs=1",
            "text.reward.epochs=1",
            "text.max_new_tokens=8",
            "text.reward.annotators=reliability",  # β per member of the population
            "feedback.population=[{name: ann}, {name: bob, error_rate: 1.0}]",
        ],
    )
    summary = TextLoop(cfg, RunDir(tmp_path)).run()
    assert set(summary["methods"]) == {"sft", "best_of_2"} and summary["labels"] == 16
    report = (tmp_path / "report.md").read_text()
    assert "## Annotators" in report and "| bob |" in report and "| ann |" in report
    assert summary["methods"]["best_of_2"]["kl"] == pytest.approx(0.6931 - 0.5, abs=1e-3)
    for m in summary["methods"].values():
        assert {"gold", "proxy", "kl", "distinct_2"} <= m.keys()
    assert json.loads((tmp_path / "summary.json").read_text())["task"] == "reviews"


def test_ppo_and_dpo_raise_the_gold_reward_with_bounded_kl(tmp_path):
    cfg = build_config(
        None,
        [
            "seed=0",
            "feedback.annotator.temperature=0.2",
            "text.pretrain_sequences=2000",
            "text.labels=240",
            "text.eval_prompts=64",
            "text.methods=[ppo,grpo,rloo,dpo]",
            "text.ppo.steps=25",
            "text.ppo.batch_size=32",
            "text.grpo.steps=25",
            "text.grpo.batch_size=32",
            "text.rloo.steps=25",
            "text.rloo.batch_size=32",
            "text.sft.demonstrations=1000",
            "text.goodhart_samples=16",
        ],
    )
    summary = TextLoop(cfg, RunDir(tmp_path)).run()
    m = summary["methods"]
    # ~40 held-out pairs judged with Boltzmann noise: the accuracy's sd is ~0.07, and it varies
    # with the split (0.89, 0.60, 0.57 over seeds 0–2 on the old split)
    assert summary["reward_model"]["rm_val_acc"] > 0.6
    assert m["ppo"]["gold"] > m["sft"]["gold"] + 0.2, m
    assert 0 < m["ppo"]["kl"] < 15
    assert m["dpo"]["gold"] > m["sft"]["gold"] + 0.1, m
    # GRPO and RLOO on the same budget (seed 0: gold 0.59 and 0.53 from SFT's 0.07)
    for method in ("grpo", "rloo"):
        assert m[method]["gold"] > m["sft"]["gold"] + 0.2, m
        assert 0 < m[method]["kl"] < 15
    ppo_log = [r for r in RunDir(tmp_path).metrics() if r["phase"] == "ppo"]
    assert (
        len(ppo_log) == 25
        and {"proxy", "gold", "kl", "entropy", "response_length", "distinct_2", "self_bleu"}
        <= ppo_log[0].keys()
    )
    report = (tmp_path / "report.html").read_text()
    assert "PPO training curves" in report and "could not be built" not in report
    points, fitted = goodhart(
        tmp_path
    )  # best-of-n over the saved SFT samples, and PPO's iterations
    bon = [p for p in points if p.kind == "best_of_n"]
    assert [p.label for p in bon] == ["n=1", "n=2", "n=4", "n=8", "n=16"] and bon[-1].proxy > bon[
        0
    ].proxy
    assert len([p for p in points if p.kind == "rl"]) == 26 and set(fitted) == {"best_of_n", "rl"}


def test_dataset_lines_are_validated(tmp_path):
    bad = tmp_path / "prefs.jsonl"
    bad.write_text(
        json.dumps({"prompt": "hi", "chosen": "a", "rejected": "b"})
        + "\n\n"
        + json.dumps({"prompt": "hi", "chosen": ["x"], "rejected": "b"})
        + "\n"
    )
    cfg = build_config(None, [f"text.dataset={bad}"])
    with pytest.raises(
        DataError,
        match=r"prefs.jsonl:3: field 'chosen' must be a string or a list of \{role, "
        r"content\} messages",
    ):
        load_prompts_and_demos(cfg.text, TASKS["reviews"], 0)
    hh = tmp_path / "hh.jsonl"
    hh.write_text(
        json.dumps(
            {"chosen": "\n\nHuman: hi\n\nAssistant: a", "rejected": "\n\nHuman: hi\n\nAssistant: b"}
        )
        + "\n" * 2
        + "{broken\n"
    )
    cfg = build_config(None, [f"text.dataset={hh}"])
    with pytest.raises(DataError, match=r"hh.jsonl:3: not valid JSON"):
        load_prompts_and_demos(cfg.text, TASKS["reviews"], 0)


def test_text_queries_go_to_people_through_the_labeling_app(tiny_path, tmp_path):
    run, store, tokens = make_run(tmp_path, names=("reader",))
    cfg = build_config(
        None,
        [
            f"text.model={tiny_path}",
            "text.labels=6",
            "text.max_new_tokens=5",
            "feedback.annotator.kind=people",
            "feedback.wait_timeout=60",
        ],
    )
    server = AppProcess(run.path).start()
    stop = threading.Event()

    def longer(q: dict) -> str:  # the person prefers the longer response
        left, right = (len(item["text"]) for item in q["items"])
        return "left" if left >= right else "right"

    worker = threading.Thread(
        target=answer_text_pairs, args=(server.client(tokens["reader"]), stop, longer)
    )
    worker.start()
    try:
        policy, tokenizer = load_causal_lm(tiny_path), load_tokenizer(tiny_path)
        comparisons = gather_comparisons(
            cfg, policy, tokenizer, ["review of the film :"] * 6, store, lambda r: None
        )
    finally:
        stop.set()
        worker.join(timeout=30)
        server.kill()
    assert len(comparisons) == 6 and {r.annotator for r in store.judgement_rows()} == {"reader"}
    assert all(
        len(c.responses[0]) >= len(c.responses[1]) for c in comparisons
    )  # best first, as the person said
    assert comparisons == comparisons_from_store(store)


def test_lora_ppo_starts_at_the_sft_policy(tiny_path, tmp_path):
    """With LoRA, SFT is merged and PPO's reference (its adapter disabled) is the SFT policy:
    KL starts at 0."""
    cfg = build_config(
        None,
        [
            f"text.model={tiny_path}",
            "text.lora_r=4",
            "text.labels=8",
            "text.eval_prompts=8",
            "text.methods=[ppo]",
            "text.ppo.steps=2",
            "text.ppo.batch_size=8",
            "text.sft.demonstrations=64",
            "text.reward.epochs=1",
            "text.max_new_tokens=6",
            "text.goodhart_samples=0",
        ],
    )
    summary = TextLoop(cfg, RunDir(tmp_path)).run()
    first = next(r for r in RunDir(tmp_path).metrics() if r["phase"] == "ppo")
    assert (
        abs(first["kl"]) < 1e-4
    )  # sampled before the first update, from a fresh (zero) adapter on SFT
    assert summary["methods"]["sft"]["kl"] == 0.0 and set(summary["methods"]) == {"sft", "ppo"}
