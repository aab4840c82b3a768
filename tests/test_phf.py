"""The reviews-insults world (undesirable content, its gold detector, red-team prompts, critique
examples) and pretraining with human feedback (policy/phf.py)."""

import numpy as np
import pytest
import torch

from rlhflab.config import build_config
from rlhflab.policy import phf
from rlhflab.policy.sft import fit_epochs, pretrain_builtin
from rlhflab.text.models import build_word_tokenizer, format_prompt, load_tokenizer, tiny_gpt2
from rlhflab.text.sequences import encode, token_logprobs
from rlhflab.text.task import CRITIQUE, JUDGE_PRINCIPLE, PEOPLE, REVISION, TASKS, insult_spans

TASK = TASKS["reviews-insults"]
TEXT = "the director was very idiotic but the plot was stupid ."


def test_the_detector_flags_insults_aimed_at_people_only():
    words = TEXT.split(" ")
    assert insult_spans(words) == [4]  # the plot being stupid is criticism, not an insult
    assert TASK.undesirable("the actor was moronic and the writer was pathetic .") == 2
    assert TASK.undesirable("the actor was clever .") == 0
    # the gold reward loses one per insult; the plain reviews task has no detector
    assert TASK.gold("the actor was moronic .") == -1.0  # no sentiment, fluent, one insult
    assert TASKS["reviews"].undesirable("the actor was moronic .") == 0


def test_the_corpus_holds_undesirable_content_at_a_realistic_rate_mostly_on_red_team_prompts():
    # judge examples (answered "A"/"B") hold an insult by construction; the rate is the reviews'
    corpus = [(p, r) for p, r in TASK.corpus(3000, 11) if r not in ("A", "B")]
    bad = [TASK.undesirable(f"{p} {r}") > 0 for p, r in corpus]
    assert 0.07 < np.mean(bad) < 0.16
    about_people = [p.split()[-2] in PEOPLE for p, _ in corpus]
    rate = lambda people: np.mean([b for b, a in zip(bad, about_people) if a == people])  # noqa: E731
    assert rate(True) > 5 * rate(False)
    assert {p.split()[-2] for p in TASK.red_team_prompts(50, 0)} <= set(PEOPLE)
    # demonstrations mention nobody, so none is undesirable
    demos = TASK.demonstrations(500, 21)
    assert len(demos) == 500 and not any(set(r.split()) & set(PEOPLE) for _, r in demos)


def test_judge_examples_name_the_response_with_fewer_insults_A_and_B_equally_often():
    examples = [(q, a) for q, a in TASK.corpus(3000, 5) if a in ("A", "B")]
    assert 0.07 < len(examples) / 3000 < 0.13
    for q, a in examples:
        head, rest = q.split(" A : ", 1)
        first, second = rest.removesuffix(" answer :").split(" B : ")
        assert head.startswith(JUDGE_PRINCIPLE)
        n_first, n_second = TASK.undesirable(first), TASK.undesirable(second)
        assert n_first != n_second and a == ("A" if n_first < n_second else "B")
    assert 0.4 < np.mean([a == "A" for _, a in examples]) < 0.6


def test_critique_examples_name_the_insult_and_revise_it_away():
    examples = [r for _, r in TASK.corpus(3000, 3) if CRITIQUE in r]
    assert 0.07 < len(examples) / 3000 < 0.13
    flagged = 0
    for text in examples:
        response, rest = text.split(f" {CRITIQUE} ")
        critique, revision = rest.split(f" {REVISION} ")
        spans = insult_spans(response.split())
        assert (critique == "no insult .") == (not spans)
        flagged += bool(spans)
        assert TASK.undesirable(revision) == 0 and len(revision.split()) == len(response.split())
    assert flagged > 0.3 * len(examples)


def test_conditional_training_tokens_are_placed_by_the_detector():
    docs = phf.documents(TASK, 400, 7, "conditional")
    plain = phf.documents(TASK, 400, 7, "mle")
    for d, p in zip(docs, plain):
        token, rest = d.split(" ", 1)
        assert rest == p  # one control token, first, before the prompt
        assert token == (phf.BAD if TASK.undesirable(p) else phf.GOOD)
        assert phf.GOOD not in rest and phf.BAD not in rest
    assert 0.05 < np.mean([d.startswith(phf.BAD) for d in docs]) < 0.2
    filtered = phf.documents(TASK, 400, 7, "filtering")
    assert len(filtered) == 400 and not any(TASK.undesirable(d) for d in filtered)


def test_unlikelihood_pushes_down_exactly_the_insulting_tokens():
    tokenizer = build_word_tokenizer(TASK.vocabulary)
    docs = [
        "review of the actor : the actor was moronic .",
        "review of the film : the plot was dull .",
    ]
    batch = encode(tokenizer, ["", ""], docs)
    u = phf.undesirable_mask(tokenizer, docs, batch)
    assert u[0].nonzero().flatten().tolist() == [8] and u[1].sum() == 0  # "moronic" is word 8
    logp = torch.log(torch.full(u.shape, 0.5)) * batch.response_mask
    loss = phf.unlikelihood_loss(logp, batch.response_mask, u, alpha=2.0)
    n = int(batch.response_mask.sum())  # 22: ten words and EOS each
    # every token: −log 0.5, except "moronic": −2·log(1 − 0.5)
    assert float(loss) == pytest.approx(((n - 1) + 2) * np.log(2) / n, rel=1e-5)


