"""What the engine asks of its controllers, and the checks every controller shares.

The engine's numbers come from small pure objects (see the house style: "pure controllers,
impure shell"): a :class:`ConcurrencyLimit` says how many calls may be in flight, a
:class:`Sizer` how many traces the next call asks for. Both are fed plain numbers by the
engine after each call and never see a clock, I/O or asyncio. The engine accepts any object
with these members, so a user can pin, replace or instrument a controller.

The settings of the built-in controllers are frozen pydantic models
(:class:`~._batching.SizerSettings`, :class:`~._concurrency.LimitSettings`), like
:class:`~._retry.RetryPolicy`; :func:`settings_from` turns their validation errors into a
:class:`UsageError` that names the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel

from ._exceptions import SpecError, UsageError
from ._outcomes import Outcome

__all__ = ["ConcurrencyLimit", "Sizer", "settings_from"]

SettingsT = TypeVar("SettingsT", bound=BaseModel)


class ConcurrencyLimit(Protocol):
    """Decides how many calls may be in flight, from the calls that completed.

    The engine enforces the limit; the object only decides it (Netflix concurrency-limits'
    ``Limit``). :class:`~._concurrency.ConcurrencyController` adapts it,
    :class:`~._concurrency.FixedLimit` keeps it constant.
    """

    @property
    def limit(self) -> int:
        """Calls allowed in flight now (at least 1)."""
        ...

    def record(
        self, *, now: float, deleted: int, latency: float, outcome: Outcome, waiting: int
    ) -> int:
        """Learn from one completed call and return the limit to enforce from now on.

        Args:
            now: When the call completed, on the engine's monotonic clock (seconds).
            deleted: Traces the call deleted (0 if it failed or is unknown).
            latency: Seconds the call took.
            outcome: How the call ended.
            waiting: Calls ready to run but blocked on the limit when this one completed.
        """
        ...


class Sizer(Protocol):
    """Decides how many traces the next delete call asks for (e.g. :class:`~._batching.BatchSizer`).

    One sizer is shared by every job of an engine that deletes the same way (one for cutoff
    calls, one for chunks of IDs), so observations of calls in flight at once interleave.
    """

    @property
    def size(self) -> int:
        """How many traces the next call should ask for (at least 1)."""
        ...

    @property
    def min_size(self) -> int:
        """The smallest size it would ask for unless the server cannot take it: a call of
        this size that is still too large is not retried smaller."""
        ...

    def observe(
        self, *, requested: int, deleted: int | None, latency: float | None, outcome: Outcome
    ) -> int:
        """Learn from one finished call and return the new :attr:`size`.

        Args:
            requested: How many traces the call asked for.
            deleted: How many it deleted, or ``None`` if unknown.
            latency: Seconds it took, or ``None`` if unknown (e.g. cancelled).
            outcome: How it ended.
        """
        ...


def settings_from(model: type[SettingsT], values: Mapping[str, Any]) -> SettingsT:
    """Build ``model`` from keyword values; a refused value is a :class:`UsageError` naming it.

    Raises:
        UsageError: a value breaks a rule of ``model``; the message names each field.
    """
    try:
        return model(**values)
    except SpecError as error:  # every problem, each naming its field
        problems = []
        for item in error.errors(include_url=False):
            field = ".".join(str(part) for part in item["loc"])
            message = item["msg"].removeprefix("Value error, ")
            if field and item["type"] != "missing":
                message = f"{message} (got {item['input']!r})"
            problems.append(f"{field}: {message}" if field else message)
        raise UsageError("; ".join(problems)) from None
