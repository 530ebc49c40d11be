"""Client configuration, read the MLflow way: explicit arguments first, then the environment.

| setting            | environment variable                  | default |
|--------------------|---------------------------------------|---------|
| tracking_uri       | ``MLFLOW_TRACKING_URI``               | required |
| token (Bearer)     | ``MLFLOW_TRACKING_TOKEN``             | none |
| username (Basic)   | ``MLFLOW_TRACKING_USERNAME``          | none |
| password (Basic)   | ``MLFLOW_TRACKING_PASSWORD``          | none |
| insecure_tls       | ``MLFLOW_TRACKING_INSECURE_TLS``      | false (TLS is verified) |
| server_cert_path   | ``MLFLOW_TRACKING_SERVER_CERT_PATH``  | system CA bundle |
| timeout            | ``MLFLOW_HTTP_REQUEST_TIMEOUT``       | 120 s, per request |

As in MLflow's own client, Basic auth is used when both username and password are set,
otherwise the Bearer token if there is one. Secrets are ``SecretStr``: they never appear in a
repr, a log line or an error message.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Annotated, Any, Self
from urllib.parse import urlsplit, urlunsplit

from pydantic import ConfigDict, Field, SecretStr, field_validator, model_validator

from ._checks import is_int
from ._exceptions import RuleError, UsageError
from ._messages import FieldMessage
from ._retry import RetryPolicy
from ._validated import ValidatedModel

__all__ = ["ClientConfig", "EngineConfig", "redact_url", "store_kind", "store_message"]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


_DEFAULT_INITIAL_BATCH = 1_000
_DEFAULT_MIN_BATCH = 100
_DEFAULT_MAX_BATCH = 100_000
_DEFAULT_INITIAL_ID_CHUNK = 100
_DEFAULT_MAX_ID_CHUNK = 1_000
# With a foreground budget, each call aims at no more than this share of it: on SQLite and
# MySQL another client's write waits for a whole delete (a read canary cannot see that), and
# a call's p99 runs above the mean the sizer aims at, plus the waiter's own request.
_BUDGET_CALL_SHARE = 0.5
# Traces per second of call target the first cutoff call asks for when its size is unset
# (~1 ms per trace: 1,000 at the default 1 s). A first call far from the target costs a
# ramp of doubling calls (each paying the backend's fixed cost) or an early spike others feel.
_FIRST_BATCH_PER_SECOND = 1_000


def _call_target(target: float, budget: float | None) -> float:
    """Seconds each delete call is steered to: ``target``, or half the ``budget`` if less."""
    return target if budget is None else min(target, budget * _BUDGET_CALL_SHARE)


def _first_batch(target: Any, budget: Any) -> int:
    """The first cutoff batch for an unset ``initial_batch_size``: 1,000 traces per second
    of the call target; 1,000 when the values are not numbers yet (their own validation
    then names them)."""
    try:
        seconds = _call_target(
            1.0 if target is None else float(target), None if budget is None else float(budget)
        )
    except (TypeError, ValueError):
        return _DEFAULT_INITIAL_BATCH
    if not (0 < seconds < float("inf")):
        return _DEFAULT_INITIAL_BATCH
    return max(1, round(_FIRST_BATCH_PER_SECOND * seconds))


def _is_size(value: object) -> bool:
    return is_int(value) and value >= 1  # type: ignore[operator]


def _parse_bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise UsageError(f"{name}: expected true/false, got {raw!r}")


def redact_url(url: str) -> str:
    """Return ``url`` with any ``user:password@`` part replaced by ``***@``."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, f"***@{host}", parts.path, parts.query, parts.fragment))


# MLflow tracking URIs that name a store, not a server: the schemes of its SQLAlchemy and file
# stores (``mlflow.store.db.db_types``, ``file:``) and Databricks' profile URIs.
_DATABASE_SCHEMES = {
    "sqlite": "an SQLite database",
    "postgresql": "a PostgreSQL database",
    "postgres": "a PostgreSQL database",
    "mysql": "a MySQL database",
    "mssql": "a SQL Server database",
}
_STORE_START = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")


