"""AI feedback: the constitution file, the AI annotator over real HTTP and a local HF judge,
position-bias cancellation, judges that fail, and the judge as a reward (issue 13)."""

from __future__ import annotations

import math
import threading
from pathlib import Path

import numpy as np
import pytest
from judge_server import JudgeServer
from labeling import AppProcess, answer_text_pairs, make_run

from rlhflab.config import ConfigError, build_config
from rlhflab.diagnostics.goodhart import goodhart
from rlhflab.feedback.ai import judge_with_ai, routing
from rlhflab.feedback.store import FeedbackStore
from rlhflab.feedback.text import (
    ask_for_comparisons,
    comparisons_from_store,
    gather_comparisons,
)
from rlhflab.policy.sft import train_sft
from rlhflab.reward.judge import JudgeReward
from rlhflab.runs import RunDir
from rlhflab.text.constitution import (
    DEFAULT_PRINCIPLES,
    ConstitutionError,
    Principle,
    load_constitution,
)
from rlhflab.text.judge import EndpointJudge, HFJudge, JudgeError, render
from rlhflab.text.judge_world import ScriptedJudge, build_judge_tokenizer, judge_examples
from rlhflab.text.models import build_word_tokenizer, save_model, tiny_gpt2
from rlhflab.text.task import PEOPLE, TASKS, sentiment
from rlhflab.text_loop import TextLoop

TASK = TASKS["reviews"]
EXAMPLES = Path(__file__).parents[1] / "examples/text"
PAIRS = [  # (better, worse) by gold; gold gaps from 0.2 to 2
    ("the plot was great .", "the plot was fine ."),
    ("the acting was good and the music was lovely .", "the acting was good ."),
    ("the cast was clever .", "the cast was dull ."),
    ("the story was fine .", "the story was bad ."),
    ("the ending was okay .", "the ending was okay"),
    ("the sound was moving .", "the sound was moving moving ."),
]


@pytest.fixture(scope="module")
def judge_path(tmp_path_factory):
    """A tiny GPT-2 judge (1 layer, 32 wide) the test trains for a moment on judge-format
    examples, so that "A" and "B" lead its next-token distribution; saved like a hub model."""
    tokenizer = build_judge_tokenizer(TASK)
    model = tiny_gpt2(len(tokenizer), 1, 32, n_head=2, n_positions=160, tokenizer=tokenizer)
    examples = judge_examples(TASK, 192, seed=0)
    train_sft(model, tokenizer, *map(list, zip(*examples)), 3, 1e-2, 16)
    return str(save_model(model, tokenizer, tmp_path_factory.mktemp("judge")))


def _cfg(*extra: str):
    return build_config(None, ["text.task=reviews", "judge.url=http://127.0.0.1:9/v1", *extra])


def _queries(store: FeedbackStore, pairs):
    """Each pair stored as a text_pair query, worse response first half of the time."""
    prompts, first, second = [], [], []
    for i, (good, bad) in enumerate(pairs):
        a, b = (good, bad) if i % 2 else (bad, good)
        prompts.append("review of the film :")
        first.append(a)
        second.append(b)
    ids = [store.add_text_query("text_pair", p, [a, b]) for p, a, b in zip(prompts, first, second)]
    return ids, prompts, [first, second]


