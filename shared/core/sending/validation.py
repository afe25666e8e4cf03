"""Validate a `POST /api/emails` body into a SendRequest that maps onto an ACS EmailMessage.

The envelope is checked first (415 for the media type, 413 for size, 400 for JSON that is not an
object); after that every problem in the content is collected and raised as one InvalidInput, so
a caller fixes a request in one round trip. Field paths are JSON-pointer-like: `to[2].address`,
`attachments[0].contentInBase64`, `headers.X-Foo`. Null is treated as "not given".
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import difflib
import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from shared.core.errors import InvalidInput, PayloadTooLarge, Problem, UnsupportedMediaType

INVALID_JSON_TITLE = "Request body is not valid JSON"
INVALID_REQUEST_TITLE = "The email request is invalid"

# ACS EmailMessage.attachments (2025-09-01 spec): "we limit the total size of an email request
# (which includes both regular and inline attachments) to 10MB". We count decoded attachment
# bytes plus subject and bodies as UTF-8.
MAX_MESSAGE_BYTES = 10 * 1024 * 1024
# 10 MB of attachments is ~13.4 MB of base64; anything past this cannot pass, so is not parsed.
MAX_BODY_BYTES = 14 * 1024 * 1024
MAX_RECIPIENTS = 50  # ACS service limit: recipients per message across To, CC and BCC
MAX_SUBJECT_LENGTH = 998  # RFC 5322 §2.1.1: a header line is at most 998 characters
MAX_DISPLAY_NAME_LENGTH = 256
MAX_LOCAL_PART_OCTETS = 64  # RFC 5321 §4.5.3.1.1
MAX_DOMAIN_OCTETS = 255  # RFC 5321 §4.5.3.1.2
MAX_LABEL_OCTETS = 63  # RFC 1035 §2.3.4
MAX_ADDRESS_OCTETS = 254  # RFC 5321 §4.5.3.1.3 path (256) less the angle brackets
MAX_ATTACHMENT_NAME_LENGTH = 255  # the common file-system name limit
MAX_CONTENT_ID_LENGTH = 255
MAX_HEADERS = 50
MAX_TAGS = 10
MAX_TAG_KEY_LENGTH = 64
MAX_TAG_VALUE_LENGTH = 256
MAX_METADATA = 10
MAX_METADATA_KEY_LENGTH = 64
MAX_METADATA_VALUE_LENGTH = 512  # echoed in lookups and alerts, so kept small
# A hostile body can hold hundreds of thousands of mistakes; past this many the reply says how
# many more there were instead of listing them.
MAX_PROBLEMS = 100
_MAX_ECHOED_KEY = 64  # caller-chosen keys are cut to this length when echoed in a field path

KNOWN_FIELDS = (
    "senderAddress",
    "senderUsername",
    "to",
    "cc",
    "bcc",
    "replyTo",
    "subject",
    "plainText",
    "html",
    "attachments",
    "headers",
    "tags",
    "metadata",
    "userEngagementTrackingDisabled",
)
_MAILBOX_FIELDS = frozenset({"address", "displayName"})
_ATTACHMENT_FIELDS = frozenset({"name", "contentType", "contentInBase64", "contentId"})

# Headers ACS or this service set; a caller's copy would clash or spoof (lower-cased).
RESERVED_HEADERS = frozenset(
    {
        "from",
        "to",
        "cc",
        "bcc",
        "subject",
        "reply-to",
        "message-id",
        "date",
        "content-type",
        "mime-version",
        "return-path",
    }
)
RESERVED_HEADER_PREFIX = "x-ms-"  # ACS's own headers

# Attachment MIME types ACS accepts, from the ACS docs page "Allowed attachment types for sending
# email in Azure Communication Services" (learn.microsoft.com, concepts/email/
# email-attachment-allowed-mime-types). Transcribed from that page's table as remembered: it
# could not be re-read from this environment, so check it against the page when it changes.
# Matching ignores case; ACS is sent the spelling below.
ACS_ATTACHMENT_TYPES = (
    "video/3gpp",  # .3gp
    "video/3gpp2",  # .3g2
    "application/x-7z-compressed",  # .7z
    "audio/aac",  # .aac
    "video/x-msvideo",  # .avi
    "image/bmp",  # .bmp
    "text/csv",  # .csv
    "application/msword",  # .doc
    "application/vnd.ms-word.document.macroEnabled.12",  # .docm
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",  # .docx
    "application/vnd.ms-fontobject",  # .eot
    "application/epub+zip",  # .epub
    "image/gif",  # .gif
    "application/gzip",  # .gz
    "image/vnd.microsoft.icon",  # .ico
    "text/calendar",  # .ics
    "image/jpeg",  # .jpg, .jpeg
    "application/json",  # .json
    "audio/midi",  # .mid, .midi
    "audio/mpeg",  # .mp3
    "video/mp4",  # .mp4
    "video/mpeg",  # .mpeg
    "audio/ogg",  # .oga
    "video/ogg",  # .ogv
    "application/ogg",  # .ogx
    "application/onenote",  # .one
    "audio/opus",  # .opus
    "font/otf",  # .otf
    "application/pdf",  # .pdf
    "image/png",  # .png
    "application/vnd.ms-powerpoint.slideshow.macroEnabled.12",  # .ppsm
    "application/vnd.openxmlformats-officedocument.presentationml.slideshow",  # .ppsx
    "application/vnd.ms-powerpoint",  # .ppt
    "application/vnd.ms-powerpoint.presentation.macroEnabled.12",  # .pptm
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",  # .pptx
    "application/vnd.ms-publisher",  # .pub
    "application/x-rar-compressed",  # .rar
    "application/vnd.ms-outlook",  # .rpmsg
    "application/rtf",  # .rtf
    "image/svg+xml",  # .svg
    "application/x-tar",  # .tar
    "image/tiff",  # .tif, .tiff
    "font/ttf",  # .ttf
    "text/plain",  # .txt
    "application/vnd.visio",  # .vsd
    "audio/wav",  # .wav
    "audio/webm",  # .weba
    "video/webm",  # .webm
    "image/webp",  # .webp
    "audio/x-ms-wma",  # .wma
    "video/x-ms-wmv",  # .wmv
    "font/woff",  # .woff
    "font/woff2",  # .woff2
    "application/vnd.ms-excel",  # .xls
    "application/vnd.ms-excel.sheet.binary.macroEnabled.12",  # .xlsb
    "application/vnd.ms-excel.sheet.macroEnabled.12",  # .xlsm
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",  # .xlsx
    "application/zip",  # .zip
    "application/x-zip-compressed",  # .zip as Windows labels it
)
_ACS_ATTACHMENT_TYPES = {t.lower(): t for t in ACS_ATTACHMENT_TYPES}

# Executables get their own message (none is on the ACS list anyway): MIME types browsers and
# Windows give programs and scripts, and the file extensions Outlook blocks as Level 1 (abridged
# to the ones that run code when opened).
EXECUTABLE_TYPES = frozenset(
    {
        "application/x-msdownload",
        "application/x-msdos-program",
        "application/x-ms-installer",
        "application/x-msi",
        "application/vnd.microsoft.portable-executable",
        "application/x-dosexec",
        "application/x-executable",
        "application/x-sh",
        "application/x-bat",
        "application/javascript",
        "application/x-javascript",
        "text/javascript",
        "text/vbscript",
        "application/x-vbscript",
        "application/hta",
        "application/java-archive",
    }
)
EXECUTABLE_EXTENSIONS = frozenset(
    {
        ".exe", ".bat", ".cmd", ".com", ".js", ".jse", ".vbs", ".vbe", ".vb", ".wsf", ".wsh",
        ".ws", ".wsc", ".msi", ".msp", ".mst", ".scr", ".pif", ".cpl", ".ps1", ".psm1", ".hta",
        ".jar", ".lnk", ".reg", ".dll", ".msc", ".scf", ".sct", ".application", ".gadget",
    }
)  # fmt: skip

# RFC 5322 §3.2.3 atext; a dot-atom is atext runs joined by single dots.
_ATEXT = r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]"
_DOT_ATOM = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*")
# RFC 5322 §3.2.4 quoted-string, without the whitespace and ,;<> that are refused everywhere.
_QUOTED_STRING = re.compile(r'"(?:[\x21\x23-\x5b\x5d-\x7e]|\\[\x21-\x7e])+"')
_LDH_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?")
_ALPHA_TLD = re.compile(r"[A-Za-z]{2,63}")
_LABEL_SEPARATORS = re.compile("[.\u3002\uff0e\uff61]")  # the dots IDNA 2003 recognises
# Characters that split or end a header when an address is pasted into one.
_ADDRESS_FORBIDDEN = re.compile(r"[\s\x00-\x1f\x7f-\x9f<>,;]")
_DISPLAY_NAME_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f<>\u2028\u2029]")
_LINE_BREAK = re.compile("[\r\n\x00]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_HEADER_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]+")  # RFC 5322 §3.6.8 ftext
_CONTENT_ID = re.compile(r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~.@]+")
_JSON_MEDIA_TYPE = re.compile(r"application/(?:json|[!#$&^_.+\-0-9a-z]+\+json)")

_Add = Callable[[str, str], None]  # records one Problem(field, message)
_KINDS: tuple[Literal["to", "cc", "bcc"], ...] = ("to", "cc", "bcc")


@dataclass(frozen=True, slots=True)
class SenderPolicy:
    sender_domain: str | None
    allowlist: tuple[str, ...]  # lower-case addresses, or "@domain" meaning any sender there
    default_sender: str | None


@dataclass(frozen=True, slots=True)
class Mailbox:
    """A reply-to address; `address` has its domain in A-label form."""

    address: str
    display_name: str | None = None
    unicode_address: str | None = None  # as the caller wrote it, when its domain was an IDN

    @property
    def display_address(self) -> str:
        return self.unicode_address or self.address


@dataclass(frozen=True, slots=True)
class Recipient:
    address: str  # as given, with the domain in A-label form
    display_name: str | None
    kind: Literal["to", "cc", "bcc"]
    unicode_address: str | None = None  # as the caller wrote it, when its domain was an IDN

    @property
    def key(self) -> str:
        return self.address.lower()

    @property
    def display_address(self) -> str:
        return self.unicode_address or self.address


@dataclass(frozen=True, slots=True)
class Attachment:
    name: str
    content_type: str  # ACS's spelling from ACS_ATTACHMENT_TYPES
    content_in_base64: str = field(repr=False)
    content_id: str | None  # set for inline attachments, referenced as cid:<content_id>
    size: int  # decoded bytes

    @property
    def inline(self) -> bool:
        return self.content_id is not None


@dataclass(frozen=True, slots=True)
class SendRequest:
    sender: str  # domain in A-label form
    recipients: tuple[Recipient, ...]
    reply_to: tuple[Mailbox, ...]
    subject: str
    plain_text: str | None
    html: str | None
    attachments: tuple[Attachment, ...]
    # Read-only mappings; left out of the hash (eq still compares them) so instances stay hashable.
    headers: Mapping[str, str] = field(hash=False)
    tags: Mapping[str, str] = field(hash=False)
    metadata: Mapping[str, str] = field(hash=False)
    engagement_tracking_disabled: bool
    size: int  # decoded attachment bytes plus subject and bodies as UTF-8

    def to_acs_message(self) -> dict[str, Any]:
        """The ACS 2025-09-01 EmailMessage, as `EmailClient.begin_send(message)` takes it."""
        recipients: dict[str, Any] = {}
        for kind in _KINDS:
            listed = [
                _acs_address(r.address, r.display_name) for r in self.recipients if r.kind == kind
            ]
            if listed or kind == "to":  # ACS requires `to`; empty cc/bcc are left out
                recipients[kind] = listed
        content: dict[str, Any] = {"subject": self.subject}
        if self.plain_text is not None:
            content["plainText"] = self.plain_text
        if self.html is not None:
            content["html"] = self.html
        message: dict[str, Any] = {
            "senderAddress": self.sender,
            "recipients": recipients,
            "content": content,
        }
        if self.reply_to:
            message["replyTo"] = [_acs_address(m.address, m.display_name) for m in self.reply_to]
        if self.attachments:
            message["attachments"] = [_acs_attachment(a) for a in self.attachments]
        if self.headers:
            message["headers"] = dict(self.headers)
        message["userEngagementTrackingDisabled"] = self.engagement_tracking_disabled
        return message

    def fingerprint(self) -> str:
        """sha256 over a canonical JSON of the whole request: equal requests, equal prints."""
        canonical = {
            "v": 1,
            "message": self.to_acs_message(),
            "tags": dict(self.tags),
            "metadata": dict(self.metadata),
        }
        text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _acs_address(address: str, display_name: str | None) -> dict[str, str]:
    out = {"address": address}
    if display_name is not None:
        out["displayName"] = display_name
    return out


def _acs_attachment(a: Attachment) -> dict[str, str]:
    out = {"name": a.name, "contentType": a.content_type, "contentInBase64": a.content_in_base64}
    if a.content_id is not None:
        out["contentId"] = a.content_id
    return out


def parse_send_request(body: bytes, content_type: str | None, policy: SenderPolicy) -> SendRequest:
    _check_media_type(content_type)
    if len(body) > MAX_BODY_BYTES:
        raise PayloadTooLarge(
            "The request body is too large",
            [Problem("", f"the body is {len(body)} bytes; at most {MAX_BODY_BYTES} are accepted")],
        )
    doc = _load_json_object(body)
    return _parse_document(doc, policy)


def _check_media_type(content_type: str | None) -> None:
    media_type, _, params = (content_type or "").partition(";")
    if not _JSON_MEDIA_TYPE.fullmatch(media_type.strip().lower()):
        raise UnsupportedMediaType("Send the email request as application/json")
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in {
            "utf-8",
            "utf8",
        }:
            raise UnsupportedMediaType("Send the email request as application/json in UTF-8")


def _load_json_object(body: bytes) -> dict[str, Any]:
    try:
        text = body.decode("utf-8-sig")  # RFC 8259 §8.1 lets a parser ignore a BOM
        doc = json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constants)
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            INVALID_JSON_TITLE, [Problem("", f"not UTF-8 (byte {exc.start})")]
        ) from None
    except ValueError as exc:  # JSONDecodeError, and the hooks' complaints
        raise InvalidInput(INVALID_JSON_TITLE, [Problem("", str(exc))]) from None
    except RecursionError:
        raise InvalidInput(INVALID_JSON_TITLE, [Problem("", "nested too deeply")]) from None
    if not isinstance(doc, dict):
        raise InvalidInput(
            INVALID_JSON_TITLE, [Problem("", f"expected a JSON object, got {_json_type(doc)}")]
        )
    if _has_lone_surrogate(doc):
        # "\ud800" is valid JSON but not text; it would fail later when encoded as UTF-8.
        raise InvalidInput(
            INVALID_JSON_TITLE, [Problem("", "contains an unpaired UTF-16 surrogate escape")]
        )
    return doc


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Two parsers may pick different copies of a repeated key; refuse rather than guess.
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {_echo(key)!r}")
        out[key] = value
    return out


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _has_lone_surrogate(doc: Any) -> bool:
    stack = [doc]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if not item.isascii() and any("\ud800" <= c <= "\udfff" for c in item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _required_string(value: object, where: str, add: _Add) -> str | None:
    """The value if it is a string; otherwise None, with the problem recorded."""
    if value is None:
        add(where, "is required")
        return None
    if not isinstance(value, str):
        add(where, f"must be a string, not {_json_type(value)}")
        return None
    return value


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _echo(key: str) -> str:
    return key if len(key) <= _MAX_ECHOED_KEY else key[:_MAX_ECHOED_KEY] + "…"


def _parse_document(doc: dict[str, Any], policy: SenderPolicy) -> SendRequest:
    problems: list[Problem] = []

    def add(where: str, message: str) -> None:
        problems.append(Problem(where, message))

    for key in doc:
        if key not in KNOWN_FIELDS:
            guess = difflib.get_close_matches(key, KNOWN_FIELDS, n=1)
            hint = f" (did you mean {guess[0]!r}?)" if guess else ""
            add(_echo(key), "unknown field" + hint)

    sender = _resolve_sender(doc, policy, add)
    recipients = _recipients(doc, add)
    reply_to = tuple(
        Mailbox(address, display_name, unicode_address)
        for _, address, display_name, unicode_address in _mailboxes(doc, "replyTo", add)
    )
    subject = _subject(doc.get("subject"), add)
    plain_text = _optional_string(doc, "plainText", add)
    html = _optional_string(doc, "html", add)
    has_body = bool((plain_text and plain_text.strip()) or (html and html.strip()))
    if not has_body and not _wrong_type(doc, "plainText") and not _wrong_type(doc, "html"):
        add("plainText", "give plainText or html; at least one must be non-empty")
    attachments, attachment_bytes = _attachments(doc.get("attachments"), add)
    headers = _headers(doc.get("headers"), add)
    tags = _string_map(
        doc.get("tags"), "tags", MAX_TAGS, MAX_TAG_KEY_LENGTH, MAX_TAG_VALUE_LENGTH, add
    )
    metadata = _string_map(
        doc.get("metadata"),
        "metadata",
        MAX_METADATA,
        MAX_METADATA_KEY_LENGTH,
        MAX_METADATA_VALUE_LENGTH,
        add,
    )
    tracking_disabled = doc.get("userEngagementTrackingDisabled")
    if tracking_disabled is not None and not isinstance(tracking_disabled, bool):
        add(
            "userEngagementTrackingDisabled",
            f"must be a boolean, not {_json_type(tracking_disabled)}",
        )

    size = attachment_bytes + sum(
        len(text.encode("utf-8")) for text in (subject, plain_text, html) if text
    )
    if size > MAX_MESSAGE_BYTES:
        # Before the 400: no fix to the other problems makes this message sendable.
        raise PayloadTooLarge(
            "The email is larger than ACS accepts",
            [
                Problem(
                    "",
                    f"the message is {size} bytes (attachments decoded, plus subject and "
                    f"bodies); ACS accepts at most {MAX_MESSAGE_BYTES} (10 MB)",
                )
            ],
        )
    if problems:
        if len(problems) > MAX_PROBLEMS:
            more = len(problems) - MAX_PROBLEMS
            problems = [*problems[:MAX_PROBLEMS], Problem("", f"{more} more problems not listed")]
        raise InvalidInput(INVALID_REQUEST_TITLE, problems)
    assert sender is not None  # a None came with a problem
    assert subject is not None
    return SendRequest(
        sender=sender,
        recipients=recipients,
        reply_to=reply_to,
        subject=subject,
        plain_text=plain_text or None,
        html=html or None,
        attachments=tuple(attachments),
        headers=MappingProxyType(headers),
        tags=MappingProxyType(tags),
        metadata=MappingProxyType(metadata),
        engagement_tracking_disabled=bool(tracking_disabled),
        size=size,
    )


def _resolve_sender(doc: dict[str, Any], policy: SenderPolicy, add: _Add) -> str | None:
    given_address = doc.get("senderAddress")
    username = doc.get("senderUsername")
    if given_address is not None and username is not None:
        add("senderUsername", "give senderAddress or senderUsername, not both")
        return None
    if given_address is not None:
        parsed = _address(given_address, "senderAddress", add)
        if parsed is None:
            return None
        sender = parsed[0]
    elif username is not None:
        if not isinstance(username, str):
            add("senderUsername", f"must be a string, not {_json_type(username)}")
            return None
        if not username:
            add("senderUsername", "must not be empty")
            return None
        if "@" in username:
            add("senderUsername", "give only the part before @ (the domain is SENDER_DOMAIN)")
            return None
        if not policy.sender_domain:
            add("senderUsername", "no SENDER_DOMAIN is configured; give senderAddress instead")
            return None
        parsed = _address(f"{username}@{policy.sender_domain}", "senderUsername", add)
        if parsed is None:
            return None
        sender = parsed[0]
    else:
        if not policy.default_sender:
            add("senderAddress", "no sender given and no DEFAULT_SENDER configured")
            return None
        parsed = _address(policy.default_sender, "senderAddress", lambda _w, _m: None)
        # The operator's own default is always allowed, allow-list or not.
        return parsed[0] if parsed else policy.default_sender
    if not _sender_allowed(sender, policy):
        add("senderAddress", f"{sender} is not an allowed sender")
    return sender


def _sender_allowed(sender: str, policy: SenderPolicy) -> bool:
    key = sender.lower()
    domain = key.rpartition("@")[2]
    if policy.default_sender and key == _policy_form(policy.default_sender):
        return True
    if not policy.allowlist:
        return bool(policy.sender_domain) and domain == _policy_form(policy.sender_domain or "")
    for entry in policy.allowlist:
        allowed = _policy_form(entry)
        if key == allowed or (allowed.startswith("@") and domain == allowed[1:]):
            return True
    return False


def _policy_form(value: str) -> str:
    """A configured address, `@domain` or domain, lower-cased with the domain as A-labels."""
    local, at, domain = value.strip().rpartition("@")
    with contextlib.suppress(UnicodeError):  # an invalid domain then matches no caller's sender
        domain = domain.encode("idna").decode("ascii")
    return (local + at + domain).lower()


def _recipients(doc: dict[str, Any], add: _Add) -> tuple[Recipient, ...]:
    raw_to = doc.get("to")
    if raw_to is None:
        add("to", "is required: an array of at least one recipient")
    elif isinstance(raw_to, list) and not raw_to:
        add("to", "must list at least one recipient")
    parsed = {kind: _mailboxes(doc, kind, add) for kind in _KINDS}
    total = sum(len(doc[kind]) for kind in _KINDS if isinstance(doc.get(kind), list))
    if total > MAX_RECIPIENTS:
        add("recipients", f"at most {MAX_RECIPIENTS} recipients across to, cc and bcc; got {total}")
    seen: dict[str, str] = {}
    out: list[Recipient] = []
    for kind in _KINDS:
        for where, address, display_name, unicode_address in parsed[kind]:
            recipient = Recipient(address, display_name, kind, unicode_address)
            if recipient.key in seen:
                add(
                    f"{where}.address",
                    f"duplicates {seen[recipient.key]}: an address may appear once across "
                    "to, cc and bcc",
                )
            else:
                seen[recipient.key] = where
            out.append(recipient)
    return tuple(out)


def _mailboxes(
    doc: dict[str, Any], key: str, add: _Add
) -> list[tuple[str, str, str | None, str | None]]:
    """(field, address, display name, unicode address) for each valid entry of `doc[key]`."""
    raw = doc.get(key)
    if raw is None:
        return []
    if not isinstance(raw, list):
        add(key, f"must be an array of {{address, displayName}} objects, not {_json_type(raw)}")
        return []
    out: list[tuple[str, str, str | None, str | None]] = []
    for i, item in enumerate(raw):
        where = f"{key}[{i}]"
        if not isinstance(item, dict):
            add(where, f"must be an {{address, displayName}} object, not {_json_type(item)}")
            continue
        for extra in item:
            if extra not in _MAILBOX_FIELDS:
                add(f"{where}.{_echo(extra)}", "unknown field; expected address and displayName")
        parsed = _address(item.get("address"), f"{where}.address", add)
        display_name = _display_name(item.get("displayName"), f"{where}.displayName", add)
        if parsed is not None:
            out.append((where, parsed[0], display_name, parsed[1]))
    return out


def _address(value: object, where: str, add: _Add) -> tuple[str, str | None] | None:
    """(address with an A-label domain, the address as given if that differs), or None."""
    value = _required_string(value, where, add)
    if value is None:
        return None
    if not value:
        add(where, "must not be empty")
        return None
    if _ADDRESS_FORBIDDEN.search(value):
        add(where, "must not contain whitespace, control characters, '<', '>', ',' or ';'")
        return None
    local, at, domain = value.rpartition("@")
    if not at or not local or not domain:
        add(where, "must look like local-part@domain")
        return None
    local_ok = _check_local_part(local, where, add)
    ascii_domain = _ascii_domain(domain, where, add)
    if not local_ok or ascii_domain is None:
        return None
    address = f"{local}@{ascii_domain}"
    if len(address) > MAX_ADDRESS_OCTETS:
        add(where, f"is {len(address)} octets long; at most {MAX_ADDRESS_OCTETS} (RFC 5321)")
        return None
    return address, (value if ascii_domain != domain else None)


def _check_local_part(local: str, where: str, add: _Add) -> bool:
    if not local.isascii():
        add(where, "the part before @ must be ASCII (SMTPUTF8 local parts are not supported)")
        return False
    if len(local) > MAX_LOCAL_PART_OCTETS:
        add(
            where,
            f"the part before @ is {len(local)} octets; at most {MAX_LOCAL_PART_OCTETS} (RFC 5321)",
        )
        return False
    if not (_DOT_ATOM.fullmatch(local) or _QUOTED_STRING.fullmatch(local)):
        add(
            where,
            "the part before @ must be letters, digits and !#$%&'*+-/=?^_`{|}~ with single "
            'inner dots, or a "quoted string"',
        )
        return False
    return True


def _ascii_domain(domain: str, where: str, add: _Add) -> str | None:
    """The domain in A-label (punycode) form, or None after saying what is wrong with it."""
    if domain.startswith("["):
        add(where, "address literals such as [192.0.2.1] are not accepted; use a domain name")
        return None
    labels = _LABEL_SEPARATORS.split(domain)
    if len(labels) < 2:
        add(where, "the domain needs at least one dot, as in example.com")
        return None
    ascii_labels: list[str] = []
    for label in labels:
        if not label:
            add(where, "the domain has an empty label (a leading, trailing or doubled dot)")
            return None
        if label.isascii():
            ascii_label = label
            if label[:4].lower() == "xn--":
                try:
                    label.encode("ascii").decode("idna")
                except UnicodeError:
                    add(where, f"the domain label {_echo(label)!r} is not valid punycode")
                    return None
        else:
            try:
                ascii_label = label.encode("idna").decode("ascii")  # IDNA 2003 ToASCII
            except UnicodeError:
                add(where, f"the domain label {_echo(label)!r} is not a valid international name")
                return None
        if len(ascii_label) > MAX_LABEL_OCTETS:
            add(where, f"a domain label is longer than {MAX_LABEL_OCTETS} characters")
            return None
        if not _LDH_LABEL.fullmatch(ascii_label):
            add(
                where,
                f"the domain label {_echo(ascii_label)!r} may hold only letters, digits and "
                "hyphens, not at its start or end",
            )
            return None
        ascii_labels.append(ascii_label)
    tld = ascii_labels[-1]
    if not (_ALPHA_TLD.fullmatch(tld) or tld[:4].lower() == "xn--"):
        add(where, f"the top-level domain {tld!r} must be letters (or an xn-- name)")
        return None
    ascii_domain = ".".join(ascii_labels)
    if len(ascii_domain) > MAX_DOMAIN_OCTETS:
        add(where, f"the domain is longer than {MAX_DOMAIN_OCTETS} octets (RFC 5321)")
        return None
    return ascii_domain


def _display_name(value: object, where: str, add: _Add) -> str | None:
    value = _string_or_none(value, where, add)
    if value is None:
        return None
    if len(value) > MAX_DISPLAY_NAME_LENGTH:
        add(where, f"is {len(value)} characters; at most {MAX_DISPLAY_NAME_LENGTH}")
    if _DISPLAY_NAME_FORBIDDEN.search(value):
        add(where, "must not contain line breaks, control characters, '<' or '>'")
    return value or None


def _subject(value: object, add: _Add) -> str | None:
    value = _required_string(value, "subject", add)
    if value is None:
        return None
    ok = True
    if not value.strip():
        add("subject", "must not be empty")
        ok = False
    if len(value) > MAX_SUBJECT_LENGTH:
        add("subject", f"is {len(value)} characters; at most {MAX_SUBJECT_LENGTH}")
        ok = False
    if _LINE_BREAK.search(value):
        add("subject", "must not contain line breaks or NUL")
        ok = False
    return value if ok else None


def _optional_string(doc: dict[str, Any], key: str, add: _Add) -> str | None:
    return _string_or_none(doc.get(key), key, add)


def _string_or_none(value: object, where: str, add: _Add) -> str | None:
    """The value if it is a string; None when absent, or (with the problem recorded) not one."""
    if value is None:
        return None
    if not isinstance(value, str):
        add(where, f"must be a string, not {_json_type(value)}")
        return None
    return value


def _wrong_type(doc: dict[str, Any], key: str) -> bool:
    return doc.get(key) is not None and not isinstance(doc.get(key), str)


def _attachments(raw: object, add: _Add) -> tuple[list[Attachment], int]:
    """The valid attachments, and the decoded size of every attachment whose content is valid."""
    if raw is None:
        return [], 0
    if not isinstance(raw, list):
        add("attachments", f"must be an array of attachment objects, not {_json_type(raw)}")
        return [], 0
    out: list[Attachment] = []
    total = 0
    content_ids: dict[str, str] = {}
    for i, item in enumerate(raw):
        where = f"attachments[{i}]"
        if not isinstance(item, dict):
            add(where, f"must be an attachment object, not {_json_type(item)}")
            continue
        for extra in item:
            if extra not in _ATTACHMENT_FIELDS:
                add(
                    f"{where}.{_echo(extra)}",
                    "unknown field; expected name, contentType, contentInBase64 and contentId",
                )
        name = _attachment_name(item.get("name"), f"{where}.name", add)
        content_type = _attachment_type(item.get("contentType"), f"{where}.contentType", add)
        content = item.get("contentInBase64")
        size = _decoded_size(content, f"{where}.contentInBase64", add)
        content_id = _content_id(item.get("contentId"), f"{where}.contentId", add)
        if content_id is not None:
            first = content_ids.setdefault(content_id.lower(), where)
            if first != where:
                add(f"{where}.contentId", f"duplicates {first}.contentId")
        if size is not None:
            total += size
        if name is not None and content_type is not None and size is not None:
            assert isinstance(content, str)
            out.append(Attachment(name, content_type, content, content_id, size))
    return out, total


def _attachment_name(value: object, where: str, add: _Add) -> str | None:
    value = _required_string(value, where, add)
    if value is None:
        return None
    ok = True
    if not value.strip() or value in {".", ".."}:
        add(where, "must be a file name")
        ok = False
    if len(value) > MAX_ATTACHMENT_NAME_LENGTH:
        add(where, f"is {len(value)} characters; at most {MAX_ATTACHMENT_NAME_LENGTH}")
        ok = False
    if "/" in value or "\\" in value:
        add(where, "must be a bare file name, without / or \\")
        ok = False
    if _CONTROL.search(value):
        add(where, "must not contain control characters")
        ok = False
    # Windows drops trailing dots and spaces, so "run.exe. " opens as run.exe.
    stem, dot, extension = value.rstrip(". ").rpartition(".")
    if dot and stem and f".{extension.lower()}" in EXECUTABLE_EXTENSIONS:
        add(where, f"executable files (.{extension.lower()}) are not accepted")
        ok = False
    return value if ok else None


def _attachment_type(value: object, where: str, add: _Add) -> str | None:
    value = _required_string(value, where, add)
    if value is None:
        return None
    media_type = value.lower()
    if ";" in media_type:
        add(where, "give the bare MIME type, without parameters")
        return None
    if media_type in EXECUTABLE_TYPES:
        add(where, f"{_echo(value)!r} is executable content, which is not accepted")
        return None
    canonical = _ACS_ATTACHMENT_TYPES.get(media_type)
    if canonical is None:
        add(where, f"{_echo(value)!r} is not an attachment type ACS accepts")
    return canonical


def _decoded_size(value: object, where: str, add: _Add) -> int | None:
    value = _required_string(value, where, add)
    if value is None:
        return None
    if not value:
        add(where, "must not be empty")
        return None
    try:
        return len(base64.b64decode(value, validate=True))
    except (binascii.Error, ValueError):  # ValueError: non-ASCII text
        add(
            where,
            "must be standard base64 (A-Z a-z 0-9 + / with = padding), "
            "without line breaks or spaces",
        )
        return None


def _content_id(value: object, where: str, add: _Add) -> str | None:
    value = _string_or_none(value, where, add)
    if value is None:
        return None
    if len(value) > MAX_CONTENT_ID_LENGTH or not _CONTENT_ID.fullmatch(value):
        add(
            where,
            f"must be 1-{MAX_CONTENT_ID_LENGTH} letters, digits and !#$%&'*+-/=?^_`{{|}}~.@ "
            "(referenced from the html as cid:<contentId>, without < >)",
        )
        return None
    return value


def _headers(raw: object, add: _Add) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        add("headers", f"must be an object of header name to string, not {_json_type(raw)}")
        return {}
    if len(raw) > MAX_HEADERS:
        add("headers", f"at most {MAX_HEADERS} custom headers; got {len(raw)}")
    out: dict[str, str] = {}
    seen: dict[str, str] = {}
    for name, value in raw.items():
        where = f"headers.{_echo(name)}"
        lower = name.lower()
        if not _HEADER_NAME.fullmatch(name):
            add(where, "is not a header field name: printable ASCII without spaces or ':'")
        elif lower in RESERVED_HEADERS:
            add(where, "is set by ACS or this service and cannot be given")
        elif lower.startswith(RESERVED_HEADER_PREFIX):
            add(where, "the x-ms- prefix is reserved for ACS's own headers")
        elif lower in seen:
            add(where, f"repeats the header {_echo(seen[lower])!r} (header names ignore case)")
        else:
            seen[lower] = name
        if not isinstance(value, str):
            add(where, f"must be a string, not {_json_type(value)}")
        elif _LINE_BREAK.search(value):
            add(where, "must not contain line breaks or NUL")
        else:
            out[name] = value
    return out


def _string_map(
    raw: object, key: str, max_entries: int, max_key: int, max_value: int, add: _Add
) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        add(key, f"must be an object of string to string, not {_json_type(raw)}")
        return {}
    if len(raw) > max_entries:
        add(key, f"at most {max_entries} entries; got {len(raw)}")
    out: dict[str, str] = {}
    for name, value in raw.items():
        where = f"{key}.{_echo(name)}"
        if not name:
            add(where, "keys must not be empty")
        elif len(name) > max_key:
            add(where, f"keys are at most {max_key} characters")
        if not isinstance(value, str):
            add(where, f"must be a string, not {_json_type(value)}")
        elif len(value) > max_value:
            add(where, f"is {len(value)} characters; at most {max_value}")
        else:
            out[name] = value
    return out
