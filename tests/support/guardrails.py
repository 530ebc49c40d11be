"""What the guardrail tests share, on a mocked and on the real server: an engine builder."""

from __future__ import annotations

from typing import Any

from async_trace_delete import ClientConfig, Engine, EngineConfig

BASE_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
ERROR_ONLY = "status = 'ERROR'"


def make_engine(url: str, **settings: Any) -> Engine:
    """An engine on ``url`` with small search pages."""
    values: dict[str, Any] = {"rate_limit": 1_000.0, "search_page_size": 50, **settings}
    return Engine(EngineConfig(client=ClientConfig(tracking_uri=url), **values))
