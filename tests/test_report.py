import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from labeling import CHROMIUM, CHROMIUM_ARGS

from rlhflab.config import build_config
from rlhflab.control_loop import run_experiment
from rlhflab.diagnostics.report import build_report
from rlhflab.runs import RunDir

HOSTILE = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A small real run (its report is built at the end, as every run's is); the task name is
    hostile markup."""
    path = tmp_path_factory.mktemp("run")
    cfg = build_config(None, ["env_steps=3000", "labels=30", "eval_episodes=4", f"task={HOSTILE}"])
    run_experiment(cfg, RunDir(path))
    return path


def test_the_run_directory_holds_what_the_report_needs(run_dir):
    rlhf = [
        m
        for m in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
        if m["phase"] == "rlhf"
    ]
    assert all(
        {"rm_disagreement", "kl", "alarms", "rm_fits", "rm_val_pairs"} <= m.keys() for m in rlhf
    )
    # three members disagree somewhere; a rollout spent wholly after episode ends has no segments
    measured = [m["rm_disagreement"] for m in rlhf if m["rm_disagreement"] is not None]
    assert measured and all(d > 0 for d in measured)
    samples = sorted((run_dir / "samples").glob("iter_*.npz"))
    assert samples[0].name == "iter_0000.npz" and len(samples) >= 2
    with np.load(samples[-1]) as s:
        assert (
            s["true"].shape == s["r_hat"].shape == (2 * 200, 3)
        )  # 2 episodes × horizon; taken action + both CartPole actions
        assert np.isfinite(s["true"]).all() and np.isfinite(s["r_hat"]).all()
    clips = sorted((run_dir / "clips").glob("iter_*"))
    assert [c.suffix for c in clips].count(".npz") == 2  # start and end of training
    assert [c.suffix for c in clips].count(".mp4") == 2, "CartPole renders headless with pygame"


def test_report_builds_from_the_run_directory_alone(run_dir, tmp_path):
    copy = tmp_path / "copied-run"
    shutil.copytree(run_dir, copy)
    for name in ("report.html", "report.md", "disclosure.md"):
        (copy / name).unlink()
    out = build_report(copy)
    text = out.read_text()
    for title in (
        "Results",
        "Learning curves",
        "Over-optimisation",
        "Reward model",
        "Feedback",
        "Clips",
        "Disclosure sheet",
        "Config",
    ):
        assert f">{title}</h2>" in text
    assert "could not be built" not in text
    assert (
        HOSTILE not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    )  # untrusted text is escaped
    assert (
        "http://" not in text and "https://" not in text and "<script" not in text
    )  # offline, no scripts
    md = (copy / "report.md").read_text()
    assert (
        "| RLHF (learned reward) |" in md
        and "expected calibration error" in md
        and HOSTILE not in md
    )
    sheet = (copy / "disclosure.md").read_text()
    assert (
        sheet.count("## ") == 12
        and "To complete by the run's owner" in sheet
        and "Boltzmann-rational" in sheet
    )


def test_report_opens_in_headless_chromium_with_every_image_loaded(run_dir, tmp_path):
    if not Path(CHROMIUM).exists() and not os.environ.get("CI"):
        pytest.skip("needs Debian's chromium (make install puts it there)")
    from PIL import Image
    from playwright.sync_api import sync_playwright

    errors = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}"))
        page.goto((run_dir / "report.html").as_uri())
        page.wait_for_load_state("load")
        images = page.evaluate(
            "Array.from(document.images).map(i => ({alt: i.alt, ok: i.complete && "
            "i.naturalWidth > 0}))"
        )
        page.wait_for_function(  # the start and end clips are H.264 videos that play here
            "Array.from(document.querySelectorAll('video')).every(v => v.readyState >= 1)",
            timeout=15_000,
        )
        videos = page.evaluate(
            "Array.from(document.querySelectorAll('video')).map(v => v.videoWidth)"
        )
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        browser.close()
    assert errors == []
    assert len(images) >= 4 and all(i["ok"] for i in images), images  # 4 figure panels
    assert len(videos) >= 2 and all(w > 0 for w in videos), videos  # start and end clips
    shot = np.asarray(Image.open(tmp_path / "report.png").convert("L"), float)
    assert shot.shape[0] > 2000 and shot.shape[1] == 1280  # the whole page, not a blank viewport
    assert shot.std() > 20  # plots and text, not an empty page


def test_an_alarm_can_stop_the_run_and_the_report_says_so(tmp_path):
    cfg = build_config(
        None,
        [
            "env_steps=8000",
            "labels=30",
            "eval_episodes=2",
            "baseline=false",
            "alarms.stop=true",
            "alarms.kl_budget=1e-9",
            "alarms.patience=1",
        ],
    )
    summary = run_experiment(cfg, RunDir(tmp_path))
    rlhf = [
        m
        for m in map(json.loads, (tmp_path / "metrics.jsonl").read_text().splitlines())
        if m["phase"] == "rlhf"
    ]
    assert (
        len(rlhf) == 1
        and rlhf[0]["alarms"][0]["alarm"] == "kl_budget"
        and rlhf[0]["env_steps"] < 8000
    )
    assert summary["true_return"]["rlhf"] is not None and "eval_true_return" in rlhf[0]
    assert "because an alarm fired" in (tmp_path / "report.html").read_text()
    assert (
        tmp_path / f"clips/iter_{rlhf[0]['iteration']:04d}.npz"
    ).exists()  # the end-of-training clip


def test_report_and_compare_commands(cli, run_dir, tmp_path):
    r = cli("report", str(run_dir))
    assert r.returncode == 0, r.stderr
    assert "report.html" in r.stdout
    r = cli("compare", str(run_dir), str(run_dir), "--out", str(tmp_path / "cmp"))
    assert r.returncode == 0, r.stderr
    html = (tmp_path / "cmp" / "compare.html").read_text()
    assert (
        html.count("<tr>") == 3 and "<img" in html
    )  # a header and one row per run, and the overlaid curves
    assert (
        cli("report", str(tmp_path / "nothing")).returncode == 2
    )  # not a run directory: a message, not a traceback
