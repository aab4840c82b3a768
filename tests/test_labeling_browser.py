"""The labeling page in real headless Chromium (Debian's, driven by Playwright)."""

import shutil

import numpy as np
import pytest
from labeling import AppProcess, make_run

from rlhflab.feedback.clips import encode_gif
from rlhflab.types import Segment

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


@pytest.fixture
def browser():
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def frames(color):
    f = np.zeros((6, 24, 32, 3), np.uint8)
    f[..., color] = np.linspace(40, 250, 6, dtype=np.uint8)[:, None, None]
    return f


def test_new_annotator_answers_five_queries_by_keyboard(tmp_path, browser):
    run, store, _tokens = make_run(tmp_path, names=())
    k = 6
    for _ in range(7):
        left = Segment(np.zeros((k, 2), np.float32), np.zeros(k, np.int64), np.zeros(k, np.float32))
        store.add_query(left, left, clips=(encode_gif(frames(0)), encode_gif(frames(2))))
    token = store.add_annotator("newcomer")
    server = AppProcess(run.path).start()
    try:
        page = browser.new_page()
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{server.url}/login?token={token}")
        page.wait_for_selector("img[alt=Left]")
        assert page.text_content("#who") == "newcomer"
        assert (
            page.evaluate("document.querySelector('img[alt=Left]').naturalWidth") == 32
        )  # the clip loaded
        for i in range(5):
            page.wait_for_function(
                f"document.getElementById('progress').textContent.startsWith('{i} done')"
            )
            page.keyboard.press("ArrowLeft")
        page.wait_for_function(
            "document.getElementById('progress').textContent.startsWith('5 done')"
        )
        assert errors == []
    finally:
        server.kill()
    rows = store.judgement_rows()
    assert len(rows) == 5 and {r.annotator for r in rows} == {"newcomer"}
    for r in rows:  # the side shown on the left, in the stored orientation
        assert r.label == ("right" if r.shown_swapped else "left")
        assert r.seconds is not None


def test_model_output_is_shown_as_text_and_never_runs(tmp_path, browser):
    run, store, tokens = make_run(tmp_path, names=("alice",))
    evil = ["<script>window.pwned = 1</script>", '<img src=x onerror="window.pwned = 2">']
    store.add_text_query("text_pair", "<b>prompt</b><script>window.pwned = 3</script>", evil)
    store.set_setting(
        "guidelines",
        "# Rules\n\n<script>window.pwned = 4</script>\n\n[click](javascript:window.pwned=5)",
    )
    server = AppProcess(run.path).start()
    try:
        page = browser.new_page()
        dialogs = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(f"{server.url}/login?token={tokens['alice']}")
        page.wait_for_selector("pre.text")
        shown = page.eval_on_selector_all("pre.text", "els => els.map(e => e.textContent)")
        assert shown[0] == "<b>prompt</b><script>window.pwned = 3</script>"
        assert sorted(shown[1:]) == sorted(evil)
        assert (
            page.eval_on_selector_all(".item img, .item script, .prompt b", "els => els.length")
            == 0
        )
        page.goto(f"{server.url}/guidelines")
        assert "<script>window.pwned = 4</script>" in page.text_content("main")
        page.click("text=click")
        page.wait_for_timeout(200)
        assert page.evaluate("window.pwned") is None
        assert dialogs == []
    finally:
        server.kill()