# -- the constitution file ------------------------------------------------------------------
def test_constitution_yaml_markdown_and_the_shipped_example(tmp_path):
    shipped = load_constitution(Path(__file__).parents[1] / "examples/text/constitution.yaml")
    assert [p.id for p in shipped] == ["positive", "fluent"] and all(p.by == "ai" for p in shipped)
    y = tmp_path / "c.yaml"
    y.write_text("- Which is kinder?\n- id: helpful\n  text: Which helps more?\n  by: human\n")
    assert load_constitution(y) == [
        Principle("p1", "Which is kinder?"),
        Principle("helpful", "Which helps more?", "human"),
    ]
    md = tmp_path / "c.md"
    md.write_text("# Principles\n\nSome prose.\n- Which is kinder?\n2. Which is shorter?\n")
    assert [p.text for p in load_constitution(md)] == ["Which is kinder?", "Which is shorter?"]


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "principles:\n  - id: a\n    text: ok\n  - id: b\n    txt: oops\n",
            r"c.yaml:5: principle 2: unknown field 'txt'",
        ),
        ("principles:\n  - id: a\n    text: ''\n", r"c.yaml:3: principle 1: field 'text' must be"),
        (
            "- id: a\n  text: x\n- id: a\n  text: y\n",
            r"c.yaml:3: principle 2: id 'a' is used twice",
        ),
        ("- text: x\n  by: robot\n", r"c.yaml:2: principle 1: field 'by' must be ai or human"),
        (
            "- text: x\n  prompts: evil\n",
            r"c.yaml:2: principle 1: field 'prompts' must be task or red-team",
        ),
        ("- text: x\n  weight: -1\n", r"c.yaml:2: principle 1: field 'weight' must be a number"),
        ("principles: [a, b\n", r"c.yaml:2: constitution does not parse"),
        ("rules:\n  - x\n", r"c.yaml:1: unknown key 'rules'"),
    ],
)
def test_a_bad_constitution_names_file_and_line(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConstitutionError, match=message):
        load_constitution(path)


def test_config_needs_a_judge():
    with pytest.raises(ConfigError, match=r"needs judge\.model or judge\.url"):
        build_config(None, ["text.task=reviews", "feedback.annotator.kind=ai"])


# -- the AI annotator over real HTTP -----------------------------------------------------------
def test_http_judge_labels_like_the_local_model_and_the_store_records_it(judge_path, tmp_path):
    items = [
        ("Which review is more positive about the film?", "review of the film :", a, b)
        for a, b in PAIRS
    ]
    texts = [render(_cfg().judge.template, *it) for it in items]
    local = HFJudge(judge_path).choice_logprobs(texts)
    assert all(max(a, b) > math.log(0.3) for a, b in local)  # A and B lead its distribution
    with JudgeServer("model", judge_path) as server:
        remote = EndpointJudge(server.url).choice_logprobs(texts)
        assert np.allclose(remote, local, atol=1e-4)
        cfg = _cfg(f"judge.url={server.url}", "judge.human_share=0.5", "seed=1")
        store = FeedbackStore(f"sqlite:///{tmp_path / 's.db'}")
        ids, prompts, samples = _queries(store, PAIRS * 4)
        logged: list[dict] = []
        record = judge_with_ai(
            cfg, store, EndpointJudge(server.url), ids, prompts, samples, logged.append
        )
        assert server.calls == len(texts) + 2 * record["ai_labels"]  # both orders per AI label
    rows = store.judgement_rows()
    ai = [r for r in rows if r.annotator == "ai"]
    assert len(rows) == 24 and len(ai) == record["ai_labels"] and 6 <= len(ai) <= 18
    for r in ai:
        assert r.payload["judge"] == f"api:judge@{server.url}"
        assert r.payload["principle"] in ("positive", "fluent")
        assert "Response A: " + r.query.payload["responses"][0] in r.payload["judge_prompt"]
        assert (r.label == "left") == (r.payload["p_left"] > 0.5)
    assert {r.payload["principle"] for r in rows if r.annotator == "synthetic"}
    assert logged == [record] and {"position_bias", "ai_gold_agreement"} <= record.keys()
    soft = {c.target for c in comparisons_from_store(store)} - {1.0, 0.5}
    assert soft and all(0.5 < t < 1 for t in soft)  # the judge's probabilities are the targets
    assert {c.target for c in comparisons_from_store(store, soft=False)} <= {1.0, 0.5}


