"""Process feedback and clip ratings end to end: asked by a control run, answered by the
synthetic annotator or by people over the labeling app's HTTP API, stored, read back and
trained on."""

import httpx
import numpy as np
import pytest
from labeling import AppProcess, make_run, seg

import rlhflab.reward.ratings as ratings_fit
from rlhflab.config import build_config
from rlhflab.control_loop import run_rlhf
from rlhflab.feedback.store import FeedbackStore
from rlhflab.runs import RunDir

TINY = ["env_steps=256", "labels=12", "env.num_envs=4", "policy.n_steps=32", "eval_episodes=1"]
TINY += ["feedback.segment_length=16", "reward.ensemble=2", "reward.refit_growth=1.0", "seed=0"]


@pytest.fixture
def app(tmp_path):
    run, store, tokens = make_run(tmp_path)
    server = AppProcess(run.path).start()
    yield server, store, tokens
    server.kill()


def lease(client: httpx.Client) -> dict:
    nxt = client.post("/api/next")
    assert nxt.status_code == 200, nxt.text
    return nxt.json()


def test_people_judge_parts_and_rate_clips_over_http(app):
    server, store, tokens = app
    (pair,) = store.add_queries([(seg(0), seg(1))], parts=2)
    (rated,) = store.add_rating_queries([seg(5)])
    alice = server.client(tokens["alice"])
    q = lease(alice)
    assert q["query_id"] == pair and q["parts"] == 2
    body = {"query_id": pair, "lease": q["lease"], "choice": "left"}
    for parts, why in (([], "asks for 2 parts, got 0"), (["left"] * 3, "got 3")):
        r = alice.post("/api/answer", json=body | {"parts": parts})
        assert r.status_code == 409 and why in r.json()["detail"]
    r = alice.post("/api/answer", json=body | {"parts": ["left", "sideways"]})
    assert r.status_code == 422 and "parts" in r.text
    assert alice.post("/api/answer", json=body | {"parts": ["left", "equal"]}).status_code == 201
    (c,) = store.comparisons()
    swapped = store.judgement_row(c.judgement_id).shown_swapped
    # stored in the query's orientation: a pair shown swapped has its sides flipped
    assert c.extra["parts"] == (["right", "equal"] if swapped else ["left", "equal"])
    assert c.judgement.value == ("right" if swapped else "left")

    q = lease(alice)
    assert q["query_id"] == rated and q["kind"] == "clip_rating" and len(q["items"]) == 1
    body = {"query_id": rated, "lease": q["lease"]}
    r = alice.post("/api/answer", json=body | {"choice": "left"})
    assert r.status_code == 409 and "needs 'rating'" in r.json()["detail"]
    r = alice.post("/api/answer", json=body | {"rating": 6, "parts": ["left", "left"]})
    assert r.status_code == 409 and "asks for no parts" in r.json()["detail"]
    assert alice.post("/api/answer", json=body | {"rating": 9}).status_code == 422
    assert alice.post("/api/answer", json=body | {"rating": 6}).status_code == 201
    ((_, segment, rating, who),) = store.ratings()
    assert rating == 6 and who == "alice" and np.all(segment.judged_rewards == 5)
    assert alice.post("/api/next").status_code == 204


def test_a_run_asks_for_part_labels_and_clip_ratings_and_fits_both(tmp_path, monkeypatch):
    calls = []
    part_loss = ratings_fit.part_loss
    monkeypatch.setattr(
        ratings_fit, "part_loss", lambda *a, **k: calls.append(1) or part_loss(*a, **k)
    )
    cfg = build_config(None, [*TINY, "feedback.parts=4", "feedback.rating_share=0.5"])
    run = RunDir(tmp_path)
    run_rlhf(cfg, run)
    store = FeedbackStore(run.store_url)
    ratings, comparisons = store.ratings(), store.comparisons()
    calibration = store.setting("rating_calibration")
    store.close()
    assert len(ratings) + len(comparisons) == 12 and 2 <= len(ratings) <= 10
    assert {y for _, _, y, _ in ratings} <= set(range(1, 8))
    assert all(len(c.extra["parts"]) == 4 for c in comparisons)
    values = {p for c in comparisons for p in c.extra["parts"]}
    assert values <= {"left", "right", "equal", "cant_tell"} and len(values) >= 2
    assert calibration and "synthetic" in calibration  # fitted: the annotator's α and s
    assert calls  # the joint fit included the part terms
    last = [m for m in run.metrics() if m.get("phase") == "rlhf"][-1]
    assert all(np.isfinite(last[k]) for k in ("rating_loss", "bt_loss", "part_loss"))


def test_parts_and_ratings_are_validated_in_the_config():
    with pytest.raises(ValueError, match=r"feedback\.parts"):
        build_config(None, ["feedback.parts=1"])
    with pytest.raises(ValueError, match=r"feedback\.parts"):
        build_config(None, ["feedback.parts=30", "feedback.segment_length=25"])
    with pytest.raises(ValueError, match="rating_share"):
        build_config(None, ["feedback.rating_share=0.2", "reward.background=true"])
