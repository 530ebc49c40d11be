"""The checks every controller shares.

The settings of the built-in controllers are frozen pydantic models
(:class:`~._batching.SizerSettings`, :class:`~._concurrency.LimitSettings`), like
:class:`~._retry.RetryPolicy`; :func:`settings_from` turns their validation errors into a
:class:`UsageError` that names the field.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from ._exceptions import UsageError

__all__ = ["check_count", "check_seconds", "settings_from"]

SettingsT = TypeVar("SettingsT", bound=BaseModel)


def settings_from(model: type[SettingsT], values: Mapping[str, Any]) -> SettingsT:
    """Build ``model`` from keyword values; a refused value is a :class:`UsageError` naming it.

    Raises:
        UsageError: a value breaks a rule of ``model``; the message names each field.
    """
    try:
        return model(**values)
    except ValidationError as error:
        problems = []
        for item in error.errors(include_url=False):
            field = ".".join(str(part) for part in item["loc"])
            message = item["msg"].removeprefix("Value error, ")
            if field and item["type"] != "missing":
                message = f"{message} (got {item['input']!r})"
            problems.append(f"{field}: {message}" if field else message)
        raise UsageError("; ".join(problems)) from None


def check_count(name: str, value: object, *, minimum: int) -> None:
    """Refuse a count that is not an integer ``>= minimum`` (a bool is not a count).

    Raises:
        UsageError: naming ``name``.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UsageError(f"{name} must be an integer >= {minimum}, got {value!r}")


def check_seconds(name: str, value: float) -> None:
    """Refuse a duration that is negative or not finite.

    Raises:
        UsageError: naming ``name``.
    """
    if not (math.isfinite(value) and value >= 0):
        raise UsageError(f"{name} must be a finite number >= 0, got {value!r}")
