"""`make screenshots`: the README's pictures of the console (message, recipient and activity
views), taken in Debian's Chromium from a local stack seeded with simulator sends."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from urllib.parse import quote

from playwright.sync_api import expect, sync_playwright

from .console_stack import CHROMIUM, CHROMIUM_ARGS, ROOT, running_stack, seed


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
            browser.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs")