def store_kind(uri: str) -> str | None:
    """What a tracking URI that is not a server names (``"an SQLite database"``, ``"a local
    folder (a file store)"``, ``"Databricks"``), or ``None`` for anything else.

    ``sqlite:``, ``postgresql:`` (also ``postgresql+psycopg2:``), ``mysql:``, ``mssql:``,
    ``file:``, a bare path (``./mlruns``, ``/data/mlruns``, ``mlruns``) and ``databricks``
    (``databricks://profile``, ``databricks-uc``) are what MLflow's own client accepts as
    tracking URIs and talks to without a server.
    """
    text = uri.strip()
    scheme = urlsplit(text).scheme.lower()
    base = scheme.partition("+")[0]
    if base in _DATABASE_SCHEMES:
        return _DATABASE_SCHEMES[base]
    if base == "file":
        return "a local folder (a file store)"
    if base.startswith("databricks") or text.lower().startswith("databricks"):
        return "Databricks"
    if text and not _STORE_START.match(text) and ("/" in text or "." not in text.split(":")[0]):
        return "a local folder (a file store)"
    return None


def store_message(uri: str, store: str) -> FieldMessage:
    """Why a store URI cannot be used, and how to put a server in front of it."""
    shown = redact_url(uri)
    if store == "Databricks":
        return FieldMessage(
            "{tracking_uri} is {given!r}, a Databricks profile: this tool talks to an MLflow "
            "tracking server over http(s):// only and does not read Databricks profiles",
            given=shown,
        )
    backend = shown if _STORE_START.match(uri.strip()) else uri.strip()
    return FieldMessage(
        "{tracking_uri} is {given!r}, {store}, not a server: deleting traces needs a running "
        "`mlflow server` in front of that store. Start one with `mlflow server "
        "--backend-store-uri {backend} --port 5000`, then use "
        "MLFLOW_TRACKING_URI=http://127.0.0.1:5000",
        given=shown,
        store=store,
        backend=backend,
    )


