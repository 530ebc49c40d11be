"""The CLI tests' simulated server: three experiments behind a recording transport."""

from __future__ import annotations

import pytest

from tests.support.cli_harness import Recorder, artifact_world, three_experiments


@pytest.fixture
def recorder() -> Recorder:
    """A simulated server with three experiments: 'alpha' (1), 'beta' (2), 'gamma' (3).

    Each has 100 traces 20 days old (every 4th an ERROR) and 10 traces 1 day old.
    """
    return three_experiments(Recorder())


@pytest.fixture
def artifact_recorder() -> Recorder:
    """The ``recorder`` world with an artifact store (``recorder.artifacts``).

    In each experiment every other trace, oldest first, has a folder holding a 13-byte
    ``traces.json``: 50 of the 100 old traces and 5 of the 10 new ones, 55 folders.
    """
    return artifact_world()
