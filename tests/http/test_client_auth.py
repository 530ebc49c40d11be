"""TracesClient authentication headers, and secrets kept out of reprs, dumps and error texts.

No network and no sleeping: every test talks to an ``httpx.MockTransport``.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable

import pytest

from async_trace_delete import ClientConfig, EngineClosedError, MlflowApiError, TracesClient
from tests.support.client_doubles import (
    BASE_URL,
    Handler,
    Recorder,
    answer,
    make_client,
    raising,
    replay,
)
from tests.support.client_error_cases import ERROR_CASES, TRANSPORT_CASES

TOKEN = "tok-SECRET-9f8e7d"
USERNAME = "alice"
PASSWORD = "pw-SECRET-1a2b3c"
BASIC_VALUE = base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode("ascii")
SECRETS = (TOKEN, PASSWORD, BASIC_VALUE)


# -- authentication and secrets -------------------------------------------------------------


async def authorization_sent(config: ClientConfig) -> str | None:
    """Make one call with ``config`` and return the Authorization header it sent."""
    recorder = Recorder(answer(200, {"traces_deleted": 0}))
    async with make_client(recorder, config=config) as client:
        await client.delete_traces("1", max_timestamp_millis=1)
    header: str | None = recorder.requests[0].headers.get("Authorization")
    return header


@pytest.mark.asyncio
async def test_bearer_token_is_sent() -> None:
    """A token becomes ``Authorization: Bearer <token>``."""
    config = ClientConfig(tracking_uri=BASE_URL, token=TOKEN)
    assert config.auth_scheme == "bearer"
    assert await authorization_sent(config) == f"Bearer {TOKEN}"


@pytest.mark.asyncio
async def test_basic_credentials_are_sent() -> None:
    """Username and password become ``Authorization: Basic base64(user:password)``."""
    config = ClientConfig(tracking_uri=BASE_URL, username=USERNAME, password=PASSWORD)
    assert config.auth_scheme == "basic"
    assert await authorization_sent(config) == f"Basic {BASIC_VALUE}"


@pytest.mark.asyncio
async def test_basic_wins_over_bearer_as_in_mlflow() -> None:
    """With both, Basic is used, as MLflow's own client does."""
    config = ClientConfig(tracking_uri=BASE_URL, token=TOKEN, username=USERNAME, password=PASSWORD)
    assert config.auth_scheme == "basic"
    assert await authorization_sent(config) == f"Basic {BASIC_VALUE}"


@pytest.mark.asyncio
async def test_no_credentials_no_authorization_header() -> None:
    """Without credentials nothing is sent; the User-Agent names the library."""
    recorder = Recorder(answer(200, {}))
    async with make_client(recorder) as client:
        await client.search_traces("1")
    (request,) = recorder.requests
    assert "Authorization" not in request.headers
    assert request.headers["User-Agent"].startswith("async-trace-delete/")


def all_secrets_config() -> ClientConfig:
    return ClientConfig(tracking_uri=BASE_URL, token=TOKEN, username=USERNAME, password=PASSWORD)


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


def test_secrets_stay_out_of_reprs_and_dumps() -> None:
    """repr/str of the client and config, and the config dump, never show a secret."""
    for config in (
        all_secrets_config(),
        ClientConfig(tracking_uri=BASE_URL, token=TOKEN),
    ):
        client = make_client(Recorder(answer()), config=config)
        assert_no_secret(repr(client))
        assert_no_secret(repr(config))
        assert_no_secret(str(config))
        assert_no_secret(str(config.model_dump()))
        assert_no_secret(config.model_dump_json())
        assert_no_secret(repr(client.config))


async def error_texts_of_every_call(client: TracesClient) -> list[str]:
    """Make each kind of call and return the str/repr/message of every MlflowApiError."""
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: client.delete_traces("1", max_timestamp_millis=5, max_traces=3),
        lambda: client.delete_traces("1", trace_ids=["tr-1"]),
        lambda: client.search_traces("1"),
        lambda: client.get_experiment("1"),
        lambda: client.get_experiment_by_name("n"),
    ]
    texts: list[str] = []
    for call in calls:
        try:
            await call()
        except MlflowApiError as error:
            texts.extend([str(error), repr(error), error.message])
    assert texts, "every handler of the sweep makes at least one call fail"
    return texts


@pytest.mark.asyncio
async def test_secrets_never_appear_in_any_error_text() -> None:
    """Sweep every error path with credentials set: no error text contains a secret."""
    texts: list[str] = []
    handlers: list[Handler] = [replay(case[0]) for case in ERROR_CASES.values()]
    handlers += [raising(case[0]) for case in TRANSPORT_CASES.values()]
    handlers.append(answer(200, {"traces_deleted": -3}))
    for config in (all_secrets_config(), ClientConfig(tracking_uri=BASE_URL, token=TOKEN)):
        for handler in handlers:
            async with make_client(Recorder(handler), config=config) as client:
                texts.extend(await error_texts_of_every_call(client))
        client = make_client(Recorder(answer()), config=config)
        with pytest.raises(EngineClosedError) as closed:
            await client.search_traces("1")
        texts.append(str(closed.value))
    assert len(texts) > 100
    for text in texts:
        assert_no_secret(text)
