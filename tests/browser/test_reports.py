"""The console's #/reports view in Debian's Chromium against a local stack seeded with simulator
sends across mailbox providers: the bars, tiles and texts show exactly the numbers the API gave
the page; the window picker; accessibility (axe-core) and a 375 px screen."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from .console_stack import STORY_OUTCOMES, Story, running_stack, seed, seed_reports, wait_for_report
from .page_checks import axe_problems, open_view, sideways_scroll


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Story]:
    with running_stack(tmp_path_factory.mktemp("reports-stack")) as info:
        story = seed(info)
        expected = STORY_OUTCOMES + seed_reports(story)
        wait_for_report(story, expected)
        yield story


class Answers:
    """The API's answers to the page's own report requests, by path and groupBy."""

    def __init__(self, page: Any) -> None:
        self.responses: list[Any] = []
        page.on("response", self._keep)

    def _keep(self, response: Any) -> None:
        if "/api/reports/" in response.url:
            self.responses.append(response)

    def get(self, kind: str, group_by: str | None = None) -> Any:
        wanted = f"/api/reports/{kind}"
        found = [
            r
            for r in self.responses
            if wanted in r.url and (group_by is None or f"groupBy={group_by}&" in r.url + "&")
        ]
        assert found, f"the page never asked for {kind} {group_by}"
        return json.loads(found[-1].body())


def percent(text: str) -> float:
    match = re.fullmatch(r"([\d.]+) %", text.strip())
    assert match, text
    return float(match[1]) / 100


def milliseconds(text: str) -> float:
    value, unit = text.strip().split(" ")
    return float(value) * {"ms": 1, "s": 1000, "min": 60000, "h": 3600000}[unit]


def test_reports_draw_the_numbers_the_api_gave(page: Any, story: Story) -> None:
    answers = Answers(page)
    open_view(page, story, "/reports")
    expect(page.locator("main h1")).to_have_text("Deliverability")
    expect(page.get_by_role("link", name="Reports")).to_have_attribute("aria-current", "page")
    providers = answers.get("deliverability", "mailboxProvider")
    totals = providers["totals"]
    seeded = STORY_OUTCOMES + 28 + 5 + 3  # PROVIDER_SENDS, SIMULATED_FAILURES, PUBLISHED_FAILURES
    assert totals["recipients"] == seeded

    tile = lambda name: page.locator(f"[data-stat={name}] dd")  # noqa: E731
    expect(tile("recipients")).to_have_text(str(seeded))
    for name in ("deliveryRate", "hardBounceRate", "spamRate", "withinSlo"):
        assert percent(tile(name).inner_text()) == pytest.approx(totals[name], abs=0.0006)
    assert milliseconds(tile("p50").inner_text()) == pytest.approx(
        totals["latencyMs"]["p50"], abs=50
    )

    # (a) one 100 % bar per provider, its parts the API's counts
    groups = providers["groups"]
    assert {g["key"] for g in groups} == {"google", "microsoft", "yahoo", "other"}
    rows = page.locator("li.hbar")
    expect(rows).to_have_count(len(groups))
    for i, g in enumerate(groups):
        row = rows.nth(i)
        expect(row).to_have_attribute("data-key", g["key"])
        assert percent(row.locator(".rate").inner_text()) == pytest.approx(
            g["deliveryRate"], abs=0.0006
        )
        expect(row.locator(".hbar-value")).to_contain_text(f"{g['recipients']} sent")
        expected = {
            "delivered": g["delivered"],
            "soft": g["softBounced"] + g["failed"],
            "hard": g["hardBounced"],
            "spam": g["spamFiltered"] + g["quarantined"],
            "suppressed": g["suppressed"],
            "expanded": g["expanded"],
        }
        drawn = row.locator("rect.part").evaluate_all(
            "els => els.map(e => [e.classList[1], +e.dataset.count, +e.getAttribute('width')])"
        )
        assert {part: n for part, n, _ in drawn} == {k: n for k, n in expected.items() if n}
        for _, n, width in drawn:
            assert width == pytest.approx(100 * n / g["recipients"], abs=0.01)
        label = row.get_by_role("img").get_attribute("aria-label")
        assert f"{g['recipients']} recipients" in label
    other = page.locator("li.hbar[data-key=other]")
    assert other.locator("rect.part").count() == 4  # delivered, soft, hard, spam at the simulator

    # (c) the failure reasons, most frequent first, with what they mean and what to do
    failures = answers.get("failures")
    assert failures["failures"] == seeded - totals["delivered"] - totals["expanded"]
    reasons = page.locator("li.reason")
    expect(reasons).to_have_count(len(failures["reasons"]))
    assert failures["reasons"][0]["reason"] == "userunknown"
    most = failures["reasons"][0]["count"]
    for i, r in enumerate(failures["reasons"]):
        item = reasons.nth(i)
        expect(item).to_have_attribute("data-reason", r["reason"])
        expect(item.locator(".reason-count strong")).to_have_text(str(r["count"]))
        expect(item.locator(".explanation")).to_have_text(r["explanation"])
        expect(item.locator(".action")).to_have_text(f"What to do: {r['action']}")
        width = float(item.locator("rect.part").get_attribute("width"))
        assert width == pytest.approx(100 * r["count"] / most, abs=0.01)

    # (b) delivery time by hour: a bar group per hour with deliveries, named in its <title>
    series = answers.get("deliverability", "hour")
    chart = page.locator("svg.latency-svg")
    expect(chart).to_have_attribute("role", "img")
    expect(chart.locator("title").first).to_have_text("Delivery time by hour")
    desc = chart.locator("desc").text_content()
    assert desc.startswith("Median ")
    timed = [p for p in series["groups"] if p["latencyMs"]["p50"] is not None]
    assert timed, "the simulator's deliveries have a delivery time"
    periods = chart.locator("g.period")
    expect(periods).to_have_count(len(timed))
    for i, p in enumerate(timed):
        group = periods.nth(i)
        expect(group).to_have_attribute("data-key", p["key"])
        p50 = float(group.locator("rect.p50").get_attribute("height"))
        p90 = float(group.locator("rect.p90").get_attribute("height"))
        assert 0 < p50 <= p90
        assert p50 / p90 == pytest.approx(p["latencyMs"]["p50"] / p["latencyMs"]["p90"], rel=0.01)
        tip = group.locator("title").text_content()
        assert f"{p['delivered']} delivered" in tip
    # the same numbers as a table, one row per hour with outcomes
    latency = page.locator("section.latency")
    latency.get_by_text("The numbers").click()
    table_rows = latency.locator("tbody tr")
    counted = [p for p in series["groups"] if p["recipients"]]
    expect(table_rows).to_have_count(len(counted))
    for i, p in enumerate(counted):
        cells = table_rows.nth(i).locator("td").all_inner_texts()
        assert cells[1:3] == [str(p["recipients"]), str(p["delivered"])]
        if p["latencyMs"]["p90"] is not None:
            assert milliseconds(cells[4]) == pytest.approx(p["latencyMs"]["p90"], abs=50)


def test_window_picker_changes_the_window_and_the_series(page: Any, story: Story) -> None:
    answers = Answers(page)
    open_view(page, story, "/reports")
    picker = page.get_by_role("navigation", name="Time window")
    expect(picker.get_by_role("link", name="Last 24 hours")).to_have_attribute(
        "aria-current", "true"
    )
    picker.get_by_role("link", name="Last 7 days").click()
    expect(page).to_have_url(re.compile(r"#/reports\?window=7d$"))
    expect(page.get_by_role("heading", name="Delivery time by hour")).to_be_visible()
    expect(picker.get_by_role("link", name="Last 7 days")).to_have_attribute("aria-current", "true")
    week = answers.get("deliverability", "hour")
    assert len(week["groups"]) >= 7 * 24
    picker.get_by_role("link", name="Last 30 days").click()
    expect(page.get_by_role("heading", name="Delivery time by day")).to_be_visible()
    month = answers.get("deliverability", "day")
    assert len(month["groups"]) >= 30
    expect(page.locator("[data-stat=recipients] dd")).to_have_text(
        str(month["totals"]["recipients"])
    )
    expect(page.locator("svg.latency-svg g.period")).to_have_count(1)  # all sent today


@pytest.mark.parametrize("width", [1280, 375])
def test_reports_are_accessible_and_fit_a_phone(page: Any, story: Story, width: int) -> None:
    page.set_viewport_size({"width": width, "height": 800})
    open_view(page, story, "/reports")
    for summary in page.locator("details.numbers summary").all():
        summary.click()  # the tables too
    expect(page.locator("svg.latency-svg")).to_have_count(1)
    assert axe_problems(page) == []
    overflow = sideways_scroll(page)
    assert overflow <= 0, f"#/reports scrolls sideways by {overflow}px at {width}px"
    # the chart is drawn for the width it has, its text at the size it was set
    box = page.locator("svg.latency-svg").bounding_box()
    assert box["width"] <= width
    assert page.locator("svg.latency-svg").get_attribute("width") == str(round(box["width"]))
