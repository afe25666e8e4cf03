"""One canonical form of an email address for every comparison and key, and its display form.

Why: an address reaches us in several spellings of one mailbox: `user@bücher.example` from an
operator, `USER@xn--bcher-kva.example` in an ACS report (we send ACS A-labels). Comparing the
raw strings let a suppressed IDN address through the send path. Every place that compares
addresses or keys rows by address (suppression list, delivery events, the message store, the
send path's duplicate check) calls `canonical`; what is shown to people keeps `display`.

The domain goes to A-labels the way email-validator does it on the send path (UTS #46
non-transitional mapping, then IDNA 2008 per label), so `ß` stays `ß` (xn--zca) rather than
becoming `ss` as the stdlib's IDNA 2003 codec would make it. The local part is kept as given
and only lower-cased: RFC 5321 lets it be case-sensitive, but no mailbox provider we know of
uses that, and support searches by what the user typed.
"""

from __future__ import annotations


def canonical(address: str) -> str:
    """The comparison key: local part as given + domain as A-labels, all lower-cased.

    Idempotent, and total: a domain that is not a valid international name (it can only come
    from a report or an operator, the send path refuses it) is just lower-cased.
    """
    local, at, domain = address.strip().rpartition("@")
    if not at:
        return address.strip().lower()
    return f"{local}@{canonical_domain(domain)}".lower()


def canonical_domain(domain: str) -> str:
    """The domain as lower-case A-labels (`bücher.example` → `xn--bcher-kva.example`)."""
    domain = domain.strip()
    if domain.isascii():  # LDH names and A-labels: only the case can differ
        return domain.lower()
    import idna  # lazily: only non-ASCII domains pay for its tables

    try:
        mapped = idna.uts46_remap(domain, std3_rules=False, transitional=False)
        return ".".join(idna.alabel(label).decode("ascii") for label in mapped.split("."))
    except (idna.IDNAError, UnicodeError, ValueError):
        return domain.lower()


def display(address: str) -> str:
    """The address in the form it was given (trimmed), for replies, lists and alerts."""
    return address.strip()
