"""Tests of the controller seams: settings models and the fixed limit."""

from __future__ import annotations

from typing import Any, get_type_hints

import pytest
from pydantic import ValidationError

from async_trace_delete import BatchSizer, ConcurrencyController, Outcome, UsageError
from async_trace_delete._batching import SizerSettings, SizerValues
from async_trace_delete._concurrency import FixedLimit, LimitSettings, LimitValues
from async_trace_delete._controls import ConcurrencyLimit

# The built-in limits are what the scheduler asks for (checked by mypy).
_LIMITS: tuple[ConcurrencyLimit, ...] = (ConcurrencyController(max_limit=2), FixedLimit(2))

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
    """Either a settings model or its fields, not both: which one would win is unclear."""
    with pytest.raises(UsageError, match="not both"):
        BatchSizer(settings=SizerSettings(), min_size=5)
    with pytest.raises(UsageError, match="not both"):
        ConcurrencyController(settings=LimitSettings(max_limit=2), max_limit=3)


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
    with pytest.raises(ValidationError, match=field):
        model(**values)


def test_settings_are_frozen() -> None:
    """Settings cannot change under a running controller."""
    settings = SizerSettings()
    with pytest.raises(ValidationError, match="frozen"):
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
