"""Every app setting in one frozen dataclass, read once from the environment on first use."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from functools import cache
from typing import TYPE_CHECKING

from shared.core.errors import AppError

if TYPE_CHECKING:
    from shared.core.alerts import AddressPolicy
    from shared.core.rates import RatePolicy


class SettingsError(AppError):
    """Settings missing or unreadable; the message lists every offending name."""


@dataclass(frozen=True, slots=True)
class Settings:
    # One storage account for the Functions host, the send queue's trigger, and our tables, queue
    # and blobs, named by the host's own `AzureWebJobsStorage` settings: a connection string
    # (Azurite locally), or identity-based in Azure (`__accountName`, and `__clientId` for a
    # user-assigned identity). The service URIs default to the account name's public endpoints.
    storage_connection_string: str | None
    storage_account_name: str | None
    storage_client_id: str | None
    storage_table_uri: str | None
    storage_queue_uri: str | None
    storage_blob_uri: str | None
    table_prefix: str
    # Send pipeline (accept-then-send through the Storage queue SEND_QUEUE).
    payload_container: str
    acs_endpoint: str | None
    acs_connection_string: str | None
    acs_key: str | None
    default_sender: str | None
    sender_domain: str | None
    sender_allowlist: tuple[str, ...]
    send_rate_per_minute: int
    send_rate_per_hour: int
    idempotency_window_hours: int
    # Privacy: addresses appear in logs only when this is set.
    log_addresses: bool
    # Suppress addresses whose message was spam-filtered or quarantined (content, not address).
    suppress_on_spam: bool
    # Alert fan-out (CloudEvents to an Event Grid custom topic).
    alerts_topic_endpoint: str | None
    alerts_topic_key: str | None
    # Application Insights (the Functions host reads it too; Entra auth is the host's setting
    # APPLICATIONINSIGHTS_AUTHENTICATION_STRING, which the app does not need to read).
    appinsights_connection_string: str | None
    alert_addresses: str  # hash | plain | omit: how alerts carry the recipient address
    # The secret key of every address hash (alerts, events, erasure tombstones): HMAC-SHA256,
    # so a dictionary of likely addresses cannot reverse a hash. Changing it changes them all.
    address_hash_key: str
    # Sender reputation: hard-bounce and spam rates per sender domain over a sliding window.
    rate_window_minutes: int
    rate_min_volume: int  # recipients sent in the window before a rate is judged
    bounce_rate_warning: float  # percent
    bounce_rate_critical: float
    spam_rate_warning: float
    spam_rate_critical: float
    rate_counter_shards: int  # counter partitions per sender domain (see README scale math)
    auto_pause: bool  # hold new sends of a sender domain on a critical rate, until resumed
    # Delivery-stuck alert: no final report this long after ACS accepted the message.
    stuck_after_minutes: int
    # Temporary suppression after a streak of address-related soft bounces (0 turns it off).
    soft_bounce_streak: int
    soft_bounce_window_hours: int
    soft_bounce_suppress_hours: int
    # Status rows this instance wrote, kept in memory so the next report skips its read (0 = off).
    row_cache_mb: int
    # Deliverability reports: the delivery-time objective (`withinSlo`), and the rollup buffer
    # (each instance adds to memory and writes every ROLLUP_FLUSH_SECONDS; README: rollups).
    delivery_slo_minutes: int
    rollup_flush_seconds: int
    rollup_shards: int  # rollup partitions per row key (one picked per instance)
    # Outcome events for apps (CloudEvents to an Event Grid topic; off when the endpoint is empty).
    outcome_events_topic_endpoint: str | None
    outcome_events_topic_key: str | None
    outcome_event_addresses: str  # hash | plain | omit, as ALERT_ADDRESSES
    # Retention: message data, alerts, quarantine and event logs older than this many days are
    # deleted by the hourly purge (README: security and data); the suppression list is kept.
    retention_days: int

    def address_policy(self, mode: str | None = None) -> AddressPolicy:
        """How alerts (ALERT_ADDRESSES, by default) or another feed show an address."""
        from shared.core.alerts import AddressMode, AddressPolicy

        shown = AddressMode(mode or self.alert_addresses)
        return AddressPolicy(shown, self.address_hash_key.encode())

    def rate_policy(self) -> RatePolicy:
        from shared.core.rates import RatePolicy, Thresholds

        return RatePolicy(
            window=timedelta(minutes=self.rate_window_minutes),
            min_volume=self.rate_min_volume,
            bounce=Thresholds(self.bounce_rate_warning, self.bounce_rate_critical),
            spam=Thresholds(self.spam_rate_warning, self.spam_rate_critical),
        )

    @property
    def tables_configured(self) -> bool:
        return bool(self.storage_connection_string or self.storage_account_name)


_TRUE = {"1", "true", "yes", "on"}
# Removed: the send queue went to this account while the queue trigger listened on
# AzureWebJobsStorage, so with two accounts every send stayed `accepted` forever.
REMOVED_STORAGE_SETTINGS = ("EMAIL_STORAGE_CONNECTION_STRING", "EMAIL_STORAGE_ACCOUNT")
# The only value the Functions host knows for `<connection>__credential`.
_MANAGED_IDENTITY = "managedidentity"
# Fixed, because the queue trigger's binding names it (function_app.py).
SEND_QUEUE = "email-send"


def _int(
    env: Mapping[str, str], name: str, default: int, problems: list[str], minimum: int = 1
) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        problems.append(f"{name} must be an integer, got {raw!r}")
        return default
    if value < minimum:
        problems.append(f"{name} must be at least {minimum}, got {value}")
    return value


def _percent(env: Mapping[str, str], name: str, default: float, problems: list[str]) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        problems.append(f"{name} must be a number (percent), got {raw!r}")
        return default
    if not 0 < value <= 100:
        problems.append(f"{name} must be a percentage above 0 and at most 100, got {value}")
    return value


def _opt(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


@dataclass(frozen=True, slots=True)
class _Storage:
    connection_string: str | None = None
    account_name: str | None = None
    client_id: str | None = None
    table_uri: str | None = None
    queue_uri: str | None = None
    blob_uri: str | None = None


def _storage(env: Mapping[str, str], problems: list[str]) -> _Storage:
    """The host's storage settings, so the queue trigger and our outbox use one account."""
    removed = [name for name in REMOVED_STORAGE_SETTINGS if _opt(env, name)]
    if removed:
        problems.append(
            f"{' and '.join(removed)} no longer exist: the send queue's trigger listens on the"
            " account named by AzureWebJobsStorage, so the outbox must write to that same"
            " account; set AzureWebJobsStorage (a connection string) or"
            " AzureWebJobsStorage__accountName (managed identity) instead"
        )
    conn = _opt(env, "AzureWebJobsStorage")
    account = _opt(env, "AzureWebJobsStorage__accountName")
    credential = _opt(env, "AzureWebJobsStorage__credential")
    client_id = _opt(env, "AzureWebJobsStorage__clientId")
    uri_settings = {
        "table": "AzureWebJobsStorage__tableServiceUri",
        "queue": "AzureWebJobsStorage__queueServiceUri",
        "blob": "AzureWebJobsStorage__blobServiceUri",
    }
    uris = {service: _opt(env, name) for service, name in uri_settings.items()}
    if conn:
        if account:
            problems.append(
                "set AzureWebJobsStorage (connection string) or AzureWebJobsStorage__accountName"
                " (managed identity), not both"
            )
        return _Storage(connection_string=conn)
    if not account:
        problems.append(
            "storage is not set: set AzureWebJobsStorage (a connection string, e.g."
            " UseDevelopmentStorage=true for Azurite) or AzureWebJobsStorage__accountName"
            " (the account's name, for managed identity)"
        )
        return _Storage()
    if credential is not None and credential.lower() != _MANAGED_IDENTITY:
        problems.append(
            f"AzureWebJobsStorage__credential must be {_MANAGED_IDENTITY}, got {credential!r}"
        )
    if client_id and credential is None:
        # The host ignores __clientId without __credential: the trigger would then use another
        # identity than our clients.
        problems.append(
            "AzureWebJobsStorage__clientId needs AzureWebJobsStorage__credential=managedidentity"
        )
    for service, uri in uris.items():
        if uri and not uri.startswith("https://"):
            problems.append(f"{uri_settings[service]} must be an https URL, got {uri!r}")
    default = {service: f"https://{account}.{service}.core.windows.net" for service in uris}
    return _Storage(
        account_name=account,
        client_id=client_id,
        table_uri=uris["table"] or default["table"],
        queue_uri=uris["queue"] or default["queue"],
        blob_uri=uris["blob"] or default["blob"],
    )


