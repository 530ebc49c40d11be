"""Which MLflow server a run talks to, and where that URL came from.

The URL is resolved once, in :mod:`.args`: ``--tracking-uri`` wins, then a policy file's
``tracking_uri`` (``run``), then ``MLFLOW_TRACKING_URI``; ``apply`` falls back to the plan
file's server instead of a policy. :class:`ServerSource` carries that origin so every dry
run, run and sweep can say, on its first line and in ``--json``, which server it deletes
on and why: a production URI exported in the shell is then seen before it matters.
Credentials are never shown (:func:`shown_url`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal
from urllib.parse import urlsplit, urlunsplit

from .._config import redact_url

__all__ = ["ServerSource", "server_json", "server_line", "server_source", "shown_url"]

ENV_VAR: Final = "MLFLOW_TRACKING_URI"
Origin = Literal["--tracking-uri", "MLFLOW_TRACKING_URI", "policy", "plan"]


@dataclass(frozen=True)
class ServerSource:
    """Where the tracking URI came from.

    Attributes:
        origin: ``--tracking-uri``, ``MLFLOW_TRACKING_URI``, ``policy`` (a policy file's
            ``tracking_uri``) or ``plan`` (the server an ``apply`` plan was made for).
        file: The policy or plan file, as given on the command line.
        overrides: A different ``MLFLOW_TRACKING_URI`` that was set and lost to the policy
            file (shown without credentials).
    """

    origin: Origin
    file: str | None = None
    overrides: str | None = None

    def describe(self) -> str:
        """``from MLFLOW_TRACKING_URI``, ``from the policy file p.toml (it overrides ...)``."""
        if self.origin == "policy":
            text = f"from the policy file {self.file}"
        elif self.origin == "plan":
            text = f"from the plan file {self.file}"
        else:
            text = f"from {self.origin}"
        if self.overrides is not None:
            text += f"; it overrides {ENV_VAR}={self.overrides}"
        return text


def server_source(
    flag: str | None,
    environ: Mapping[str, str],
    *,
    policy_uri: str | None = None,
    policy_file: str | None = None,
    plan_file: str | None = None,
) -> ServerSource:
    """Where the URL that ``ClientConfig.from_env`` will use comes from (same precedence:
    the flag, then the policy's ``tracking_uri``, then the environment, then the plan's)."""
    environment = environ.get(ENV_VAR) or None  # an empty variable is unset, as there
    if flag:
        return ServerSource("--tracking-uri")
    if policy_uri:
        overrides = None
        if environment is not None and _same(environment) != _same(policy_uri):
            overrides = shown_url(environment)
        return ServerSource("policy", file=policy_file, overrides=overrides)
    if environment is not None or plan_file is None:
        return ServerSource(ENV_VAR)
    return ServerSource("plan", file=plan_file)


def _same(url: str) -> str:
    return url.strip().rstrip("/")


def shown_url(url: str) -> str:
    """The URL without credentials: ``user:password@`` and any query string (which may hold
    a token) become ``***``."""
    parts = urlsplit(redact_url(url.strip()))
    if not parts.query:
        return urlunsplit(parts)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "***", ""))


def server_line(url: str, source: ServerSource | None) -> str:
    """``Server: http://127.0.0.1:5000 (from MLFLOW_TRACKING_URI)``."""
    where = "" if source is None else f" ({source.describe()})"
    return f"Server: {shown_url(url)}{where}"


def server_json(url: str, source: ServerSource | None) -> dict[str, Any]:
    """The ``server`` object of ``--json``: ``url``, ``source``, and ``file`` and
    ``overrides`` where they apply."""
    return {
        "url": shown_url(url),
        "source": None if source is None else source.origin,
        "file": None if source is None else source.file,
        "overrides": None if source is None else source.overrides,
    }
