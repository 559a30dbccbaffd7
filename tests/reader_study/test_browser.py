"""End to end in a real headless Chromium (Debian's chromium driven by Playwright's Python package).

Open a reader link, answer two cases (one by mouse, one by keyboard shortcuts), check that arrow keys with a
radio button focused change the slice and never the answer, kill the server and the browser, restart both, see
the answers kept, finish, submit, export (with reading times), analyze. Skipped with a visible reason when Playwright or chromium is missing, unless
SYNTHSEQ_REQUIRE_BROWSER=1 (CI), where that is a failure.
"""

from __future__ import annotations

import csv
import json
import signal
from pathlib import Path

import pytest

from synthseq.reader_study import analyze_study, export_answers, read_key

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 15_000


def _open(pw, chromium: str, profile: Path, link: str):
    context = pw.chromium.launch_persistent_context(
        str(profile), executable_path=chromium, headless=True, args=CHROMIUM_ARGS,
        viewport={"width": 1280, "height": 820})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("requestfailed", lambda req: errors.append(f"request failed: {req.url} ({req.failure})"))
    page.goto(link)
    page.wait_for_selector("body[data-ready='1']")
    return context, page, errors


def _answer(page, answer: dict) -> None:
    for field, value in answer.items():
        page.check(f"input[name={field}][value='{value}']")
    _expect_text(page, "#save-status", "All answers saved")


def _expect_text(page, selector: str, text: str) -> None:
    """Wait until ``selector`` shows ``text`` (Playwright's expect polls without eval, which the page's CSP forbids)."""
    from playwright.sync_api import expect

    expect(page.locator(selector)).to_have_text(text, timeout=TIMEOUT_MS)


def _canvas_stats(page) -> list[float]:
    """Mean and spread of the rendered canvas' grey values."""
    return page.evaluate("""() => {
        const c = document.getElementById('image');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let s = 0, s2 = 0, n = d.length / 4;
        for (let i = 0; i < d.length; i += 4) { s += d[i]; s2 += d[i] * d[i]; }
        return [s / n, Math.sqrt(s2 / n - (s / n) ** 2)];
    }""")


ANSWERS = [
    {"call": "synthetic", "confidence": 4, "quality": 2, "marrow_edema": 1, "plc_injury": 0, "cord_edema": 0},
    {"call": "real", "confidence": 2, "quality": 5, "marrow_edema": 0, "plc_injury": 0, "cord_edema": 1},
]