def test_both_orders_cancel_a_judge_rigged_to_prefer_a(tmp_path):
    """P_A = σ(2·(gold(A) − gold(B)) + 2): asked once, the judge picks A for any pair within a
    gold gap of 1; asked both ways it agrees with gold on every pair, and its bias is measured."""
    with JudgeServer("rigged", bias=2.0) as server:
        found = {}
        for both in (False, True):
            store = FeedbackStore(f"sqlite:///{tmp_path / f'{both}.db'}")
            ids, prompts, samples = _queries(store, PAIRS)
            cfg = _cfg(f"judge.url={server.url}", f"judge.both_orders={both}")
            found[both] = judge_with_ai(
                cfg, store, EndpointJudge(server.url), ids, prompts, samples, lambda r: None
            )
    assert found[True]["ai_gold_agreement"] == 1.0
    assert found[False]["ai_gold_agreement"] <= 4 / 6  # the worse-first pairs with small gaps
    gaps = [TASK.gold(a) - TASK.gold(b) for a, b in PAIRS]
    expected = np.mean([0.5 * (_sig(2 * d + 2) + _sig(2 - 2 * d)) - 0.5 for d in gaps])
    assert found[True]["position_bias"] == pytest.approx(expected, abs=1e-6) and expected > 0.3


def _sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


@pytest.mark.parametrize(
    "mode, message, calls",
    [
        ("slow", r"ReadTimeout.* after 2 attempts", 2),
        ("error", r"HTTP 503 after 3 attempts", 3),
        ("garbage", r"answered 'maybe', which is neither A nor B", 1),
    ],
)
def test_a_failing_judge_is_an_error_never_a_silent_label(tmp_path, mode, message, calls):
    timeout, retries = (0.5, 1) if mode == "slow" else (5.0, 2)
    store = FeedbackStore(f"sqlite:///{tmp_path / 's.db'}")
    ids, prompts, samples = _queries(store, PAIRS[:1])
    with JudgeServer(mode) as server:
        judge = EndpointJudge(server.url, timeout=timeout, retries=retries)
        with pytest.raises(JudgeError, match=message):
            judge_with_ai(_cfg(), store, judge, ids, prompts, samples, lambda r: None)
        assert server.calls == calls
    assert store.count_judgements() == 0


def test_people_answer_their_principle_in_the_app_over_http_and_the_ai_the_rest(tmp_path):
    """Bai et al.'s mixing with real people: `positive` goes to people (`by: human`,
    `judge.humans: people`), `fluent` to the AI. A scripted person answers through the labeling
    app over HTTP; the app never offers them the AI's queries, and the store records who answered
    each query under which principle."""
    constitution = tmp_path / "c.yaml"
    constitution.write_text(
        "- id: positive\n  text: Which review is more positive about the film?\n  by: human\n"
        f"- id: fluent\n  text: {DEFAULT_PRINCIPLES[1].text}\n  by: ai\n"
    )
    run, store, tokens = make_run(tmp_path, names=("reader",))
    cfg = _cfg(
        "judge.url=null",
        "judge.model=scripted",
        f"judge.constitution={constitution}",
        "judge.humans=people",
        "feedback.annotator.kind=ai",
        "feedback.wait_timeout=60",
        "text.labels=12",
        "text.max_new_tokens=5",
    )
    tokenizer = build_word_tokenizer(TASK.vocabulary)
    policy = tiny_gpt2(len(tokenizer), n_layer=1, n_embd=32, n_head=2)
    server, stop, seen = AppProcess(run.path).start(), threading.Event(), []

    def more_positive(q: dict) -> str:
        left, right = (sentiment(item["text"].split()) for item in q["items"])
        return "left" if left > right else "right" if right > left else "equal"

    person = threading.Thread(
        target=answer_text_pairs, args=(server.client(tokens["reader"]), stop, more_positive, seen)
    )
    person.start()
    try:
        comparisons = gather_comparisons(
            cfg,
            policy,
            tokenizer,
            ["review of the film :"] * 12,
            store,
            lambda r: None,
            judge=ScriptedJudge(cfg.judge.template),
        )
    finally:
        stop.set()
        person.join(timeout=30)
        server.kill()
    rows = store.judgement_rows()
    by = {r.query_id: r.query.payload["by"] for r in rows}
    people = {r.query_id for r in rows if r.annotator == "reader"}
    assert len(rows) == len(comparisons) == 12 and len(by) == 12  # one label per query
    assert people == {q for q, b in by.items() if b == "human"} and 0 < len(people) < 12
    assert {q["query_id"] for q in seen} == people  # the app offered them only people's queries
    assert {q["question"] for q in seen} == {"Which review is more positive about the film?"}
    for r in rows:
        assert r.query.payload["principle"] == ("positive" if r.query_id in people else "fluent")
        if r.query_id not in people:
            assert r.annotator == "ai" and r.payload["principle"] == "fluent"
            assert (
                r.payload["judge"].startswith("scripted")
                and r.query.payload["prompt"] in (r.payload["judge_prompt"])
            )
    assert routing(cfg, 12)[:5] == routing(cfg, 5)  # a resumed run routes as before


