"""ClientConfig: MLflow's environment conventions, overrides, URI and credential rules."""

from __future__ import annotations

from typing import Any

import pytest

from async_trace_delete import ClientConfig, EngineConfig, SpecError, UsageError

URI = "http://127.0.0.1:5000"
PASSWORD = "pw-SECRET-0451"
TOKEN = "tok-SECRET-2718"


def test_every_mlflow_variable_is_read() -> None:
    """Each MLFLOW_* variable lands in its field."""
    config = ClientConfig.from_env(
        environ={
            "MLFLOW_TRACKING_URI": "https://mlflow.example.com/",
            "MLFLOW_TRACKING_TOKEN": TOKEN,
            "MLFLOW_TRACKING_USERNAME": "alice",
            "MLFLOW_TRACKING_PASSWORD": PASSWORD,
            "MLFLOW_TRACKING_INSECURE_TLS": "true",
            "MLFLOW_TRACKING_SERVER_CERT_PATH": "/etc/ssl/mlflow.pem",
            "MLFLOW_HTTP_REQUEST_TIMEOUT": "45.5",
        }
    )
    assert config.tracking_uri == "https://mlflow.example.com"
    assert config.base_url == "https://mlflow.example.com"
    assert config.token is not None
    assert config.token.get_secret_value() == TOKEN
    assert config.username == "alice"
    assert config.password is not None
    assert config.password.get_secret_value() == PASSWORD
    assert config.insecure_tls is True
    assert config.server_cert_path == "/etc/ssl/mlflow.pem"
    assert config.timeout == 45.5
    assert config.auth_scheme == "basic"


def test_defaults_with_only_the_uri() -> None:
    """Only the URI is required; TLS is verified, no auth, 120 s timeout."""
    config = ClientConfig.from_env(environ={"MLFLOW_TRACKING_URI": URI})
    assert config == ClientConfig(tracking_uri=URI)
    assert config.token is None
    assert config.username is None
    assert config.password is None
    assert config.insecure_tls is False
    assert config.server_cert_path is None
    assert config.timeout == 120.0
    assert config.auth_scheme is None


def test_token_alone_means_bearer() -> None:
    """MLFLOW_TRACKING_TOKEN alone selects Bearer auth."""
    config = ClientConfig.from_env(
        environ={"MLFLOW_TRACKING_URI": URI, "MLFLOW_TRACKING_TOKEN": TOKEN}
    )
    assert config.auth_scheme == "bearer"


def test_explicit_overrides_win_over_the_environment() -> None:
    """Keyword arguments beat the environment; None overrides are ignored."""
    config = ClientConfig.from_env(
        environ={
            "MLFLOW_TRACKING_URI": "http://from-env:5000",
            "MLFLOW_TRACKING_TOKEN": "env-token",
            "MLFLOW_TRACKING_INSECURE_TLS": "true",
            "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
        },
        tracking_uri="http://explicit:6000",
        token="explicit-token",
        insecure_tls=False,
        timeout=5.0,
        server_cert_path=None,
    )
    assert config.tracking_uri == "http://explicit:6000"
    assert config.token is not None
    assert config.token.get_secret_value() == "explicit-token"
    assert config.insecure_tls is False
    assert config.timeout == 5.0
    assert config.server_cert_path is None


def test_none_override_keeps_the_environment_value() -> None:
    """An override of None does not erase a value from the environment."""
    config = ClientConfig.from_env(
        environ={"MLFLOW_TRACKING_URI": URI, "MLFLOW_TRACKING_TOKEN": TOKEN}, token=None
    )
    assert config.token is not None
    assert config.token.get_secret_value() == TOKEN


def test_from_env_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without ``environ`` the process environment is read."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://os-environ:5000")
    monkeypatch.delenv("MLFLOW_TRACKING_TOKEN", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_INSECURE_TLS", raising=False)
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_TIMEOUT", raising=False)
    assert ClientConfig.from_env().tracking_uri == "http://os-environ:5000"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("true", True),
        ("TRUE", True),
        (" True ", True),
        ("1", True),
        ("yes", True),
        ("on", True),
        ("false", False),
        ("False", False),
        ("0", False),
        ("no", False),
        ("off", False),
        ("", False),
    ],
)
def test_insecure_tls_parsing(raw: str, expected: bool) -> None:
    """MLFLOW_TRACKING_INSECURE_TLS accepts the usual spellings of true and false."""
    config = ClientConfig.from_env(
        environ={"MLFLOW_TRACKING_URI": URI, "MLFLOW_TRACKING_INSECURE_TLS": raw}
    )
    assert config.insecure_tls is expected


