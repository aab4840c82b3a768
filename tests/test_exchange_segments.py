"""Judgements of segment pairs (control runs) round-trip through the documented JSONL format."""

import json

import numpy as np
import pytest

from rlhflab.feedback.exchange import DataError, export_records, import_jsonl
from rlhflab.feedback.schema import lease_token_of
from rlhflab.feedback.store import FeedbackStore
from rlhflab.runs import RunDir
from rlhflab.types import Segment


def seg(value, k=6, continuous=False):
    actions = (
        np.linspace(-1, 1, 2 * k, dtype=np.float32).reshape(k, 2) if continuous else np.arange(k)
    )
    return Segment(
        np.full((k, 3), value, np.float32) + np.arange(k, dtype=np.float32)[:, None],
        actions,
        np.full(k, value, np.float32),
        env_steps=100 + int(value),
    )


def judged_store(path, continuous=False, url=None):
    store = FeedbackStore(url or RunDir(path).store_url)
    store.add_annotator("alice")
    for i in range(4):
        store.add_query(seg(i, continuous=continuous), seg(i + 10, continuous=continuous))
    rng = np.random.default_rng(0)
    for choice in ("left", "right", "equal"):
        q, lease = store.lease_next("alice", 60, rng)
        store.answer_lease(
            "alice", q.id, lambda kind, order, c=choice: (c, {}), lease_token_of(lease)
        )
    return store


def write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.mark.parametrize("continuous", [False, True])
def test_segment_judgements_round_trip(tmp_path, continuous, store_url):
    """Exported from a store (SQLite or PostgreSQL), imported into another of the other kind."""
    source = judged_store(tmp_path / "a", continuous)
    records = export_records(source, "segments")
    assert len(records) == 3 and records[0]["format"] == "rlhflab.segments/1"
    assert {r["annotator"] for r in records} == {"alice"} and all(
        r["seconds"] >= 0 for r in records
    )
    target = FeedbackStore(store_url)
    assert import_jsonl(target, write(tmp_path / "s.jsonl", records), "segments") == 3
    before, after = source.comparisons(), target.comparisons()
    assert [c.judgement for c in after] == [c.judgement for c in before]
    for b, a in zip(before, after):
        for side in ("left", "right"):
            np.testing.assert_array_equal(getattr(a, side).obs, getattr(b, side).obs)
            np.testing.assert_array_equal(getattr(a, side).actions, getattr(b, side).actions)
            np.testing.assert_array_equal(
                getattr(a, side).judged_rewards, getattr(b, side).judged_rewards
            )
            assert getattr(a, side).actions.dtype == getattr(b, side).actions.dtype
        assert a.extra == b.extra and a.annotator == b.annotator
    again = export_records(target, "segments")
    assert [{k: v for k, v in r.items() if k != "query_id"} for r in again] == [
        {k: v for k, v in r.items() if k != "query_id"} for r in records
    ]


def test_segments_by_id_and_as_gold_questions(tmp_path):
    source = judged_store(tmp_path / "a")
    records = export_records(source, "segments", by_id=str(tmp_path / "a"))
    assert records[0]["left"] == {"run": str(tmp_path / "a"), "segment_id": 1}
    target = FeedbackStore(RunDir(tmp_path / "b").store_url)
    assert import_jsonl(target, write(tmp_path / "ids.jsonl", records), "segments", gold=True) == 3
    assert target.count_queries() == 0 and target.count_judgements() == 0  # gold, not labels
    target.set_setting("gold_rate", "1.0")
    q, _ = target.lease_next("bob", 60, np.random.default_rng(0))
    assert q.gold in ("left", "right", "equal")


def test_import_refuses_bad_segment_records_and_writes_nothing(tmp_path):
    good = export_records(judged_store(tmp_path / "a"), "segments")[0]
    target = FeedbackStore(RunDir(tmp_path / "b").store_url)
    cases = {
        "same segment": good | {"right": good["left"]},
        "field 'choice'": good | {"choice": "up"},
        "true/false where numbers belong": good
        | {"left": good["left"] | {"obs": [[True] * 3] * 6}},
        "one action per step": good | {"left": good["left"] | {"actions": [0, 1]}},
        "field 'seconds'": good | {"seconds": -1},
        "field 'shown_swapped'": good | {"shown_swapped": "yes"},
    }
    for message, bad in cases.items():
        path = write(tmp_path / "bad.jsonl", [good, bad])
        with pytest.raises(DataError, match=rf"bad.jsonl:2: .*{message}"):
            import_jsonl(target, path, "segments")
    assert target.count_judgements() == 0


def test_text_import_holds_the_api_limits(tmp_path):
    store = FeedbackStore(RunDir(tmp_path / "a").store_url)
    same = write(tmp_path / "same.jsonl", [{"prompt": "p", "chosen": "x", "rejected": "x"}])
    with pytest.raises(DataError, match="'chosen' equals 'rejected'"):
        import_jsonl(store, same, "trl")
    long = write(
        tmp_path / "long.jsonl", [{"prompt": "p", "chosen": "x" * 20_001, "rejected": "y"}]
    )
    with pytest.raises(DataError, match="longer than 20000 characters"):
        import_jsonl(store, long, "trl")
    assert store.count_judgements() == 0
