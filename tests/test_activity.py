"""Activity search, Message-ID lookup, the whole suppression list and CSV exports, the signed-in
operator, and the console's files: through function_app's handlers against real Azurite."""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import azure.functions as func
import pytest

import function_app
from shared.app import wiring as services
from shared.core import activity as rules
from shared.core.exports import cell, to_csv, wants_csv

from .factories import BASE, delivery_event, record_event
from .send_harness import drain, post
from .servers import Capture

URL = "http://127.0.0.1:7071/api/"
SINCE = (BASE - timedelta(hours=1)).isoformat()
UNTIL = (BASE + timedelta(hours=3)).isoformat()


@pytest.fixture
def env(app_env: dict[str, str]) -> Iterator[dict[str, str]]:
    services.reset()
    yield app_env
    services.reset()


def call(
    handler: Any,
    route: str,
    method: str = "GET",
    params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    body: Any = None,
    **route_params: str,
) -> func.HttpResponse:
    raw = json.dumps(body).encode() if body is not None else b""
    req = func.HttpRequest(
        method,
        URL + route,
        headers={"content-type": "application/json", **(headers or {})},
        params=params or {},
        route_params=route_params,
        body=raw,
    )
    response: func.HttpResponse = handler(req)
    return response


def search(**params: str) -> tuple[int, Any]:
    window = {"since": SINCE, "until": UNTIL}
    resp = call(function_app.search_emails, "emails", params={**window, **params})
    return resp.status_code, json.loads(resp.get_body())


def pages(**params: str) -> list[list[dict[str, Any]]]:
    out, token = [], None
    while True:
        status, body = search(**params, **({"continuation": token} if token else {}))
        assert status == 200, body
        out.append(body["emails"])
        token = body["continuation"]
        if token is None:
            return out


def _story() -> list[dict[str, Any]]:
    """Seven outcomes over two hours: two messages to many recipients and one to an IDN."""
    m1, m2, m3 = (str(uuid.uuid4()) for _ in range(3))
    return [
        delivery_event(m1, "a@example.com", "Delivered", 1),
        delivery_event(m1, "b@example.com", "Bounced", 2),
        delivery_event(m1, "c@example.org", "Failed", 3),
        delivery_event(m2, "d@example.com", "Delivered", 3600 + 1),
        delivery_event(m2, "e@example.com", "FilteredSpam", 3600 + 2),
        delivery_event(m2, "f@example.com", "Quarantined", 3600 + 3),
        delivery_event(m3, "anna@bücher.example", "Delivered", 3600 + 4, sender="x@bücher.example"),
    ]


def test_search_is_newest_first_and_pages_without_gaps_or_repeats(env: dict[str, str]) -> None:
    story = _story()
    for event in [*story, story[1], story[4]]:  # two redeliveries: still one row each
        record_event(event)
    status, body = search()
    assert status == 200
    got = [(e["recipient"], e["status"]) for e in body["emails"]]
    assert got == [
        ("anna@bücher.example", "delivered"),
        ("f@example.com", "quarantined"),
        ("e@example.com", "spam_filtered"),
        ("d@example.com", "delivered"),
        ("c@example.org", "failed"),
        ("b@example.com", "bounced"),
        ("a@example.com", "delivered"),
    ]
    bounced = body["emails"][5]
    assert bounced["reason"] == "userunknown"
    assert bounced["bounceType"] == "hard"
    assert "User unknown" in bounced["detail"]
    assert bounced["sender"] == "DoNotReply@mail.contoso.com"
    assert bounced["source"] == "report"
    for size in (1, 2, 3, 7, 100):
        paged = pages(limit=str(size))
        assert [e for page in paged for e in page] == body["emails"], size
        assert all(len(page) <= size for page in paged)


def test_filters(env: dict[str, str]) -> None:
    for event in _story():
        record_event(event)

    def recipients(**params: str) -> list[str]:
        return [e["recipient"] for page in pages(**params) for e in page]

    assert recipients(status="bounced,failed") == ["c@example.org", "b@example.com"]
    assert recipients(status="failures") == [
        "f@example.com",
        "e@example.com",
        "c@example.org",
        "b@example.com",
    ]
    assert recipients(recipientDomain="EXAMPLE.org") == ["c@example.org"]
    # An IDN domain is one filter in either form.
    assert recipients(recipientDomain="bücher.example") == ["anna@bücher.example"]
    assert recipients(senderDomain="xn--bcher-kva.example") == ["anna@bücher.example"]
    assert recipients(senderDomain="nowhere.example") == []
    # The window: only the first hour.
    first_hour = (BASE + timedelta(minutes=30)).isoformat()
    assert len(recipients(until=first_hour)) == 3
    assert len(recipients(since=first_hour)) == 4


