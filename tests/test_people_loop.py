"""People in the loop: queries go to the labeling app; labels come back over HTTP while RL runs."""

import threading
import time
from contextlib import contextmanager

import numpy as np
import pytest
from labeling import AppProcess, make_run

from rlhflab.config import build_config
from rlhflab.control_loop import RunError, run_rlhf
from rlhflab.policy.rollout import evaluate_true_return


def alive_steps(obs) -> int:
    """A scripted person who watches the pole: a step counts while the cart and pole are in
    bounds."""
    obs = np.asarray(obs)
    return int(np.sum((np.abs(obs[:, 0]) <= 2.4) & (np.abs(obs[:, 2]) <= 0.2095)))


def scripted_annotator(client, stop: threading.Event, answered: list, think: float = 0.0):
    while not stop.is_set():
        time.sleep(think)
        nxt = client.post("/api/next")
        if nxt.status_code == 204:
            time.sleep(0.05)
            continue
        q = nxt.json()
        left, right = (
            alive_steps(item["obs"])
            for item in client.get(f"/api/queries/{q['query_id']}/segments").json()["items"]
        )
        choice = "left" if left > right else "right" if right > left else "equal"
        if (
            client.post(
                "/api/answer",
                json={"query_id": q["query_id"], "choice": choice, "lease": q["lease"]},
            ).status_code
            == 201
        ):
            answered.append(q["query_id"])


@contextmanager
def answering(run, token: str, think: float = 0.0):
    """The run's labeling app, with `scripted_annotator` answering through it in a thread;
    yields the ids of the queries it answered. The app and the annotator stop on exit."""
    server = AppProcess(run.path).start()
    stop, answered = threading.Event(), []
    worker = threading.Thread(
        target=scripted_annotator, args=(server.client(token), stop, answered, think)
    )
    worker.start()
    try:
        yield answered
    finally:
        stop.set()
        worker.join(timeout=30)
        server.kill()


def test_loop_learns_from_labels_given_over_http(tmp_path):
    run, store, tokens = make_run(tmp_path, names=("script",))
    cfg = build_config(
        None,
        [
            "feedback.annotator.kind=people",
            "feedback.render_envs=0",
            "env_steps=30000",
            "labels=200",
            "feedback.min_labels_before_rl=50",
            "feedback.wait_timeout=120",
            "baseline=false",
        ],
    )
    run.write_config(cfg)
    with answering(run, tokens["script"]) as answered:
        policy = run_rlhf(cfg, run)
    rows = store.judgement_rows()
    assert len(rows) == 200 and {r.annotator for r in rows} == {"script"}  # all, through the app
    assert len(answered) == len(rows)
    metrics = run.metrics()
    assert metrics[0]["labels"] >= 50  # RL waited for the required labels
    random = evaluate_true_return(cfg.env, cfg.eval_episodes)
    assert policy.evaluate(cfg.eval_episodes) > 2 * random  # 164 against 24.7 (seed 0)


def test_people_mode_renders_video_clips_of_the_queried_segments(tmp_path):
    pytest.importorskip("pygame")
    run, store, _ = make_run(tmp_path, names=())
    cfg = build_config(
        None,
        [
            "feedback.annotator.kind=people",
            "feedback.pace=false",
            "feedback.render_envs=1",
            "feedback.clip_stride=4",
            "env_steps=1024",
            "labels=8",
            "feedback.min_labels_before_rl=0",
            "env.num_envs=2",
            "policy.n_steps=64",
            "feedback.segment_length=10",
        ],
    )
    run_rlhf(cfg, run)
    assert store.count_queries() >= 2 and store.count_judgements() == 0
    for qid in range(1, store.count_queries() + 1):
        q = store.query(qid)
        left, right = (store.segment(sid) for sid in (q.left_id, q.right_id))
        assert not np.array_equal(left.obs, right.obs)  # never two identical segments
        for sid, seg in ((q.left_id, left), (q.right_id, right)):
            assert not seg.absorbing_mask.all()  # never a clip wholly after the episode ended
            mime, data = store.clip(sid)
            assert mime == "video/mp4" and data[4:8] == b"ftyp"
    assert store.run_state() == "over" and store.count_unanswered() == 0  # withdrawn at the end


def test_a_people_run_waits_for_a_slow_annotator_and_gets_every_label(tmp_path, store_url):
    """Over the run's SQLite file, and over a PostgreSQL database that the trainer and the app
    share only by its URL (`feedback.store`)."""
    shared = store_url.startswith("postgresql")
    run, store, tokens = make_run(
        tmp_path, names=("slow",), store_url=store_url if shared else None
    )
    cfg = build_config(
        None,
        [
            "feedback.annotator.kind=people",
            "feedback.render_envs=0",
            "env_steps=8192",
            "labels=40",
            "feedback.pacing_slack=2",
            "feedback.wait_timeout=60",
            "baseline=false",
            *([f"feedback.store={store_url}"] if shared else []),
        ],
    )
    run.write_config(cfg)
    waits: list[dict] = []
    with answering(run, tokens["slow"], think=0.1) as answered:
        run_rlhf(cfg, run, lambda r: waits.append(r) if r["phase"] == "waiting" else None)
    assert store.count_judgements() == 40 == len(answered)  # all configured labels, none lost
    assert waits and run.metrics()[-1]["labels"] <= 40  # RL paused for the annotator
    assert store.run_state() == "over"


def test_waiting_for_people_times_out_with_a_clear_message(tmp_path):
    run, _, _ = make_run(tmp_path, names=())
    cfg = build_config(
        None,
        [
            "feedback.annotator.kind=people",
            "feedback.render_envs=0",
            "feedback.wait_timeout=1",
            "labels=40",
        ],
    )
    with pytest.raises(
        RunError, match=r"waited 1 s for 8 labels; 0 arrived \(required before RL\).*rlhflab label"
    ):
        run_rlhf(cfg, run)


def test_sigterm_stops_a_waiting_run_promptly_and_cleanly(tmp_path):
    import os
    import signal
    import subprocess
    import sys

    from rlhflab.feedback.schema import sqlite_url
    from rlhflab.feedback.store import FeedbackStore

    out = tmp_path / "run"
    args = ["feedback.annotator.kind=people", "feedback.render_envs=0", "labels=40"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "rlhflab.cli", "run", "--out", str(out), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(os.environ, PYTHONWARNINGS="ignore"),
    )
    store = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # waiting for people: its queries are stored
        if (out / "feedback.db").exists():
            store = FeedbackStore(sqlite_url(out / "feedback.db"))
            if store.count_queries() and store.run_state() == "waiting":
                break
            store.close()
            store = None
        time.sleep(0.5)
    assert store is not None, "the run never started waiting"
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert time.monotonic() - sent < 7 and proc.returncode == 130, err
    assert "interrupted" in err.decode()
    assert store.run_state() == "over" and store.count_unanswered() == 0  # withdrawn
