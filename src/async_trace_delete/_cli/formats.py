"""Times and durations as people read them, for everything the CLI renders.

Times are UTC ISO 8601 (``2026-11-24T19:20:00Z``), to the millisecond only when the value has
milliseconds (a cutoff must be shown exactly); durations as people write them (``7d``,
``12h``, ``3m20s``, ``4.2s``), in the units the ``--older-than`` parser reads.
"""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = [
    "duration",
    "iso_millis",
    "iso_minutes",
    "iso_seconds",
    "iso_time",
    "iso_with_millis",
]

_UNITS = (("d", 86_400), ("h", 3_600), ("m", 60))


def iso_millis(millis: int | None) -> str:
    """Epoch milliseconds as UTC ISO 8601 with milliseconds (``-`` for None)."""
    if millis is None:
        return "-"
    moment = datetime.fromtimestamp(millis / 1000, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def iso_time(millis: int | None) -> str:
    """Epoch milliseconds as UTC ISO 8601, to the second, or to the millisecond when it has
    some (``2026-11-24T19:20:00Z``, ``2026-11-24T19:20:00.941Z``; ``-`` for None)."""
    if millis is None:
        return "-"
    return iso_millis(millis) if millis % 1000 else iso_seconds(millis)


def iso_seconds(millis: int | None) -> str:
    """Epoch milliseconds as UTC ISO 8601 to the second (``2026-11-24T19:20:00Z``), for a
    trace's time, where the second is enough (``-`` for None)."""
    if millis is None:
        return "-"
    return datetime.fromtimestamp(millis // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_minutes(millis: int | None) -> str:
    """Epoch milliseconds as UTC ISO 8601 to the minute (``2026-11-24T19:20Z``), for the
    oldest and newest traces of a table, where the minute is enough."""
    if millis is None:
        return "-"
    return datetime.fromtimestamp(millis // 1000, UTC).strftime("%Y-%m-%dT%H:%MZ")


def iso_with_millis(millis: int) -> str:
    """``2026-11-24T19:20:00Z (1795029600000)``: the time and the epoch milliseconds that
    ``--max-timestamp-millis`` takes."""
    return f"{iso_time(millis)} ({millis})"


def duration(seconds: float) -> str:
    """Seconds as a person writes them: ``4.2s`` under a minute, else whole units from days
    to seconds, zeros left out (``3m20s``, ``12h``, ``7d``, ``1d12h``)."""
    if seconds < 0:
        return "-" + duration(-seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    left = round(seconds)
    parts = []
    for unit, size in _UNITS:
        count, left = divmod(left, size)
        if count:
            parts.append(f"{count}{unit}")
    if left:
        parts.append(f"{left}s")
    return "".join(parts)
