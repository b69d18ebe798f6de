"""The live page at a manual microscope, in a real headless Chromium: `edge-app --web --stage manual` on a
video of a simulated operator (train.data.synth_operator) shows the focus bar, the view's state, the
coverage map and the adequacy count, and the slide page shows the same map."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from cytoedge.train.data.synth import FIELD_MIX, write_slide
from cytoedge.train.data.synth_operator import Operator, load_slide, write_video
from test_web_browser import CHROMIUM, CHROMIUM_ARGS, PHONE, SHOTS, App, _free_port

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def operator_video(folder):
    names, p = list(FIELD_MIX), np.array(list(FIELD_MIX.values()))
    classes = [names[i] for i in np.random.default_rng(4).choice(len(names), size=60, p=p)]
    write_slide(folder / "slide", classes, 12, per_field=len(classes), frame_size=(3000, 2200))
    op = Operator(rest_s=1.5, move_s=0.8, cols=2, rows=2, origin=(100, 100), focus_every=2, seed=2)
    plan = write_video(folder / "operator.avi", load_slide(folder / "slide"), op)
    return folder / "operator.avi", plan


def test_live_page_shows_focus_state_coverage_and_adequacy_in_a_real_browser(device_model, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    assert CHROMIUM.is_file(), "Debian's chromium is missing: run `make browser` (apt-get install chromium)"
    SHOTS.mkdir(parents=True, exist_ok=True)
    video, plan = operator_video(tmp_path)
    rests = len({t.rest for t in plan if t.rest >= 0})
    store = tmp_path / "store"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport=PHONE)
        app = App(["--model", str(device_model), "--source", str(video), "--stage", "manual", "--slide", "scope",
                   "--out", str(store), "--web", "--port", str(_free_port()), "--max-fps", "5",
                   "--adequacy-cells", "3", "-q"], tmp_path)
        try:
            url = app.wait_for(r"web view: (http://127\.0\.0\.1:\d+/) ").group(1)
            page.goto(url)
            expect(page.locator("#stage")).to_be_visible(timeout=30_000)
            seen = set()
            for _ in range(360):  # the state follows the operator: moving between fields, counted at rest
                seen.add(page.locator("#stage-state").inner_text())
                if {"moving", "counted"} <= seen:
                    break
                page.wait_for_timeout(250)
            assert {"moving", "counted"} <= seen, seen
            width = page.evaluate("document.getElementById('focus-bar').style.width")
            assert width.endswith("%") and float(width[:-1]) > 0
            expect(page.locator("#progress")).to_be_visible(timeout=30_000)
            page.wait_for_function("document.getElementById('coverage').naturalWidth > 0", timeout=30_000)
            page.screenshot(path=str(SHOTS / "live-stage-phone.png"), full_page=True)
            app.wait_for(r"capture finished; the web view stays up", timeout=120)
            expect(page.locator("#state")).to_have_text("finished: end of source", timeout=10_000)
            expect(page.locator("#fields-total")).to_have_text(str(rests), timeout=10_000)
            with sqlite3.connect(store / "cytoedge.sqlite") as conn:
                classified = conn.execute("SELECT COUNT(*) FROM cells WHERE slide_id = 'scope' AND unknown = 0"
                                          ).fetchone()[0]
            expect(page.locator("#classifiable")).to_have_text(str(classified))
            expect(page.locator("#adequacy-threshold")).to_have_text("3")
            expect(page.locator("#adequacy")).to_have_text(
                "adequate: you may stop" if classified >= 3 else f"unsatisfactory: {classified} of 3 classifiable "
                "squamous cells")
            assert classified >= 3  # the simulated slide holds more than this threshold
            page.goto(f"{url}slides/scope")
            page.wait_for_function("document.getElementById('coverage').naturalWidth > 0", timeout=10_000)
            page.screenshot(path=str(SHOTS / "slide-coverage.png"), full_page=True)
        finally:
            app.stop()
            browser.close()