@pytest.mark.parametrize("raw", ["maybe", "2", "tru", "yes please"])
def test_insecure_tls_garbage_names_the_variable(raw: str) -> None:
    """An unreadable MLFLOW_TRACKING_INSECURE_TLS is a UsageError naming the variable."""
    with pytest.raises(UsageError, match="MLFLOW_TRACKING_INSECURE_TLS") as caught:
        ClientConfig.from_env(
            environ={"MLFLOW_TRACKING_URI": URI, "MLFLOW_TRACKING_INSECURE_TLS": raw}
        )
    assert repr(raw) in str(caught.value)


@pytest.mark.parametrize("raw", ["soon", "1O", "thirty"])
def test_timeout_garbage_names_the_variable(raw: str) -> None:
    """An unreadable MLFLOW_HTTP_REQUEST_TIMEOUT is a UsageError naming the variable."""
    with pytest.raises(UsageError, match="MLFLOW_HTTP_REQUEST_TIMEOUT"):
        ClientConfig.from_env(
            environ={"MLFLOW_TRACKING_URI": URI, "MLFLOW_HTTP_REQUEST_TIMEOUT": raw}
        )


@pytest.mark.parametrize("environ", [{}, {"MLFLOW_TRACKING_URI": ""}])
def test_missing_uri_names_tracking_uri(environ: dict[str, str]) -> None:
    """Without a tracking URI anywhere, the UsageError names tracking_uri."""
    with pytest.raises(UsageError, match="tracking_uri"):
        ClientConfig.from_env(environ=environ)


@pytest.mark.parametrize(
    "uri",
    [
        "file:///tmp/mlruns",
        "sqlite:///mlflow.db",
        "databricks",
        "databricks://profile",
        "ftp://host/x",
        "127.0.0.1:5000",
        "http://",
        "",
    ],
)
def test_non_http_uris_are_rejected_naming_the_field(uri: str) -> None:
    """file:, sqlite:, databricks and other non-http(s) URIs are refused, naming tracking_uri."""
    with pytest.raises(SpecError) as caught:
        ClientConfig(tracking_uri=uri)
    assert caught.value.errors()[0]["loc"] == ("tracking_uri",)
    assert "tracking_uri" in str(caught.value)


@pytest.mark.parametrize(
    "uri",
    [f"http://alice:{PASSWORD}@mlflow:5000", f"https://alice:{PASSWORD}@mlflow.example.com/"],
)
def test_uri_with_embedded_credentials_is_rejected(uri: str) -> None:
    """Credentials in the URI are refused, naming tracking_uri."""
    with pytest.raises(SpecError) as caught:
        ClientConfig(tracking_uri=uri)
    assert caught.value.errors()[0]["loc"] == ("tracking_uri",)
    assert "must not embed credentials" in str(caught.value)


@pytest.mark.parametrize("via_env", [False, True])
def test_uri_credentials_are_not_echoed_in_the_error(via_env: bool) -> None:
    """Rejecting a URI with a password never shows that password."""
    uri = f"http://alice:{PASSWORD}@mlflow:5000"

    def build() -> ClientConfig:
        if via_env:
            return ClientConfig.from_env(environ={"MLFLOW_TRACKING_URI": uri})
        return ClientConfig(tracking_uri=uri)

    with pytest.raises(ValueError, match="tracking_uri") as caught:
        build()
    assert PASSWORD not in str(caught.value)
    assert PASSWORD not in repr(caught.value)


def test_non_http_uri_error_redacts_credentials() -> None:
    """Even for a non-http URI, our own message shows ``***@`` instead of the password."""
    with pytest.raises(SpecError) as caught:
        ClientConfig(tracking_uri=f"ftp://alice:{PASSWORD}@host/x")
    message = caught.value.errors()[0]["msg"]
    assert PASSWORD not in message
    assert "***@host" in message


@pytest.mark.parametrize(
    "credentials",
    [{"username": "alice"}, {"password": PASSWORD}],
    ids=["username-only", "password-only"],
)
def test_half_a_basic_pair_is_rejected(credentials: dict[str, Any]) -> None:
    """username without password (or the reverse) is refused."""
    with pytest.raises(SpecError, match="username and password"):
        ClientConfig(tracking_uri=URI, **credentials)


def test_password_without_username_is_not_echoed() -> None:
    """Rejecting a lone password never shows it."""
    with pytest.raises(ValueError, match="username and password") as caught:
        ClientConfig.from_env(
            environ={"MLFLOW_TRACKING_URI": URI, "MLFLOW_TRACKING_PASSWORD": PASSWORD}
        )
    assert PASSWORD not in str(caught.value)


