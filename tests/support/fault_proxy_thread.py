"""`FaultProxyThread`: a `FaultProxy` on its own port, run in a background thread.

For synchronous code: the proxy gets an event loop of its own in a daemon thread, started by
`__enter__` (which waits until it listens) and stopped by `__exit__`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Self

from tests.support.fault_proxy import CLOSE_TIMEOUT_SECONDS, FaultProxy
from tests.support.fault_rules import ProxyStats
from tests.support.faults import Fault

__all__ = ["FaultProxyThread"]


class FaultProxyThread:
    """`FaultProxy` run in a background thread with its own event loop, for synchronous code.

    Use as `with FaultProxyThread(upstream) as proxy:`; `script`, `script_random` and
    `clear_scripts` are run on the proxy's loop; `stats` is the live (unsynchronised) object.
    """

    def __init__(
        self,
        upstream: str,
        *,
        port: int = 0,
        upstream_timeout: float = 120.0,
        idle_timeout: float = 60.0,
    ) -> None:
        self._proxy = FaultProxy(
            upstream, port=port, upstream_timeout=upstream_timeout, idle_timeout=idle_timeout
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="fault-proxy", daemon=True)

    @property
    def url(self) -> str:
        """Base URL of the proxy."""
        return self._proxy.url

    @property
    def stats(self) -> ProxyStats:
        """The proxy's live statistics."""
        return self._proxy.stats

    def __enter__(self) -> Self:
        self._thread.start()
        if not self._ready.wait(CLOSE_TIMEOUT_SECONDS * 2) or self._failure is not None:
            raise RuntimeError("FaultProxyThread failed to start") from self._failure
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(CLOSE_TIMEOUT_SECONDS * 2)

    def script(
        self, *, path_contains: str = "", faults: Sequence[Fault], method: str | None = None
    ) -> None:
        """See `FaultProxy.script`."""
        self._call(
            lambda: self._proxy.script(path_contains=path_contains, faults=faults, method=method)
        )

    def script_random(
        self,
        *,
        path_contains: str = "",
        seed: int,
        weights: Mapping[Fault, float],
        method: str | None = None,
        max_requests: int | None = None,
    ) -> None:
        """See `FaultProxy.script_random`."""
        self._call(
            lambda: self._proxy.script_random(
                path_contains=path_contains,
                seed=seed,
                weights=weights,
                method=method,
                max_requests=max_requests,
            )
        )

    def clear_scripts(self) -> None:
        """See `FaultProxy.clear_scripts`."""
        self._call(self._proxy.clear_scripts)

    def _call(self, function: Callable[[], None]) -> None:
        if self._loop is None:
            raise RuntimeError("FaultProxyThread is not running")
        done: concurrent.futures.Future[None] = concurrent.futures.Future()

        def run() -> None:
            try:
                function()
            except Exception as error:  # handed back to the calling thread
                done.set_exception(error)
            else:
                done.set_result(None)

        self._loop.call_soon_threadsafe(run)
        done.result(timeout=CLOSE_TIMEOUT_SECONDS)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as error:  # reported by __enter__
            self._failure = error
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with self._proxy:
            self._ready.set()
            await self._stop.wait()
