"""The two verdicts on a finished call, shared by the error table and the controllers.

* :class:`Outcome` — what the call says about the server's load (fed to the batch sizer and
  the concurrency limit);
* :class:`RetryDecision` — what to do next (retry, shrink, give up).

Every exception class in :mod:`._exceptions` carries both as class attributes
(``outcome``, ``retry_decision``), so the verdict on a failure is looked up, never worked
out by a ladder of ``isinstance`` checks.
"""

from __future__ import annotations

import enum

__all__ = ["Outcome", "RetryDecision"]


class Outcome(enum.Enum):
    """What one delete call ended in, as the controllers see it."""

    OK = "ok"
    """The call succeeded."""
    THROTTLED = "throttled"
    """429: the server or a gateway asks us to slow down."""
    UNAVAILABLE = "unavailable"
    """503, e.g. SQLite's "database is locked"."""
    TIMEOUT = "timeout"
    """No answer in time."""
    SERVER_ERROR = "server_error"
    """Another 5xx, a transport error or an unreadable answer."""
    TOO_LARGE = "too_large"
    """503 "too many SQL variables": the batch is too large for the backend."""


class RetryDecision(enum.Enum):
    """What to do after a failed call."""

    RETRY = "retry"
    """Try the same call again after a backoff."""
    SHRINK = "shrink"
    """Try again with a smaller batch; the same size would fail again."""
    FAIL = "fail"
    """Give up: retrying cannot help."""
