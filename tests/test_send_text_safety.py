"""Text that would break a header or poison a stored row is refused, naming the field: control
characters in the subject and header values, and lone UTF-16 surrogates anywhere."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.core.errors import InvalidInput
from shared.core.sending.validation import INVALID_REQUEST_TITLE
from tests.test_send_validation import PNG, _attachment, _body, _parse

# VT, ESC and DEL slipped through the old CR/LF/NUL check; U+2028/2029 end lines in JavaScript
# and some mail clients; NEL (U+0085) is C1's line break.
CONTROLS = {
    "vt": "\x0b",
    "ff": "\x0c",
    "esc": "\x1b",
    "bell": "\x07",
    "del": "\x7f",
    "nel": "\x85",
    "csi": "\x9b",
    "line-separator": "\u2028",
    "paragraph-separator": "\u2029",
    "cr": "\r",
    "lf": "\n",
    "nul": "\x00",
}


def _problems(doc: dict[str, Any] | bytes) -> dict[str, str]:
    body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    with pytest.raises(InvalidInput) as caught:
        _parse(body)
    assert caught.value.status == 400
    assert caught.value.title == INVALID_REQUEST_TITLE
    return {p.field: p.message for p in caught.value.problems}


@pytest.mark.parametrize("char", CONTROLS.values(), ids=CONTROLS.keys())
def test_subject_refuses_control_characters(char: str) -> None:
    assert set(_problems(_body(subject=f"Your{char}report"))) == {"subject"}


@pytest.mark.parametrize("char", CONTROLS.values(), ids=CONTROLS.keys())
def test_header_values_refuse_control_characters(char: str) -> None:
    assert set(_problems(_body(headers={"X-Campaign": f"spring{char}sale"}))) == {
        "headers.X-Campaign"
    }


def test_tab_stays_allowed() -> None:
    """RFC 5322 §2.2.1: unstructured header fields may hold WSP, which includes HTAB."""
    request = _parse(json.dumps(_body(subject="a\tb", headers={"X-A": "1\t2"})).encode())
    assert request.subject == "a\tb"
    assert dict(request.headers) == {"X-A": "1\t2"}


def _raw(**members: str) -> str:
    """A valid body as JSON text, with the given members as raw JSON text."""
    doc = {"to": '[{"address": "a@example.org"}]', "subject": '"s"', "plainText": '"hi"'}
    doc.update(members)
    return "{" + ", ".join(f'"{k}": {v}' for k, v in doc.items()) + "}"


# Each row: a body holding the JSON escape \ud800 (a lone surrogate) in one place, and the
# field the problem must name. Written as raw JSON: json.dumps would not produce it.
S = "\\ud800"
LONE_SURROGATES = [
    ("subject", _raw(subject=f'"x{S}"'), "subject"),
    ("plain-text", _raw(plainText=f'"{S}"'), "plainText"),
    ("html", _raw(html='"<p>\\udc00</p>"'), "html"),
    ("address", _raw(to=f'[{{"address": "a{S}@example.org"}}]'), "to[0].address"),
    (
        "display-name",
        _raw(to=f'[{{"address": "a@example.org", "displayName": "A{S}"}}]'),
        "to[0].displayName",
    ),
    (
        "reply-to",
        _raw(replyTo=f'[{{"address": "b@example.org", "displayName": "{S}"}}]'),
        "replyTo[0].displayName",
    ),
    ("sender", _raw(senderAddress=f'"{S}@mail.example.com"'), "senderAddress"),
    ("username", _raw(senderUsername=f'"n{S}"'), "senderUsername"),
    ("header-value", _raw(headers=f'{{"X-A": "{S}"}}'), "headers.X-A"),
    ("tag-value", _raw(tags=f'{{"k": "{S}"}}'), "tags.k"),
    ("metadata-value", _raw(metadata=f'{{"orderId": "A{S}"}}'), "metadata.orderId"),
    (
        "attachment-name",
        _raw(
            attachments=f'[{{"name": "r{S}.pdf", "contentType": "application/pdf", '
            '"contentInBase64": "AAAA"}]'
        ),
        "attachments[0].name",
    ),
]


@pytest.mark.parametrize(
    ("raw", "where"), [(raw, where) for _, raw, where in LONE_SURROGATES],
    ids=[label for label, _, _ in LONE_SURROGATES],
)  # fmt: skip
def test_a_lone_surrogate_is_refused_naming_its_field(raw: str, where: str) -> None:
    problems = _problems(raw.encode())
    assert where in problems
    assert "surrogate" in problems[where]


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        ('{"x\\ud800": 1}', "x\ufffd"),
        ('{"tags": {"k\\udfff": "v"}}', "tags.k\ufffd"),
        ('{"headers": {"X-\\ud800": "v"}}', "headers.X-\ufffd"),
    ],
    ids=["top-level", "tag", "header"],
)
def test_a_lone_surrogate_in_a_key_is_named_without_echoing_it(raw: str, where: str) -> None:
    problems = _problems(raw.encode())
    assert "surrogate" in problems[where]
    # The reply is problem+json: every path and message must encode as UTF-8.
    json.dumps(problems, ensure_ascii=False).encode("utf-8")


def test_a_paired_surrogate_escape_is_text() -> None:
    raw = '{"to": [{"address": "a@example.org"}], "subject": "\\ud83d\\ude00", "plainText": "hi"}'
    assert _parse(raw.encode()).subject == "\U0001f600"


def test_problems_carry_no_surrogate_and_the_request_none() -> None:
    """What a lone surrogate touches must never be stored: the request is refused outright,
    and even the problem list (which the reply echoes) is clean UTF-8."""
    attachment = _attachment(contentType="image/png", contentInBase64=PNG)
    raw = _raw(subject=f'"{S}"', attachments=json.dumps([attachment]))
    problems = _problems(raw.encode())
    assert set(problems) == {"subject"}
    json.dumps(problems, ensure_ascii=False).encode("utf-8")