MIN_SECRET_LENGTH = 32


def _secret(env: Mapping[str, str], name: str, problems: list[str]) -> str:
    value = env.get(name, "").strip()
    if len(value) < MIN_SECRET_LENGTH:
        problems.append(
            f"{name} must be a secret of at least {MIN_SECRET_LENGTH} characters (make run "
            "generates one locally; in Azure it is a Key Vault reference)"
        )
    return value


def load_settings(env: Mapping[str, str]) -> Settings:
    """Read settings from a mapping; raises SettingsError naming every bad or missing value."""
    problems: list[str] = []
    storage = _storage(env, problems)
    allow = tuple(
        a.strip().lower() for a in env.get("SENDER_ALLOWLIST", "").split(",") if a.strip()
    )
    settings = Settings(
        storage_connection_string=storage.connection_string,
        storage_account_name=storage.account_name,
        storage_client_id=storage.client_id,
        storage_table_uri=storage.table_uri,
        storage_queue_uri=storage.queue_uri,
        storage_blob_uri=storage.blob_uri,
        table_prefix=env.get("TABLE_PREFIX", "").strip() or "Email",
        payload_container=env.get("PAYLOAD_CONTAINER", "").strip() or "email-payloads",
        acs_endpoint=_opt(env, "ACS_ENDPOINT"),
        acs_connection_string=_opt(env, "ACS_CONNECTION_STRING"),
        acs_key=_opt(env, "ACS_KEY"),
        default_sender=_opt(env, "DEFAULT_SENDER"),
        sender_domain=_opt(env, "SENDER_DOMAIN"),
        sender_allowlist=allow,
        send_rate_per_minute=_int(env, "SEND_RATE_PER_MINUTE", 30, problems),
        send_rate_per_hour=_int(env, "SEND_RATE_PER_HOUR", 100, problems),
        idempotency_window_hours=_int(env, "IDEMPOTENCY_WINDOW_HOURS", 24, problems),
        log_addresses=env.get("LOG_ADDRESSES", "").strip().lower() in _TRUE,
        suppress_on_spam=env.get("SUPPRESS_ON_SPAM", "").strip().lower() in _TRUE,
        alerts_topic_endpoint=_opt(env, "ALERTS_TOPIC_ENDPOINT"),
        alerts_topic_key=_opt(env, "ALERTS_TOPIC_KEY"),
        appinsights_connection_string=_opt(env, "APPLICATIONINSIGHTS_CONNECTION_STRING"),
        alert_addresses=env.get("ALERT_ADDRESSES", "").strip().lower() or "hash",
        address_hash_key=_secret(env, "ADDRESS_HASH_KEY", problems),
        rate_window_minutes=_int(env, "RATE_WINDOW_MINUTES", 60, problems),
        rate_min_volume=_int(env, "RATE_MIN_VOLUME", 100, problems),
        bounce_rate_warning=_percent(env, "BOUNCE_RATE_WARNING", 5.0, problems),
        bounce_rate_critical=_percent(env, "BOUNCE_RATE_CRITICAL", 10.0, problems),
        spam_rate_warning=_percent(env, "SPAM_RATE_WARNING", 0.1, problems),
        spam_rate_critical=_percent(env, "SPAM_RATE_CRITICAL", 0.5, problems),
        rate_counter_shards=_int(env, "RATE_COUNTER_SHARDS", 4, problems),
        auto_pause=env.get("AUTO_PAUSE", "").strip().lower() in _TRUE,
        stuck_after_minutes=_int(env, "STUCK_AFTER_MINUTES", 30, problems),
        soft_bounce_streak=_int(env, "SOFT_BOUNCE_STREAK", 3, problems, minimum=0),
        soft_bounce_window_hours=_int(env, "SOFT_BOUNCE_WINDOW_HOURS", 72, problems),
        soft_bounce_suppress_hours=_int(env, "SOFT_BOUNCE_SUPPRESS_HOURS", 24, problems),
        row_cache_mb=_int(env, "ROW_CACHE_MB", 32, problems, minimum=0),
        delivery_slo_minutes=_int(env, "DELIVERY_SLO_MINUTES", 5, problems),
        rollup_flush_seconds=_int(env, "ROLLUP_FLUSH_SECONDS", 5, problems),
        rollup_shards=_int(env, "ROLLUP_SHARDS", 4, problems),
        outcome_events_topic_endpoint=_opt(env, "OUTCOME_EVENTS_TOPIC_ENDPOINT"),
        outcome_events_topic_key=_opt(env, "OUTCOME_EVENTS_TOPIC_KEY"),
        outcome_event_addresses=env.get("OUTCOME_EVENT_ADDRESSES", "").strip().lower() or "hash",
        retention_days=_int(env, "RETENTION_DAYS", 90, problems),
    )
    if settings.bounce_rate_warning > settings.bounce_rate_critical:
        problems.append("BOUNCE_RATE_WARNING must not be above BOUNCE_RATE_CRITICAL")
    if settings.spam_rate_warning > settings.spam_rate_critical:
        problems.append("SPAM_RATE_WARNING must not be above SPAM_RATE_CRITICAL")
    if settings.rate_counter_shards > 64:
        problems.append("RATE_COUNTER_SHARDS must be at most 64")
    if settings.alert_addresses not in {"hash", "plain", "omit"}:
        problems.append("ALERT_ADDRESSES must be hash, plain or omit")
    if settings.rollup_shards > 16:
        problems.append("ROLLUP_SHARDS must be at most 16")
    if settings.outcome_event_addresses not in {"hash", "plain", "omit"}:
        problems.append("OUTCOME_EVENT_ADDRESSES must be hash, plain or omit")
    if problems:
        raise SettingsError("invalid settings: " + "; ".join(problems))
    return settings


@cache
def get_settings() -> Settings:
    return load_settings(os.environ)