@pytest.mark.parametrize("timeout", [0, -1, 3600.5, 1e9])
def test_timeout_out_of_bounds_is_rejected(timeout: float) -> None:
    """timeout must be in (0, 3600] seconds."""
    with pytest.raises(SpecError) as caught:
        ClientConfig(tracking_uri=URI, timeout=timeout)
    assert caught.value.errors()[0]["loc"] == ("timeout",)


@pytest.mark.parametrize("timeout", [0.001, 1, 3600])
def test_timeout_within_bounds_is_accepted(timeout: float) -> None:
    """The bounds are inclusive at 3600 and exclusive at 0."""
    assert ClientConfig(tracking_uri=URI, timeout=timeout).timeout == timeout


def test_timeout_zero_from_the_environment_is_rejected() -> None:
    """A zero MLFLOW_HTTP_REQUEST_TIMEOUT is refused, naming timeout."""
    with pytest.raises(SpecError) as caught:
        ClientConfig.from_env(
            environ={"MLFLOW_TRACKING_URI": URI, "MLFLOW_HTTP_REQUEST_TIMEOUT": "0"}
        )
    assert caught.value.errors()[0]["loc"] == ("timeout",)


def test_config_is_frozen() -> None:
    """Assigning to a field raises."""
    config = ClientConfig(tracking_uri=URI)
    with pytest.raises(SpecError, match="frozen"):
        config.tracking_uri = "http://elsewhere"  # type: ignore[misc]


def test_extra_fields_are_forbidden() -> None:
    """Unknown fields (typos) are refused, directly and through from_env overrides."""
    with pytest.raises(SpecError, match="tokn"):
        ClientConfig(tracking_uri=URI, tokn=TOKEN)  # type: ignore[call-arg]
    with pytest.raises(SpecError, match="tokn"):
        ClientConfig.from_env(environ={"MLFLOW_TRACKING_URI": URI}, tokn=TOKEN)


def test_uri_whitespace_and_trailing_slash_are_trimmed() -> None:
    """The base URL has no surrounding whitespace and no trailing slash."""
    config = ClientConfig(tracking_uri="  http://mlflow:5000/prefix/  ")
    assert config.tracking_uri == "http://mlflow:5000/prefix"
    assert config.base_url == "http://mlflow:5000/prefix"


def test_secrets_are_hidden_in_repr_str_and_dump() -> None:
    """Token and password are SecretStr: hidden in repr, str and model_dump."""
    config = ClientConfig(tracking_uri=URI, token=TOKEN, username="alice", password=PASSWORD)
    for text in (repr(config), str(config), str(config.model_dump()), config.model_dump_json()):
        assert TOKEN not in text
        assert PASSWORD not in text


@pytest.mark.parametrize(
    ("given", "first"),
    [
        ({}, 1_000),
        ({"target_latency": 5.0}, 5_000),
        ({"target_latency": 0.25}, 250),
        ({"foreground_budget": 0.5}, 250),  # the call target: half the budget
        ({"foreground_budget": 4.0}, 1_000),
        ({"target_latency": 0.01}, 100),  # never below the minimum batch
        ({"target_latency": 500.0}, 100_000),  # nor above the maximum
        ({"target_latency": 5.0, "max_batch_size": 2_000}, 2_000),
        ({"target_latency": 5.0, "initial_batch_size": 300}, 300),  # given: kept
    ],
)
def test_the_first_batch_follows_the_call_target(given: dict[str, Any], first: int) -> None:
    """An unset first batch asks for ~1 ms per trace of the call target: at 5 s the engine
    no longer ramps up from 1,000 through calls that each pay the backend's fixed cost, and
    at 0.25 s its first call does not take twice the target."""
    assert EngineConfig(**given).initial_batch_size == first


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({"max_batch_size": 50}, (50, 50, 50)),
        ({"min_batch_size": 200_000}, (200_000, 200_000, 200_000)),
        ({"min_batch_size": 5_000}, (5_000, 5_000, 100_000)),
        ({"max_batch_size": 500, "initial_batch_size": 200}, (100, 200, 500)),
        ({}, (100, 1_000, 100_000)),
    ],
)
def test_unset_batch_bounds_follow_the_given_ones(
    given: dict[str, int], expected: tuple[int, int, int]
) -> None:
    """A lone bound moves the unset ones with it (once the CLI's rule only; now the config's)."""
    config = EngineConfig(**given)
    assert (config.min_batch_size, config.initial_batch_size, config.max_batch_size) == expected
