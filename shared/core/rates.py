"""Sender reputation rules (pure): hard-bounce and spam rates per sender domain → alert levels.

Rates are SES-style: numerator over the recipients handed to ACS in the same sliding window
(hard bounces / sent; spam-filtered + quarantined / sent). Below a minimum volume nothing is
judged: 1 bounce in 3 sends is noise, not a reputation problem.

One episode per condition: a level only rises while it lasts (ok → warning → critical, one alert
per step) and ends with one `recovered` alert when the rate falls to RECOVER_FRACTION of the
warning threshold (hysteresis, so a rate hovering at the threshold cannot flap alerts). An
episode that ended less than one window ago is not announced again at the same level.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

RECOVER_FRACTION = 0.8


class Metric(StrEnum):
    BOUNCE = "bounce"  # hard bounces / recipients sent
    SPAM = "spam"  # spam-filtered + quarantined / recipients sent


class Level(StrEnum):
    OK = "ok"  # below the thresholds, or not enough volume to judge
    WARNING = "warning"  # at or above the warning threshold
    CRITICAL = "critical"  # at or above the critical threshold

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Level.OK: 0, Level.WARNING: 1, Level.CRITICAL: 2}


@dataclass(frozen=True, slots=True)
class Thresholds:
    warning: float  # percent
    critical: float  # percent


@dataclass(frozen=True, slots=True)
class RatePolicy:
    window: timedelta
    min_volume: int
    bounce: Thresholds
    spam: Thresholds

    def thresholds(self, metric: Metric) -> Thresholds:
        return self.bounce if metric is Metric.BOUNCE else self.spam

    @property
    def bucket_minutes(self) -> int:
        """Counter bucket width: a window always spans at most ~60 buckets."""
        return max(1, int(self.window.total_seconds() // 60) // 60)


@dataclass(frozen=True, slots=True)
class Counts:
    sent: int = 0  # recipients handed to ACS (or, for mail not sent through us, reported)
    hard: int = 0  # hard bounces
    spam: int = 0  # spam-filtered + quarantined

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.sent + other.sent, self.hard + other.hard, self.spam + other.spam)

    def numerator(self, metric: Metric) -> int:
        return self.hard if metric is Metric.BOUNCE else self.spam

    def rate(self, metric: Metric) -> float | None:
        """Percent, or None when nothing was sent in the window."""
        if self.sent <= 0:
            return None
        return 100.0 * self.numerator(metric) / self.sent


@dataclass(frozen=True, slots=True)
class Episode:
    """The stored state of one (domain, metric): its level, and what was last announced."""

    level: Level = Level.OK
    since: datetime | None = None  # when the current level (or the last recovery) was reached
    announced: bool = False  # whether this episode was announced (then so is its recovery)
    announced_level: Level = Level.OK  # the level last announced ...
    announced_at: datetime | None = None  # ... and when

    def to_json(self) -> dict[str, Any]:
        return {
            "level": self.level.value,
            "since": self.since.isoformat() if self.since else None,
            "announced": self.announced,
            "announcedLevel": self.announced_level.value,
            "announcedAt": self.announced_at.isoformat() if self.announced_at else None,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Episode:
        if not data:
            return cls()
        since, announced_at = data.get("since"), data.get("announcedAt")
        return cls(
            level=Level(data.get("level") or Level.OK),
            since=datetime.fromisoformat(since) if since else None,
            announced=bool(data.get("announced")),
            announced_level=Level(data.get("announcedLevel") or Level.OK),
            announced_at=datetime.fromisoformat(announced_at) if announced_at else None,
        )

    def ended(self, now: datetime) -> Episode:
        return Episode(Level.OK, now, False, self.announced_level, self.announced_at)


class Transition(StrEnum):
    NONE = "none"  # nothing to announce (the episode may still have changed: compare them)
    RAISED = "raised"  # the level rose: announce it
    RECOVERED = "recovered"  # an announced episode ended: announce recovery


def level_for(rate: float | None, thresholds: Thresholds) -> Level:
    if rate is None:
        return Level.OK
    if rate >= thresholds.critical:
        return Level.CRITICAL
    if rate >= thresholds.warning:
        return Level.WARNING
    return Level.OK


def evaluate(
    episode: Episode, counts: Counts, metric: Metric, policy: RatePolicy, now: datetime
) -> tuple[Episode, Transition]:
    """The episode after looking at this window's counts, and what (if anything) to announce."""
    thresholds = policy.thresholds(metric)
    if counts.sent < policy.min_volume:
        return episode, Transition.NONE  # too little volume to judge either way
    rate = counts.rate(metric)
    measured = level_for(rate, thresholds)
    if episode.level is not Level.OK:
        if rate is not None and rate < thresholds.warning * RECOVER_FRACTION:
            return episode.ended(now), (
                Transition.RECOVERED if episode.announced else Transition.NONE
            )
        if measured.rank > episode.level.rank:
            return _raised(episode, measured, now, policy)
        return episode, Transition.NONE
    if measured is Level.OK:
        return episode, Transition.NONE
    return _raised(episode, measured, now, policy)


def _raised(
    episode: Episode, level: Level, now: datetime, policy: RatePolicy
) -> tuple[Episode, Transition]:
    # A level no worse than one announced less than a window ago (it recovered and came
    # straight back) is not announced again: one alert per condition per window.
    last = episode.announced_at
    if (
        last is not None
        and now - last < policy.window
        and level.rank <= episode.announced_level.rank
    ):
        quiet = Episode(level, now, episode.announced, episode.announced_level, last)
        return quiet, Transition.NONE
    return Episode(level, now, True, level, now), Transition.RAISED


def domain_of(address: str | None) -> str:
    """The domain whose rates an address counts toward (lower-cased; "" for none)."""
    return (address or "").rpartition("@")[2].strip().lower()