@pytest.mark.browser
def test_read_restart_resume_submit_analyze(playwright_chromium, rs, study, tmp_path):
    sync_playwright, chromium = playwright_chromium
    from playwright.sync_api import expect

    order = json.loads((study / "manifest.json").read_text())["readers"]["R1"]
    proc, url, links = rs.start_server(study)
    try:
        with sync_playwright() as pw:
            context, page, errors = _open(pw, chromium, tmp_path / "profile1", links["R1"])
            assert page.text_content("#case-title") == f"Case 1 of {len(order)}"
            assert page.text_content("#progress-text") == f"0 of {len(order)} complete"
            # The image is drawn from the float stack; wheel scrolls slices, the level slider changes pixels.
            assert _canvas_stats(page)[1] > 5  # an image, not a blank canvas
            assert page.text_content("#slice-text") == "3 / 5"
            page.hover("#image")
            page.mouse.wheel(0, 120)
            _expect_text(page, "#slice-text", "4 / 5")
            mean = _canvas_stats(page)[0]
            page.fill("#level", "0.9")
            page.dispatch_event("#level", "input")
            assert _canvas_stats(page)[0] < mean - 20  # a higher window level maps the same values darker
            _answer(page, ANSWERS[0])
            # Arrow keys with an answer's radio button focused change the slice, never the answer (the bug: the
            # browser moved the checked radio from Absent to Present and saved it).
            page.focus("input[name=cord_edema][value='0']")
            page.keyboard.press("ArrowDown")
            _expect_text(page, "#slice-text", "5 / 5")
            page.keyboard.press("ArrowUp")
            page.keyboard.press("ArrowLeft")
            _expect_text(page, "#slice-text", "3 / 5")
            page.focus("input[name=call][value='synthetic']")
            page.keyboard.press("ArrowRight")
            _expect_text(page, "#slice-text", "4 / 5")
            assert page.is_checked("input[name=cord_edema][value='0']")
            assert page.is_checked("input[name=call][value='synthetic']")
            # Zoom changes the displayed size, not the image.
            page.click("#zoom-in")
            _expect_text(page, "#zoom-text", "125%")
            page.click("#zoom-fit")
            _expect_text(page, "#zoom-text", "100%")
            page.screenshot(path=str(tmp_path / "reading_page.png"))
            page.keyboard.press("n")  # the next-case shortcut
            _expect_text(page, "#case-title", f"Case 2 of {len(order)}")
            # Case 2 answered by keyboard shortcuts alone (shown on the page beside each option).
            keys = {"call": "r", "confidence": "2", "quality": "Shift+5", "marrow_edema": "Shift+b",
                    "plc_injury": "Shift+l", "cord_edema": "c"}
            assert [page.text_content(f"fieldset[data-field={f}]").count(k.split("+")[-1]) > 0
                    for f, k in keys.items()] == [True] * len(keys)
            page.focus("#next")
            for key in keys.values():
                page.keyboard.press(key)
            _expect_text(page, "#save-status", "All answers saved")
            for field, value in ANSWERS[1].items():
                assert page.is_checked(f"input[name={field}][value='{value}']"), field
            assert page.text_content("#progress-text") == f"2 of {len(order)} complete"
            page.keyboard.press("p")
            _expect_text(page, "#case-title", f"Case 1 of {len(order)}")
            page.keyboard.press("n")
            _expect_text(page, "#case-title", f"Case 2 of {len(order)}")
            assert not errors, errors
            context.close()

            # Kill the server (no clean shutdown) and start a new one; a fresh browser profile reopens the link.
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            proc, url, links = rs.start_server(study)
            context, page, errors = _open(pw, chromium, tmp_path / "profile2", links["R1"])
            assert page.text_content("#case-title") == f"Case 3 of {len(order)}"  # resumes at the first open case
            assert page.text_content("#progress-text") == f"2 of {len(order)} complete"
            page.click("#case-dots button >> nth=0")
            _expect_text(page, "#case-title", f"Case 1 of {len(order)}")
            for field, value in ANSWERS[0].items():
                assert page.is_checked(f"input[name={field}][value='{value}']"), field
            page.click("#case-dots button >> nth=2")
            assert page.is_disabled("#submit")
            for i in range(2, len(order)):
                _expect_text(page, "#case-title", f"Case {i + 1} of {len(order)}")
                _answer(page, ANSWERS[i % 2])
                if i < len(order) - 1:
                    page.click("#next")
            page.click("#submit")
            page.click("#confirm-submit")
            page.wait_for_selector("#submitted-note", state="visible")
            assert page.is_disabled("input[name=call][value=real]")
            assert not errors, errors
            # Without the float stack the page falls back to the 8-bit display PNGs.
            page.route("**/stack.nii", lambda route: route.abort())
            page.evaluate("() => { const c = document.getElementById('image'); c.width = c.width; }")  # blank it
            with page.expect_response("**/slice_002.png") as png:
                page.click("#case-dots button >> nth=1")
            assert png.value.status == 200
            expect(page.locator("#save-status")).to_contain_text("fixed-window", timeout=TIMEOUT_MS)
            for _ in range(100):  # the PNG decodes and draws asynchronously
                if _canvas_stats(page)[1] > 5:
                    break
                page.wait_for_timeout(50)
            assert _canvas_stats(page)[1] > 5
            context.close()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    with export_answers(study).open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["reader"] == "R1"]
    assert len(rows) == len(order) and all(r["complete"] == "1" and r["submitted_at"] for r in rows)
    # Reading time was recorded for every case that was on screen (all of them were).
    assert all(float(r["reading_seconds"]) > 0 for r in rows), [r["reading_seconds"] for r in rows]
    report = analyze_study(study, tmp_path / "report")
    results = json.loads((report.parent / "results.json").read_text())
    key = {r["case_id"]: r["source"] for r in read_key(study)}
    expected = sum(key[cid] == ANSWERS[i % 2]["call"] for i, cid in enumerate(order))
    assert (results["turing"]["R1"]["k"], results["turing"]["R1"]["n"]) == (expected, len(order))
    assert results["study"]["submitted"]["R1"]