class ClientConfig(ValidatedModel):
    """How to reach and authenticate to an MLflow tracking server.

    Build it with :meth:`from_env` to follow MLflow's environment conventions, or directly.
    """

    # hide_input_in_errors: a rejected URI or credential must not be echoed in the error.
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    tracking_uri: str
    token: SecretStr | None = None
    username: str | None = None
    password: SecretStr | None = None
    insecure_tls: bool = False
    server_cert_path: str | None = None
    timeout: Annotated[float, Field(gt=0, le=3600)] = 120.0

    @field_validator("tracking_uri")
    @classmethod
    def _http_uri(cls, value: str) -> str:
        value = value.strip()
        parts = urlsplit(value)
        if (store := store_kind(value)) is not None:
            raise RuleError(store_message(value, store))
        if parts.scheme not in {"http", "https"} or not parts.netloc:
            raise RuleError(
                FieldMessage(
                    "{tracking_uri} must be an http(s):// URL of an MLflow tracking server "
                    "(got {given!r}); file:, sqlite: and databricks URIs are not served over "
                    "REST by this library",
                    given=redact_url(value),
                )
            )
        if parts.username is not None or parts.password is not None:
            raise RuleError(
                FieldMessage(
                    "{tracking_uri} must not embed credentials; use {username}/{password} or "
                    "{token} "
                    "(MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD / MLFLOW_TRACKING_TOKEN)"
                )
            )
        return value.rstrip("/")

    @model_validator(mode="after")
    def _credentials_pair(self) -> Self:
        if (self.username is None) != (self.password is None):
            raise RuleError(
                FieldMessage("{username} and {password} must be given together (Basic auth)")
            )
        return self

    @property
    def base_url(self) -> str:
        """The tracking URI without a trailing slash."""
        return self.tracking_uri

    @property
    def auth_scheme(self) -> str | None:
        """``"basic"``, ``"bearer"`` or ``None``, following MLflow's precedence."""
        if self.username is not None and self.password is not None:
            return "basic"
        if self.token is not None:
            return "bearer"
        return None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> ClientConfig:
        """Build a config from MLflow's environment variables; explicit ``overrides`` win.

        Args:
            environ: The environment to read (default: ``os.environ``).
            **overrides: Field values that take precedence; ``None`` values are ignored.

        Raises:
            UsageError: a variable cannot be parsed, or no tracking URI is given.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        if uri := env.get("MLFLOW_TRACKING_URI"):
            values["tracking_uri"] = uri
        if token := env.get("MLFLOW_TRACKING_TOKEN"):
            values["token"] = token
        if username := env.get("MLFLOW_TRACKING_USERNAME"):
            values["username"] = username
        if password := env.get("MLFLOW_TRACKING_PASSWORD"):
            values["password"] = password
        if (insecure := env.get("MLFLOW_TRACKING_INSECURE_TLS")) is not None:
            values["insecure_tls"] = _parse_bool("MLFLOW_TRACKING_INSECURE_TLS", insecure)
        if cert := env.get("MLFLOW_TRACKING_SERVER_CERT_PATH"):
            values["server_cert_path"] = cert
        if timeout := env.get("MLFLOW_HTTP_REQUEST_TIMEOUT"):
            try:
                values["timeout"] = float(timeout)
            except ValueError:
                raise UsageError(
                    f"MLFLOW_HTTP_REQUEST_TIMEOUT: expected seconds, got {timeout!r}"
                ) from None
        values.update({key: value for key, value in overrides.items() if value is not None})
        if "tracking_uri" not in values:
            raise UsageError(
                FieldMessage(
                    "{tracking_uri}: no MLflow server given; pass {tracking_uri} or set "
                    "MLFLOW_TRACKING_URI (e.g. http://127.0.0.1:5000)"
                )
            )
        return cls(**values)


class EngineConfig(ValidatedModel):
    """How the engine paces, sizes and retries its delete calls.

    Attributes:
        client: Where the MLflow server is; ``None`` reads MLflow's environment variables.
        rate_limit: Delete calls per second across all jobs (evenly spaced, no bursts).
        read_rate_limit: Reads per second across all jobs: searches, counts and lookups
            (dry runs, selective jobs, selection, verification). They take the same slots as
            deletes and wait out the same pauses and quiet gap, and while no delete is in
            flight they may use up to ``max_concurrency`` slots (the learnt limit is how many
            deletes the database takes at once). A push-back cuts this rate in the same
            proportion as the deletes'.
        artifact_rate_limit: Calls per second of the artifact API (listing and removing
            trace folders, ``with_artifacts`` and sweeps), across all jobs. They share the
            pauses (a server's push-back), the retries and the budget with every other call,
            but have their own rate and ``max_concurrency`` slots of their own, and do not
            wait out the quiet gap: removing one folder is a file operation on the server,
            not a database transaction.
        max_concurrency: Most delete calls in flight across all jobs.
        adaptive_concurrency: Adapt the calls in flight between 1 and ``max_concurrency``
            from measured throughput and latency (start at 1; on SQLite it stays near 1).
            When false, ``max_concurrency`` calls may always be in flight.
        target_latency: Seconds one delete call should take. The batch size is steered to
            it: this is the knob between speed and the server's other users, who wait while
            a delete runs. With a ``foreground_budget`` the target is at most half of it.
        initial_batch_size: First ``max_traces`` of a cutoff job (later jobs on the same
            engine start from what earlier ones learnt). Unset: 1,000 per second of
            :attr:`call_latency_target` (1,000 at the default 1 s, 5,000 at 5 s, 250 with
            a 0.5 s ``foreground_budget``), within the batch bounds.
        min_batch_size: Smallest batch a cutoff call asks for.
        max_batch_size: Largest batch a cutoff call asks for.
        initial_id_chunk: First number of IDs per call for ID and selective jobs.
        max_id_chunk: Most IDs per call (MLflow's client sends 100; Databricks rejects more).
        min_sleep: The shortest such gap, in seconds, however fast the call was (pt-archiver's
            ``--sleep``). SQLite's busy handler polls for the lock at growing intervals (up to
            100 ms): a gap shorter than its poll lets the next delete take the lock again
            before the waiting writer looks, so other clients' writes starve behind a series
            of short deletes. 0 disables.
        sleep_coefficient: After each call, no call starts (engine-wide) for
            ``coefficient * latency`` seconds (pt-archiver's ``--sleep-coef``). On a
            single-writer backend (SQLite) other clients' writes wait for each delete; this
            gap is their turn, without it back-to-back deletes starve them. 0 disables.
        foreground_budget: Seconds another client's request may take while the engine
            runs (a p99 bound on what others feel); ``None``: not watched. While jobs run, a
            canary (a search of one trace in a running job's experiment, outside the engine's
            gate) is timed every ``canary_interval``; one slower than the budget halves the
            engine's share of the server — batches, duty cycle and calls in flight — and calm
            canaries give it back step by step (:mod:`._foreground`). It also bounds each
            call: the batch is steered to half the budget when that is below
            ``target_latency`` (:attr:`call_latency_target`), because on SQLite and MySQL
            another client's *write* waits for a whole delete, which a read canary does not
            see.
        canary_interval: Seconds between canaries.
        throttle_url: A URL asked every ``throttle_interval`` while the engine is open: while
            it answers anything but 2xx (or not within 5 s), no call starts (gh-ost's
            ``--throttle-http``), for users whose database metrics live elsewhere. Nothing is
            sent before its first answer. Never logged.
        throttle_interval: Seconds between questions to ``throttle_url``.
        retry: Retry policy of each call.
        retry_budget: Retries allowed run-wide before any call succeeded.
        retry_budget_ratio: Retries earned per successful call. Past the budget, retries
            go on but slow every job down (the shared rate is cut, everyone pauses).
        request_timeout: Seconds one delete call may take before it counts as timed out
            (outcome unknown); ``None`` uses the client's timeout.
        search_page_size: Page size of searches (dry runs, selective jobs, verification).
        progress_timeout: Seconds a job may go without one successful call before it fails
            (:class:`NoProgressError`). Transient failures (429, 503, a dropped connection,
            a gateway's 5xx) are retried, slower and slower, until then; a permanent one
            (400, 401, 403, 404, a redirect) fails the job at once.
        batch_record_limit: Per-call records a job keeps for its report (the newest); the
            counts are always over every call.
    """

    model_config = ConfigDict(
        frozen=True, extra="forbid", allow_inf_nan=False, hide_input_in_errors=True
    )

    client: ClientConfig | None = None
    rate_limit: Annotated[float, Field(gt=0, le=10_000)] = 20.0
    read_rate_limit: Annotated[float, Field(gt=0, le=10_000)] = 250.0
    artifact_rate_limit: Annotated[float, Field(gt=0, le=10_000)] = 100.0
    max_concurrency: Annotated[int, Field(ge=1, le=64)] = 4
    adaptive_concurrency: bool = True
    target_latency: Annotated[float, Field(gt=0, le=600)] = 1.0
    initial_batch_size: Annotated[int, Field(ge=1)] = _DEFAULT_INITIAL_BATCH
    min_batch_size: Annotated[int, Field(ge=1)] = _DEFAULT_MIN_BATCH
    max_batch_size: Annotated[int, Field(ge=1, le=1_000_000)] = _DEFAULT_MAX_BATCH
    initial_id_chunk: Annotated[int, Field(ge=1)] = _DEFAULT_INITIAL_ID_CHUNK
    max_id_chunk: Annotated[int, Field(ge=1, le=100_000)] = _DEFAULT_MAX_ID_CHUNK
    sleep_coefficient: Annotated[float, Field(ge=0, le=100)] = 0.1
    min_sleep: Annotated[float, Field(ge=0, le=60)] = 0.1
    foreground_budget: Annotated[float, Field(gt=0, le=600)] | None = None
    canary_interval: Annotated[float, Field(gt=0, le=60)] = 0.5
    throttle_url: SecretStr | None = None
    throttle_interval: Annotated[float, Field(gt=0, le=600)] = 1.0
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    retry_budget: Annotated[int, Field(ge=0)] = 20
    retry_budget_ratio: Annotated[float, Field(ge=0)] = 0.2
    request_timeout: Annotated[float, Field(gt=0, le=3600)] | None = None
    search_page_size: Annotated[int, Field(ge=1, le=500)] = 500
    progress_timeout: Annotated[float, Field(gt=0, le=86_400)] = 300.0
    batch_record_limit: Annotated[int, Field(ge=0, le=1_000_000)] = 1_000

    @field_validator("throttle_url")
    @classmethod
    def _throttle_http_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        parts = urlsplit(value.get_secret_value().strip())
        if parts.scheme not in {"http", "https"} or not parts.netloc:
            raise RuleError(
                FieldMessage("{throttle_url} must be an http(s):// URL (it is not shown here)")
            )
        return value

    @model_validator(mode="before")
    @classmethod
    def _unset_sizes_follow_the_given(cls, data: Any) -> Any:
        """Batch bounds left unset follow the ones given: ``max_batch_size=50`` alone lowers
        the minimum and the initial size to 50 rather than failing, ``min_batch_size=200_000``
        raises the maximum; an unset initial ID chunk follows ``max_id_chunk``."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        low, high = data.get("min_batch_size"), data.get("max_batch_size")
        if low is None and _is_size(high):
            data["min_batch_size"] = low = min(_DEFAULT_MIN_BATCH, high)
        if high is None and _is_size(low):
            data["max_batch_size"] = high = max(_DEFAULT_MAX_BATCH, low)
        low = _DEFAULT_MIN_BATCH if low is None else low
        high = _DEFAULT_MAX_BATCH if high is None else high
        if data.get("initial_batch_size") is None and _is_size(low) and _is_size(high):
            first = _first_batch(data.get("target_latency"), data.get("foreground_budget"))
            data["initial_batch_size"] = min(max(first, low), max(high, low))
        chunk = data.get("max_id_chunk", _DEFAULT_MAX_ID_CHUNK)
        if data.get("initial_id_chunk") is None and _is_size(chunk):
            data["initial_id_chunk"] = min(_DEFAULT_INITIAL_ID_CHUNK, chunk)
        return data

    @property
    def call_latency_target(self) -> float:
        """Seconds each delete call is steered to: ``target_latency``, or half the
        ``foreground_budget`` when that is less (a write of another client may wait for a
        whole call)."""
        return _call_target(self.target_latency, self.foreground_budget)

    @model_validator(mode="after")
    def _bounds(self) -> Self:
        if not self.min_batch_size <= self.initial_batch_size <= self.max_batch_size:
            raise RuleError(
                FieldMessage(
                    "batch sizes must satisfy {min_batch_size} <= {initial_batch_size} <= "
                    "{max_batch_size} (got {low}, {initial}, {high})",
                    low=self.min_batch_size,
                    initial=self.initial_batch_size,
                    high=self.max_batch_size,
                )
            )
        if self.initial_id_chunk > self.max_id_chunk:
            raise RuleError(
                FieldMessage(
                    "{initial_id_chunk} ({chunk}) must be <= {max_id_chunk} ({most})",
                    chunk=self.initial_id_chunk,
                    most=self.max_id_chunk,
                )
            )
        return self