def test_bad_search_parameters_are_one_400_naming_each(env: dict[str, str]) -> None:
    status, body = search(
        status="bounced,nope", limit="0", senderDomain="a b", since=UNTIL, until=SINCE
    )
    assert status == 400
    assert {e["field"] for e in body["errors"]} == {"status", "limit", "senderDomain", "since"}
    status, body = search(since=(BASE - timedelta(days=40)).isoformat())
    assert status == 400
    assert body["errors"][0]["field"] == "since"
    for token in ("garbage", "eyJiIjoiMjAwMDAxMDEwMCIsImsiOiIwMDAwMDAwMDAwMDAwIn0"):
        status, body = search(continuation=token)  # the second: a bucket outside the window
        assert (status, body["errors"][0]["field"]) == (400, "continuation")


def test_hostile_report_texts_are_stored_safely_and_shown_verbatim(env: dict[str, str]) -> None:
    mid = str(uuid.uuid4())
    hostile = [
        ("xss@example.com", "550 <img src=x onerror=alert(1)> 5.1.1 unknown"),
        ("emoji@example.com", "550 5.1.1 📭 mailbox gone 🙈"),
        ("lone@example.com", "550 5.1.1 half a pair \ud800 here"),
        ("ctl@example.com", "550 5.1.1 tab\there\r\nline two"),
        ("=cmd|'/C.calc'!A0@example.com", '=HYPERLINK("http://x")'),
        ("huge@example.com", "550 5.1.1 " + "x" * 16_000),
    ]
    for n, (recipient, text) in enumerate(hostile):
        event = delivery_event(mid, recipient, "Bounced", n, status_message=text)
        event["data"]["internetMessageId"] = f"<{'y' * 3000}.{n}@Mail.Example>"
        record_event(json.loads(json.dumps(event)))  # as it arrives: JSON-escaped surrogate
    status, body = search()
    assert status == 200, body
    details = {e["recipient"]: e["detail"] for e in body["emails"]}
    assert details["xss@example.com"] == hostile[0][1]
    assert details["emoji@example.com"] == hostile[1][1]
    assert details["lone@example.com"] == "550 5.1.1 half a pair \ufffd here"
    assert len(details["huge@example.com"]) == rules.MAX_DETAIL
    found = call(
        function_app.search_emails,
        "emails",
        params={"internetMessageId": f"  <{'Y' * 3000}.2@mail.example> "},
    )
    assert found.status_code == 200
    assert json.loads(found.get_body())["messages"][0]["messageId"] == mid
    exported = call(
        function_app.search_emails,
        "emails",
        params={"since": SINCE, "until": UNTIL},
        headers={"accept": "text/csv"},
    )
    assert exported.status_code == 200
    rows = list(csv.DictReader(io.StringIO(exported.get_body().decode("utf-8-sig"))))
    formula = next(r for r in rows if r["recipient"].startswith("'="))
    assert formula["detail"] == '\'=HYPERLINK("http://x")'


def test_internet_message_id_resolves_case_insensitively(env: dict[str, str]) -> None:
    mid = str(uuid.uuid4())
    for recipient in ("a@example.com", "b@example.com"):
        event = delivery_event(mid, recipient, "Delivered")
        event["data"]["internetMessageId"] = "<AbC.123@EUR01.Prod.Outlook.com>"
        record_event(event)

    def resolve(value: str) -> tuple[int, Any]:
        resp = call(function_app.search_emails, "emails", params={"internetMessageId": value})
        return resp.status_code, json.loads(resp.get_body())

    for pasted in ("<abc.123@eur01.prod.outlook.com>", "ABC.123@EUR01.PROD.OUTLOOK.COM"):
        status, body = resolve(pasted)
        assert status == 200
        assert body["internetMessageId"] == "<AbC.123@EUR01.Prod.Outlook.com>"
        assert [m["messageId"] for m in body["messages"]] == [mid]
        assert body["messages"][0]["lookupUrl"].endswith(f"/api/emails/{mid}")
    assert resolve("<nothing@example.com>")[0] == 404
    assert resolve("  ")[0] == 400
    assert resolve("x" * 5000)[0] == 400
    assert resolve("a\x00b@example.com")[0] == 400