@pytest.mark.browser
def test_t2w_beside_the_case_zoom_and_keys(playwright_chromium, rs, inputs, tmp_path):
    """A study built with --t2w: both panes drawn, slice keys move both, zoom enlarges both, reading time kept."""
    sync_playwright, chromium = playwright_chromium
    from synthseq.reader_study import build_study

    study = tmp_path / "study"
    build_study(inputs["real"], inputs["synthetic"], study, ["R1"], seed=0, t2w=inputs["real"])
    proc, url, links = rs.start_server(study)
    try:
        with sync_playwright() as pw:
            context, page, errors = _open(pw, chromium, tmp_path / "profile", links["R1"])
            for canvas in ("image", "t2w"):
                stats = page.evaluate("""(id) => {
                    const c = document.getElementById(id);
                    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                    let s = 0, s2 = 0, n = d.length / 4;
                    for (let i = 0; i < d.length; i += 4) { s += d[i]; s2 += d[i] * d[i]; }
                    return [c.width, Math.sqrt(s2 / n - (s / n) ** 2)];
                }""", canvas)
                assert stats[0] > 1 and stats[1] > 5, (canvas, stats)
            box = page.locator("#t2w").bounding_box()
            page.keyboard.press("z")
            _expect_text(page, "#zoom-text", "125%")
            assert page.locator("#t2w").bounding_box()["width"] > box["width"] * 1.2  # the T2w zooms along
            page.keyboard.press("f")
            page.keyboard.press("End")
            _expect_text(page, "#slice-text", "5 / 5")
            page.keyboard.press("Home")
            _expect_text(page, "#slice-text", "1 / 5")
            page.wait_for_timeout(300)
            page.keyboard.press("n")
            _expect_text(page, "#case-title", "Case 2 of 6")
            assert not errors, errors
            context.close()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    from synthseq.reader_study.store import AnswerStore

    first = json.loads((study / "manifest.json").read_text())["readers"]["R1"][0]
    assert AnswerStore(study / "answers.sqlite").reading_seconds()[("R1", first)] > 0.2


@pytest.mark.browser
def test_two_sessions_page_titles_and_washout(playwright_chromium, rs, inputs, tmp_path):
    """Session 1 shows its cases with the session in the title; after its submission the page shows the washout."""
    sync_playwright, chromium = playwright_chromium
    from synthseq.reader_study import build_study

    study = tmp_path / "study"
    build_study(inputs["real"], inputs["synthetic"], study, ["R1"], seed=0, sessions=2, washout_days=14)
    n = len(rs.SUBJECTS)
    proc, url, links = rs.start_server(study)
    try:
        with sync_playwright() as pw:
            context, page, errors = _open(pw, chromium, tmp_path / "profile", links["R1"])
            assert page.text_content("#case-title") == f"Session 1 of 2 · Case 1 of {n}"
            for i in range(n):
                _answer(page, ANSWERS[i % 2])
                if i < n - 1:
                    page.keyboard.press("n")
            page.click("#submit")
            page.click("#confirm-submit")
            _expect_text(page, "#case-title", "Session 1 submitted")
            from playwright.sync_api import expect

            expect(page.locator("#save-status")).to_contain_text("Session 2 opens", timeout=TIMEOUT_MS)
            assert page.is_hidden("#viewer")
            # keepalive reading-time posts are reported as aborted by the reload even when they arrived: the
            # database below says whether they did
            assert not [e for e in errors if not ("/time/" in e and "ERR_ABORTED" in e)], errors
            context.close()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    from synthseq.reader_study.store import AnswerStore

    first = json.loads((study / "manifest.json").read_text())["readers"]["R1"][:n]
    seconds = AnswerStore(study / "answers.sqlite").reading_seconds()
    assert all(seconds.get(("R1", cid), 0) > 0 for cid in first), seconds
