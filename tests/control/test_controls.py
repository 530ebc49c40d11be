"""Tests of the controller seams: settings models, the fixed limit, and custom controllers in
the engine."""

from __future__ import annotations

from typing import Any, get_type_hints

import pytest

from async_trace_delete import (
    BatchSizer,
    ClientConfig,
    ConcurrencyController,
    ConcurrencyLimit,
    DeleteSpec,
    Engine,
    EngineConfig,
    FixedLimit,
    LimitSettings,
    Outcome,
    Sizer,
    SizerSettings,
    SpecError,
    UsageError,
)
from async_trace_delete._batching import SizerValues
from async_trace_delete._concurrency import LimitValues
from tests.support.sim_engine import NOW_MS, cutoff_spec, seeded
from tests.support.simulated_server import SIM_URL, SimTrace, SimulatedServer, sim_traces

# The built-in controllers are what the engine asks for (checked by mypy).
_LIMITS: tuple[ConcurrencyLimit, ...] = (ConcurrencyController(max_limit=2), FixedLimit(2))
_SIZER: Sizer = BatchSizer()


# -- settings models -------------------------------------------------------------------------


def test_keyword_arguments_are_the_settings_fields() -> None:
    """The keyword constructors take exactly the settings models' fields."""
    assert set(get_type_hints(SizerValues)) == set(SizerSettings.model_fields)
    assert set(get_type_hints(LimitValues)) == set(LimitSettings.model_fields)


def test_settings_or_keywords_build_the_same_controller() -> None:
    """A sizer built from a settings model equals one built from the same keywords."""
    settings = SizerSettings(target_latency=0.5, min_size=10, max_size=500, initial_size=20)
    from_settings = BatchSizer(settings=settings)
    from_keywords = BatchSizer(target_latency=0.5, min_size=10, max_size=500, initial_size=20)
    assert from_settings.settings == from_keywords.settings == settings
    assert from_settings.size == from_keywords.size == 20
    limit = ConcurrencyController(settings=LimitSettings(max_limit=4, initial_limit=2))
    assert (limit.limit, limit.max_limit, limit.settings.window_calls) == (2, 4, 4)


def test_settings_and_keywords_together_are_refused() -> None:
    """Either a settings model or its fields, not both: which one would win is unclear (mypy
    refuses the call too)."""
    with pytest.raises(UsageError, match="not both"):
        BatchSizer(settings=SizerSettings(), min_size=5)  # type: ignore[call-overload]
    with pytest.raises(UsageError, match="not both"):
        ConcurrencyController(  # type: ignore[call-overload]
            settings=LimitSettings(max_limit=2), max_limit=3
        )


@pytest.mark.parametrize(
    ("model", "values", "field"),
    [
        (SizerSettings, {"min_size": 0}, "min_size"),
        (SizerSettings, {"initial_size": True}, "initial_size"),
        (SizerSettings, {"max_size": 2.0}, "max_size"),
        (SizerSettings, {"target_latency": float("inf")}, "target_latency"),
        (SizerSettings, {"min_size": 500, "max_size": 100}, "max_size"),
        (SizerSettings, {"batch": 100}, "batch"),
        (LimitSettings, {}, "max_limit"),
        (LimitSettings, {"max_limit": True}, "max_limit"),
        (LimitSettings, {"max_limit": 2, "window_calls": False}, "window_calls"),
        (LimitSettings, {"max_limit": 2, "initial_limit": 3}, "initial_limit"),
    ],
)
def test_settings_models_name_the_field_they_refuse(
    model: type[SizerSettings | LimitSettings], values: dict[str, Any], field: str
) -> None:
    """A bad value (a bool where a count belongs, too) is refused naming its field."""
    with pytest.raises(SpecError, match=field):
        model(**values)


def test_settings_are_frozen() -> None:
    """Settings cannot change under a running controller."""
    settings = SizerSettings()
    with pytest.raises(SpecError, match="frozen"):
        settings.min_size = 1  # type: ignore[misc]


# -- the fixed limit -------------------------------------------------------------------------


@pytest.mark.parametrize("outcome", list(Outcome))
def test_fixed_limit_ignores_every_result(outcome: Outcome) -> None:
    """Whatever a call ended in, a fixed limit stays where it is."""
    limit = FixedLimit(3)
    assert limit.record(now=1.0, deleted=0, latency=9.0, outcome=outcome, waiting=5) == 3
    assert limit.limit == 3


