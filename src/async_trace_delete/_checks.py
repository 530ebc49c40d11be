"""The checks every number-taking part shares: one definition of "a count".

In Python ``True`` is an ``int``; it is never a count of traces, calls or attempts.
"""

from __future__ import annotations

import math

from ._exceptions import UsageError

__all__ = ["check_count", "check_seconds", "is_int"]


def is_int(value: object) -> bool:
    """An ``int`` that is not a ``bool``."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_count(name: str, value: object, *, minimum: int) -> None:
    """Refuse a count that is not an integer ``>= minimum`` (a bool is not a count).

    Raises:
        UsageError: naming ``name``.
    """
    if not is_int(value) or value < minimum:  # type: ignore[operator]
        raise UsageError(f"{name} must be an integer >= {minimum}, got {value!r}")


def check_seconds(name: str, value: float) -> None:
    """Refuse a duration that is negative or not finite.

    Raises:
        UsageError: naming ``name``.
    """
    if not (math.isfinite(value) and value >= 0):
        raise UsageError(f"{name} must be a finite number >= 0, got {value!r}")
