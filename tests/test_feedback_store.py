import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from rlhflab.feedback.schema import lease_token_of
from rlhflab.feedback.store import FeedbackStore
from rlhflab.types import Judgement, Segment


def seg(value, k=5):
    return Segment(
        obs=np.full((k, 3), value, np.float32),
        actions=np.arange(k),
        judged_rewards=np.full(k, value, np.float32),
        env_steps=7,
    )


def test_round_trip_of_queries_and_judgements(store_url):
    store = FeedbackStore(store_url)
    q1 = store.add_query(seg(1.0), seg(2.0))
    q2 = store.add_query(seg(3.0), seg(4.0))
    assert [q.id for q in store.pending_queries()] == [q1, q2]
    store.add_judgement(q2, Judgement.RIGHT, "alice", seconds=1.5)
    store.add_judgement(q1, "equal")
    assert [q.id for q in store.pending_queries()] == []
    comps = store.comparisons()
    assert [(c.query_id, c.judgement, c.annotator) for c in comps] == [
        (q2, Judgement.RIGHT, "alice"),
        (q1, Judgement.EQUAL, "synthetic"),
    ]
    np.testing.assert_array_equal(comps[0].left.obs, seg(3.0).obs)
    np.testing.assert_array_equal(comps[0].right.actions, np.arange(5))
    assert comps[0].left.env_steps == 7 and comps[0].extra["seconds"] == 1.5


def test_bad_input_is_refused_without_losing_stored_data(store_url):
    store = FeedbackStore(store_url)
    q = store.add_query(seg(1.0), seg(2.0))
    store.add_judgement(q, "left")
    with pytest.raises(ValueError):
        store.add_judgement(q, "sideways")
    with pytest.raises(KeyError):
        store.add_judgement(999, "left")
    with pytest.raises(ValueError, match="equal-length"):
        store.add_query(seg(1.0, k=5), seg(1.0, k=6))
    assert store.count_judgements() == 1 and store.count_queries() == 1


WRITER = textwrap.dedent(
    """
    import sys, numpy as np
    from rlhflab.feedback.store import FeedbackStore
    from rlhflab.types import Segment
    store = FeedbackStore(sys.argv[1])
    s = Segment(np.zeros((25, 4), np.float32), np.zeros(25, np.int64), np.zeros(25, np.float32))
    t = Segment(np.ones((25, 4), np.float32), np.zeros(25, np.int64), np.zeros(25, np.float32))
    while True:
        q = store.add_query(s, t)
        j = store.add_judgement(q, "left")
        print(j, flush=True)   # acknowledged only after the commit returned
    """
)


def test_every_acknowledged_judgement_survives_sigkill(store_url):
    url = store_url
    proc = subprocess.Popen([sys.executable, "-c", WRITER, url], stdout=subprocess.PIPE, text=True)
    acknowledged = []
    deadline = time.time() + 60
    while len(acknowledged) < 200 and time.time() < deadline:
        acknowledged.append(int(proc.stdout.readline()))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    acknowledged += [
        int(line) for line in proc.stdout.read().split()
    ]  # anything printed before the kill
    assert len(acknowledged) >= 200
    store = FeedbackStore(url)
    stored = {j for j, *_ in store.judgements()}
    assert set(acknowledged) <= stored
    assert store.count_judgements() >= len(acknowledged)


def test_identical_segments_are_never_paired(store_url):
    store = FeedbackStore(store_url)
    with pytest.raises(ValueError, match="two different segments"):
        store.add_queries([(seg(1.0), seg(2.0)), (seg(3.0), seg(3.0))])
    assert store.count_queries() == 0  # the batch is refused whole


def test_a_finished_run_withdraws_its_unanswered_queries(store_url):
    store = FeedbackStore(store_url)
    store.add_annotator("alice")
    done, open_ = store.add_query(seg(1.0), seg(2.0)), store.add_query(seg(3.0), seg(4.0))
    store.add_judgement(done, "left", "bob")
    q, _lease = store.lease_next("alice", 60, np.random.default_rng(0))
    assert q.id == open_ and store.run_state() == "running"
    assert store.finish_run() == 1 and store.run_state() == "over"
    assert store.count_unanswered() == 0 and store.lease(open_) is None
    assert store.lease_next("alice", 60, np.random.default_rng(0)) is None
    assert store.count_judgements() == 1 and store.count_queries() == 2


