"""`make screenshots`: the README's pictures of the console (message, recipient, activity and
reports views), taken in Debian's Chromium from a local stack seeded with simulator sends."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from urllib.parse import quote

from playwright.sync_api import expect, sync_playwright

from .console_stack import (
    CHROMIUM,
    CHROMIUM_ARGS,
    ROOT,
    running_stack,
    seed,
    seed_reports,
    wait_for_report,
)


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as data, running_stack(Path(data)) as info:
        story = seed(info, hostile=False)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 860}, device_scale_factor=1)
            shots = {
                "console-activity.png": "/activity",
                "console-message.png": f"/emails/{story.mixed}",
                "console-recipient.png": f"/recipients/{quote('bounce@simulator.test')}",
            }
            for name, view in shots.items():
                page.goto(story.console(view))
                expect(page.locator("main h1")).to_be_visible()
                expect(page.locator("main .loading")).to_have_count(0)
                page.screenshot(path=str(out / name), full_page=name != "console-message.png")
                print(f"wrote {out / name}")
            # The reports' sends across providers only now: they would crowd the activity picture.
            wait_for_report(story, 5 + 3 + seed_reports(story))
            page.goto(story.console("/reports"))
            expect(page.locator("svg.latency-svg g.period")).to_have_count(1)
            page.screenshot(path=str(out / "console-reports.png"), full_page=True)
            print(f"wrote {out / 'console-reports.png'}")
            browser.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs")
