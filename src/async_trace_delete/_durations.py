"""Durations written the way people write them: ``30m``, ``12h``, ``7d``, ``2w``, ``1d12h``.

Pure. The CLI's ``--older-than`` and ``--min-retention`` and an experiment's retention tag
(``retention_tag``) are read by the one parser here; :func:`format_duration` writes a
duration back the same way (``parse_duration(format_duration(d)) == d``), and
:func:`format_instant` an epoch-millisecond time in UTC ISO form, for messages.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from fractions import Fraction

__all__ = ["format_duration", "format_instant", "parse_duration"]

# A unit means exactly one thing: only these, lowercase (``m`` is minutes, never months).
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([A-Za-z]+)")
_DURATION_HINT = (
    "cannot read {text!r} as a duration; write a number and a unit "
    "(s, m = minutes, h, d, w), e.g. 30m, 12h, 7d, 2w or 1d12h"
)
# Spellings of months and years (any case; ``M`` too, but not ``m``): no fixed length.
_CALENDAR_UNITS = frozenset(
    {"mo", "mos", "mon", "mons", "month", "months", "y", "yr", "yrs", "year", "years"}
)


def parse_duration(text: str) -> timedelta:
    """Parse ``30m``, ``12h``, ``7d``, ``2w`` or combinations such as ``1d12h``.

    Units are case-sensitive so that each means exactly one thing: ``s``, ``m`` (minutes),
    ``h``, ``d`` and ``w``. Months and years (``6M``, ``1mo``, ``1y``) are refused, since
    they have no fixed length, and so are uppercase units (``1D``), naming the lowercase one.

    Raises:
        ValueError: not a duration in that form.
    """
    compact = text.strip().replace(" ", "")
    parts: list[tuple[str, str]] = _DURATION.findall(compact)
    if not compact or "".join(number + unit for number, unit in parts) != compact:
        raise ValueError(_DURATION_HINT.format(text=text))
    units = [unit for _, unit in parts]
    if any(unit == "M" or unit.lower() in _CALENDAR_UNITS for unit in units):
        raise ValueError(
            f"cannot read {text!r} as a duration: months and years have no fixed length; "
            "write days instead, e.g. 180d for about six months or 365d for a year "
            "(m means minutes)"
        )
    if not all(unit in _DURATION_UNITS for unit in units):
        if all(unit.lower() in _DURATION_UNITS for unit in units):
            lowercase = "".join(number + unit.lower() for number, unit in parts)
            raise ValueError(
                f"cannot read {text!r} as a duration: units are lowercase: write {lowercase}"
            )
        raise ValueError(_DURATION_HINT.format(text=text))
    # Exact arithmetic: a float sum loses the last microsecond of long durations.
    seconds = sum(Fraction(number) * _DURATION_UNITS[unit] for number, unit in parts)
    try:
        return timedelta(microseconds=round(seconds * 1_000_000))
    except OverflowError:
        raise ValueError(
            f"cannot read {text!r} as a duration: longer than any date (at most "
            f"{timedelta.max.days}d)"
        ) from None


# Largest first; weeks are left out on purpose: people write 14d more often than 2w.
_WRITTEN_UNITS = (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000))
_MIXED_ABOVE = 999  # 90061s reads better as 1d1h1m1s


def format_duration(duration: timedelta) -> str:
    """Write ``duration`` as a person would: ``7d``, ``36h``, ``90m``, ``45s``, ``1.5s``.

    The largest unit that holds it a whole number of times (``36h``, not ``1d12h``), unless
    that number would be long (``1d1h1m1s``, not ``90061s``); below a second, decimals of
    seconds. :func:`parse_duration` reads every result back to the same duration (whole
    milliseconds; finer parts are rounded to the millisecond).
    """
    millis = round(duration / timedelta(milliseconds=1))
    if millis < 0:
        return "-" + format_duration(timedelta(milliseconds=-millis))
    if millis == 0:
        return "0s"
    if millis % 1_000:  # minutes and up as parts, then seconds with decimals: 1m30.25s
        above, rest = millis - millis % 60_000, millis % 60_000
        seconds = f"{rest // 1_000}.{rest % 1_000:03d}".rstrip("0")
        return (_mixed(above) if above else "") + f"{seconds}s"
    for unit, size in _WRITTEN_UNITS:
        if millis % size == 0 and millis // size <= _MIXED_ABOVE:
            return f"{millis // size}{unit}"
    return _mixed(millis)


def _mixed(millis: int) -> str:
    """Whole seconds as days, hours, minutes and seconds (``1d1h1m1s``), zero parts left out."""
    parts = []
    for unit, size in _WRITTEN_UNITS:
        count, millis = divmod(millis, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def format_instant(millis: int) -> str:
    """Epoch milliseconds in UTC ISO 8601 form: ``2026-11-24T19:20:00Z`` (with ``.123`` when
    it is not a whole second); ``<n> ms`` for a time no calendar date reaches."""
    try:
        moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=millis)
    except (OverflowError, ValueError):  # beyond year 9999 (or before year 1): no date
        return f"{millis} ms"
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if millis % 1_000:
        text += f".{millis % 1_000:03d}"
    return text + "Z"
