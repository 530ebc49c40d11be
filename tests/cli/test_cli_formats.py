"""Times and durations in the CLI's output: UTC ISO 8601, and durations written the way
``--older-than`` reads them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from async_trace_delete._cli.formats import (
    duration,
    iso_millis,
    iso_minutes,
    iso_seconds,
    iso_time,
    iso_with_millis,
)
from async_trace_delete._durations import parse_duration


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0, "0.0s"),
        (4.24, "4.2s"),
        (59.94, "59.9s"),
        (60, "1m"),
        (200, "3m20s"),
        (3_725, "1h2m5s"),
        (12 * 3600, "12h"),
        (7 * 86_400, "7d"),
        (36 * 3600, "1d12h"),
        (7 * 86_400 + 0.4, "7d"),  # whole seconds from a minute on
        (-7 * 86_400, "-7d"),
    ],
)
def test_durations_are_written_as_people_write_them(seconds: float, text: str) -> None:
    """Days, hours, minutes and seconds, zeros left out; tenths under a minute."""
    assert duration(seconds) == text


@given(st.integers(min_value=60, max_value=10 * 365 * 86_400))
def test_a_duration_reads_back_as_the_same_seconds(seconds: int) -> None:
    """What is printed is what ``--older-than`` would read, to the second."""
    assert parse_duration(duration(seconds)).total_seconds() == seconds


def test_times_are_utc_iso_to_the_precision_they_have() -> None:
    """A cutoff with milliseconds keeps them; whole seconds print without; minutes for the
    table's oldest and newest; ``-`` for none."""
    assert iso_time(1_796_067_088_941) == "2026-11-30T19:31:28.941Z"
    assert iso_time(1_796_067_088_000) == "2026-11-30T19:31:28Z"
    assert iso_seconds(1_796_067_088_941) == "2026-11-30T19:31:28Z"
    assert iso_minutes(1_796_067_088_941) == "2026-11-30T19:31Z"
    assert iso_millis(1_796_067_088_000) == "2026-11-30T19:31:28.000Z"
    assert iso_with_millis(1_796_067_088_941) == "2026-11-30T19:31:28.941Z (1796067088941)"
    assert iso_time(None) == iso_seconds(None) == iso_minutes(None) == iso_millis(None) == "-"
