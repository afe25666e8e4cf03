"""Validate a `POST /api/emails` body into a SendRequest that maps onto an ACS EmailMessage.

The envelope is checked first (415 for the media type, 413 for a body too large to parse, 400
for JSON that is not an object). Then three passes over the document, whose problems are
listed together in one InvalidInput, so a caller fixes a request in one round trip:

1. lone UTF-16 surrogates (`"\\ud800"` is valid JSON but not text) are named and replaced, so
   nothing after sees them and none can reach storage;
2. the pydantic models below check the shape: types, lengths, unknown fields, and each field's
   own rules (addresses via email-validator, header and display-name injection, executable
   attachments, base64);
3. `_relations` checks what spans fields, on the document itself so that one bad field hides
   no other problem: the sender policy, duplicate recipients, the recipient count, a body,
   contentId and header-name clashes.

Last comes the size ACS counts, the whole request with base64 and JSON (413, before the 400:
no fix to the other problems makes such a message sendable). Field paths are JSON-pointer-like:
`to[2].address`, `attachments[0].contentInBase64`, `headers.X-Foo`. Null is "not given".

pydantic and email-validator are imported here and nowhere else: this module loads with the
send path only, so `import function_app` (cold start) does not pay for them.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import functools
import hashlib
import json
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Annotated, Any, Literal, TypeVar

from email_validator import EmailNotValidError, validate_email
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError, core_schema

from shared.core import addresses
from shared.core.errors import InvalidInput, PayloadTooLarge, Problem, UnsupportedMediaType
from shared.core.sending.attachment_types import (
    ACCEPTED_CONTENT_TYPES,
    EXECUTABLE_EXTENSIONS,
    EXECUTABLE_TYPES,
)

INVALID_JSON_TITLE = "Request body is not valid JSON"
INVALID_REQUEST_TITLE = "The email request is invalid"

# ACS limits the whole send request, attachments in base64 and the JSON around them included,
# to 10 MB (shared/reference/acs-limits.md; the spec's EmailMessage.attachments says the same;
# our ACS sandbox answers 413 past 10 * 1024 * 1024 bytes of body). That leaves about 7.5 MB of
# attachment files. We count the body the SDK would send (see SendRequest.acs_request_bytes).
MAX_REQUEST_BYTES = 10 * 1024 * 1024
# Our body carries the same content (plus tags and metadata, and whatever whitespace the caller
# likes); past this it cannot be sendable, so it is not parsed.
MAX_BODY_BYTES = 11 * 1024 * 1024
MAX_RECIPIENTS = 50  # ACS service limit: recipients per message across To, CC and BCC
MAX_SUBJECT_LENGTH = 998  # RFC 5322 §2.1.1: a header line is at most 998 characters
MAX_DISPLAY_NAME_LENGTH = 256
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
_MAILBOX_FIELDS = ("address", "displayName")
_ATTACHMENT_FIELDS = ("name", "contentType", "contentInBase64", "contentId")
_MAILBOX_LISTS = frozenset({"to", "cc", "bcc", "replyTo"})

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

# Characters that split or end a header when an address is pasted into one.
_ADDRESS_FORBIDDEN = re.compile(r"[\s\x00-\x1f\x7f-\x9f<>,;]")
# Control characters (C0, DEL, C1 incl. NEL) and the Unicode line and paragraph separators: in
# a header they break lines, or terminals and mail clients act on them (ESC, VT). Header values
# and the subject keep HTAB, which RFC 5322 §2.2.1 allows in unstructured fields.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_HEADER_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
_SURROGATE = re.compile("[\ud800-\udfff]")  # what json.loads leaves of a lone \\udXXX escape
_ALPHA_TLD = re.compile(r"[A-Za-z]{2,63}")
_HEADER_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]+")  # RFC 5322 §3.6.8 ftext
_CONTENT_ID = re.compile(r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~.@]+")
_JSON_MEDIA_TYPE = re.compile(r"application/(?:json|[!#$&^_.+\-0-9a-z]+\+json)")

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
        """The canonical form every comparison and store key uses (`addresses.canonical`)."""
        return addresses.canonical(self.address)

    @property
    def display_address(self) -> str:
        return self.unicode_address or self.address


@dataclass(frozen=True, slots=True)
class Attachment:
    name: str
    content_type: str  # ACS's spelling from attachment_types.ACS_ATTACHMENT_TYPES
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
        return self._acs_message(with_content=True)

    def acs_request_bytes(self) -> int:
        """The size of the body the SDK sends ACS for this message, which ACS holds to 10 MB.

        azure-core serializes it as `json.dumps(message)`: default separators, ASCII with
        \\u escapes. Base64 is plain ASCII, so each attachment adds exactly its length; the
        attachments are left out of the dump so a 10 MB message is not copied to be measured.
        """
        skeleton = json.dumps(self._acs_message(with_content=False))
        return len(skeleton) + sum(len(a.content_in_base64) for a in self.attachments)

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

    def _acs_message(self, with_content: bool) -> dict[str, Any]:
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
            message["attachments"] = [_acs_attachment(a, with_content) for a in self.attachments]
        if self.headers:
            message["headers"] = dict(self.headers)
        message["userEngagementTrackingDisabled"] = self.engagement_tracking_disabled
        return message


def _acs_address(address: str, display_name: str | None) -> dict[str, str]:
    out = {"address": address}
    if display_name is not None:
        out["displayName"] = display_name
    return out


def _acs_attachment(a: Attachment, with_content: bool) -> dict[str, str]:
    out = {
        "name": a.name,
        "contentType": a.content_type,
        "contentInBase64": a.content_in_base64 if with_content else "",
    }
    if a.content_id is not None:
        out["contentId"] = a.content_id
    return out


def check_after_suppression(
    request: SendRequest, suppressed_keys: Collection[str]
) -> list[Problem]:
    """What ACS would refuse once the suppressed recipients are dropped, as problems.

    ACS needs at least one `to` recipient: a request whose every `to` is suppressed but which
    still has cc or bcc recipients would fail at send time, so it is refused at accept. A
    request with no recipient left at all is not this function's business (nothing is sent).
    `suppressed_keys` are canonical keys (`addresses.canonical`); other forms are canonicalized.
    """
    suppressed = {addresses.canonical(key) for key in suppressed_keys}
    remaining = [r for r in request.recipients if r.key not in suppressed]
    if not remaining or any(r.kind == "to" for r in remaining):
        return []
    return [
        Problem(
            "to",
            f"every to recipient is on the suppression list, and ACS needs at least one to "
            f"recipient; the {len(remaining)} cc/bcc recipient(s) left cannot be sent this "
            "message alone: put one of them in to, or send without the suppressed addresses",
        )
    ]


# --- entry point ------------------------------------------------------------------------------


def parse_send_request(body: bytes, content_type: str | None, policy: SenderPolicy) -> SendRequest:
    _check_media_type(content_type)
    if len(body) > MAX_BODY_BYTES:
        raise PayloadTooLarge(
            "The email is larger than ACS accepts",
            [
                Problem(
                    "",
                    f"the body is {len(body)} bytes, more than any sendable request "
                    f"({MAX_BODY_BYTES} are read at most): ACS accepts at most "
                    f"{MAX_REQUEST_BYTES} bytes (10 MB) per request, base64 and JSON included, "
                    "which leaves about 7.5 MB for attachment files",
                )
            ],
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
        raise InvalidInput(INVALID_JSON_TITLE, [Problem("", _no_surrogates(str(exc)))]) from None
    except RecursionError:
        raise InvalidInput(INVALID_JSON_TITLE, [Problem("", "nested too deeply")]) from None
    if not isinstance(doc, dict):
        raise InvalidInput(
            INVALID_JSON_TITLE, [Problem("", f"expected a JSON object, got {_json_type(doc)}")]
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


def _parse_document(doc: dict[str, Any], policy: SenderPolicy) -> SendRequest:
    doc, problems = _replace_surrogates(doc)
    found: list[Problem] = []
    body: _Body | None = None
    try:
        body = _Body.model_validate(doc)
    except ValidationError as exc:
        found.extend(p for e in exc.errors(include_url=False) if (p := _problem(e)))
    sender, related = _relations(doc, policy)
    found.extend(related)
    # A field with a surrogate gets that one problem, not what its U+FFFD stand-in then trips.
    tainted = {p.field for p in problems}
    problems.extend(p for p in found if p.field not in tainted)
    if problems or body is None or sender is None:
        least = _least_request_bytes(doc)
        if least > MAX_REQUEST_BYTES:
            raise _too_large(least, at_least=True)
        raise InvalidInput(INVALID_REQUEST_TITLE, _capped(_unique(problems)))
    request = _build(body, sender)
    request_bytes = request.acs_request_bytes()
    if request_bytes > MAX_REQUEST_BYTES:
        raise _too_large(request_bytes, at_least=False, request=request)
    return request


def _build(body: _Body, sender: str) -> SendRequest:
    recipients = tuple(
        Recipient(m.address.address, m.displayName or None, kind, m.address.unicode_address)
        for kind in _KINDS
        for m in getattr(body, kind) or ()
    )
    reply_to = tuple(
        Mailbox(m.address.address, m.displayName or None, m.address.unicode_address)
        for m in body.replyTo or ()
    )
    attachments = tuple(
        Attachment(
            a.name, a.contentType, a.contentInBase64.text, a.contentId, a.contentInBase64.size
        )
        for a in body.attachments or ()
    )
    assert body.subject is not None  # required: its absence is a problem raised before
    texts = (body.subject, body.plainText, body.html)
    size = sum(a.size for a in attachments) + sum(len(t.encode()) for t in texts if t)
    return SendRequest(
        sender=sender,
        recipients=recipients,
        reply_to=reply_to,
        subject=body.subject,
        plain_text=body.plainText or None,
        html=body.html or None,
        attachments=attachments,
        headers=MappingProxyType(dict(body.headers or {})),
        tags=MappingProxyType(dict(body.tags or {})),
        metadata=MappingProxyType(dict(body.metadata or {})),
        engagement_tracking_disabled=bool(body.userEngagementTrackingDisabled),
        size=size,
    )


def _too_large(
    request_bytes: int, at_least: bool, request: SendRequest | None = None
) -> PayloadTooLarge:
    what = f"at least {request_bytes}" if at_least else f"{request_bytes}"
    files = ""
    if request is not None and request.attachments:
        encoded = sum(len(a.content_in_base64) for a in request.attachments)
        decoded = sum(a.size for a in request.attachments)
        files = f", of which {encoded} are attachments in base64 ({decoded} bytes of files)"
    return PayloadTooLarge(
        "The email is larger than ACS accepts",
        [
            Problem(
                "",
                f"the request to ACS would be {what} bytes{files}; ACS accepts at most "
                f"{MAX_REQUEST_BYTES} bytes (10 MB) per request, base64 and JSON included, "
                "which leaves about 7.5 MB for attachment files",
            )
        ],
    )


def _least_request_bytes(doc: Mapping[str, Any]) -> int:
    """A lower bound of the ACS request size, from a document that did not validate."""
    total = 0
    for key in ("subject", "plainText", "html"):
        if isinstance(doc.get(key), str):
            total += len(json.dumps(doc[key]))
    for item in _items(doc.get("attachments")):
        content = item.get("contentInBase64")
        if isinstance(content, str):
            total += len(content)
    return total


def _unique(problems: list[Problem]) -> list[Problem]:
    return list(dict.fromkeys(problems))


def _capped(problems: list[Problem]) -> list[Problem]:
    if len(problems) <= MAX_PROBLEMS:
        return problems
    more = len(problems) - MAX_PROBLEMS
    return [*problems[:MAX_PROBLEMS], Problem("", f"{more} more problems not listed")]


# --- pass 1: lone surrogates ------------------------------------------------------------------


def _replace_surrogates(doc: dict[str, Any]) -> tuple[dict[str, Any], list[Problem]]:
    """The document with every lone surrogate replaced by U+FFFD, and a problem for each field.

    Only as deep as the request's shape goes (top level, list or map, item object, its
    fields): anything deeper sits inside a value of the wrong type, which is refused anyway.
    """
    problems: list[Problem] = []

    def clean(value: Any, where: str, depth: int) -> Any:
        if isinstance(value, str):
            if not value.isascii() and _SURROGATE.search(value):
                problems.append(Problem(where, _SURROGATE_MESSAGE))
                return _SURROGATE.sub("\ufffd", value)
            return value
        if depth >= 3:
            return value
        if isinstance(value, list):
            return [clean(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value)]
        if isinstance(value, dict):
            out = {}
            for key, item in value.items():
                safe_key = _SURROGATE.sub("\ufffd", key)
                path = _join(where, safe_key)
                if safe_key != key:
                    problems.append(Problem(path, f"the key {_SURROGATE_MESSAGE}"))
                out[safe_key] = clean(item, path, depth + 1)
            return out
        return value

    if not _has_lone_surrogate(doc):  # the usual case: one cheap walk, nothing rebuilt
        return doc, problems
    cleaned: dict[str, Any] = clean(doc, "", 0)
    return cleaned, problems


_SURROGATE_MESSAGE = (
    "contains an unpaired UTF-16 surrogate escape (such as \\ud800), which is not text"
)


def _has_lone_surrogate(doc: Any) -> bool:
    stack = [doc]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if not item.isascii() and _SURROGATE.search(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _no_surrogates(text: str) -> str:
    return _SURROGATE.sub("\ufffd", text)


# --- pass 2: the shape, as pydantic models ----------------------------------------------------


_In = TypeVar("_In")
_Out = TypeVar("_Out")


class _Bad(ValueError):
    """One field's problem, in our words; becomes a pydantic error at that field's path."""


def _field_rule(check: Callable[[_In], _Out]) -> Callable[[_In], _Out]:
    """Run `check`, turning its _Bad into a pydantic error that keeps our message verbatim."""

    def run(value: _In) -> _Out:
        try:
            return check(value)
        except _Bad as exc:
            raise PydanticCustomError("problem", "{message}", {"message": str(exc)}) from None

    return run


@dataclass(frozen=True, slots=True)
class _Address:
    """A valid address: `address` with an A-label domain, `unicode_address` as given if other."""

    address: str
    unicode_address: str | None

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(
            _field_rule(_parse_address), core_schema.str_schema(strict=True)
        )


@dataclass(frozen=True, slots=True)
class _Base64:
    text: str
    size: int  # decoded bytes

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(
            _field_rule(_decode_base64), core_schema.str_schema(strict=True)
        )


def _parse_address(value: str) -> _Address:
    if len(value) > MAX_ADDRESS_OCTETS:  # never a valid address: not worth a cache slot
        raise _Bad(f"is {len(value)} characters long; at most {MAX_ADDRESS_OCTETS} (RFC 5321)")
    checked = _checked_address(value)
    if isinstance(checked, str):
        raise _Bad(checked)
    return checked


# The model and `_relations` both look at each address, senders and recipients repeat across
# requests, and an IDN address costs email-validator ~0.5 ms (the idna package is pure Python).
@functools.lru_cache(maxsize=1024)
def _checked_address(value: str) -> _Address | str:
    """The address, or why not: syntax and IDN by email-validator (no DNS), with our own
    refusals first and in our words."""
    try:
        return _check_address(value)
    except _Bad as exc:
        return str(exc)


def _check_address(value: str) -> _Address:
    if not value:
        raise _Bad("must not be empty")
    if value.startswith('"') and '"@' in value:
        # RFC 5321 allows "john doe"@example.com; ACS refuses it at send time.
        raise _Bad('a quoted part before @ (as in "john doe"@example.com) is refused by ACS')
    if _ADDRESS_FORBIDDEN.search(value):
        raise _Bad("must not contain whitespace, control characters, '<', '>', ',' or ';'")
    local, at, domain = value.rpartition("@")
    if not at or not local or not domain:
        raise _Bad("must look like local-part@domain")
    if domain.startswith("["):
        raise _Bad("address literals such as [192.0.2.1] are not accepted; use a domain name")
    if not local.isascii():
        raise _Bad("the part before @ must be ASCII (SMTPUTF8 local parts are not supported)")
    try:
        # test_environment: lets `.test` domains through (RFC 6761; our ACS sandbox's simulator
        # addresses); localhost, .local, .invalid, .onion and .arpa stay refused.
        checked = validate_email(
            value,
            check_deliverability=False,
            allow_smtputf8=False,
            allow_quoted_local=False,
            allow_domain_literal=False,
            allow_display_name=False,
            test_environment=True,
            strict=True,  # RFC 5321 §4.5.3.1.1: at most 64 octets before the @
        )
    except EmailNotValidError as exc:
        raise _Bad(str(exc)) from None
    ascii_domain = domain if domain.isascii() else checked.ascii_domain
    tld = ascii_domain.rpartition(".")[2]
    if not (_ALPHA_TLD.fullmatch(tld) or tld[:4].lower() == "xn--"):
        raise _Bad(f"the top-level domain {tld!r} must be letters (or an xn-- name)")
    address = f"{local}@{ascii_domain}"
    if len(address) > MAX_ADDRESS_OCTETS:
        raise _Bad(f"is {len(address)} octets long; at most {MAX_ADDRESS_OCTETS} (RFC 5321)")
    return _Address(address, value if address != value else None)


def _try_address(value: object) -> _Address | None:
    if not isinstance(value, str):
        return None
    try:
        return _parse_address(value)
    except _Bad:
        return None


def _decode_base64(value: str) -> _Base64:
    if not value:
        raise _Bad("must not be empty")
    try:
        size = len(base64.b64decode(value, validate=True))
    except (binascii.Error, ValueError):  # ValueError: non-ASCII text
        raise _Bad(
            "must be standard base64 (A-Z a-z 0-9 + / with = padding), "
            "without line breaks or spaces"
        ) from None
    return _Base64(value, size)


def _display_name(value: str) -> str:
    if re.search("[\x00-\x1f\x7f-\x9f<>\u2028\u2029]", value):
        raise _Bad("must not contain line breaks, control characters, '<' or '>'")
    return value


def _subject(value: str) -> str:
    if not value.strip():
        raise _Bad("must not be empty")
    if _HEADER_CONTROL.search(value):
        raise _Bad(_HEADER_CONTROL_MESSAGE)
    return value


def _header_value(value: str) -> str:
    if _HEADER_CONTROL.search(value):
        raise _Bad(_HEADER_CONTROL_MESSAGE)
    return value


_HEADER_CONTROL_MESSAGE = (
    "must not contain line breaks, control characters (NUL, VT, ESC, DEL, ...) "
    "or the Unicode line and paragraph separators U+2028/U+2029"
)


def _header_name(name: str) -> str:
    lower = name.lower()
    if not _HEADER_NAME.fullmatch(name):
        raise _Bad("is not a header field name: printable ASCII without spaces or ':'")
    if lower in RESERVED_HEADERS:
        raise _Bad("is set by ACS or this service and cannot be given")
    if lower.startswith(RESERVED_HEADER_PREFIX):
        raise _Bad("the x-ms- prefix is reserved for ACS's own headers")
    return name


def _sender_username(value: str) -> str:
    if "@" in value:
        raise _Bad("give only the part before @ (the domain is SENDER_DOMAIN)")
    return value


def _attachment_name(value: str) -> str:
    problems = []
    if not value.strip() or value in {".", ".."}:
        problems.append("must be a file name")
    if "/" in value or "\\" in value:
        problems.append("must be a bare file name, without / or \\")
    if _CONTROL.search(value):
        problems.append("must not contain control characters")
    # Windows drops trailing dots and spaces, so "run.exe. " opens as run.exe.
    stem, dot, extension = value.rstrip(". ").rpartition(".")
    if dot and stem and f".{extension.lower()}" in EXECUTABLE_EXTENSIONS:
        problems.append(f"executable files (.{extension.lower()}) are not accepted")
    if problems:
        raise _Bad("; ".join(problems))
    return value


def _content_type(value: str) -> str:
    media_type = value.lower()
    if ";" in media_type:
        raise _Bad("give the bare MIME type, without parameters")
    if media_type in EXECUTABLE_TYPES:
        raise _Bad(f"{_echo(value)!r} is executable content, which is not accepted")
    canonical = ACCEPTED_CONTENT_TYPES.get(media_type)
    if canonical is None:
        raise _Bad(
            f"{_echo(value)!r} is not an attachment type ACS accepts "
            "(see ACS's allowed attachment types: pdf, images, Office documents, ...)"
        )
    return canonical


def _content_id(value: str) -> str:
    if len(value) > MAX_CONTENT_ID_LENGTH or not _CONTENT_ID.fullmatch(value):
        raise _Bad(
            f"must be 1-{MAX_CONTENT_ID_LENGTH} letters, digits and !#$%&'*+-/=?^_`{{|}}~.@ "
            "(referenced from the html as cid:<contentId>, without < >)"
        )
    return value


_DisplayName = Annotated[
    str, Field(max_length=MAX_DISPLAY_NAME_LENGTH), AfterValidator(_field_rule(_display_name))
]
_Subject = Annotated[
    str, Field(max_length=MAX_SUBJECT_LENGTH), AfterValidator(_field_rule(_subject))
]
_HeaderName = Annotated[str, AfterValidator(_field_rule(_header_name))]
_HeaderValue = Annotated[str, AfterValidator(_field_rule(_header_value))]
_Username = Annotated[str, Field(min_length=1), AfterValidator(_field_rule(_sender_username))]
_AttachmentName = Annotated[
    str, Field(max_length=MAX_ATTACHMENT_NAME_LENGTH), AfterValidator(_field_rule(_attachment_name))
]
_ContentType = Annotated[str, AfterValidator(_field_rule(_content_type))]
_ContentId = Annotated[str, AfterValidator(_field_rule(_content_id))]
_TagKey = Annotated[str, Field(min_length=1, max_length=MAX_TAG_KEY_LENGTH)]
_MetadataKey = Annotated[str, Field(min_length=1, max_length=MAX_METADATA_KEY_LENGTH)]


def _nulls_absent(data: Any) -> Any:
    """Null is "not given": drop null members so a missing required field says so."""
    if isinstance(data, dict):
        return {k: v for k, v in data.items() if v is not None}
    return data


class _Model(BaseModel):
    # strict: JSON types as they are (no "1" → 1, no 0 → False); forbid: a typo is a problem.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _nulls(cls, data: Any) -> Any:
        return _nulls_absent(data)


class _MailboxIn(_Model):
    address: _Address
    displayName: _DisplayName | None = None


class _AttachmentIn(_Model):
    name: _AttachmentName
    contentType: _ContentType
    contentInBase64: _Base64
    contentId: _ContentId | None = None


# The recipient lists are capped one by one at the total: a longer list stops there (so a
# hostile one costs nothing) and `_relations` reports the total across to, cc and bcc.
_Mailboxes = Annotated[list[_MailboxIn], Field(max_length=MAX_RECIPIENTS)]


class _Body(_Model):
    senderAddress: _Address | None = None
    senderUsername: _Username | None = None
    to: Annotated[list[_MailboxIn], Field(min_length=1, max_length=MAX_RECIPIENTS)]
    cc: _Mailboxes | None = None
    bcc: _Mailboxes | None = None
    replyTo: _Mailboxes | None = None
    subject: _Subject
    plainText: str | None = None
    html: str | None = None
    attachments: list[_AttachmentIn] | None = None
    headers: Annotated[dict[_HeaderName, _HeaderValue], Field(max_length=MAX_HEADERS)] | None = None
    tags: (
        Annotated[
            dict[_TagKey, Annotated[str, Field(max_length=MAX_TAG_VALUE_LENGTH)]],
            Field(max_length=MAX_TAGS),
        ]
        | None
    ) = None
    metadata: (
        Annotated[
            dict[_MetadataKey, Annotated[str, Field(max_length=MAX_METADATA_VALUE_LENGTH)]],
            Field(max_length=MAX_METADATA),
        ]
        | None
    ) = None
    userEngagementTrackingDisabled: bool | None = None


# --- pydantic's errors in our words, at our paths ---------------------------------------------


def _problem(error: Mapping[str, Any]) -> Problem | None:
    loc: tuple[str | int, ...] = tuple(error["loc"])
    is_key = len(loc) >= 3 and loc[-1] == "[key]"  # a map key's own error: (map, key, "[key]")
    if is_key:
        loc = loc[:-1]
    where = _path(loc)
    kind = error["type"]
    value: Any = error.get("input")
    ctx = error.get("ctx") or {}
    top = loc[0] if loc else ""
    if kind == "problem":
        return Problem(where, str(ctx.get("message") or error["msg"]))
    if kind == "missing":
        if loc == ("to",):
            return Problem(where, "is required: an array of at least one recipient")
        return Problem(where, "is required")
    if kind == "extra_forbidden":
        return Problem(where, _unknown_field(loc))
    if kind in _EXPECTED:
        return Problem(where, f"must be {_expected(kind, loc)}, not {_json_type(value)}")
    if kind == "string_too_long":
        if is_key:
            return Problem(where, f"keys are at most {ctx['max_length']} characters")
        return Problem(where, f"is {len(value)} characters; at most {ctx['max_length']}")
    if kind == "string_too_short":
        return Problem(where, "keys must not be empty" if is_key else "must not be empty")
    if kind == "too_short" and top in _MAILBOX_LISTS:
        return Problem(where, "must list at least one recipient")
    if kind == "too_long":
        if top in _KINDS:
            return None  # `_relations` reports the total across to, cc and bcc
        return Problem(where, f"at most {ctx['max_length']} entries; got {len(value)}")
    return Problem(where, str(error["msg"]))  # a check we did not word: pydantic's own text


_EXPECTED = {
    "string_type": "a string",
    "bool_type": "a boolean",
    "list_type": "an array",
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
}


def _expected(kind: str, loc: tuple[str | int, ...]) -> str:
    top = loc[0] if loc else ""
    if kind == "list_type":
        if top in _MAILBOX_LISTS:
            return "an array of {address, displayName} objects"
        return "an array of attachment objects"
    if kind in {"model_type", "model_attributes_type"}:
        return (
            "an {address, displayName} object" if top in _MAILBOX_LISTS else "an attachment object"
        )
    if kind == "dict_type":
        if top == "headers":
            return "an object of header name to string"
        return "an object of string to string"
    return _EXPECTED[kind]


def _unknown_field(loc: tuple[str | int, ...]) -> str:
    name = str(loc[-1])
    if len(loc) == 1:
        known: tuple[str, ...] = KNOWN_FIELDS
        expected = ""
    else:
        known = _MAILBOX_FIELDS if loc[0] in _MAILBOX_LISTS else _ATTACHMENT_FIELDS
        expected = "; expected " + ", ".join(known[:-1]) + " and " + known[-1]
    guess = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {guess[0]!r}?)" if guess else ""
    return "unknown field" + hint + expected


def _path(loc: tuple[str | int, ...]) -> str:
    where = ""
    for part in loc:
        where = f"{where}[{part}]" if isinstance(part, int) else _join(where, part)
    return where


def _join(where: str, key: str) -> str:
    return f"{where}.{_echo(key)}" if where else _echo(key)


# --- pass 3: what spans fields, on the document ------------------------------------------------


def _relations(doc: Mapping[str, Any], policy: SenderPolicy) -> tuple[str | None, list[Problem]]:
    """The sender, and the problems no single field shows.

    Reads the document, not the model, so it runs whatever else is wrong; it looks only at
    values that are valid on their own (anything else already has its problem).
    """
    problems: list[Problem] = []

    def add(where: str, message: str) -> None:
        problems.append(Problem(where, message))

    sender = _resolve_sender(doc, policy, add)

    total = sum(len(doc[kind]) for kind in _KINDS if isinstance(doc.get(kind), list))
    if total > MAX_RECIPIENTS:
        add("recipients", f"at most {MAX_RECIPIENTS} recipients across to, cc and bcc; got {total}")
    else:
        seen: dict[str, str] = {}
        for kind in _KINDS:
            for i, item in enumerate(_items(doc.get(kind))):
                parsed = _try_address(item.get("address"))
                if parsed is None:
                    continue
                where = f"{kind}[{i}]"
                key = addresses.canonical(parsed.address)
                if key in seen:
                    add(
                        f"{where}.address",
                        f"duplicates {seen[key]}: an address may appear once across to, cc and bcc",
                    )
                else:
                    seen[key] = where

    plain, html = doc.get("plainText"), doc.get("html")
    wrong_type = any(v is not None and not isinstance(v, str) for v in (plain, html))
    if not wrong_type and not any(isinstance(v, str) and v.strip() for v in (plain, html)):
        add("plainText", "give plainText or html; at least one must be non-empty")

    content_ids: dict[str, str] = {}
    for i, item in enumerate(_items(doc.get("attachments"))):
        content_id = item.get("contentId")
        if isinstance(content_id, str) and content_id:
            first = content_ids.setdefault(content_id.lower(), f"attachments[{i}]")
            if first != f"attachments[{i}]":
                add(f"attachments[{i}].contentId", f"duplicates {first}.contentId")

    headers = doc.get("headers")
    if isinstance(headers, dict) and len(headers) <= MAX_HEADERS:
        names: dict[str, str] = {}
        for name in headers:
            if _HEADER_NAME.fullmatch(name):
                first_name = names.setdefault(name.lower(), name)
                if first_name != name:
                    add(
                        _join("headers", name),
                        f"repeats the header {_echo(first_name)!r} (header names ignore case)",
                    )
    return sender, problems


def _items(value: object) -> list[Mapping[str, Any]]:
    """The objects of a list member; other entries (already refused) are skipped."""
    if not isinstance(value, list):
        return []
    return [item if isinstance(item, dict) else {} for item in value]


def _resolve_sender(
    doc: Mapping[str, Any], policy: SenderPolicy, add: Callable[[str, str], None]
) -> str | None:
    given_address = doc.get("senderAddress")
    username = doc.get("senderUsername")
    if given_address is not None and username is not None:
        add("senderUsername", "give senderAddress or senderUsername, not both")
        return None
    if given_address is not None:
        parsed = _try_address(given_address)
        if parsed is None:
            return None  # the model says why
        sender = parsed.address
    elif username is not None:
        if not isinstance(username, str) or not username or "@" in username:
            return None  # the model says why
        if not policy.sender_domain:
            add("senderUsername", "no SENDER_DOMAIN is configured; give senderAddress instead")
            return None
        try:
            sender = _parse_address(f"{username}@{policy.sender_domain}").address
        except _Bad as exc:
            add("senderUsername", f"{username}@{policy.sender_domain} is not valid: {exc}")
            return None
    else:
        if not policy.default_sender:
            add("senderAddress", "no sender given and no DEFAULT_SENDER configured")
            return None
        # The operator's own default is always allowed, allow-list or not.
        default = _try_address(policy.default_sender)
        return default.address if default else policy.default_sender
    if not _sender_allowed(sender, policy):
        add("senderAddress", f"{sender} is not an allowed sender")
    return sender


def _sender_allowed(sender: str, policy: SenderPolicy) -> bool:
    key = addresses.canonical(sender)
    domain = key.rpartition("@")[2]
    if policy.default_sender and key == addresses.canonical(policy.default_sender):
        return True
    if not policy.allowlist:
        return bool(policy.sender_domain) and domain == addresses.canonical_domain(
            policy.sender_domain or ""
        )
    for entry in policy.allowlist:
        allowed = addresses.canonical(entry)  # an address, or "@domain" for any sender there
        if key == allowed or (allowed.startswith("@") and domain == allowed[1:]):
            return True
    return False


# --- small helpers ----------------------------------------------------------------------------


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