def test_a_red_team_principle_asks_its_queries_on_red_team_prompts(tmp_path):
    """examples/text/constitution_mixed.yaml: harmlessness (`prompts: red-team`) is asked on the
    task's prompts about people, the people's principles on the task's own prompts."""
    cfg = _cfg(
        "judge.url=null",
        "judge.model=scripted",
        f"judge.constitution={EXAMPLES / 'constitution_mixed.yaml'}",
        "feedback.annotator.kind=ai",
        "text.task=reviews-insults",
        "text.labels=24",
        "text.max_new_tokens=4",
    )
    tokenizer = build_word_tokenizer(TASKS["reviews-insults"].vocabulary)
    policy = tiny_gpt2(len(tokenizer), n_layer=1, n_embd=32, n_head=2)
    store = FeedbackStore(f"sqlite:///{tmp_path / 's.db'}")
    ask_for_comparisons(cfg, policy, tokenizer, ["review of the film :"], store)
    queries = [store.query(q) for q in range(1, 25)]
    harmless = [q.payload for q in queries if q.payload["principle"] == "harmless"]
    others = [q.payload for q in queries if q.payload["principle"] != "harmless"]
    assert harmless and others and all(q["by"] == "human" for q in others)
    assert all(q["prompt"].split()[-2] in PEOPLE for q in harmless)
    assert all(q["prompt"] == "review of the film :" for q in others)


def test_the_api_key_comes_from_the_named_variable(monkeypatch):
    monkeypatch.delenv("RLHFLAB_TEST_KEY", raising=False)
    with pytest.raises(JudgeError, match=r"\$RLHFLAB_TEST_KEY, which is not set"):
        EndpointJudge("http://127.0.0.1:9/v1", api_key_env="RLHFLAB_TEST_KEY")
    monkeypatch.setenv("RLHFLAB_TEST_KEY", "sekrit")
    judge = EndpointJudge("http://127.0.0.1:9/v1", api_key_env="RLHFLAB_TEST_KEY")
    assert judge.headers == {"Authorization": "Bearer sekrit"}


# -- the judge as a reward -------------------------------------------------------------------
def test_judge_reward_is_the_bradley_terry_score_of_the_rigged_judge():
    """With P_A(y, y′) = σ(2(g(y) − g(y′)) + 2), both orders give r(y) = 2·(g(y) − mean g(ref))."""
    refs = ["the plot was fine .", "the acting was dull but the music was good ."]
    texts = [a for pair in PAIRS for a in pair]
    with JudgeServer("rigged") as server:
        reward = JudgeReward(
            EndpointJudge(server.url),
            [Principle("p", "Which is better?")],
            _cfg().judge.template,
            refs,
        )
        r = reward.score(["review of the film :"] * len(texts), texts)
    mean_ref = np.mean([TASK.gold(t) for t in refs])
    assert np.allclose(r.numpy(), [2 * (TASK.gold(t) - mean_ref) for t in texts], atol=1e-4)


