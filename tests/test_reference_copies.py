"""The reference material the tests use is kept in the repo (a user's clone has no ../shared);
where ../shared is present beside the repo, each copy must still equal its original."""

from __future__ import annotations

from pathlib import Path

from .conftest import REFERENCE_DIR

ORIGINALS = Path(__file__).resolve().parent.parent.parent / "shared" / "reference"


def test_copies_are_in_the_repo() -> None:
    assert len(list((REFERENCE_DIR / "acs-events").glob("*.json*"))) >= 10
    assert (
        REFERENCE_DIR / "acs-email-api" / "stable-2025-09-01-CommunicationServicesEmail.json"
    ).is_file()


def test_copies_equal_the_originals_where_present() -> None:
    copies = [p for p in REFERENCE_DIR.rglob("*") if p.is_file()]
    assert copies
    compared = 0
    for copy in copies:
        original = ORIGINALS / copy.relative_to(REFERENCE_DIR)
        if original.is_file():  # ../shared is there (CI, a developer's machine)
            assert copy.read_bytes() == original.read_bytes(), copy
            compared += 1
    assert compared in (0, len(copies))  # all compared, or no ../shared at all
