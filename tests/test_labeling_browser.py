"""The labeling page in real headless Chromium (Debian's, driven by Playwright)."""

import numpy as np
import pytest
from labeling import CHROMIUM, CHROMIUM_ARGS, AppProcess, make_run

from rlhflab.feedback.clips import encode_gif, make_clip, mark_episode_over
from rlhflab.types import Segment


@pytest.fixture
def browser():
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def frames(color):
    f = np.zeros((6, 24, 32, 3), np.uint8)
    f[..., color] = np.linspace(40, 250, 6, dtype=np.uint8)[:, None, None]
    return f


def segment(i, k=6):
    return Segment(
        np.full((k, 2), i, np.float32), np.arange(k) % 2, np.zeros(k, np.float32), env_steps=i
    )


def sign_in(page, server, store, name):
    page.goto(f"{server.url}/login?code={store.login_code(name)}")
    page.click("button[type=submit]")


def test_new_annotator_answers_five_queries_by_keyboard(tmp_path, browser):
    run, store, _tokens = make_run(tmp_path, names=())
    for i in range(7):
        gifs = (encode_gif(frames(0)), encode_gif(frames(2)))
        store.add_query(segment(i), segment(i + 100), clips=gifs)
    store.add_annotator("newcomer")
    server = AppProcess(run.path).start()
    try:
        page = browser.new_page()
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        sign_in(page, server, store, "newcomer")
        page.wait_for_selector("img[alt=Left]")
        assert page.text_content("#who") == "newcomer"
        assert (
            page.evaluate("document.querySelector('img[alt=Left]').naturalWidth") == 32
        )  # the clip loaded
        for i in range(5):
            page.wait_for_function(
                f"document.getElementById('progress').textContent.startsWith('{i} judgement')"
            )
            page.keyboard.press("ArrowLeft")
        page.wait_for_function(
            "document.getElementById('progress').textContent.startsWith('5 judgements')"
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
    run, store, _tokens = make_run(tmp_path, names=("alice",))
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
        sign_in(page, server, store, "alice")
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


def cart_frames(shift, k=24, ended_from=None):
    """A moving bar (a toy cart), darkened with 'episode over' after `ended_from`."""
    f = np.full((k, 120, 160, 3), 235, np.uint8)
    for t in range(k):
        x = 10 + (5 * t + shift) % 130
        f[t, 70:90, x : x + 20] = (40, 90, 160)
    mask = np.arange(k) >= (ended_from if ended_from is not None else k)
    return mark_episode_over(f, mask)


def test_an_annotator_labels_video_clips_on_a_phone(tmp_path, browser):
    run, store, _tokens = make_run(tmp_path, names=("alice",))
    for i in range(3):
        clips = (
            make_clip(cart_frames(7 * i), 10),
            make_clip(cart_frames(50 + i, ended_from=16), 10),
        )
        store.add_query(segment(i), segment(i + 100), clips=clips)
    server = AppProcess(run.path).start()
    try:
        phone = browser.new_context(
            viewport={"width": 390, "height": 844}, has_touch=True, is_mobile=True
        )
        page = phone.new_page()
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        sign_in(page, server, store, "alice")
        page.wait_for_selector("video")
        page.wait_for_function("document.querySelector('video').readyState >= 2")
        boxes = page.eval_on_selector_all(
            ".item", "els => els.map(e => e.getBoundingClientRect().toJSON())"
        )
        assert boxes[1]["top"] >= boxes[0]["bottom"] - 1  # stacked, not side by side
        assert all(b["width"] > 300 for b in boxes)  # and full width: not a shrunken desktop
        assert page.evaluate("document.querySelector('video').videoWidth") == 160  # native size
        sizes = page.eval_on_selector_all(
            ".choices button", "els => els.map(e => e.getBoundingClientRect().height)"
        )
        assert len(sizes) == 4 and min(sizes) >= 48  # touch targets
        assert page.is_visible("text=▲ Top better") and not page.is_visible("text=◀ Left better")
        page.wait_for_function("document.querySelector('.counter').textContent.includes(' / 24')")
        first = page.evaluate("document.querySelector('video').currentTime")
        page.wait_for_timeout(500)
        assert page.evaluate("document.querySelector('video').currentTime") != first  # it plays
        page.click(".item >> nth=0 >> button[aria-label^='slow motion']")
        assert page.evaluate("document.querySelector('video').playbackRate") == 0.25
        page.screenshot(path=str(tmp_path / "phone.png"), full_page=True)
        for n in range(3):
            page.wait_for_function(
                f"document.getElementById('progress').textContent.startsWith('{n} judgement')"
            )
            page.tap("button[data-choice=left]")
        page.wait_for_function(
            "document.getElementById('task').textContent.includes('Nothing to judge')"
        )
        store.finish_run()
        page.reload()
        page.wait_for_function(
            "document.getElementById('status').textContent.includes('run is over')"
        )
        assert errors == []
    finally:
        server.kill()
    assert len(store.judgement_rows("alice")) == 3


def test_an_annotator_judges_parts_and_rates_a_clip(tmp_path, browser):
    """Process feedback and a clip rating on the page: a part choice per row, then the
    whole-pair key; then a rating key on a single clip."""
    run, store, _tokens = make_run(tmp_path, names=())
    gifs = (encode_gif(frames(0)), encode_gif(frames(2)))
    store.add_queries([(segment(1), segment(2))], [gifs], parts=2)
    store.add_rating_queries([segment(3)], [encode_gif(frames(1))])
    store.add_annotator("rater")
    server = AppProcess(run.path).start()
    try:
        page = browser.new_page()
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        sign_in(page, server, store, "rater")
        page.wait_for_selector("button[data-part='1'][data-choice=right]")
        page.click("button[data-part='0'][data-choice=left]")
        page.keyboard.press("ArrowLeft")  # one part of two judged: refused on the page
        page.wait_for_function("document.getElementById('error').textContent.includes('every')")
        page.click("button[data-part='1'][data-choice=right]")
        page.keyboard.press("ArrowLeft")
        page.wait_for_selector("button[data-rating='5']")
        assert "How good is this clip?" in page.text_content("#task")
        page.keyboard.press("5")
        page.wait_for_function(
            "document.getElementById('progress').textContent.startsWith('2 judgements')"
        )
        assert errors == []
    finally:
        server.kill()
    pair, rating = store.judgement_rows()
    flip = {"left": "right", "right": "left"}
    shown = ["left", "left", "right"]  # the whole pair, then each part, as shown
    stored = [flip[c] if pair.shown_swapped else c for c in shown]
    assert [pair.label, *pair.payload["parts"]] == stored
    assert rating.query.kind == "clip_rating" and rating.payload == {"rating": 5}
