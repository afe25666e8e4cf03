"""One canonical address form: IDN and case spellings of one mailbox share one key everywhere."""

from __future__ import annotations

import pytest
from email_validator import validate_email
from hypothesis import given
from hypothesis import strategies as st

from shared.core import addresses
from shared.core.errors import InvalidInput
from tests.test_send_validation import _body, _parse, _to

# (given, canonical key): every spelling of one mailbox maps to one key.
CANONICAL = [
    ("user@bücher.example", "user@xn--bcher-kva.example"),
    ("USER@xn--bcher-kva.example", "user@xn--bcher-kva.example"),
    ("User@BÜCHER.Example", "user@xn--bcher-kva.example"),
    ("user@xn--BCHER-KVA.EXAMPLE", "user@xn--bcher-kva.example"),
    ("  user@bücher.example ", "user@xn--bcher-kva.example"),
    ("Alice@Example.ORG", "alice@example.org"),
    ("x@例え.テスト", "x@xn--r8jz45g.xn--zckzah"),
    ("x@例え。テスト", "x@xn--r8jz45g.xn--zckzah"),  # an ideographic full stop is a dot
    ("a@ｅｘａｍｐｌｅ.com", "a@example.com"),  # fullwidth letters map to ASCII (UTS #46)
    # IDNA 2008, not the stdlib's IDNA 2003 (which makes "strasse"): ß is its own letter.
    ("a@straße.de", "a@xn--strae-oqa.de"),
    ("Bounce@Simulator.test", "bounce@simulator.test"),
    ("o'brien+tag@sub.example.co.uk", "o'brien+tag@sub.example.co.uk"),
]


@pytest.mark.parametrize(("given_address", "key"), CANONICAL)
def test_canonical(given_address: str, key: str) -> None:
    assert addresses.canonical(given_address) == key
    assert addresses.canonical(key) == key


@pytest.mark.parametrize(
    "address", ["user@bücher.example", "USER@xn--bcher-kva.example", " Bob@Example.org "]
)
def test_display_keeps_the_form_given(address: str) -> None:
    assert addresses.display(address) == address.strip()


def test_the_suppression_bypass_is_closed() -> None:
    """An operator suppresses the Unicode spelling; the send path must find it."""
    suppressed_by_operator = addresses.canonical("user@bücher.example")
    for spelling in ("user@bücher.example", "USER@xn--bcher-kva.example", "User@BÜCHER.example"):
        [recipient] = _parse(_body(to=_to(spelling))).recipients
        assert recipient.key == suppressed_by_operator
        # ...and an ACS report names the A-label form we sent.
        assert addresses.canonical(recipient.address) == suppressed_by_operator


@pytest.mark.parametrize("domain", ["bücher.example", "例え.テスト", "straße.de", "ÉCOLE.fr"])
def test_canonical_domain_is_the_one_email_validator_sends(domain: str) -> None:
    checked = validate_email(f"a@{domain}", check_deliverability=False, test_environment=True)
    assert addresses.canonical_domain(domain) == checked.ascii_domain
    [recipient] = _parse(_body(to=_to(f"a@{domain}"))).recipients
    assert recipient.address == f"a@{checked.ascii_domain}"


@pytest.mark.parametrize("broken", ["bad@a_ü.org", "noat", "x@ü" + "ü" * 70 + ".org", "a@"])
def test_canonical_is_total(broken: str) -> None:
    """Reports and operators can hold what the send path refuses: a key, not a crash."""
    key = addresses.canonical(broken)
    assert key == key.lower()
    assert addresses.canonical(key) == key


@given(st.text(max_size=40))
def test_canonical_is_idempotent(text: str) -> None:
    once = addresses.canonical(text)
    assert addresses.canonical(once) == once


def test_duplicate_across_idn_and_case_spellings() -> None:
    doc = _body(to=_to("Ann@Bücher.example"), bcc=_to("ann@XN--BCHER-KVA.example"))
    with pytest.raises(InvalidInput) as caught:
        _parse(doc)
    assert [p.field for p in caught.value.problems] == ["bcc[0].address"]
