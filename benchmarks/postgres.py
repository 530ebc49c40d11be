"""Moved to `tests.support.postgres` (the backend tests use it too); re-exported for benchmarks."""

from tests.support.postgres import (
    PostgresCluster,
    PostgresUnavailableError,
    find_binaries,
    local_postgres,
)

__all__ = ["PostgresCluster", "PostgresUnavailableError", "find_binaries", "local_postgres"]
