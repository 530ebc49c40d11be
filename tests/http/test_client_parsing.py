"""The client's header and timestamp parsers: ``Retry-After`` and RFC 3339 request times."""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from async_trace_delete._client import parse_retry_after, parse_rfc3339_millis
from tests.support.client_doubles import FIXED_NOW, utc_millis

# -- parse_retry_after ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("   ", None),
        ("7", 7.0),
        (" 7 ", 7.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("-3", 0.0),
        ("nan", None),
        ("inf", None),
        ("-inf", None),
        ("soon", None),
        ("Wed, 99 Foo 2025 99:99:99 GMT", None),
        ("Wed, 01 Jan 2025 00:00:30 GMT", 30.0),
        ("Wed, 01 Jan 2025 00:00:00 GMT", 0.0),
        ("Tue, 31 Dec 2024 23:59:00 GMT", 0.0),
        ("Wed, 01 Jan 2025 01:00:30 +0100", 30.0),
        ("Wed, 01 Jan 2025 00:00:30 -0000", None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    """Delay-seconds and HTTP dates parse; garbage and naive dates give None; never negative."""
    assert parse_retry_after(value, now=FIXED_NOW) == expected


def test_parse_retry_after_defaults_to_the_system_clock() -> None:
    """Without ``now`` an HTTP date far in the past gives 0 and one far ahead a large delay."""
    assert parse_retry_after("Thu, 01 Jan 1970 00:00:10 GMT") == 0.0
    far_future = parse_retry_after("Fri, 01 Jan 9999 00:00:00 GMT")
    assert far_future is not None
    assert far_future > 10**9


# -- parse_rfc3339_millis -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-03-04T05:06:07Z", utc_millis(2024, 3, 4, 5, 6, 7)),
        ("2024-03-04T05:06:07z", utc_millis(2024, 3, 4, 5, 6, 7)),
        ("2024-03-04T05:06:07.123Z", utc_millis(2024, 3, 4, 5, 6, 7) + 123),
        ("2024-03-04T05:06:07.123456Z", utc_millis(2024, 3, 4, 5, 6, 7) + 123),
        ("2024-03-04T05:06:07.123999999Z", utc_millis(2024, 3, 4, 5, 6, 7) + 123),
        ("2024-03-04T05:06:07.1Z", utc_millis(2024, 3, 4, 5, 6, 7) + 100),
        ("2024-03-04T05:06:07.000Z", utc_millis(2024, 3, 4, 5, 6, 7)),
        ("2024-03-04T05:06:07+00:00", utc_millis(2024, 3, 4, 5, 6, 7)),
        ("2024-03-04T00:06:07.5-05:00", utc_millis(2024, 3, 4, 5, 6, 7) + 500),
        (" 2024-03-04T05:06:07.999Z ", utc_millis(2024, 3, 4, 5, 6, 7) + 999),
        ("1970-01-01T00:00:00Z", 0),
    ],
)
def test_parse_rfc3339_millis(text: str, expected: int) -> None:
    """0, 1, 3, 6 or 9 fractional digits and any offset give exact milliseconds."""
    assert parse_rfc3339_millis(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "garbage", "2024-03-04T05:06:07", "2024-03-04T05:06:07.123", "2024-13-04T05:06:07Z"],
)
def test_parse_rfc3339_millis_rejects_garbage(text: str) -> None:
    """Unparseable or zone-less timestamps raise ValueError."""
    with pytest.raises(ValueError):  # noqa: PT011 - the message varies with the input
        parse_rfc3339_millis(text)


@given(
    moment=st.datetimes(
        min_value=datetime(1970, 1, 1),  # hypothesis wants naive bounds
        max_value=datetime(9999, 12, 30),
        timezones=st.just(UTC),
    ),
    nanos=st.integers(min_value=0, max_value=999),
    digits=st.sampled_from([0, 3, 6, 9]),
    offset_minutes=st.integers(min_value=-14 * 60, max_value=14 * 60),
)
def test_parse_rfc3339_millis_is_exact_for_any_moment(
    moment: datetime, nanos: int, digits: int, offset_minutes: int
) -> None:
    """For any instant, precision and offset, parsing gives floor(epoch ms) exactly."""
    offset = timedelta(minutes=offset_minutes)
    local = moment.astimezone(timezone(offset))  # the same instant, shown in another zone
    fraction = f"{moment.microsecond:06d}{nanos:03d}"[:digits]
    sign = "+" if offset_minutes >= 0 else "-"
    hours, minutes = divmod(abs(offset_minutes), 60)
    text = (
        local.strftime("%Y-%m-%dT%H:%M:%S")
        + (f".{fraction}" if digits else "")
        + f"{sign}{hours:02d}:{minutes:02d}"
    )
    whole_seconds = calendar.timegm(moment.utctimetuple())
    expected = whole_seconds * 1000 + (moment.microsecond // 1000 if digits >= 3 else 0)
    assert parse_rfc3339_millis(text) == expected