def test_a_text_run_with_ai_labels_and_a_judge_reward(judge_path, tmp_path):
    """End to end through the driver: AI labels from the local judge for the reward model's
    run, and best-of-n against the judge reward in a second run."""
    common = [
        f"judge.model={judge_path}",
        "text.labels=12",
        "text.eval_prompts=8",
        "text.methods=[best_of_n]",
        "text.best_of_n=2",
        "text.sft.demonstrations=64",
        "text.sft.epochs=1",
        "text.reward.epochs=1",
        "text.max_new_tokens=8",
        "text.pretrain_sequences=200",
        "text.pretrain_epochs=1",
        "text.goodhart_samples=2",
    ]
    rlaif = TextLoop(
        build_config(None, [*common, "feedback.annotator.kind=ai"]), RunDir(tmp_path / "rlaif")
    ).run()
    assert rlaif["labels"] == 12 and "rm_val_acc" in rlaif["reward_model"]
    records = [r for r in RunDir(tmp_path / "rlaif").metrics() if r["phase"] == "ai_feedback"]
    assert records[0]["ai_labels"] == 12
    judged = TextLoop(
        build_config(None, [*common, "text.reward.kind=judge"]), RunDir(tmp_path / "judged")
    ).run()
    assert judged["reward_model"] == {"reward": "judge"}
    assert judged["methods"]["best_of_2"]["proxy"] >= judged["methods"]["sft"]["proxy"]
    # `rlhflab goodhart` on the judge-reward run: best-of-n over its saved samples, the judge as
    # the proxy, as it reads a learned reward model's run
    for run in ("rlaif", "judged"):
        bon = [p for p in goodhart(tmp_path / run)[0] if p.kind == "best_of_n"]
        assert [p.label for p in bon] == ["n=1", "n=2"] and bon[1].kl > 0
        assert bon[1].proxy > bon[0].proxy  # the best of two by the proxy beats a random one


def test_a_judge_template_is_checked():
    with pytest.raises(ConfigError, match=r"lacks \{second\}"):
        _cfg("judge.template='{principle} {first}'")
    with pytest.raises(ConfigError, match=r"only \{principle\}.*KeyError"):
        _cfg("judge.template='{principle} {first} {second} {answer}'")


def test_the_scripted_judge_follows_its_principle_with_a_known_bias():
    from rlhflab.text.judge import verdicts
    from rlhflab.text.judge_world import ScriptedJudge

    template = _cfg().judge.template
    judge = ScriptedJudge(template, scale=3.0, bias=1.0, noise=0.0)
    positive, fluent = (p.text for p in load_constitution(None))
    items = [(positive, "review of the film :", a, b) for a, b in PAIRS[:4]]
    items += [(fluent, "review of the film :", a, b) for a, b in PAIRS[4:]]
    found = verdicts(judge, template, items, both_orders=True)
    assert all(v.p > 0.5 for v in found)  # each pair's first is better under its principle
    assert found[0].p_first_xy == pytest.approx(_sig(3 * math.tanh(0.75) + 1.0))
    assert found[0].position_bias == pytest.approx(
        0.5 * (_sig(3 * math.tanh(0.75) + 1) + _sig(1 - 3 * math.tanh(0.75))) - 0.5
    )
    with pytest.raises(JudgeError, match="knows only the built-in principles"):
        judge.choice_logprobs([render(template, "Which is kinder?", "p", "a", "b")])