@pytest.mark.parametrize("value", [0, -1, True, 2.0])
def test_fixed_limit_must_be_a_positive_integer(value: Any) -> None:
    """A fixed limit is an integer >= 1; a bool or a float is not one."""
    with pytest.raises(UsageError, match="limit"):
        FixedLimit(value)


# -- custom controllers in the engine --------------------------------------------------------


class RecordingSizer:
    """A sizer that always asks for the same size and remembers what it was told."""

    def __init__(self, size: int) -> None:
        self._size = size
        self.observed: list[tuple[int, int | None, Outcome]] = []

    @property
    def size(self) -> int:
        """The fixed size."""
        return self._size

    @property
    def min_size(self) -> int:
        """The fixed size is also the least it asks for."""
        return self._size

    def observe(
        self, *, requested: int, deleted: int | None, latency: float | None, outcome: Outcome
    ) -> int:
        """Remember the observation; keep the size."""
        self.observed.append((requested, deleted, outcome))
        return self._size


def spec_for_ids(experiment_id: str, traces: list[SimTrace]) -> DeleteSpec:
    """An ID job for ``traces`` of one experiment."""
    return DeleteSpec(experiment_id=experiment_id, trace_ids=[trace.trace_id for trace in traces])


def sim_engine(server: SimulatedServer, config: EngineConfig, **controllers: Any) -> Engine:
    """An engine on the simulated server's fake clock with the given controllers."""
    return Engine(
        config,
        transport=server.transport,
        clock=server.clock,
        sleep=server.clock.sleep,
        random=lambda: 0.5,
        wall_clock_ms=lambda: NOW_MS,
        **controllers,
    )


@pytest.mark.asyncio
async def test_engine_uses_a_custom_concurrency_limit() -> None:
    """A limit given to the engine is the one enforced, instead of the config's adaptive one."""
    server = SimulatedServer()
    server.in_flight_turns = 5  # requests stay in flight long enough to overlap
    traces = sim_traces(200)
    experiment_id = server.add_experiment("ids", traces)
    config = EngineConfig(
        client=ClientConfig(tracking_uri=SIM_URL),
        max_concurrency=8,
        initial_id_chunk=10,
        max_id_chunk=10,
    )
    async with sim_engine(server, config, concurrency_limit=FixedLimit(3)) as engine:
        assert engine.concurrency == 3
        report = await engine.run([spec_for_ids(experiment_id, traces)])
    deletes = [call for call in server.calls if call.kind == "delete"]
    assert max(call.concurrent for call in deletes) + 1 == 3
    assert report.jobs[0].deleted == 200


@pytest.mark.asyncio
async def test_engine_uses_custom_sizers() -> None:
    """Sizers given to the engine size its calls and learn from every one of them."""
    server = SimulatedServer()
    experiment_id, cutoff = seeded(server, 100)
    cutoff_sizer = RecordingSizer(30)
    id_sizer = RecordingSizer(7)
    config = EngineConfig(client=ClientConfig(tracking_uri=SIM_URL))
    async with sim_engine(server, config, cutoff_sizer=cutoff_sizer, id_sizer=id_sizer) as engine:
        report = await engine.run([cutoff_spec(experiment_id, cutoff)])
        trace_ids = sim_traces(20, tag=1)
        ids_experiment = server.add_experiment("ids", trace_ids)
        ids_report = await engine.run([spec_for_ids(ids_experiment, trace_ids)])
    assert [call.requested for call in server.deletes_for(experiment_id)] == [30, 30, 30, 30]
    assert [deleted for _, deleted, _ in cutoff_sizer.observed] == [30, 30, 30, 10]
    assert [call.requested for call in server.deletes_for(ids_experiment)] == [7, 7, 6]
    assert [requested for requested, _, _ in id_sizer.observed] == [7, 7, 6]
    assert (report.jobs[0].deleted, ids_report.jobs[0].deleted) == (100, 20)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("adaptive", "max_concurrency", "starts_at"),
    [(True, 4, 1), (False, 4, 4), (True, 1, 1)],
    ids=["adaptive", "fixed", "one"],
)
async def test_engine_builds_its_limit_from_the_config(
    adaptive: bool, max_concurrency: int, starts_at: int
) -> None:
    """Without a custom limit the config decides: adaptive from 1, or fixed at the cap."""
    config = EngineConfig(
        client=ClientConfig(tracking_uri=SIM_URL),
        adaptive_concurrency=adaptive,
        max_concurrency=max_concurrency,
    )
    async with sim_engine(SimulatedServer(), config) as engine:
        assert engine.concurrency == starts_at
