"""People in the loop: queries go to the labeling app; labels come back over HTTP while RL runs."""

import io
import threading
import time

import numpy as np
import pytest
from labeling import AppProcess, make_run

from rlhflab.config import build_config
from rlhflab.control_loop import RunError, run_rlhf
from rlhflab.policy.control import evaluate_true_return


def alive_steps(obs) -> int:
    """A scripted person who watches the pole: a step counts while the cart and pole are in
    bounds."""
    obs = np.asarray(obs)
    return int(np.sum((np.abs(obs[:, 0]) <= 2.4) & (np.abs(obs[:, 2]) <= 0.2095)))


def scripted_annotator(client, stop: threading.Event, answered: list):
    while not stop.is_set():
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


def test_loop_learns_from_labels_given_over_http(tmp_path):
    run, store, tokens = make_run(tmp_path, names=("script",))
    cfg = build_config(
        None,
        [
            "feedback.annotator.kind=people",
            "feedback.render_envs=0",
            "env_steps=60000",
            "labels=400",
            "feedback.min_labels_before_rl=60",
            "feedback.wait_timeout=120",
            "baseline=false",
        ],
    )
    run.write_config(cfg)
    server = AppProcess(run.path).start()
    stop, answered = threading.Event(), []
    worker = threading.Thread(
        target=scripted_annotator, args=(server.client(tokens["script"]), stop, answered)
    )
    worker.start()
    try:
        policy = run_rlhf(cfg, run)
    finally:
        stop.set()
        worker.join(timeout=30)
        server.kill()
    rows = store.judgement_rows()
    assert len(rows) >= 200 and {r.annotator for r in rows} == {
        "script"
    }  # every label came through the app
    assert len(answered) == len(rows)
    metrics = run.metrics()
    assert metrics[0]["labels"] >= 60  # RL waited for the required labels
    random = evaluate_true_return(cfg.env, cfg.eval_episodes)
    assert policy.evaluate(cfg.eval_episodes) > 2 * random


def test_people_mode_renders_clips_of_the_queried_segments(tmp_path):
    iio = pytest.importorskip("imageio.v3")
    pytest.importorskip("pygame")
    run, store, _ = make_run(tmp_path, names=())
    cfg = build_config(
        None,
        [
            "feedback.annotator.kind=people",
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
    lengths = []
    for qid in range(1, store.count_queries() + 1):
        q = store.query(qid)
        for sid in (q.left_id, q.right_id):
            mime, data = store.clip(sid)
            frames = iio.imread(io.BytesIO(data), index=None)
            assert mime == "image/gif" and frames.shape[1:3] == (
                100,
                150,
            )  # 400×600 rendered, every 4th pixel
            lengths.append(frames.shape[0])
    # one frame per step (the GIF encoder merges identical frames, e.g. a pole lying still
    # after a fall)
    assert max(lengths) == 10 and min(lengths) >= 1
    assert store.count_queries() >= 2 and store.count_judgements() == 0


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
