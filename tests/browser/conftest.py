"""One stack with a seeded story per module, one Chromium per session, and a fresh page per
test that fails the test on any console error, page error, dialog (a script that ran from
data would open one) or request to another origin."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from .console_stack import CHROMIUM, CHROMIUM_ARGS, Story, running_stack, seed


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Story]:
    with running_stack(tmp_path_factory.mktemp("console-stack")) as info:
        yield seed(info)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


# Answers the page asks for knowing they may be "no": an address never on the suppression list
# (404), a pasted address tried as a Message-ID first (404). Chromium logs every 4xx as a
# console error ("Failed to load resource"), so those lines are accepted for these only.
EXPECTED_MISSES = (
    re.compile(r"/api/suppressions/[^/?]+$"),
    re.compile(r"/api/emails\?internetMessageId="),
)
LOAD_FAILED = "Failed to load resource: the server responded with a status of"


class Watch:
    """What a page did that a test must see: errors, dialogs, every request's URL."""

    def __init__(self, origin: str) -> None:
        self.origin = origin
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.foreign: list[str] = []
        self.failed: list[tuple[int, str]] = []

    def response(self, response: Any) -> None:
        if response.status >= 400:
            self.failed.append((response.status, response.url))

    def request(self, request: Any) -> None:
        self.requests.append(request.url)
        parts = urlsplit(request.url)
        if (
            parts.scheme not in ("data", "blob")
            and f"{parts.scheme}://{parts.netloc}" != self.origin
        ):
            self.foreign.append(request.url)

    def console(self, message: Any) -> None:
        if message.type in ("error", "warning"):
            self.errors.append(f"console {message.type}: {message.text}")

    def check(self) -> None:
        assert self.foreign == [], f"requests left the page's origin: {self.foreign}"
        unexpected = [
            (status, url)
            for status, url in self.failed
            if not (status == 404 and any(p.search(url) for p in EXPECTED_MISSES))
        ]
        assert unexpected == [], unexpected
        errors = [e for e in self.errors if LOAD_FAILED not in e]
        assert errors == [], errors
        assert len(self.errors) - len(errors) == len(self.failed)


@pytest.fixture
def page(browser: Any, story: Story) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    watch = Watch(story.base)
    page = context.new_page()
    page.on("request", watch.request)
    page.on("response", watch.response)
    page.on("console", watch.console)
    page.on("pageerror", lambda error: watch.errors.append(f"page error: {error}"))
    page.on(
        "dialog",
        lambda dialog: (watch.errors.append(f"dialog: {dialog.message}"), dialog.dismiss()),
    )
    # Anything bound elsewhere is refused before it leaves (and recorded above).
    context.route(lambda url: not url.startswith(story.base + "/"), lambda route: route.abort())
    page.watch = watch  # type: ignore[attr-defined]
    yield page
    context.close()
    watch.check()
