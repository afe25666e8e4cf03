"""Problem documents: every `type` has its section in docs/problems.md (and back), the bodies
fit openapi.yaml's Problem schema, and `instance` is a valid URI without the query string."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import azure.functions as func
import jsonschema_rs
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from shared import web
from shared.core.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    Problem,
    ProblemType,
    Transient,
    UnsupportedMediaType,
)

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "problems.md"
SPEC = yaml.safe_load((ROOT / "openapi.yaml").read_text())
# The host, not the app, answers 401: no code path writes it, but the doc explains it.
HOST_ONLY = {ProblemType.UNAUTHORIZED}
URI = jsonschema_rs.Draft202012Validator({"format": "uri"}, validate_formats=True)
PROBLEM_SCHEMA = jsonschema_rs.Draft202012Validator(
    {"$ref": "#/components/schemas/Problem", "components": SPEC["components"]},
    validate_formats=True,
)


def _anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    text = heading.strip().lower().replace(" ", "-")
    return re.sub(r"[^\w\- ]", "", text)


def _sections() -> dict[str, str]:
    parts = re.split(r"^## (.+)$", DOC.read_text(encoding="utf-8"), flags=re.MULTILINE)
    return {_anchor(title): body for title, body in zip(parts[1::2], parts[2::2], strict=True)}


def _slug_expressions() -> list[tuple[str, ast.expr]]:
    """Every expression the code passes as a problem's slug: `type_slug=` keywords and
    defaults, and the third argument (or `slug=`) of `problem_response` calls."""
    found: list[tuple[str, ast.expr]] = []
    for path in [ROOT / "function_app.py", *sorted((ROOT / "shared").rglob("*.py"))]:
        where = str(path.relative_to(ROOT))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.keyword) and node.arg == "type_slug":
                found.append((where, node.value))
            elif isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") == "type_slug":
                assert node.value is not None, where
                found.append((where, node.value))
            elif isinstance(node, ast.Call) and ast.unparse(node.func).endswith("problem_response"):
                slug = [k.value for k in node.keywords if k.arg == "slug"] + node.args[2:3]
                found += [(where, s) for s in slug]
    return found


def test_the_doc_has_exactly_one_section_per_problem_type() -> None:
    assert set(_sections()) == {t.value for t in ProblemType}


@pytest.mark.parametrize("kind", list(ProblemType))
def test_each_section_says_what_it_means_how_to_fix_it_and_whether_to_retry(
    kind: ProblemType,
) -> None:
    body = _sections()[kind.value]
    assert re.search(r"\*\*(4|5)\d\d ", body), "names its HTTP status"
    for part in ("What it means", "How to fix the request", "Retry?"):
        assert part in body, f"{kind}: no {part!r}"


def test_every_slug_in_the_code_is_a_problem_type_and_every_type_is_emitted() -> None:
    expressions = _slug_expressions()
    assert len(expressions) >= 7  # the four subclasses, the default, 503 and 500
    used = set()
    for where, expr in expressions:
        text = ast.unparse(expr)
        if text in {"slug", "exc.type_slug"}:  # passed through, typed ProblemType
            continue
        assert text.startswith("ProblemType."), f"{where}: slug {text} is not a ProblemType"
        used.add(ProblemType[text.removeprefix("ProblemType.")])
    assert used | HOST_ONLY == set(ProblemType)
    assert not used & HOST_ONLY


def test_the_spec_lists_exactly_the_types_the_app_writes() -> None:
    listed = set(SPEC["components"]["schemas"]["Problem"]["properties"]["type"]["enum"])
    assert listed == {web.PROBLEM_BASE + t for t in set(ProblemType) - HOST_ONLY}


def _request(url: str) -> func.HttpRequest:
    return func.HttpRequest("GET", url, params={}, route_params={}, body=b"")


def _raise(exc: Exception) -> Callable[[], Any]:
    def call() -> Any:
        raise exc

    return call


ERRORS = [
    InvalidInput("The request is invalid", [Problem("limit", "1 to 100"), Problem("", "x")]),
    NotFound("No message with id 'x' is known"),
    Conflict("Every recipient is suppressed", [Problem("recipients[0]", "since 2025")]),
    PayloadTooLarge("Too large", [Problem("", "the body is 15000000 bytes")]),
    UnsupportedMediaType("Send application/json"),
    Transient("storage timed out"),
    RuntimeError("a bug"),
]


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: type(e).__name__)
def test_every_answer_fits_the_problem_schema_and_links_a_documented_section(
    error: Exception,
) -> None:
    resp = web.reply(_request("https://app.example/api/emails/x?code=SECRET"), _raise(error))
    body = json.loads(resp.get_body())
    assert resp.mimetype == "application/problem+json"
    PROBLEM_SCHEMA.validate(body)
    assert body["status"] == resp.status_code
    assert body["type"].removeprefix(web.PROBLEM_BASE) in _sections()
    assert body["instance"] == "https://app.example/api/emails/x"
    if isinstance(error, Transient):
        assert resp.headers["Retry-After"] == "5"


HOSTILE_URLS = [
    # (request URL as the host hands it over, expected instance)
    ("http://127.0.0.1:7071/api/emails/a b", "http://127.0.0.1:7071/api/emails/a%20b"),
    ("http://h/api/emails/100%", "http://h/api/emails/100%25"),
    ("http://h/api/emails/%41%zz", "http://h/api/emails/%41%25zz"),  # keeps a valid escape
    ("http://h/api/emails/\ud800", "http://h/api/emails/%ED%A0%80"),  # lone surrogate
    ("http://h/api/recipients/jöhn@bücher.example/emails",
     "http://h/api/recipients/j%C3%B6hn@b%C3%BCcher.example/emails"),
    ("http://h/api/emails/📧", "http://h/api/emails/%F0%9F%93%A7"),
    ("http://h/api/emails/\x00\r\n\x1b", "http://h/api/emails/%00%0D%0A%1B"),
    ("http://h/api/emails/a#b", "http://h/api/emails/a%23b"),  # a decoded %23
    ("http://h/api/emails/[x]{y}|\\^`\"<>", "http://h/api/emails/%5Bx%5D%7By%7D%7C%5C%5E%60%22%3C%3E"),
    ("http://h/api/emails/a?code=SECRET", "http://h/api/emails/a"),
    ("http://h/api/emails/a?b/c?code=SECRET", "http://h/api/emails/a"),  # a decoded %3F first
    ("http://h/api/explain?code=SECRET&message=x y", "http://h/api/explain"),
    ("http://[::1]:7071/api/health", "http://[::1]:7071/api/health"),
    ("http://hé st:abc/api/x", "http://h%C3%A9%20st%3Aabc/api/x"),  # a hostile Host header
    ("https://app.example/api/emails/0b6f5c2e",
     "https://app.example/api/emails/0b6f5c2e"),  # nothing to change: unchanged
]  # fmt: skip


@pytest.mark.parametrize(("url", "instance"), HOSTILE_URLS)
def test_instance_is_the_percent_encoded_url_without_its_query(url: str, instance: str) -> None:
    resp = web.reply(_request(url), _raise(NotFound("nothing here")))
    raw = resp.get_body()
    body = json.loads(raw)
    assert body["instance"] == instance
    assert URI.is_valid(body["instance"])
    assert b"SECRET" not in raw
    PROBLEM_SCHEMA.validate(body)


# Any code point (lone surrogates often), and what a URI path must escape or may keep.
PATH_CHARS = st.one_of(
    st.characters(exclude_categories=()),
    st.characters(categories=["Cs"]),
    st.sampled_from(" #[]{}|\\^`\"<>\x00\r\n@:!$&'()*+,;=/."),
)


@given(path=st.text(PATH_CHARS))
def test_any_path_gives_a_valid_uri_that_decodes_back_to_it(path: str) -> None:
    path = path.replace("%", "").split("?", 1)[0]  # a "%" might start a kept escape
    instance = web.problem_instance("https://app.example/api/" + path)
    assert instance is not None
    assert URI.is_valid(instance)
    decoded = unquote(instance.removeprefix("https://app.example/api/"), errors="surrogatepass")
    assert decoded == path


def test_a_lone_surrogate_in_an_answer_is_escaped_not_a_500() -> None:
    """Found by tests/test_fuzz.py: an operator's reason "\\ud800" was stored, and every later
    answer about that address failed to encode (the host's bare 500)."""
    stored = {"reason": "manual: \ud800", "operator": "a\udfffb", "ok": "é📧"}
    resp = web.reply(_request("http://h/api/suppressions/a@b.example"), lambda: stored)
    assert resp.status_code == 200
    assert json.loads(resp.get_body().decode("utf-8")) == stored
    problem = InvalidInput("Bad", [Problem("\ud800", "unknown field")])
    resp = web.reply(_request("http://h/api/x"), _raise(problem))
    assert json.loads(resp.get_body().decode("utf-8"))["errors"][0]["field"] == "\ud800"
