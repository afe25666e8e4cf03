"""Message ids we mint carry a keyed tag; ids from an Idempotency-Key are name-based."""

from __future__ import annotations

import uuid

from shared.core import message_ids

KEY = b"test-key"


def test_minted_ids_are_ours_in_any_spelling_and_foreign_ids_are_not() -> None:
    mid = message_ids.new_id(KEY)
    assert uuid.UUID(mid).version == 8
    assert message_ids.is_ours(KEY, mid)
    assert message_ids.is_ours(KEY, f" {mid.upper()} ")
    assert not message_ids.is_ours(b"another-key", mid)
    assert not message_ids.is_ours(KEY, str(uuid.uuid4()))
    assert not message_ids.is_ours(KEY, "not-a-uuid")
    assert message_ids.new_id(KEY) != mid


def test_an_idempotency_key_always_names_the_same_message() -> None:
    first = message_ids.for_key(KEY, "order-42")
    assert first == message_ids.for_key(KEY, "order-42")
    assert message_ids.is_ours(KEY, first)
    assert first != message_ids.for_key(KEY, "order-43")
    assert first != message_ids.for_key(KEY, "order-42", epoch=1)
    assert first != message_ids.for_key(b"another-key", "order-42")


def test_the_ids_our_accept_mints_are_known_as_ours(send_env: dict[str, str]) -> None:
    """So a delivery report of our own send takes the known-row path on any instance."""
    import json

    from shared.app import wiring
    from shared.core.settings import get_settings

    wiring.reset()
    mail = {"to": [{"address": "x@example.com"}], "subject": "s", "plainText": "t"}
    reply = wiring.sending().accept(json.dumps(mail).encode(), "application/json", None, "http://h")
    key = get_settings().address_hash_key.encode()
    assert message_ids.is_ours(key, reply.body["messageId"])
