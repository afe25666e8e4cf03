"""Sender rate rules (pure): thresholds, minimum volume, one alert per episode, hysteresis."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.core.rates import (
    Counts,
    Episode,
    Level,
    Metric,
    RatePolicy,
    Thresholds,
    Transition,
    evaluate,
)

POLICY = RatePolicy(
    window=timedelta(minutes=60),
    min_volume=100,
    bounce=Thresholds(5.0, 10.0),
    spam=Thresholds(0.1, 0.5),
)
T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def step(
    episode: Episode, sent: int, hard: int = 0, spam: int = 0, minutes: int = 0
) -> tuple[Episode, Transition]:
    counts = Counts(sent=sent, hard=hard, spam=spam)
    return evaluate(episode, counts, Metric.BOUNCE, POLICY, T0 + timedelta(minutes=minutes))


@pytest.mark.parametrize(
    ("sent", "hard", "level"),
    [
        (100, 4, Level.OK),
        (100, 5, Level.WARNING),
        (200, 19, Level.WARNING),
        (100, 10, Level.CRITICAL),
    ],
)
def test_thresholds_are_inclusive(sent: int, hard: int, level: Level) -> None:
    episode, transition = step(Episode(), sent, hard)
    assert episode.level is level
    assert transition is (Transition.NONE if level is Level.OK else Transition.RAISED)


def test_below_minimum_volume_nothing_is_judged() -> None:
    episode, transition = step(Episode(), sent=99, hard=60)
    assert (episode, transition) == (Episode(), Transition.NONE)


def test_one_alert_per_level_then_one_recovery() -> None:
    warning, t1 = step(Episode(), 100, 6)
    same, t2 = step(warning, 120, 7, minutes=1)
    critical, t3 = step(same, 120, 13, minutes=2)
    lower, t4 = step(critical, 200, 12, minutes=3)  # 6 %: still in the episode, no alert
    ok, t5 = step(lower, 300, 11, minutes=4)  # 3.7 % < 4 % (80 % of warning): recovered
    assert [t1, t2, t3, t4, t5] == [
        Transition.RAISED,
        Transition.NONE,
        Transition.RAISED,
        Transition.NONE,
        Transition.RECOVERED,
    ]
    assert same == warning
    assert lower.level is Level.CRITICAL
    assert ok.level is Level.OK
    assert ok.announced_level is Level.CRITICAL


def test_hysteresis_keeps_the_episode_just_below_the_threshold() -> None:
    warning, _ = step(Episode(), 100, 5)
    still, transition = step(warning, 100, 4, minutes=1)  # 4 % is not below 4 %
    assert (still.level, transition) == (Level.WARNING, Transition.NONE)


def test_flapping_within_a_window_is_announced_once() -> None:
    warning, _ = step(Episode(), 100, 6)
    ok, _ = step(warning, 100, 1, minutes=5)
    again, transition = step(ok, 100, 6, minutes=10)
    assert (again.level, transition) == (Level.WARNING, Transition.NONE)
    quiet_end, end_transition = step(again, 100, 1, minutes=15)
    assert (quiet_end.level, end_transition) == (Level.OK, Transition.NONE)  # never announced
    later, later_transition = step(quiet_end, 100, 6, minutes=5 + 61)
    assert (later.level, later_transition) == (Level.WARNING, Transition.RAISED)


def test_a_worse_level_is_announced_even_within_the_window() -> None:
    warning, _ = step(Episode(), 100, 6)
    ok, _ = step(warning, 100, 1, minutes=5)
    critical, transition = step(ok, 100, 12, minutes=10)
    assert (critical.level, transition) == (Level.CRITICAL, Transition.RAISED)


def test_spam_thresholds_and_round_trip() -> None:
    counts = Counts(sent=1000, spam=5)
    episode, transition = evaluate(Episode(), counts, Metric.SPAM, POLICY, T0)
    assert (episode.level, transition) == (Level.CRITICAL, Transition.RAISED)
    assert Episode.from_json(episode.to_json()) == episode
    assert Episode.from_json(None) == Episode()


def test_bucket_width_keeps_a_window_near_sixty_buckets() -> None:
    assert POLICY.bucket_minutes == 1
    day = RatePolicy(timedelta(hours=24), 100, POLICY.bounce, POLICY.spam)
    assert day.bucket_minutes == 24