def test_csv_export_pages_with_a_link_header(env: dict[str, str]) -> None:
    for event in _story():
        record_event(event)
    resp = call(
        function_app.search_emails,
        "emails",
        params={"since": SINCE, "until": UNTIL, "limit": "4"},
        headers={"accept": "text/csv, application/json;q=0.5"},
    )
    assert resp.headers["content-type"] == "text/csv; charset=utf-8"
    assert "attachment" in resp.headers["content-disposition"]
    text = resp.get_body().decode("utf-8")
    assert text.startswith("\ufeffat,messageId,recipient,status")
    assert len(list(csv.reader(io.StringIO(text)))) == 1 + 4
    link = resp.headers["link"]
    assert link.endswith('>; rel="next"')
    query = {k: v[0] for k, v in parse_qs(link[2 : link.index(">")]).items()}
    rest = call(function_app.search_emails, "emails", params=query, headers={"accept": "text/csv"})
    assert len(list(csv.reader(io.StringIO(rest.get_body().decode("utf-8-sig"))))) == 1 + 3
    assert "link" not in rest.headers


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("=1+1", "'=1+1"),
        ("+49 30 1234", "'+49 30 1234"),
        ("-2", "'-2"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=x", "'\t=x"),
        ("plain", "plain"),
        ("a=b", "a=b"),
        (None, ""),
        ({"team": "=x"}, "team==x"),
    ],
)
def test_csv_cells_never_start_a_formula(value: Any, shown: str) -> None:
    assert cell(value) == shown
    assert to_csv(["v"], [{"v": value}]).decode("utf-8-sig").splitlines()[1].strip('"') == shown


def test_accept_header_picks_csv_only_when_asked() -> None:
    assert wants_csv("text/csv")
    assert wants_csv("text/csv;q=1, application/json;q=0.1")
    assert not wants_csv(None)
    assert not wants_csv("application/json, text/csv")
    assert not wants_csv("*/*")


def test_the_whole_suppression_list_is_paged_and_exports_as_csv(env: dict[str, str]) -> None:
    addresses = [f"user{n}@d{n % 3}.example" for n in range(7)] + ["@evil@x.example"]
    for address in addresses:
        resp = call(
            function_app.suppress_address,
            f"suppressions/{address}",
            "PUT",
            body={"operator": "alice", "reason": "=cmd asked to stop"},
            address=address,
        )
        assert resp.status_code == 200, resp.get_body()
    listed, token = [], None
    while True:
        params = {"limit": "3", **({"continuation": token} if token else {})}
        resp = call(function_app.list_suppressions, "suppressions", params=params)
        body = json.loads(resp.get_body())
        assert resp.status_code == 200, body
        assert body["domain"] is None
        assert len(body["suppressions"]) <= 3
        listed += [s["address"] for s in body["suppressions"]]
        token = body["continuation"]
        if token is None:
            break
    assert sorted(listed) == sorted(addresses)
    resp = call(function_app.list_suppressions, "suppressions", headers={"accept": "text/csv"})
    rows = list(csv.DictReader(io.StringIO(resp.get_body().decode("utf-8-sig"))))
    assert len(rows) == len(addresses)
    assert {r["reason"] for r in rows} == {"manual: =cmd asked to stop"}  # not at a cell start
    assert "'@evil@x.example" in {r["address"] for r in rows}
    resp = call(function_app.list_suppressions, "suppressions", params={"domain": "d1.example"})
    assert [s["address"] for s in json.loads(resp.get_body())["suppressions"]] == [
        "user1@d1.example",
        "user4@d1.example",
    ]


def test_signed_in_principal_is_the_audited_operator(env: dict[str, str]) -> None:
    who = {"x-ms-client-principal-name": "carol@contoso.example"}
    resp = call(
        function_app.suppress_address,
        "suppressions/p@example.com",
        "PUT",
        headers=who,
        body={"operator": "mallory", "reason": "asked"},
        address="p@example.com",
    )
    assert resp.status_code == 200
    resp = call(
        function_app.reactivate_address,
        "suppressions/p@example.com",
        "DELETE",
        headers=who,
        body={"reason": "fixed"},  # no self-declared name needed when signed in
        address="p@example.com",
    )
    state = json.loads(resp.get_body())
    assert resp.status_code == 200, state
    reactivated, suppressed = state["audit"]
    assert reactivated["origin"] == suppressed["origin"] == "operator:carol@contoso.example"
    assert suppressed["detail"]["declaredOperator"] == "mallory"
    assert reactivated["detail"] == {"operatorSource": "X-MS-CLIENT-PRINCIPAL-NAME"}
    # Without the header a name is still required; a control character in it is a 400.
    resp = call(
        function_app.reactivate_address,
        "suppressions/p@example.com",
        "DELETE",
        body={"reason": "x"},
        address="p@example.com",
    )
    assert resp.status_code == 400
    for hostile in ("al\x00ice", "half \ud800", "x" * 300):
        resp = call(
            function_app.suppress_address,
            "suppressions/p@example.com",
            "PUT",
            body={"operator": hostile, "reason": "r"},
            address="p@example.com",
        )
        assert resp.status_code == 400, hostile