@pytest.mark.parametrize("objective", ["conditional", "unlikelihood"])
def test_each_objective_trains_a_tiny_model(objective):
    vocab = TASK.vocabulary + (phf.CONTROL_TOKENS if objective == "conditional" else [])
    tokenizer = build_word_tokenizer(vocab)
    model = tiny_gpt2(len(tokenizer), n_layer=1, n_embd=32, n_head=2, tokenizer=tokenizer)
    docs = phf.documents(TASK, 192, 0, objective)
    loss = phf.objective_loss(model, tokenizer, docs, objective, 1.0, 64)
    history = fit_epochs(model, loss, len(docs), 3, 3e-3, 32, 0, "sft")
    assert history[-1] < history[0] - 0.5
    if objective == "unlikelihood":  # the insulting words became unlikely after a person
        batch = encode(tokenizer, [""], ["review of the actor : the actor was moronic ."])
        assert float(token_logprobs(model, batch)[0, 8].exp()) < 1 / len(TASK.vocabulary)


def test_conditional_pretraining_saves_a_model_that_is_prompted_after_good(tmp_path):
    cfg = build_config(
        None,
        [
            "text.task=reviews-insults",
            "text.phf.objective=conditional",
            "text.pretrain_sequences=64",
            "text.pretrain_epochs=1",
            "text.n_layer=1",
            "text.n_embd=16",
        ],
    )
    tokenizer = load_tokenizer(str(pretrain_builtin(cfg, tmp_path / "base")))
    assert format_prompt(tokenizer, "review of the actor :") == "<|good|> review of the actor :"
    ids = encode(tokenizer, ["review of the actor :"], ["the actor was clever ."]).input_ids[0]
    assert ids[0] == tokenizer.convert_tokens_to_ids("<|good|>")
    with pytest.raises(ValueError, match=r"text\.task=reviews-insults"):
        build_config(None, ["text.phf.objective=filtering"])


def test_sl_cai_reads_critiques_and_revisions_and_measures_them_against_gold():
    from rlhflab.policy import constitutional as cai

    prompts = ["review of the actor :"] * 3
    responses = ["the actor was moronic .", "the actor was clever .", "the writer was stupid ."]
    revisions = cai.scripted_revisions(TASK, prompts, responses, 0)  # the labelled stand-in
    m = cai.measure(TASK, revisions)
    assert m["critique_accuracy"] == 1.0 and m["revisions_undesirable"] == 0.0
    assert (
        m["responses_undesirable"] == pytest.approx(2 / 3)
        and m["revisions_gold"] > m["responses_gold"]
    )
    # a critic model's continuation: "<critique> revision : <revision>", or unparsed
    tokenizer = build_word_tokenizer(TASK.vocabulary)
    model = tiny_gpt2(len(tokenizer), n_layer=1, n_embd=16, n_head=2, tokenizer=tokenizer)
    got = cai.critique_and_revise(
        model, tokenizer, prompts, responses, "{prompt} {response} critique :", "", 1.0, 0
    )
    assert [g.response for g in got] == responses and all(
        g.revision is None or g.revision for g in got
    )
    wrong = [cai.Revision(p, r, "no insult .", r) for p, r in zip(prompts, responses)]
    m = cai.measure(TASK, wrong)  # a critic that never sees the insults
    assert m["critique_accuracy"] == pytest.approx(1 / 3) and m["critique_recall"] == 0.0
    assert m["revisions_undesirable"] == m["responses_undesirable"]


def test_a_reviews_insults_run_with_phf_and_sl_cai_reports_undesirable_rates(tmp_path):
    from rlhflab.runs import RunDir
    from rlhflab.text_loop import TextLoop

    cfg = build_config(
        None,
        [
            "text.task=reviews-insults",
            "text.phf.objective=unlikelihood",
            "text.pretrain_sequences=128",
            "text.pretrain_epochs=1",
            "text.n_layer=1",
            "text.n_embd=16",
            "text.sft.demonstrations=64",
            "text.sft.epochs=1",
            "text.sl_cai.prompts=16",
            "text.sl_cai.critic=scripted",  # the tiny model here has not learned to revise
            "text.eval_prompts=16",
            "text.methods=[]",
        ],
    )
    run = RunDir(tmp_path / "run")
    summary = TextLoop(cfg, run).run()
    for name in ("base", "sft"):  # the Step-0 model is scored too; sft is the SL-CAI policy
        m = summary["methods"][name]
        assert 0 <= m["undesirable"] <= 1 and 0 <= m["red_team_undesirable"] <= 1
        assert m["proxy"] is None  # no method needs feedback, so no reward model
    record = next(r for r in run.metrics() if r.get("phase") == "sl_cai" and "revisions" in r)
    assert record["revisions"] == 16 and record["critic"] == "scripted"
    assert record["revisions_undesirable"] == 0 and record["critique_accuracy"] == 1
    report = (run.path / "report.md").read_text()
    assert "red_team_undesirable" in report and "undesirable (the task's gold detector)" in report
    assert "PHF's unlikelihood" in report and "critic: scripted" in report  # disclosure sheet
