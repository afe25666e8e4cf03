"""Every app setting in one frozen dataclass, read once from the environment on first use."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache

from .errors import AppError


class SettingsError(AppError):
    """Settings missing or unreadable; the message lists every offending name."""


@dataclass(frozen=True, slots=True)
class Settings:
    # Storage for our tables, queue and blobs. A connection string (Azurite locally), or an
    # account name used with managed identity (DefaultAzureCredential) in Azure.
    storage_connection_string: str | None
    storage_account_name: str | None
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
    alert_addresses: str  # hash | plain | omit: how alerts carry the recipient address

    @property
    def tables_configured(self) -> bool:
        return bool(self.storage_connection_string or self.storage_account_name)


_TRUE = {"1", "true", "yes", "on"}
# Fixed, because the queue trigger's binding names it (function_app.py).
SEND_QUEUE = "email-send"


def _int(env: Mapping[str, str], name: str, default: int, problems: list[str]) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        problems.append(f"{name} must be an integer, got {raw!r}")
        return default
    if value <= 0:
        problems.append(f"{name} must be positive, got {value}")
    return value


def _opt(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def load_settings(env: Mapping[str, str]) -> Settings:
    """Read settings from a mapping; raises SettingsError naming every bad or missing value."""
    problems: list[str] = []
    conn = _opt(env, "EMAIL_STORAGE_CONNECTION_STRING") or _opt(env, "AzureWebJobsStorage")
    account = _opt(env, "EMAIL_STORAGE_ACCOUNT")
    if not conn and not account:
        problems.append(
            "set EMAIL_STORAGE_CONNECTION_STRING (or AzureWebJobsStorage) or EMAIL_STORAGE_ACCOUNT"
        )
    allow = tuple(
        a.strip().lower() for a in env.get("SENDER_ALLOWLIST", "").split(",") if a.strip()
    )
    settings = Settings(
        storage_connection_string=conn,
        storage_account_name=account,
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
        alert_addresses=env.get("ALERT_ADDRESSES", "").strip().lower() or "hash",
    )
    if settings.alert_addresses not in {"hash", "plain", "omit"}:
        problems.append("ALERT_ADDRESSES must be hash, plain or omit")
    if problems:
        raise SettingsError("invalid settings: " + "; ".join(problems))
    return settings


@cache
def get_settings() -> Settings:
    return load_settings(os.environ)