def test_gold_questions_are_mixed_in_and_never_counted_as_labels(store_url):
    store = FeedbackStore(store_url)
    for i in range(5):
        store.add_query(seg(i), seg(i + 10))
    gold = store.add_query(seg(50.0), seg(60.0), gold="right")
    store.set_setting("gold_rate", "1.0")
    q, lease = store.lease_next("alice", 60, np.random.default_rng(0))
    assert q.id == gold
    store.answer_lease("alice", gold, lambda kind, order: ("right", {}), lease_token_of(lease))
    assert store.count_judgements() == 0 and store.count_queries() == 5
    assert [a["correct"] for a in store.gold_answers()] == [True]
    q, _ = store.lease_next("alice", 60, np.random.default_rng(0))
    assert q.id != gold  # each gold question once per annotator


def test_incremental_reads_skip_no_judgement_committed_late(pg_url):
    """Ids are drawn at insert, not at commit: a slow transaction holding a lower id commits
    after a higher id was stored. A plain `id > last` cursor would step over it for good."""
    from sqlalchemy.orm import Session

    store = FeedbackStore(pg_url)
    q = [store.add_query(seg(i), seg(i + 10)) for i in range(3)]
    store.add_judgement(q[0], "left")
    cursor = store.comparisons()[-1].judgement_id  # the trainer has read up to here
    with Session(store.engine) as slow, slow.begin():
        low = store._insert_judgement(slow, q[1], "right", "slow")  # drawn first, still open
        high = store.add_judgement(q[2], "left", "fast")  # drawn later, committed at once
        assert low < high
        assert [j for j, *_ in store.judgements() if j > cursor] == [high]  # what `id >` sees
        assert store.comparisons(after=cursor) == []  # `high` waits: `low` may still commit
    got = [c.judgement_id for c in store.comparisons(after=cursor)]
    assert got == [low, high]
    assert store.comparisons(after=got[-1]) == []  # and nothing twice


def test_incremental_reads_follow_commit_order_when_transactions_start_out_of_order(pg_url):
    """The transaction that started first (its id assigned first) stores the higher id and
    commits first; the other then commits a lower id. Both are read, once each."""
    from sqlalchemy import text
    from sqlalchemy.orm import Session

    store = FeedbackStore(pg_url)
    q = [store.add_query(seg(i), seg(i + 10)) for i in range(2)]
    with Session(store.engine) as early, early.begin():
        early.execute(text("SELECT pg_current_xact_id()"))  # this transaction is older
        with Session(store.engine) as late, late.begin():
            low = store._insert_judgement(late, q[0], "left", "late")
            high = store._insert_judgement(early, q[1], "left", "early")
            early.commit()
            first = [c.judgement_id for c in store.comparisons()]
            assert first == [high]  # committed, and no open transaction is older
        second = [c.judgement_id for c in store.comparisons(after=first[-1])]
    assert low < high and second == [low]


def test_an_unreachable_database_is_named_in_the_error():
    from rlhflab.feedback.schema import StoreError

    with pytest.raises(
        StoreError, match=r"postgresql://rlhf:\*\*\*@127.0.0.1:1/nowhere: .*refused"
    ):
        FeedbackStore("postgresql://rlhf:secret@127.0.0.1:1/nowhere")
    with pytest.raises(StoreError, match="not a database URL"):
        FeedbackStore("feedback.db")


def test_the_commands_name_an_unreachable_store_and_write_nothing(cli, tmp_path):
    url = "postgresql://rlhf:secret@127.0.0.1:1/nowhere"
    r = cli("annotators", "add", "alice", str(tmp_path), "--store", url, timeout=120)
    assert r.returncode == 1 and "secret" not in r.stderr
    assert "cannot open the feedback store postgresql://rlhf:***@127.0.0.1:1/nowhere" in r.stderr
    assert list(tmp_path.iterdir()) == []  # no feedback.db made in its place
