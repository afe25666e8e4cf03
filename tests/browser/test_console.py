"""The support console in Debian's Chromium against the running local stack (Azurite, ACS
sandbox, Event Grid topic, host): deep links, search, paging, reactivation, escaping, the key's
handling, CSP, accessibility (axe-core) and a narrow screen."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from playwright.sync_api import expect

from .console_stack import XSS_RECIPIENT, XSS_TEXT, Story
from .page_checks import axe_problems, open_view, sideways_scroll


def card(page: Any, address: str) -> Any:
    return page.locator("article.recipient", has=page.get_by_role("link", name=address, exact=True))


def test_message_deep_link_shows_every_recipient(page: Any, story: Story) -> None:
    open_view(page, story, f"/emails/{story.mixed}")
    expect(page.locator("main h1")).to_contain_text(story.mixed)
    expect(page.locator("article.recipient")).to_have_count(5)
    bounce = card(page, "bounce@simulator.test")
    expect(bounce.locator(".badge")).to_have_text("bounced")
    expect(bounce).to_contain_text("hard")
    expect(bounce).to_contain_text("userunknown")
    expect(bounce.locator(".explanation")).not_to_be_empty()
    expect(bounce.locator(".action")).to_contain_text("What to do")
    expect(bounce.locator("tbody tr")).to_have_count(1)  # the timeline: one report
    expect(bounce).to_contain_text("User unknown in virtual mailbox table")
    full = card(page, "mailboxfull@simulator.test")
    expect(full.locator(".badge")).to_have_text("failed")
    expect(full).to_contain_text("soft")
    expect(card(page, "delivered@simulator.test").locator(".badge")).to_have_text("delivered")
    expect(card(page, "spam@simulator.test").locator(".badge")).to_have_text("spam filtered")
    opened = card(page, "opened@simulator.test")
    expect(opened.locator("dt", has_text="Opens").locator("xpath=../dd")).to_have_text("1")
    expect(opened.locator("dt", has_text="Latency").locator("xpath=../dd")).not_to_have_text("—")
    expect(page.locator("main")).to_contain_text("campaign: spring-sale")


def test_the_key_leaves_the_address_bar_and_never_rides_in_a_url(page: Any, story: Story) -> None:
    open_view(page, story, f"/emails/{story.mixed}")
    key = story.info.function_key
    assert "code=" not in page.url
    assert page.url.endswith(f"/api/console#/emails/{story.mixed}")
    page.go_back()  # the entry was replaced, not pushed: none behind it keeps the key
    assert page.url == "about:blank"
    page.go_forward()
    assert "code=" not in page.url
    assert page.evaluate("Object.values(sessionStorage)") == [key]
    later = page.watch.requests[1:]  # the first load is the only URL with the key
    assert later
    assert not [u for u in later if key in u]
    page.reload()  # no key in the address any more: the page keeps working from sessionStorage
    expect(page.locator("article.recipient")).to_have_count(5)


def test_without_a_key_the_page_asks_for_one(page: Any, story: Story) -> None:
    page.goto(story.console("/activity", with_key=False))
    expect(page.get_by_role("heading", name="Function key")).to_be_visible()
    page.get_by_label("Function key").fill("wrong-key")
    page.get_by_role("button", name="Open the console").click()
    expect(page.get_by_role("alert")).to_contain_text("missing or wrong")
    page.watch.errors.clear()  # the browser logs the 401 it was given: expected here
    page.watch.failed.clear()
    page.get_by_label("Function key").fill(story.info.function_key)
    page.get_by_role("button", name="Open the console").click()
    expect(page.get_by_role("heading", name="Activity")).to_be_visible()


def test_recipient_view_reactivates_and_the_change_is_audited(page: Any, story: Story) -> None:
    address = "bounce@simulator.test"
    open_view(page, story, f"/recipients/{quote(address)}")
    supp = page.locator("section.card", has=page.get_by_role("heading", name="Suppression list"))
    expect(supp.locator(".badge")).to_have_text("suppressed")
    expect(supp).to_contain_text("userunknown")
    expect(page.get_by_role("link", name=story.mixed)).to_be_visible()  # the history row
    page.get_by_label("Operator").fill("Dana from support")
    page.get_by_label("Reason (optional)").fill("recipient fixed the mailbox, ticket 4711")
    page.get_by_role("button", name="Reactivate").click()
    expect(supp.locator(".badge")).to_have_text("not suppressed")
    expect(page.get_by_role("status")).to_have_text(f"{address} reactivated")
    with story.client() as c:
        state = c.get(f"/api/suppressions/{address}").json()
    assert state["status"] == "active"
    newest = state["audit"][0]
    assert newest["action"] == "reactivate"
    assert newest["origin"] == "operator:Dana from support"
    assert newest["reason"] == "reactivated: recipient fixed the mailbox, ticket 4711"
    # and back on the list, by hand: a reason is required
    page.get_by_label("Reason", exact=True).fill("asked us to stop")
    page.get_by_role("button", name="Suppress").click()
    expect(supp.locator(".badge")).to_have_text("suppressed")
    supp.locator("summary").click()
    expect(supp.locator("details tbody tr").first).to_contain_text("manual: asked us to stop")


def test_activity_search_filters_and_paging(page: Any, story: Story) -> None:
    with story.client() as c:
        total = len(c.get("/api/emails?limit=100").json()["emails"])
    assert total == 5 + 3 + 1  # the story's recipients, one outcome each
    open_view(page, story, "/activity")
    rows = page.locator("main tbody tr")
    expect(rows).to_have_count(total)
    page.get_by_role("button", name="Last hour of failures").click()
    expect(page).to_have_url(re.compile(r"status=failures"))
    expect(rows).to_have_count(4)  # bounce, mailboxfull, spam, the hostile bounce
    for badge in rows.locator(".badge").all_text_contents():
        assert badge in {"bounced", "failed", "spam filtered"}
    page.get_by_label("Status").select_option("bounced")
    page.get_by_label("Recipient domain").fill("simulator.test")
    page.get_by_role("button", name="Search").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("bounce@simulator.test")
    page.get_by_role("link", name="Clear").click()
    page.get_by_label("Tag").fill("campaign=welcome")
    page.get_by_role("button", name="Search").click()
    expect(rows).to_have_count(3)
    # Paging: two at a time, "Older outcomes" appends the next page until there is none.
    open_view(page, story, "/activity?limit=2")
    seen = 2
    expect(rows).to_have_count(seen)
    while page.get_by_role("button", name="Older outcomes").count():
        page.get_by_role("button", name="Older outcomes").click()
        seen = min(seen + 2, total)
        expect(rows).to_have_count(seen)
    expect(rows).to_have_count(total)
    recipients = rows.locator("td:nth-child(2)").all_text_contents()
    assert len(set(recipients)) == total  # each outcome once: no gap, no repeat
    times = rows.locator("time").evaluate_all("els => els.map(e => e.getAttribute('datetime'))")
    assert times == sorted(times, reverse=True)


def test_hostile_texts_render_as_inert_text(page: Any, story: Story) -> None:
    for view in (f"/emails/{story.hostile}", "/activity"):
        open_view(page, story, view)
        main = page.locator("main")
        expect(main).to_contain_text(XSS_RECIPIENT)
        expect(main).to_contain_text(XSS_TEXT)
        assert main.locator("img, svg, b").count() == 0
    # An operator's reason comes from outside too. (An address with "/" cannot be a path
    # parameter of the recipient routes, so this one has none.)
    address = "<b>bold</b>@example.com".replace("/", "")
    with story.client() as c:
        reply = c.put(
            f"/api/suppressions/{quote(address)}",
            json={"operator": "<b>x</b>", "reason": "<img src=x onerror=alert(3)>"},
        )
        assert reply.status_code == 200, reply.text
    open_view(page, story, f"/recipients/{quote(address)}")
    main = page.locator("main")
    expect(main.locator("h1")).to_have_text(address)
    expect(main).to_contain_text("manual: <img src=x onerror=alert(3)>")
    main.locator("summary").click()
    expect(main).to_contain_text("operator:<b>x</b>")
    assert main.locator("img, svg, b").count() == 0


def test_search_box_finds_a_message_an_address_and_a_message_id(page: Any, story: Story) -> None:
    open_view(page, story, "/activity")
    box = page.get_by_role("searchbox", name="Message id, address or Message-ID")
    box.fill(story.mixed)
    box.press("Enter")
    expect(page.locator("article.recipient")).to_have_count(5)
    box.fill("opened@simulator.test")
    box.press("Enter")
    expect(page.locator("main h1")).to_have_text("opened@simulator.test")
    box.fill(story.internet_message_id.upper())  # case-insensitive, with its angle brackets
    box.press("Enter")
    expect(page.locator("main h1")).to_contain_text(story.hostile)
    assert page.url.endswith(f"#/emails/{story.hostile}")


def test_suppressions_list_and_csv_export(page: Any, story: Story, tmp_path: Path) -> None:
    with story.client() as c:
        reply = c.put(
            "/api/suppressions/=cmd@formula.example",
            json={"operator": "test", "reason": "=HYPERLINK()"},
        )
        assert reply.status_code == 200, reply.text
    open_view(page, story, "/suppressions")
    expect(page.get_by_role("link", name="=cmd@formula.example")).to_be_visible()
    with page.expect_download() as download:
        page.get_by_role("button", name="Export CSV").click()
    path = tmp_path / "suppressions.csv"
    download.value.save_as(path)
    rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
    formula = next(r for r in rows if "formula.example" in r["address"])
    assert formula["address"] == "'=cmd@formula.example"
    assert formula["reason"] == "manual: =HYPERLINK()"
    page.get_by_label("Recipient domain (empty: all)").fill("formula.example")
    page.get_by_role("button", name="Show").click()
    expect(page.locator("main tbody tr")).to_have_count(1)


def test_alerts_and_explain(page: Any, story: Story) -> None:
    open_view(page, story, "/alerts")
    expect(page.locator("main tbody tr").first).to_be_visible()
    expect(page.locator("main")).to_contain_text("Recipient.HardBounced")
    open_view(page, story, "/explain")
    page.get_by_label("Bounce text or SMTP reply").fill(
        "552 5.2.2 <jane@example.com>: Mailbox full, quota exceeded"
    )
    page.get_by_role("button", name="Explain").click()
    expect(page.get_by_role("heading", name="Reason: mailboxfull")).to_be_visible()
    expect(page.locator("main")).to_contain_text("soft")


def test_the_page_is_served_with_a_strict_policy(story: Story) -> None:
    reply = httpx.get(f"{story.base}/api/console")
    assert reply.status_code == 200
    csp = reply.headers["content-security-policy"]
    for directive in ("default-src 'self'", "script-src 'self'", "frame-ancestors 'none'"):
        assert directive in csp
    assert "unsafe" not in csp
    assert reply.headers["referrer-policy"] == "no-referrer"
    assert httpx.get(f"{story.base}/api/console/../shared/web.py").status_code == 404
    # the data is keyed; only the static page and its files are not
    assert httpx.get(f"{story.base}/api/emails?limit=1").status_code == 401


@pytest.mark.parametrize("width", [1280, 375])
def test_accessibility_and_narrow_screens(page: Any, story: Story, width: int) -> None:
    page.set_viewport_size({"width": width, "height": 800})
    views = [
        f"/emails/{story.mixed}",
        "/recipients/mailboxfull%40simulator.test",
        "/activity",
        "/suppressions",
        "/alerts",
        "/explain",
        "/reports",
    ]
    found = {}
    for view in views:
        open_view(page, story, view)
        found[view] = axe_problems(page)
        overflow = sideways_scroll(page)
        assert overflow <= 0, f"{view} scrolls sideways by {overflow}px at {width}px"
    assert found == {key: [] for key in views}
