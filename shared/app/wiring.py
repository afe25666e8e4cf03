"""The composition root: builds each edge object once, on first use, and hands them to the use
cases. `function_app` asks this module for a use case; nothing below it looks anything up."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from shared.core.settings import get_settings

if TYPE_CHECKING:
    from shared.app.activity import Activity, ActivityFeed
    from shared.app.console import Console
    from shared.app.deliverability import Deliverability, MessageFacts
    from shared.app.lookups import Lookups
    from shared.app.monitoring import Monitoring
    from shared.app.operators import Operators
    from shared.app.outcome_feed import OutcomeFeed
    from shared.app.privacy import Privacy
    from shared.app.reports import ReportRecorder
    from shared.app.sending import Sending
    from shared.edge.acs import AcsEmail
    from shared.edge.activity import ActivityIndex
    from shared.edge.alert_log import AlertLog
    from shared.edge.clients import Clients
    from shared.edge.erasures import ErasureLog
    from shared.edge.inflight import InFlight
    from shared.edge.messages import MessageStore
    from shared.edge.outbox import Outbox
    from shared.edge.outcome_events import OutcomeLog
    from shared.edge.rollups import RollupStore
    from shared.edge.senders import SenderHealth
    from shared.edge.suppressions import SuppressionList


# --- edge objects (each creates its tables on first use) ------------------------------------


@cache
def clients() -> Clients:
    from shared.edge import telemetry
    from shared.edge.clients import Clients

    settings = get_settings()
    telemetry.configure(settings)  # first use of any Azure client: telemetry goes on with them
    return Clients(settings)


@cache
def message_store() -> MessageStore:
    from shared.edge.messages import MessageStore

    settings = get_settings()
    store = MessageStore(
        clients().table_service, settings.table_prefix, settings.row_cache_mb << 20
    )
    store.create_tables()
    return store


@cache
def suppression_list() -> SuppressionList:
    from shared.edge.suppressions import SuppressionList

    settings = get_settings()
    suppressions = SuppressionList(
        clients().table_service, settings.table_prefix, settings.address_hash_key.encode()
    )
    suppressions.create_table()
    return suppressions


@cache
def outbox() -> Outbox:
    from shared.edge.outbox import Outbox

    box = Outbox(
        clients().table_service,
        clients().send_queue,
        clients().payload_container,
        get_settings().table_prefix,
    )
    box.create()
    return box


@cache
def alert_log() -> AlertLog:
    from shared.edge.alert_log import AlertLog

    log = AlertLog(clients().table_service, get_settings().table_prefix, clients().alert_publisher)
    log.create_table()
    return log


@cache
def sender_health() -> SenderHealth:
    from shared.edge.senders import SenderHealth

    settings = get_settings()
    health = SenderHealth(
        clients().table_service,
        settings.table_prefix,
        settings.rate_policy(),
        settings.rate_counter_shards,
        alert_log(),
        settings.auto_pause,
    )
    health.create_tables()
    return health


@cache
def in_flight() -> InFlight:
    from shared.edge.inflight import InFlight

    tracker = InFlight(clients().table_service, get_settings().table_prefix)
    tracker.create_table()
    return tracker


@cache
def acs() -> AcsEmail:
    from shared.edge.acs import AcsEmail

    return AcsEmail(lambda: clients().email)


@cache
def rollups() -> RollupStore:
    from shared.edge.rollups import RollupStore

    settings = get_settings()
    store = RollupStore(
        clients().table_service,
        settings.table_prefix,
        settings.rollup_shards,
        settings.rollup_flush_seconds,
    )
    store.create_table()
    return store


@cache
def outcome_log() -> OutcomeLog | None:
    """None when OUTCOME_EVENTS_TOPIC_ENDPOINT is empty: outcome events are off."""
    settings = get_settings()
    if not settings.outcome_events_topic_endpoint:
        return None
    from shared.edge.outcome_events import OutcomeLog, build_publisher

    publisher = build_publisher(
        settings.outcome_events_topic_endpoint,
        settings.outcome_events_topic_key,
        lambda: clients().credential,
    )
    events = OutcomeLog(clients().table_service, settings.table_prefix, publisher)
    events.create_table()
    return events


@cache
def erasure_log() -> ErasureLog:
    from shared.edge.erasures import ErasureLog

    erasures = ErasureLog(clients().table_service, get_settings().table_prefix)
    erasures.create_table()
    return erasures


@cache
def activity_index() -> ActivityIndex:
    from shared.edge.activity import ActivityIndex

    index = ActivityIndex(clients().table_service, get_settings().table_prefix)
    index.create_tables()
    return index


# --- use cases ------------------------------------------------------------------------------


@cache
def message_facts() -> MessageFacts:
    from shared.app.deliverability import MessageFacts

    return MessageFacts(message_store())


@cache
def outcome_feed() -> OutcomeFeed:
    from shared.app.outcome_feed import OutcomeFeed

    settings = get_settings()
    shown = settings.address_policy(settings.outcome_event_addresses)
    return OutcomeFeed(outcome_log(), message_facts(), shown)


@cache
def reports() -> ReportRecorder:
    from shared.app.deliverability import DeliverabilityProjection
    from shared.app.reports import Projection, ReportRecorder

    # Told at once (the first on the report's own thread): the two that write first.
    projections: list[Projection] = [
        activity_feed(),
        outcome_feed(),
        DeliverabilityProjection(rollups(), message_facts()),
    ]
    return ReportRecorder(
        get_settings(),
        message_store(),
        suppression_list(),
        alert_log(),
        sender_health(),
        projections,
    )


@cache
def activity_feed() -> ActivityFeed:
    from shared.app.activity import ActivityFeed

    return ActivityFeed(activity_index(), message_store(), message_facts())


@cache
def activity() -> Activity:
    from shared.app.activity import Activity

    return Activity(activity_index())


@cache
def console() -> Console:
    from shared.app.console import Console

    return Console(Path(__file__).resolve().parents[2] / "console")


@cache
def deliverability() -> Deliverability:
    from shared.app.deliverability import Deliverability

    return Deliverability(get_settings(), rollups())


@cache
def sending() -> Sending:
    from shared.app.sending import Sending

    return Sending(
        get_settings(),
        message_store(),
        outbox(),
        suppression_list(),
        sender_health(),
        in_flight(),
        alert_log(),
        acs(),
        activity=activity_feed(),
        erasures=privacy(),
    )


@cache
def monitoring() -> Monitoring:
    from shared.app.monitoring import Monitoring

    return Monitoring(get_settings(), message_store(), in_flight(), alert_log(), sender_health())


@cache
def lookups() -> Lookups:
    from shared.app.lookups import Lookups

    return Lookups(message_store(), alert_log())


@cache
def operators() -> Operators:
    from shared.app.operators import Operators

    return Operators(
        suppression_list(), sender_health(), alert_log(), get_settings().address_policy()
    )


@cache
def privacy() -> Privacy:
    from shared.app.privacy import Privacy

    return Privacy(
        get_settings(),
        message_store(),
        suppression_list(),
        outbox(),
        alert_log(),
        erasure_log(),
        outcome_log(),
        activity_index(),
    )


def health() -> dict[str, str]:
    """The anonymous probe: no table is created, one short request is made."""
    from shared.app.monitoring import health
    from shared.edge.tables import ping

    return health(lambda: ping(clients().table_service))


def reset() -> None:
    """Forget every object (tests switch settings between cases)."""
    get_settings.cache_clear()
    for built in (
        clients, message_store, suppression_list, outbox, alert_log, sender_health,
        in_flight, acs, reports, sending, monitoring, lookups, operators,
        rollups, outcome_log, message_facts, outcome_feed, deliverability,
        activity_index, activity_feed, activity, console,
        erasure_log, privacy,
    ):  # fmt: skip
        built.cache_clear()
