"""POST /api/emails body validation: one table of bad bodies, one of good ones, and the limits."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.core.errors import InvalidInput
from shared.core.sending.validation import (
    INVALID_JSON_TITLE,
    INVALID_REQUEST_TITLE,
    KNOWN_FIELDS,
    MAX_BODY_BYTES,
    MAX_PROBLEMS,
    MAX_REQUEST_BYTES,
    Attachment,
    Mailbox,
    Recipient,
    SenderPolicy,
    SendRequest,
    parse_send_request,
)

API_REFERENCE = Path(__file__).parent / "reference" / "acs-email-api"  # copied from ../shared
POLICY = SenderPolicy(
    sender_domain="mail.example.com", allowlist=(), default_sender="noreply@mail.example.com"
)
NO_DEFAULT = SenderPolicy(sender_domain=None, allowlist=(), default_sender=None)
LISTED = SenderPolicy(
    sender_domain="mail.example.com",
    allowlist=("alerts@mail.example.com", "@news.example.com"),
    default_sender="noreply@mail.example.com",
)
PDF = base64.b64encode(b"%PDF-1.4 hello").decode()
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n").decode()
DROP = object()  # a _body() override that removes the key


def _body(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "to": [{"address": "alice@example.org", "displayName": "Alice"}],
        "subject": "Your report",
        "plainText": "Attached.",
    }
    for key, value in overrides.items():
        if value is DROP:
            doc.pop(key, None)
        else:
            doc[key] = value
    return doc


def _to(*addresses: str) -> list[dict[str, str]]:
    return [{"address": a} for a in addresses]


def _attachment(**overrides: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "name": "report.pdf",
        "contentType": "application/pdf",
        "contentInBase64": PDF,
    }
    item.update(overrides)
    return {k: v for k, v in item.items() if v is not DROP}


def _parse(
    doc: dict[str, Any] | bytes,
    content_type: str | None = "application/json",
    policy: SenderPolicy = POLICY,
) -> SendRequest:
    body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    return parse_send_request(body, content_type, policy)


def _fields(exc: InvalidInput) -> set[str]:
    return {p.field for p in exc.problems}


def _bad(
    id_: str,
    doc: dict[str, Any] | bytes,
    fields: set[str],
    status: int = 400,
    content_type: str | None = "application/json",
    policy: SenderPolicy = POLICY,
) -> Any:
    return pytest.param(doc, content_type, policy, status, fields, id=id_)


# Each row: the body, the problem fields expected (all of them), and the status if not 400.
BAD: list[Any] = [
    # --- 415: the media type -----------------------------------------------------------------
    _bad("no-content-type", _body(), set(), status=415, content_type=None),
    _bad("text-plain", _body(), set(), status=415, content_type="text/plain"),
    _bad("xml", _body(), set(), status=415, content_type="application/xml"),
    _bad("not-quite-json", _body(), set(), status=415, content_type="application/jsonx"),
    _bad("latin-1", _body(), set(), status=415, content_type="application/json; charset=latin-1"),
    # --- 400: not a JSON object ----------------------------------------------------------------
    _bad("not-json", b"not json", {""}),
    _bad("empty-body", b"", {""}),
    _bad("array", b"[1, 2]", {""}),
    _bad("string", b'"hello"', {""}),
    _bad("null", b"null", {""}),
    _bad("bad-utf8", b'{"subject": "\xff"}', {""}),
    _bad("dup-key", b'{"to": 1, "to": 2}', {""}),
    _bad("nan", b'{"subject": NaN}', {""}),
    _bad("deep-nesting", b"[" * 100_000, {""}),
    # --- 400: top level ------------------------------------------------------------------------
    _bad("typo", _body(subjct="Hi"), {"subjct"}),
    _bad("to-missing", _body(to=DROP), {"to"}),
    _bad("to-null", _body(to=None), {"to"}),
    _bad("to-empty", _body(to=[]), {"to"}),
    _bad("to-str", _body(to="a@example.org"), {"to"}),
    _bad("to-item-str", _body(to=["a@example.org"]), {"to[0]"}),
    _bad("to-no-address", _body(to=[{}]), {"to[0].address"}),
    _bad(
        "to-item-typo", _body(to=[{"adress": "a@example.org"}]), {"to[0].adress", "to[0].address"}
    ),
    _bad("cc-object", _body(cc={"address": "b@example.org"}), {"cc"}),
    _bad("reply-to-bad", _body(replyTo=_to("nope")), {"replyTo[0].address"}),
    _bad("subject-missing", _body(subject=DROP), {"subject"}),
    _bad("subject-empty", _body(subject=""), {"subject"}),
    _bad("subject-blank", _body(subject="   "), {"subject"}),
    _bad("subject-number", _body(subject=42), {"subject"}),
    _bad("subject-crlf", _body(subject="Hi\r\nBcc: x@evil.example"), {"subject"}),
    _bad("subject-999", _body(subject="x" * 999), {"subject"}),
    _bad("no-body", _body(plainText=DROP), {"plainText"}),
    _bad("empty-bodies", _body(plainText="", html="  "), {"plainText"}),
    _bad("plain-array", _body(plainText=["x"]), {"plainText"}),
    _bad("html-bool", _body(html=True), {"html"}),
    _bad(
        "tracking-str",
        _body(userEngagementTrackingDisabled="yes"),
        {"userEngagementTrackingDisabled"},
    ),
    # --- 400: display names --------------------------------------------------------------------
    _bad(
        "name-crlf",
        _body(to=[{"address": "a@example.org", "displayName": "A\r\nBcc: x@evil.example"}]),
        {"to[0].displayName"},
    ),
    _bad(
        "name-angle",
        _body(to=[{"address": "a@example.org", "displayName": "A <x@evil.example>"}]),
        {"to[0].displayName"},
    ),
    _bad(
        "name-nul",
        _body(to=[{"address": "a@example.org", "displayName": "A\x00"}]),
        {"to[0].displayName"},
    ),
    _bad(
        "name-long",
        _body(to=[{"address": "a@example.org", "displayName": "x" * 257}]),
        {"to[0].displayName"},
    ),
    _bad(
        "name-number",
        _body(to=[{"address": "a@example.org", "displayName": 7}]),
        {"to[0].displayName"},
    ),
    # --- 400: duplicates -----------------------------------------------------------------------
    _bad("dup-in-to", _body(to=_to("a@example.org", "A@Example.ORG")), {"to[1].address"}),
    _bad(
        "dup-cc-bcc",
        _body(to=_to("a@example.org"), cc=_to("b@example.org"), bcc=_to("B@example.org")),
        {"bcc[0].address"},
    ),
    _bad(
        "dup-idn-forms",
        _body(to=_to("user@bücher.example"), cc=_to("USER@xn--bcher-kva.example")),
        {"cc[0].address"},
    ),
    # --- 400: attachments ----------------------------------------------------------------------
    _bad("att-object", _body(attachments={}), {"attachments"}),
    _bad("att-item-str", _body(attachments=["x"]), {"attachments[0]"}),
    _bad(
        "att-empty-object",
        _body(attachments=[{}]),
        {"attachments[0].name", "attachments[0].contentType", "attachments[0].contentInBase64"},
    ),
    _bad(
        "att-unknown-key", _body(attachments=[_attachment(content="x")]), {"attachments[0].content"}
    ),
    *[
        _bad(
            f"b64-{label}",
            _body(attachments=[_attachment(contentInBase64=b64)]),
            {"attachments[0].contentInBase64"},
        )
        for label, b64 in [
            ("space", "TG9y ZW0="),
            ("newline", "TG9y\nZW0="),
            ("url-safe", "TG9y-_0="),
            ("no-padding", "TG9yZW0"),
            ("non-ascii", "TG9yZW0é"),
            ("empty", ""),
            ("number", 12),
        ]
    ],
    *[
        _bad(
            f"type-{label}",
            _body(attachments=[_attachment(contentType=ct)]),
            {"attachments[0].contentType"},
        )
        for label, ct in [
            ("unknown", "application/x-foo"),
            ("msdownload", "application/x-msdownload"),
            ("javascript", "text/javascript"),
            ("with-params", "text/plain; charset=utf-8"),
            ("html", "text/html"),
            ("missing", DROP),
        ]
    ],
    *[
        _bad(f"name-{label}", _body(attachments=[_attachment(name=name)]), {"attachments[0].name"})
        for label, name in [
            ("exe", "setup.exe"),
            ("bat", "run.BAT"),
            ("js", "invoice.pdf.js"),
            ("vbs", "macro.vbs"),
            ("cmd", "x.cmd"),
            ("trailing-dot", "setup.exe. "),
            ("slash", "../etc/passwd"),
            ("backslash", "C:\\temp\\a.pdf"),
            ("control", "a\x07.pdf"),
            ("dot-dot", ".."),
            ("blank", "  "),
            ("long", "x" * 252 + ".pdf"),
            ("number", 5),
        ]
    ],
    *[
        _bad(
            f"cid-{label}",
            _body(
                attachments=[
                    _attachment(contentType="image/png", contentInBase64=PNG, contentId=cid)
                ]
            ),
            {"attachments[0].contentId"},
        )
        for label, cid in [("angle", "<logo>"), ("space", "my logo"), ("empty", ""), ("number", 1)]
    ],
    _bad(
        "cid-duplicate",
        _body(
            attachments=[
                _attachment(name="a.png", contentType="image/png", contentId="logo"),
                _attachment(name="b.png", contentType="image/png", contentId="LOGO"),
            ]
        ),
        {"attachments[1].contentId"},
    ),
    # --- 400: headers, tags, metadata ------------------------------------------------------------
    _bad("headers-array", _body(headers=["X-A"]), {"headers"}),
    *[
        _bad(f"header-{name}", _body(headers={name: "v"}), {f"headers.{name}"})
        for name in [
            "From",
            "to",
            "BCC",
            "reply-to",
            "Message-ID",
            "Return-Path",
            "MIME-Version",
            "X-MS-Exchange-Whatever",
            "x-ms-client-request-id",
            "Bad Name",
            "Bad:Name",
            "Bäd",
            "",
        ]
    ],
    _bad(
        "header-value-crlf", _body(headers={"X-A": "one\r\nBcc: x@evil.example"}), {"headers.X-A"}
    ),
    _bad("header-value-number", _body(headers={"X-A": 1}), {"headers.X-A"}),
    _bad("header-twice", _body(headers={"X-A": "1", "x-a": "2"}), {"headers.x-a"}),
    _bad("headers-51", _body(headers={f"X-H{i}": "v" for i in range(51)}), {"headers"}),
    _bad("tags-11", _body(tags={f"t{i}": "v" for i in range(11)}), {"tags"}),
    _bad("tag-value-257", _body(tags={"k": "v" * 257}), {"tags.k"}),
    _bad("tag-value-number", _body(tags={"k": 1}), {"tags.k"}),
    _bad("tag-key-empty", _body(tags={"": "v"}), {"tags."}),
    _bad("tag-key-65", _body(tags={"k" * 65: "v"}), {"tags." + "k" * 64 + "…"}),
    _bad("tags-str", _body(tags="x"), {"tags"}),
    _bad("meta-value-513", _body(metadata={"k": "v" * 513}), {"metadata.k"}),
    _bad("meta-11", _body(metadata={f"m{i}": "v" for i in range(11)}), {"metadata"}),
    _bad("meta-array", _body(metadata=[]), {"metadata"}),
    # --- 400: sender ---------------------------------------------------------------------------
    _bad(
        "sender-both",
        _body(senderAddress="a@mail.example.com", senderUsername="a"),
        {"senderUsername"},
    ),
    _bad("username-no-domain", _body(senderUsername="news"), {"senderUsername"}, policy=NO_DEFAULT),
    _bad("username-with-at", _body(senderUsername="a@b.com"), {"senderUsername"}),
    _bad("username-space", _body(senderUsername="a b"), {"senderUsername"}),
    _bad("username-number", _body(senderUsername=3), {"senderUsername"}),
    _bad("no-sender-no-default", _body(), {"senderAddress"}, policy=NO_DEFAULT),
    _bad("sender-foreign", _body(senderAddress="ceo@evil.example"), {"senderAddress"}),
    _bad("sender-subdomain", _body(senderAddress="x@sub.mail.example.com"), {"senderAddress"}),
    _bad(
        "sender-domain-not-listed",
        _body(senderAddress="other@mail.example.com"),
        {"senderAddress"},
        policy=LISTED,
    ),
    _bad("sender-invalid", _body(senderAddress="not-an-address"), {"senderAddress"}),
    _bad("sender-array", _body(senderAddress=["a@mail.example.com"]), {"senderAddress"}),
    # --- 400: many at once: every problem is listed ---------------------------------------------
    _bad(
        "everything-wrong",
        {
            "to": [
                {"address": "bad@[192.0.2.1]"},
                {"address": "ok@example.org", "displayName": "<x>"},
            ],
            "cc": _to("ok@example.org"),
            "subjct": "typo",
            "attachments": [_attachment(name="a.exe", contentInBase64="not base64!")],
            "headers": {"From": "ceo@example.org", "X-Ok": "fine"},
            "tags": {"k": 1},
            "senderAddress": "ceo@evil.example",
            "userEngagementTrackingDisabled": 0,
        },
        {
            "to[0].address",
            "to[1].displayName",
            "cc[0].address",
            "subjct",
            "subject",
            "plainText",
            "attachments[0].name",
            "attachments[0].contentInBase64",
            "headers.From",
            "tags.k",
            "senderAddress",
            "userEngagementTrackingDisabled",
        },
    ),
]


@pytest.mark.parametrize(("doc", "content_type", "policy", "status", "fields"), BAD)
def test_bad_bodies(
    doc: dict[str, Any] | bytes,
    content_type: str | None,
    policy: SenderPolicy,
    status: int,
    fields: set[str],
) -> None:
    with pytest.raises(InvalidInput) as caught:
        _parse(doc, content_type, policy)
    assert caught.value.status == status
    assert _fields(caught.value) == fields, caught.value.problems
    if status == 400:
        expected = INVALID_JSON_TITLE if isinstance(doc, bytes) else INVALID_REQUEST_TITLE
        assert caught.value.title == expected
    assert all(p.message for p in caught.value.problems)


BAD_ADDRESSES = [
    ("no-at", "alice.example.org"),
    ("empty", ""),
    ("no-local", "@example.org"),
    ("no-domain", "alice@"),
    ("literal-v4", "alice@[192.0.2.1]"),
    ("literal-v6", "alice@[IPv6:2001:db8::1]"),
    ("space", "alice smith@example.org"),
    ("leading-space", " alice@example.org"),
    ("crlf", "alice@example.org\r\nBcc: x@evil.example"),
    ("nul", "alice@example.org\x00"),
    ("comma", "alice@example.org,bob@example.org"),
    ("semicolon", "alice@example.org;bob@example.org"),
    ("angle", "Alice <alice@example.org>"),
    ("tab", "alice\t@example.org"),
    ("nbsp", "alice\u00a0@example.org"),
    ("double-dot", "alice..smith@example.org"),
    ("leading-dot", ".alice@example.org"),
    ("trailing-dot-local", "alice.@example.org"),
    ("two-ats", "alice@bob@example.org"),
    ("unbalanced-quote", '"alice@example.org'),
    ("quoted-local", '"john doe"@example.com'),  # RFC 5321 allows it; ACS refuses it
    ("quoted-dots", '"john..doe"@example.com'),
    ("empty-quoted", '""@example.org'),
    ("non-ascii-local", "zoë@example.org"),
    ("local-65", "a" * 65 + "@example.org"),
    ("label-64", "alice@" + "a" * 64 + ".org"),
    ("domain-256", "a@" + ".".join(["a" * 63] * 4) + ".org"),
    ("address-255", "a" * 64 + "@" + ".".join(["b" * 60] * 3) + ".example"),
    ("no-dot", "alice@localhost"),
    ("numeric-tld", "alice@example.123"),
    ("one-letter-tld", "alice@example.c"),
    ("hyphen-start", "alice@-example.org"),
    ("hyphen-end", "alice@example-.org"),
    ("underscore", "alice@ex_ample.org"),
    ("trailing-dot", "alice@example.org."),
    ("double-dot-domain", "alice@example..org"),
    ("bad-punycode", "alice@xn--zz.org"),
    ("idn-prohibited", "alice@a\u200fb.org"),  # RIGHT-TO-LEFT MARK: nameprep prohibits it
    ("idn-label-too-long", "alice@" + "ü" * 70 + ".org"),
    ("idn-not-ldh", "alice@bü_cher.example"),
    ("number", 42),
    ("null", None),
]


@pytest.mark.parametrize(
    "address", [a for _, a in BAD_ADDRESSES], ids=[i for i, _ in BAD_ADDRESSES]
)
def test_bad_addresses(address: Any) -> None:
    with pytest.raises(InvalidInput) as caught:
        _parse(_body(to=[{"address": address}]))
    assert caught.value.status == 400
    assert _fields(caught.value) == {"to[0].address"}, caught.value.problems


def test_address_literal_is_named_in_the_message() -> None:
    with pytest.raises(InvalidInput) as caught:
        _parse(_body(to=_to("alice@[192.0.2.1]")))
    assert "address literal" in caught.value.problems[0].message


def _one_to(address: str, unicode_address: str | None = None, name: str | None = None) -> Any:
    return (Recipient(address, name, "to", unicode_address),)


def _good(
    id_: str,
    doc: dict[str, Any],
    expected: dict[str, Any],
    content_type: str = "application/json",
    policy: SenderPolicy = POLICY,
) -> Any:
    return pytest.param(doc, content_type, policy, expected, id=id_)


# Each row: the body and the attributes expected on the SendRequest.
GOOD: list[Any] = [
    _good(
        "minimal-default-sender",
        _body(),
        {
            "sender": "noreply@mail.example.com",
            "recipients": _one_to("alice@example.org", name="Alice"),
            "subject": "Your report",
            "plain_text": "Attached.",
            "html": None,
            "attachments": (),
            "engagement_tracking_disabled": False,
            "size": len("Your report") + len("Attached."),
        },
    ),
    _good(
        "idn-domain",
        _body(to=_to("user@bücher.example")),
        {"recipients": _one_to("user@xn--bcher-kva.example", "user@bücher.example")},
    ),
    _good(
        "idn-domain-upper",
        _body(to=_to("user@BÜCHER.example")),
        {"recipients": _one_to("user@xn--bcher-kva.example", "user@BÜCHER.example")},
    ),
    _good(
        "idn-tld",
        _body(to=_to("user@例え.テスト")),
        {"recipients": _one_to("user@xn--r8jz45g.xn--zckzah", "user@例え.テスト")},
    ),
    _good(
        "a-label-given",
        _body(to=_to("user@xn--bcher-kva.example")),
        {"recipients": _one_to("user@xn--bcher-kva.example")},
    ),
    _good(
        "atext-specials",
        _body(to=_to("o'brien+tag@sub.example.co.uk", "x!#$%&*=?^_`{|}~-@example.org")),
        {
            "recipients": (
                Recipient("o'brien+tag@sub.example.co.uk", None, "to"),
                Recipient("x!#$%&*=?^_`{|}~-@example.org", None, "to"),
            )
        },
    ),
    _good(
        "inline-attachment",
        _body(
            html='<p><img src="cid:logo"></p>',
            plainText=DROP,
            attachments=[
                _attachment(
                    name="logo.png", contentType="image/png", contentInBase64=PNG, contentId="logo"
                ),
                _attachment(),
            ],
        ),
        {
            "plain_text": None,
            "html": '<p><img src="cid:logo"></p>',
            "attachments": (
                Attachment("logo.png", "image/png", PNG, "logo", 8),
                Attachment("report.pdf", "application/pdf", PDF, None, 14),
            ),
        },
    ),
    _good(
        "content-type-case",
        _body(
            attachments=[
                _attachment(name="a.png", contentType="IMAGE/PNG"),
                _attachment(
                    name="b.xlsm", contentType="application/vnd.ms-excel.sheet.macroenabled.12"
                ),
                _attachment(name="c.xml", contentType="TEXT/XML"),
            ]
        ),
        {
            "attachments": (
                Attachment("a.png", "image/png", PDF, None, 14),
                Attachment(
                    "b.xlsm", "application/vnd.ms-excel.sheet.macroEnabled.12", PDF, None, 14
                ),
                Attachment("c.xml", "text/xml", PDF, None, 14),
            )
        },
    ),
    _good("sender-username", _body(senderUsername="news"), {"sender": "news@mail.example.com"}),
    _good(
        "sender-at-sender-domain",
        _body(senderAddress="Billing@Mail.Example.com"),
        {"sender": "Billing@Mail.Example.com"},
    ),
    _good(
        "sender-listed",
        _body(senderAddress="ALERTS@mail.example.com"),
        {"sender": "ALERTS@mail.example.com"},
        policy=LISTED,
    ),
    _good(
        "sender-listed-domain",
        _body(senderAddress="weekly@news.example.com"),
        {"sender": "weekly@news.example.com"},
        policy=LISTED,
    ),
    _good("default-always-allowed", _body(), {"sender": "noreply@mail.example.com"}, policy=LISTED),
    _good(
        "username-without-default",
        _body(senderUsername="x"),
        {"sender": "x@mail.example.com"},
        policy=SenderPolicy(sender_domain="mail.example.com", allowlist=(), default_sender=None),
    ),
    _good("content-type-params", _body(), {}, content_type="Application/JSON; Charset=UTF-8"),
    _good("plus-json", _body(), {}, content_type="application/vnd.example+json"),
    _good(
        "nulls-are-absent",
        _body(
            cc=None,
            bcc=None,
            replyTo=None,
            attachments=None,
            headers=None,
            tags=None,
            metadata=None,
            html=None,
            senderAddress=None,
        ),
        {"reply_to": (), "attachments": (), "html": None, "sender": "noreply@mail.example.com"},
    ),
    _good(
        "everything",
        _body(
            cc=[{"address": "bob@example.org", "displayName": ""}],
            bcc=_to("audit@example.org"),
            replyTo=[{"address": "help@bücher.example", "displayName": "Help desk"}],
            headers={"X-Campaign": "spring", "List-Unsubscribe": "<mailto:u@example.org>"},
            tags={"campaign": "spring"},
            metadata={"orderId": "A-1"},
            userEngagementTrackingDisabled=True,
        ),
        {
            "recipients": (
                Recipient("alice@example.org", "Alice", "to"),
                Recipient("bob@example.org", None, "cc"),
                Recipient("audit@example.org", None, "bcc"),
            ),
            "reply_to": (
                Mailbox("help@xn--bcher-kva.example", "Help desk", "help@bücher.example"),
            ),
            "headers": {"X-Campaign": "spring", "List-Unsubscribe": "<mailto:u@example.org>"},
            "tags": {"campaign": "spring"},
            "metadata": {"orderId": "A-1"},
            "engagement_tracking_disabled": True,
        },
    ),
]


@pytest.mark.parametrize(("doc", "content_type", "policy", "expected"), GOOD)
def test_good_bodies(
    doc: dict[str, Any], content_type: str, policy: SenderPolicy, expected: dict[str, Any]
) -> None:
    request = _parse(doc, content_type, policy)
    for attribute, value in expected.items():
        assert getattr(request, attribute) == value, attribute


def test_utf8_bom_is_ignored() -> None:
    assert _parse(b"\xef\xbb\xbf" + json.dumps(_body()).encode()).subject == "Your report"


def test_recipient_key_and_display_address() -> None:
    [recipient] = _parse(_body(to=_to("User@Bücher.example"))).recipients
    assert recipient.key == "user@xn--bcher-kva.example"
    assert recipient.display_address == "User@Bücher.example"


def _recipients(to: int, cc: int = 0, bcc: int = 0) -> dict[str, Any]:
    def addresses(kind: str, n: int) -> list[dict[str, str]]:
        return _to(*(f"{kind}{i}@example.org" for i in range(n)))

    return _body(to=addresses("to", to), cc=addresses("cc", cc), bcc=addresses("bcc", bcc))


@pytest.mark.parametrize(("to", "cc", "bcc"), [(50, 0, 0), (30, 10, 10), (1, 0, 49)])
def test_fifty_recipients_ok(to: int, cc: int, bcc: int) -> None:
    assert len(_parse(_recipients(to, cc, bcc)).recipients) == 50


@pytest.mark.parametrize(("to", "cc", "bcc"), [(51, 0, 0), (30, 11, 10), (1, 0, 50)])
def test_fifty_one_recipients_rejected(to: int, cc: int, bcc: int) -> None:
    with pytest.raises(InvalidInput) as caught:
        _parse(_recipients(to, cc, bcc))
    assert caught.value.status == 400
    assert _fields(caught.value) == {"recipients"}


def _sized_body(request_bytes: int) -> bytes:
    """A body whose ACS request (as the SDK serializes it) is exactly `request_bytes` long."""
    doc = _body(subject="Big", plainText="x")
    doc["attachments"] = [{"name": "big.zip", "contentType": "application/zip"}]
    doc["attachments"][0]["contentInBase64"] = "AAAA"
    skeleton = _parse(doc).acs_request_bytes() - 4
    room = request_bytes - skeleton
    doc["plainText"] = "x" * (1 + room % 4)  # base64 comes in fours; the text takes the rest
    doc["attachments"][0]["contentInBase64"] = "A" * (room - room % 4)
    return json.dumps(doc).encode()


def test_ten_megabytes_of_request_exactly_is_accepted() -> None:
    body = _sized_body(MAX_REQUEST_BYTES)
    assert len(body) <= MAX_BODY_BYTES
    request = _parse(body)
    assert request.acs_request_bytes() == MAX_REQUEST_BYTES == 10 * 1024 * 1024
    assert request.attachments[0].size < 7.6 * 1024 * 1024  # base64 costs a third more


def test_one_byte_over_ten_megabytes_of_request_is_413() -> None:
    with pytest.raises(InvalidInput) as caught:
        _parse(_sized_body(MAX_REQUEST_BYTES + 1))
    assert caught.value.status == 413


def test_size_counts_utf8_bytes_of_subject_and_bodies() -> None:
    request = _parse(_body(subject="é", plainText="€", html="<b>日本</b>"))
    assert request.size == 2 + 3 + len("<b>日本</b>".encode())


def test_413_wins_over_other_problems() -> None:
    # An invalid body is measured by what it surely costs (texts and base64), so this one is
    # over by more than the JSON around them.
    doc = json.loads(_sized_body(MAX_REQUEST_BYTES + 1024))
    doc["headers"] = {"From": "x@example.org"}
    with pytest.raises(InvalidInput) as caught:
        _parse(doc)
    assert caught.value.status == 413


def test_raw_body_over_eleven_megabytes_is_413_before_parsing() -> None:
    with pytest.raises(InvalidInput) as caught:
        _parse(b"x" * (MAX_BODY_BYTES + 1))  # not even JSON: never looked at
    assert caught.value.status == 413
    assert MAX_BODY_BYTES == 11 * 1024 * 1024


def test_problems_are_capped_with_a_count_of_the_rest() -> None:
    doc = _body(**{f"junk{i}": 1 for i in range(MAX_PROBLEMS + 50)})
    with pytest.raises(InvalidInput) as caught:
        _parse(doc)
    problems = caught.value.problems
    assert len(problems) == MAX_PROBLEMS + 1
    assert problems[-1].message == "50 more problems not listed"


def test_unknown_field_suggests_the_known_one() -> None:
    with pytest.raises(InvalidInput) as caught:
        _parse(_body(subject=DROP, Subject="Hi"))
    messages = {p.field: p.message for p in caught.value.problems}
    assert "'subject'" in messages["Subject"]


# --- fingerprint -----------------------------------------------------------------------------


def _rich() -> dict[str, Any]:
    return _body(
        cc=_to("bob@example.org"),
        html="<p>Attached.</p>",
        attachments=[_attachment()],
        headers={"X-A": "1", "X-B": "2"},
        tags={"a": "1", "b": "2"},
        metadata={"m": "1"},
    )


def _reordered(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _reordered(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [_reordered(v) for v in value]
    return value


def test_fingerprint_ignores_key_order_and_whitespace() -> None:
    doc = _rich()
    compact = json.dumps(doc, separators=(",", ":")).encode()
    spaced = json.dumps(_reordered(doc), indent=4).encode()
    assert compact != spaced
    first, second = _parse(compact), _parse(spaced)
    assert first == second
    assert hash(first) == hash(second)
    assert first.fingerprint() == second.fingerprint()
    assert len(first.fingerprint()) == 64
    int(first.fingerprint(), 16)


@pytest.mark.parametrize(
    "change",
    [
        {"subject": "Another report"},
        {"plainText": "Attached!"},
        {"html": DROP},
        {"senderUsername": "billing"},
        {"cc": DROP, "bcc": _to("bob@example.org")},
        {"to": [{"address": "alice@example.org", "displayName": "Alice B"}]},
        {"attachments": [_attachment(name="report2.pdf")]},
        {"attachments": [_attachment(contentInBase64=base64.b64encode(b"other").decode())]},
        {"headers": {"X-A": "1", "X-B": "3"}},
        {"tags": {"a": "1"}},
        {"metadata": {"m": "2"}},
        {"userEngagementTrackingDisabled": True},
    ],
)
def test_fingerprint_changes_with_content(change: dict[str, Any]) -> None:
    changed = {k: v for k, v in (_rich() | change).items() if v is not DROP}
    assert _parse(changed).fingerprint() != _parse(_rich()).fingerprint()


def test_fingerprint_covers_the_sender() -> None:
    doc = _body()
    by_default = _parse(doc, policy=POLICY)
    other_default = _parse(
        doc,
        policy=SenderPolicy(sender_domain=None, allowlist=(), default_sender="x@mail.example.com"),
    )
    assert by_default.fingerprint() != other_default.fingerprint()


# --- the ACS message ---------------------------------------------------------------------------


def test_to_acs_message_matches_the_spec_example() -> None:
    example = json.loads((API_REFERENCE / "stable-2025-09-01-examples-SendEmail.json").read_text())
    message = example["parameters"]["emailMessage"]
    doc = {
        "senderAddress": message["senderAddress"],
        "to": message["recipients"]["to"],
        "cc": message["recipients"]["cc"],
        "bcc": message["recipients"]["bcc"],
        "replyTo": message["replyTo"],
        "subject": message["content"]["subject"],
        "plainText": message["content"]["plainText"],
        "html": message["content"]["html"],
        "attachments": message["attachments"],
        "headers": message["headers"],
        "userEngagementTrackingDisabled": message["userEngagementTrackingDisabled"],
    }
    policy = SenderPolicy(sender_domain=None, allowlist=("abc@domain.com",), default_sender=None)
    assert _parse(doc, policy=policy).to_acs_message() == message


def test_to_acs_message_uses_only_spec_names() -> None:
    spec = json.loads(
        (API_REFERENCE / "stable-2025-09-01-CommunicationServicesEmail.json").read_text()
    )["definitions"]
    message = _parse(
        _rich() | {"replyTo": _to("help@example.org"), "userEngagementTrackingDisabled": True}
    ).to_acs_message()

    def names(definition: str) -> set[str]:
        return set(spec[definition]["properties"])

    assert set(spec["EmailMessage"]["required"]) <= set(message) <= names("EmailMessage")
    assert set(message["recipients"]) <= names("EmailRecipients")
    assert set(message["content"]) <= names("EmailContent")
    for mailbox in [
        *message["recipients"]["to"],
        *message["recipients"]["cc"],
        *message["replyTo"],
    ]:
        assert set(mailbox) <= names("EmailAddress")
    for attachment in message["attachments"]:
        assert set(spec["EmailAttachment"]["required"]) <= set(attachment)
        assert set(attachment) <= names("EmailAttachment")


def test_to_acs_message_minimal_shape() -> None:
    assert _parse(_body()).to_acs_message() == {
        "senderAddress": "noreply@mail.example.com",
        "recipients": {"to": [{"address": "alice@example.org", "displayName": "Alice"}]},
        "content": {"subject": "Your report", "plainText": "Attached."},
        "userEngagementTrackingDisabled": False,
    }


def test_to_acs_message_sends_a_labels() -> None:
    message = _parse(_body(to=_to("user@bücher.example"))).to_acs_message()
    assert message["recipients"]["to"] == [{"address": "user@xn--bcher-kva.example"}]


# --- robustness and the import rule -------------------------------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from([*KNOWN_FIELDS, "address", "name", "x"]), children, max_size=5
        )
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(KNOWN_FIELDS), _json, max_size=8))
def test_any_json_object_gives_a_request_or_a_4xx(doc: dict[str, Any]) -> None:
    error: InvalidInput | None = None
    try:
        request = _parse(doc)
    except InvalidInput as exc:
        error = exc
    if error is None:
        request.fingerprint()
        json.dumps(request.to_acs_message())
    else:
        assert 400 <= error.status < 500
        assert error.problems


@pytest.mark.parametrize("module", ["pydantic", "email_validator", "idna"])
def test_cold_start_does_not_load_the_validation_libraries(module: str) -> None:
    """They load with the send path (this module), never on `import function_app`."""
    code = (
        "import sys, function_app, shared.core.addresses; "
        f"sys.exit(1 if {module!r} in sys.modules else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, check=False)
    assert result.returncode == 0, f"importing function_app imported {module}"
