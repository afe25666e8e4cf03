"""What the browser tests check on any console view: it finished loading, and axe-core finds no
serious or critical accessibility issue."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import expect

from .console_stack import AXE, Story


def open_view(page: Any, story: Story, hash_: str) -> None:
    page.goto(story.console(hash_))
    expect(page.locator("main h1")).to_be_visible()
    expect(page.locator("main .loading")).to_have_count(0)


def axe_problems(page: Any) -> list[str]:
    page.evaluate(AXE.read_text(encoding="utf-8"))  # through DevTools: not subject to the CSP
    result = page.evaluate(
        "axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21aa',"
        " 'best-practice']}})"
    )
    assert len(result["passes"]) > 10, "axe checked next to nothing"
    return [
        f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']][:3]}"
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


def sideways_scroll(page: Any) -> int:
    return int(page.evaluate("document.documentElement.scrollWidth - window.innerWidth"))
