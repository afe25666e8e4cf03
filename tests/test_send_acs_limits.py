"""What ACS would refuse at send time is refused at accept: size, attachment types, quoted local
parts, and a message whose every `to` recipient is suppressed."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest
from azure.core.rest import HttpRequest

from shared.core.errors import InvalidInput
from shared.core.sending.attachment_types import ACCEPTED_CONTENT_TYPES, ACS_ATTACHMENT_TYPES
from shared.core.sending.validation import (
    MAX_REQUEST_BYTES,
    SendRequest,
    check_after_suppression,
)
from tests.test_send_validation import _attachment, _body, _parse, _to

# Copied from shared/reference/acs-limits.md (Microsoft's service-limits and allowed-types pages).
LIMITS = Path(__file__).resolve().parent / "reference" / "acs-limits.md"


def _documented_extensions() -> set[str]:
    text = LIMITS.read_text()
    section = text.split("## Allowed attachment file types", 1)[1].split("(`.xml`", 1)[0]
    return set(re.findall(r"(?<![\w`])\.[0-9a-z]+", section.split("\n", 1)[1]))


def test_the_attachment_table_is_the_documented_list() -> None:
    documented = _documented_extensions()
    assert len(documented) == 62
    assert set(ACS_ATTACHMENT_TYPES) == documented
    assert ACS_ATTACHMENT_TYPES[".xml"] == ("application/xml", "text/xml")  # as the page says


@pytest.mark.parametrize("content_type", sorted(set(ACCEPTED_CONTENT_TYPES.values())))
def test_every_documented_type_is_accepted(content_type: str) -> None:
    doc = _body(attachments=[_attachment(contentType=content_type.upper())])
    assert _parse(doc).attachments[0].content_type == content_type


@pytest.mark.parametrize(
    "content_type", ["application/x-zip-compressed", "text/html", "application/octet-stream"]
)
def test_types_off_the_list_are_refused(content_type: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        _parse(_body(attachments=[_attachment(contentType=content_type)]))
    assert [p.field for p in caught.value.problems] == ["attachments[0].contentType"]
    assert "ACS accepts" in caught.value.problems[0].message


# --- the whole request, base64 and JSON included, is at most 10 MB ------------------------------


def _with_file(size: int, **overrides: Any) -> dict[str, Any]:
    content = base64.b64encode(bytes(size)).decode()
    return _body(attachments=[_attachment(name="scan.pdf", contentInBase64=content)], **overrides)


def test_a_nine_mebibyte_attachment_is_413_with_a_clear_problem() -> None:
    with pytest.raises(InvalidInput) as caught:
        _parse(_with_file(9 * 1024 * 1024))
    assert caught.value.status == 413
    [problem] = caught.value.problems
    assert "10 MB" in problem.message
    assert "base64" in problem.message
    assert "7.5 MB for attachment files" in problem.message


def test_a_parsed_413_tells_the_files_size() -> None:
    with pytest.raises(InvalidInput) as caught:
        _parse(_with_file(7 * 1024 * 1024 + 600 * 1024))  # under 11 MiB of body: read
    assert caught.value.status == 413
    [problem] = caught.value.problems
    assert f"({7 * 1024 * 1024 + 600 * 1024} bytes of files)" in problem.message
    assert "10 MB" in problem.message


def test_seven_mebibytes_of_files_fit() -> None:
    request = _parse(_with_file(7 * 1024 * 1024))
    assert request.acs_request_bytes() <= MAX_REQUEST_BYTES


def test_the_limit_counts_the_json_around_the_base64() -> None:
    request = _parse(_with_file(7 * 1024 * 1024))
    base64_bytes = len(request.attachments[0].content_in_base64)
    room = MAX_REQUEST_BYTES - base64_bytes  # what is left after the base64 alone
    envelope = request.acs_request_bytes() - base64_bytes
    # A body that fills that room with text goes over: the JSON around it counts too.
    with pytest.raises(InvalidInput) as caught:
        _parse(_with_file(7 * 1024 * 1024, html="x" * (room - envelope + 1)))
    assert caught.value.status == 413


def _acs_body(request: SendRequest) -> bytes:
    """The body azure-core builds for `begin_send(message)` (it is `json=message`)."""
    return HttpRequest(
        "POST", "https://acs.example/emails:send", json=request.to_acs_message()
    ).content  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "doc",
    [
        _body(),
        _body(subject="Grüße — 日本", html="<p>ünïcødé \u2603 \U0001f600</p>"),
        _with_file(1000, cc=_to("b@bücher.example"), headers={"X-A": 'q"uote\\'}),
    ],
    ids=["minimal", "non-ascii", "attachment-idn-escapes"],
)
def test_acs_request_bytes_is_what_the_sdk_sends(doc: dict[str, Any]) -> None:
    request = _parse(doc)
    assert request.acs_request_bytes() == len(_acs_body(request))


# --- ACS refuses quoted local parts ------------------------------------------------------------


@pytest.mark.parametrize("address", ['"john doe"@example.com', '"a@b"@example.com'])
def test_a_quoted_local_part_is_refused_with_why(address: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        _parse(_body(to=_to(address)))
    [problem] = caught.value.problems
    assert problem.field == "to[0].address"
    assert "quoted" in problem.message
    assert "ACS" in problem.message


# --- every `to` suppressed, cc/bcc left: ACS needs a `to` ----------------------------------------


def _request() -> SendRequest:
    return _parse(
        _body(
            to=_to("Ann@Bücher.example", "bob@example.org"),
            cc=_to("carol@example.org"),
            bcc=_to("dan@example.org"),
        )
    )


def test_all_to_suppressed_with_cc_left_is_refused() -> None:
    problems = check_after_suppression(_request(), {"ann@xn--bcher-kva.example", "bob@example.org"})
    [problem] = problems
    assert problem.field == "to"
    assert "ACS needs at least one to recipient" in problem.message
    assert "2 cc/bcc" in problem.message


def test_suppressed_keys_in_any_spelling_count() -> None:
    problems = check_after_suppression(_request(), ["ANN@bücher.example", "Bob@Example.org"])
    assert [p.field for p in problems] == ["to"]


@pytest.mark.parametrize(
    "suppressed",
    [
        set(),
        {"ann@xn--bcher-kva.example"},  # bob is still a `to`
        {"carol@example.org", "dan@example.org"},  # only cc/bcc suppressed
        {  # nobody left: nothing is sent, which the use case answers on its own
            "ann@xn--bcher-kva.example",
            "bob@example.org",
            "carol@example.org",
            "dan@example.org",
        },
    ],
    ids=["none", "one-to-left", "cc-bcc-only", "everyone"],
)
def test_sendable_after_suppression(suppressed: set[str]) -> None:
    assert check_after_suppression(_request(), suppressed) == []


def test_the_acs_message_keeps_a_to_after_suppression() -> None:
    """The property the check protects: what we would hand ACS always has a `to`."""
    message = _request().to_acs_message()
    assert json.dumps(message)  # serializable
    assert message["recipients"]["to"]
