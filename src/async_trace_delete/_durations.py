"""Durations written the way people write them: ``30m``, ``12h``, ``7d``, ``2w``, ``1d12h``.

Pure. The CLI's ``--older-than`` and ``--min-retention`` and an experiment's retention tag
(``retention_tag``) are read by the one parser here.
"""

from __future__ import annotations

import re
from datetime import timedelta

__all__ = ["parse_duration"]

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
    seconds = sum(float(number) * _DURATION_UNITS[unit] for number, unit in parts)
    return timedelta(seconds=seconds)
