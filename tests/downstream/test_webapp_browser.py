"""The outcome page in a real headless Chromium (Debian's chromium driven by Playwright's Python package).

Fill the form, see the probability that ``synthseq outcome predict`` gives for the same inputs, the SHAP
waterfall and van Middendorp beside it; a bad value shows its inline message; a screenshot is saved. Launched
like tests/reader_study/test_browser.py: skipped with a visible reason when Playwright or chromium is missing,
unless SYNTHSEQ_REQUIRE_BROWSER=1 (CI), where that is a failure.
"""

from __future__ import annotations

import csv

import pytest

from synthseq.cli import main

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 15_000
PATIENT = {"age": 58.5, "sex": "F", "neuro_level": "C6", "ais_admission": "C", "uems": 24, "lems": 18,
           "l3_motor_l": 3, "l3_motor_r": 2, "s1_motor_l": 2, "s1_motor_r": 3, "l3_lt_l": 1, "l3_lt_r": 2,
           "s1_lt_l": 1, "s1_lt_r": 2, "days_to_rehab": 12}


def _fill(page, patient: dict) -> None:
    for name, value in patient.items():
        if page.locator(f"#in-{name}").evaluate("e => e.tagName") == "SELECT":
            page.select_option(f"#in-{name}", str(value))
        else:
            page.fill(f"#in-{name}", str(value))


@pytest.mark.browser
def test_page_in_chromium_matches_cli(playwright_chromium, dataset, tmp_path):
    sync_playwright, chromium = playwright_chromium
    from playwright.sync_api import expect

    from synthseq.downstream.web.app import OutcomeServerThread, create_app

    fit = tmp_path / "fit"
    assert main(["outcome", "fit", "configs/outcome_ambulation.yaml", f"data={dataset}", f"out_dir={fit}",
                 "cv_folds=3", "n_boot=50", "n_ensemble=5", "hgb_max_iter=30", "hgb_min_samples_leaf=2",
                 "explain_subjects=0", "compare=[hgb,logreg]"]) == 0
    model = fit / "model.ssmodel"
    with open(tmp_path / "patient.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["subject", *PATIENT])
        w.writerow(["web-1", *PATIENT.values()])
    assert main(["outcome", "predict", "--model", str(model), "--data", str(tmp_path / "patient.csv"),
                 "--out", str(tmp_path / "cli.csv")]) == 0
    p_cli = float(next(csv.DictReader(open(tmp_path / "cli.csv")))["prob_ambulation_discharge"])

    uploads = tmp_path / "uploads"
    uploads.mkdir()
    with OutcomeServerThread(create_app([str(model)], upload_root=uploads)) as server, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1100})
        page.set_default_timeout(TIMEOUT_MS)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("requestfailed", lambda req: errors.append(f"request failed: {req.url}"))
        page.goto(server.url + "/")
        page.wait_for_selector("body[data-ready='1']")
        expect(page.locator("#card-0")).to_contain_text("Trained on the synthetic phantom cohort")
        expect(page.locator("#card-0")).to_contain_text("Research use only, not a medical device")

        _fill(page, PATIENT)
        page.click("#predict")
        page.wait_for_selector("body[data-answered='1']")
        shown = float(page.get_attribute("#result-0 .pct", "data-probability"))
        assert abs(shown - p_cli) <= 1e-6
        expect(page.locator("#result-0 .exact")).to_contain_text(f"P = {p_cli:.6f}")
        expect(page.locator("#result-0 .interval")).to_contain_text("95% interval")
        bars = page.locator("#result-0 svg.shap-chart rect.bar")
        assert bars.count() >= 5
        assert page.locator("#result-0 svg.shap-chart g.row[data-feature='lems']").count() == 1
        expect(page.locator("#result-0 .vm-beside")).to_contain_text("van Middendorp: score 32 of 40, probability 99.5%")
        expect(page.locator("#result-vm")).to_contain_text("score 32")
        page.screenshot(path=str(tmp_path / "outcome_page.png"), full_page=True)

        # An image through the form (multipart + CSRF token from the page): shown, then the upload is gone.
        sub = dataset / "sub-0001"
        page.set_input_files("#in-t2w", str(sub / "sub-0001_T2w.nii.gz"))
        page.set_input_files("#in-labels", str(sub / "sub-0001_labels.nii.gz"))
        page.click("#predict")
        page.wait_for_selector("body[data-answered='2']")
        expect(page.locator("#image-panel")).to_be_visible()
        assert page.get_attribute("#image-png", "src").startswith("data:image/png;base64,")
        assert float(page.get_attribute("#result-0 .pct", "data-probability")) == shown
        assert list(uploads.iterdir()) == []
        page.set_input_files("#in-t2w", [])
        page.set_input_files("#in-labels", [])

        page.fill("#in-lems", "70")
        page.click("#predict")
        expect(page.locator("#err-lems")).to_have_text("LEMS must be between 0 and 50 points, got 70")
        assert "invalid" in page.get_attribute(".field[data-field='lems']", "class")
        expect(page.locator("#err-age")).to_have_text("")
        page.fill("#in-lems", "")
        page.click("#predict")
        expect(page.locator("#err-lems")).to_have_text("LEMS is required")
        assert not errors, errors
        browser.close()
    assert (tmp_path / "outcome_page.png").read_bytes()[:4] == b"\x89PNG"