def test_a_harmlessness_judge_is_scored_on_the_pairs_that_differ_in_insults():
    """`judge_report` scores a judge against the asked principle's own rule on the pairs that rule
    tells apart. A judge that barely sees insults (scale 1) and prefers "A" by 3 logits is right
    on half of them in one order and on all in both; one that always says "A" (scale 0) picks
    nothing in both orders (½ each)."""
    from rlhflab.feedback.ai import judge_report
    from rlhflab.feedback.synthetic import SyntheticAnnotator
    from rlhflab.text.constitution import HARMLESS
    from rlhflab.text.judge_world import ScriptedJudge

    template = _cfg().judge.template
    clean, insult = "the director was dull .", "the director was stupid ."
    pairs = [("review of the director :", a, b) for a, b in [(clean, insult), (insult, clean)]]
    pairs += [("review of the film :", a, b) for a, b in PAIRS[:3]]  # no insult on either side
    person = SyntheticAnnotator(_cfg().feedback.annotator, 0)

    def report(scale: float, bias: float) -> dict:
        judge = ScriptedJudge(template, scale=scale, bias=bias, noise=0.0)
        return judge_report(judge, template, HARMLESS, "reviews-insults", pairs, person)

    fair, biased, always_a = report(3.0, 0.0), report(1.0, 3.0), report(0.0, 3.0)
    assert fair["principle_pairs"] == 2 and fair["ai_principle_agreement"] == 1.0
    assert biased["ai_principle_agreement_first_order"] == 0.5
    assert biased["ai_principle_agreement"] == 1.0 and biased["position_bias"] > 0.4
    assert always_a["ai_principle_agreement"] == 0.5 and always_a["order_consistency"] == 0.0


def test_the_example_config_builds_its_judge(tmp_path):
    from rlhflab.policy.judge import make_judge
    from rlhflab.text.judge_world import ScriptedJudge

    root = Path(__file__).parents[1]
    cfg = build_config(root / "examples/text/rlaif.yaml")
    assert cfg.feedback.annotator.kind == "ai" and cfg.judge.constitution
    assert isinstance(make_judge(cfg, tmp_path, "unused"), ScriptedJudge)


# -- assisted evaluation ---------------------------------------------------------------------
def test_flaws_add_up_to_gold_and_critiques_move_limited_attention_annotators():
    from rlhflab.feedback.assisted import assisted_accuracy, perceived
    from rlhflab.text.judge_world import degraded

    rng = np.random.default_rng(0)
    texts = [degraded(TASK, rng) if k % 2 else TASK.response(rng) for k in range(300)]
    for t in texts:  # read in full and shown nothing, an annotator perceives the gold exactly
        w = t.split()
        assert perceived(w, set(range(len(w))), [], 0.5, rng) == pytest.approx(TASK.gold(t))
    pairs = list(zip(texts[::2], texts[1::2]))
    none, helpful, wrong = (
        assisted_accuracy(pairs, 0.3, c, trust=0.9, seed=1) for c in ("none", "helpful", "wrong")
    )
    assert helpful > none + 0.03 and wrong < none - 0.3, (none, helpful, wrong)
    full = assisted_accuracy(pairs, 1.0, "none", temperature=1e-9)
    assert full == 1.0  # full attention, no noise: every strict pair right


def test_rl_cai_raises_gold_on_the_built_in_task(tmp_path):
    """RL-CAI's shape: a preference model on the scripted judge's labels (both orders, soft), then
    PPO against it; gold rises on a fixed seed."""
    cfg = build_config(
        None,
        [
            "seed=0",
            "feedback.annotator.kind=ai",
            "judge.model=scripted",
            "text.pretrain_sequences=2000",
            "text.labels=240",
            "text.eval_prompts=64",
            "text.methods=[ppo]",
            "text.ppo.steps=25",
            "text.ppo.batch_size=32",
            "text.sft.demonstrations=1000",
            "text.goodhart_samples=0",
        ],
    )
    summary = TextLoop(cfg, RunDir(tmp_path)).run()
    m = summary["methods"]
    assert m["ppo"]["gold"] > m["sft"]["gold"] + 0.2, m
    ai = next(r for r in RunDir(tmp_path).metrics() if r["phase"] == "ai_feedback")
    assert ai["ai_labels"] == 240 and ai["position_bias"] > 0.05  # the scripted bias, measured


def test_the_base_model_as_judge_is_asked_in_the_format_of_its_corpus_judge_examples():
    from rlhflab.text.task import JUDGE_TEMPLATE

    cfg = build_config(None, ["text.task=reviews-insults", "judge.model=base"])
    assert cfg.judge.template == JUDGE_TEMPLATE
    assert build_config(None, ["judge.model=scripted"]).judge.template != JUDGE_TEMPLATE
