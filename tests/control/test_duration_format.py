"""Durations and times written for people: format_duration is parse_duration's inverse, and
format_instant writes epoch milliseconds in UTC ISO form."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from async_trace_delete._durations import format_duration, format_instant, parse_duration


@pytest.mark.parametrize(
    ("duration", "written"),
    [
        (timedelta(days=7), "7d"),
        (timedelta(hours=36), "36h"),
        (timedelta(minutes=90), "90m"),
        (timedelta(seconds=45), "45s"),
        (timedelta(days=14), "14d"),
        (timedelta(days=365), "365d"),
        (timedelta(days=1, hours=1, minutes=1, seconds=1), "1d1h1m1s"),
        (timedelta(seconds=1.5), "1.5s"),
        (timedelta(minutes=2, milliseconds=250), "2m0.25s"),
        (timedelta(0), "0s"),
        (-timedelta(hours=2), "-2h"),
    ],
)
def test_format_duration_writes_as_a_person_would(duration: timedelta, written: str) -> None:
    """The largest unit it fits a whole number of times, mixed only for long numbers."""
    assert format_duration(duration) == written


@given(
    st.integers(min_value=0, max_value=10_000),
    st.sampled_from([1, 1_000, 60_000, 3_600_000, 86_400_000, 604_800_000]),
)
def test_parse_reads_back_what_format_writes(count: int, unit_ms: int) -> None:
    """parse(format(x)) == x for whole milliseconds, seconds, minutes, hours, days, weeks."""
    duration = timedelta(milliseconds=count * unit_ms)
    assert parse_duration(format_duration(duration)) == duration


@given(st.integers(min_value=0, max_value=10**13))
def test_parse_reads_back_any_whole_millisecond_duration(millis: int) -> None:
    """Any duration of whole milliseconds survives the round trip."""
    duration = timedelta(milliseconds=millis)
    assert parse_duration(format_duration(duration)) == duration


@pytest.mark.parametrize("text", ["7d", "36h", "90m", "45s", "1d1h1m1s"])
def test_canonical_spellings_are_kept(text: str) -> None:
    """What a person wrote comes back as written."""
    assert format_duration(parse_duration(text)) == text


def test_format_instant() -> None:
    """UTC ISO 8601 with a Z, milliseconds only when there are some; no date: ms."""
    assert format_instant(1_796_067_600_000) == "2026-11-30T19:40:00Z"
    assert format_instant(1_796_067_088_941) == "2026-11-30T19:31:28.941Z"
    assert format_instant(10**20) == f"{10**20} ms"


def test_long_durations_parse_exactly() -> None:
    """Regression: a float sum lost the last microsecond of ``115740d17h46m39.998s``."""
    duration = timedelta(milliseconds=9_999_999_999_998)
    assert parse_duration("115740d17h46m39.998s") == duration


def test_a_duration_longer_than_any_date_is_a_value_error() -> None:
    """Regression: ``999999999999d`` raised OverflowError (a traceback in the CLI)."""
    with pytest.raises(ValueError, match="longer than any date"):
        parse_duration("999999999999d")