def test_our_own_outcomes_are_in_the_feed(send_env: dict[str, str], send_capture: Capture) -> None:
    from shared.core.suppression import Change

    services.suppression_list().apply(
        "dead@example.com",
        Change(active=True, reason="manual", origin="operator:test", at=datetime.now(UTC)),
    )
    body = {
        "to": [{"address": "dead@example.com"}, {"address": "ok@example.com"}],
        "subject": "Hi",
        "plainText": "Hello",
        "tags": {"campaign": "spring", "team": "billing"},
    }
    partial = post(body)
    failing = post(
        {**body, "to": [{"address": "x@example.com"}], "senderAddress": "n@unlinked.test"}
    )
    assert sorted(drain(send_env)) == ["failed", "sent"]
    now = datetime.now(UTC)
    window = {"since": (now - timedelta(minutes=5)).isoformat(), "until": now.isoformat()}
    resp = call(function_app.search_emails, "emails", params={**window, "status": "failures"})
    rows = {e["recipient"]: e for e in json.loads(resp.get_body())["emails"]}
    assert set(rows) == {"dead@example.com", "x@example.com"}
    dead, failed = rows["dead@example.com"], rows["x@example.com"]
    assert (dead["messageId"], dead["status"], dead["source"]) == (
        partial.body["messageId"],
        "suppressed",
        "accept",
    )
    assert dead["tags"] == {"campaign": "spring", "team": "billing"}
    assert (failed["messageId"], failed["status"], failed["source"]) == (
        failing.body["messageId"],
        "failed",
        "send",
    )
    assert failed["reason"] == "senderror"
    tagged = call(function_app.search_emails, "emails", params={**window, "tag": "campaign=spring"})
    assert [e["recipient"] for e in json.loads(tagged.get_body())["emails"]] == [
        "x@example.com",
        "dead@example.com",
    ]


def test_console_page_and_files(env: dict[str, str]) -> None:
    for url in ("console", "console/"):
        resp = call(function_app.show_console, url)
        assert resp.status_code == 200
        csp = resp.headers["content-security-policy"]
        assert "default-src 'self'" in csp
        assert "frame-ancestors 'none'" in csp
        assert "'unsafe-inline'" not in csp
        page = resp.get_body().decode()
        assert '<script type="module" src="/api/console/app.js"></script>' in page
        assert "<script>" not in page
    resp = call(function_app.get_console_file, "console/app.js", file="app.js")
    assert resp.headers["content-type"] == "text/javascript; charset=utf-8"
    assert resp.headers["x-content-type-options"] == "nosniff"
    for name in ("..%2Fshared", "../function_app.py", "index.html", "APP.JS", "nope.js"):
        assert call(function_app.get_console_file, "console/x", file=name).status_code == 404


def test_console_code_never_writes_html_from_strings() -> None:
    """The page builds every node with createElement/textContent: nothing parses data as HTML."""
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / "console"
    for path in root.glob("*.js"):
        text = path.read_text()
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert sink not in text, f"{path.name} uses {sink}"


def test_activity_rules() -> None:
    at = datetime(2026, 3, 4, 10, 15, 30, 123000, tzinfo=UTC)
    assert rules.bucket_of(at) == "2026030410"
    assert rules.time_key(at) > rules.time_key(at + timedelta(milliseconds=1))
    key = rules.row_key(at, "m", "A@Example.com", "e1")
    assert key == rules.row_key(at, "m", "a@example.com", "e1")  # one recipient, any case
    assert key.startswith(rules.time_key(at) + "|")
    shards = {rules.shard_of(str(n), "a@example.com") for n in range(200)}
    assert shards == set(range(rules.ACTIVITY_SHARDS))
    assert rules.domain("Anna@BÜCHER.example") == "xn--bcher-kva.example"
    assert rules.internet_id(" <AbC@X.Y> ") == "abc@x.y"
