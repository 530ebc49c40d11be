"""The engine run experiment by experiment stops cleanly at its time box."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from async_trace_delete import DeleteSpec
from benchmarks.variants import VariantRun, _in_turn

CUTOFF_MS = 1_700_000_000_000


@dataclass
class _Report:
    jobs: list[str]


@dataclass
class _StoppingEngine:
    """Runs the first job; the box falls during it; afterwards it refuses, like `Engine`."""

    result: VariantRun
    started: list[str] = field(default_factory=list)

    async def run(self, specs: list[DeleteSpec]) -> _Report:
        if self.result.time_boxed:
            raise RuntimeError("the engine was stopped before it started; nothing was deleted")
        experiment = str(specs[0].experiment_id)
        self.started.append(experiment)
        self.result.time_boxed = True  # `_stop_at_deadline` fired while this job ran
        return _Report([f"job {experiment}"])


def _specs() -> list[DeleteSpec]:
    return [DeleteSpec(experiment_id=str(e), max_timestamp_millis=CUTOFF_MS) for e in (1, 2, 3)]


@pytest.mark.asyncio
async def test_in_turn_stops_starting_experiments_after_the_box() -> None:
    """After the box the remaining experiments are not started and nothing raises."""
    result = VariantRun()
    engine: Any = _StoppingEngine(result)
    reports = await _in_turn(engine, _specs(), result)
    assert reports == ["job 1"]
    assert engine.started == ["1"]


@pytest.mark.asyncio
async def test_in_turn_refusal_at_the_box_ends_the_loop() -> None:
    """A job refused because the box fell while it was starting ends the loop quietly."""
    result = VariantRun()

    class _Refusing:
        async def run(self, specs: list[DeleteSpec]) -> _Report:
            result.time_boxed = True  # the box fell while this job was starting
            raise RuntimeError("stopped")

    engine: Any = _Refusing()
    assert await _in_turn(engine, _specs(), result) == []


@pytest.mark.asyncio
async def test_in_turn_reraises_errors_before_the_box() -> None:
    """An engine error with no time box is the variant's failure, not swallowed."""
    result = VariantRun()
    engine: Any = _StoppingEngine(VariantRun(time_boxed=True))
    with pytest.raises(RuntimeError, match="stopped"):
        await _in_turn(engine, _specs(), result)
