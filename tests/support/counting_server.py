"""A simulated server that counts every request, for the bad-input sweep: "nothing was sent"
is checked, not assumed.
"""

from __future__ import annotations

import httpx

from tests.support.simulated_server import BASE_MS, SimulatedServer, sim_traces

NOW_MS = BASE_MS + 30 * 86_400_000
DAY_MS = 86_400_000
TRACE_ID = "tr-" + "a" * 32


class CountingServer:
    """A simulated server (one experiment, ``exp``) that counts every request it gets."""

    def __init__(self) -> None:
        self.server = SimulatedServer()
        self.experiment_id = self.server.add_experiment("exp", sim_traces(30))
        self.requests: list[httpx.Request] = []

    async def handle(self, request: httpx.Request) -> httpx.Response:
        """Count, then answer as the simulated server."""
        self.requests.append(request)
        return await self.server.handle(request)

    @property
    def transport(self) -> httpx.MockTransport:
        """The counting transport."""
        return httpx.MockTransport(self.handle)

    @property
    def deletes(self) -> int:
        """Delete requests received."""
        return sum(1 for request in self.requests if request.url.path.endswith("delete-traces"))
