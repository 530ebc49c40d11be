"""DeleteSpec: MLflow's deletion rules, checked before any HTTP call, and resolve()."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from async_trace_delete import DeleteSpec, GuardrailError, ResolvedSpec, SpecError

NOW = 1_750_000_000_000  # a fixed "now", epoch ms
DAY_MS = 86_400_000


def rejected(match: str, **fields: Any) -> SpecError:
    """Build a spec that must fail; return the error after checking its text."""
    with pytest.raises(SpecError, match=match) as caught:
        DeleteSpec(**fields)
    return caught.value


def error_locations(error: SpecError) -> list[tuple[int | str, ...]]:
    return [tuple(item["loc"]) for item in error.errors()]


# -- selection rules --------------------------------------------------------------------


def test_cutoff_and_ids_together_are_rejected() -> None:
    """MLflow deletes by cutoff or by IDs, never both."""
    rejected(
        "trace_ids cannot be combined with a cutoff",
        experiment_id="1",
        max_timestamp_millis=10,
        trace_ids=["tr-1"],
    )
    rejected(
        "trace_ids cannot be combined with a cutoff",
        experiment_id="1",
        older_than=timedelta(days=1),
        trace_ids=["tr-1"],
    )


def test_nothing_to_select_by_is_rejected() -> None:
    """Neither cutoff, IDs nor filter: the error says there is nothing to select traces by."""
    rejected("nothing to select traces by", experiment_id="1")
    rejected("nothing to select traces by", experiment_id="1", max_traces=5)


def test_max_timestamp_millis_and_older_than_together_are_rejected() -> None:
    """Both forms of the cutoff at once are refused, naming both."""
    rejected(
        "give max_timestamp_millis or older_than, not both",
        experiment_id="1",
        max_timestamp_millis=10,
        older_than=timedelta(days=1),
    )


@pytest.mark.parametrize("max_traces", [0, -1, -(10**12)])
def test_non_positive_max_traces_is_rejected(max_traces: int) -> None:
    """max_traces must be > 0; the error is on the max_traces field."""
    error = rejected(
        "greater than 0", experiment_id="1", max_timestamp_millis=10, max_traces=max_traces
    )
    assert error_locations(error) == [("max_traces",)]


@pytest.mark.parametrize("max_traces", [2.0, True, "5"])
def test_non_integer_max_traces_is_rejected(max_traces: Any) -> None:
    """max_traces is a strict integer: floats, bools and strings are refused."""
    error = rejected(
        "max_traces", experiment_id="1", max_timestamp_millis=10, max_traces=max_traces
    )
    assert error_locations(error) == [("max_traces",)]


def test_max_traces_with_ids_is_rejected() -> None:
    """max_traces cannot be combined with trace_ids (MLflow's rule)."""
    rejected(
        "max_traces cannot be used with trace_ids",
        experiment_id="1",
        trace_ids=["tr-1"],
        max_traces=1,
    )


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        (0, "greater than 0"),
        (-1, "greater than 0"),
        (10.0, "valid integer"),
        (10.5, "valid integer"),
        (True, "valid integer"),
        (False, "valid integer"),
        ("10", "valid integer"),
        (None, "nothing to select traces by"),
    ],
)
def test_bad_max_timestamp_millis_is_rejected(value: Any, rule: str) -> None:
    """The cutoff is a strict integer > 0 (some servers read 0 as 'delete everything')."""
    error = rejected(rule, experiment_id="1", max_timestamp_millis=value)
    if value is not None:
        assert error_locations(error) == [("max_timestamp_millis",)]


# -- experiment --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "rule", "location"),
    [
        ({"experiment_id": ""}, "must not be empty", ("experiment_id",)),
        ({"experiment_id": "   "}, "must not be empty", ("experiment_id",)),
        ({"experiment_id": " 1"}, "whitespace", ("experiment_id",)),
        ({"experiment_id": "1\n"}, "whitespace", ("experiment_id",)),
        ({"experiment_name": ""}, "must not be empty", ("experiment_name",)),
        ({"experiment_name": "name "}, "whitespace", ("experiment_name",)),
        ({}, "exactly one of experiment_id, experiment_name and an experiment selector", ()),
        ({"experiment_id": "1", "experiment_name": "x"}, "exactly one of experiment_id", ()),
    ],
)
def test_experiment_rules(fields: dict[str, Any], rule: str, location: tuple[str, ...]) -> None:
    """Exactly one non-blank experiment ID or name, without surrounding whitespace."""
    error = rejected(rule, max_timestamp_millis=10, **fields)
    assert error_locations(error) == [location]


def test_integer_experiment_id_becomes_text() -> None:
    """An int experiment ID is accepted and stored as MLflow's string form."""
    spec = DeleteSpec(experiment_id=12, max_timestamp_millis=10)
    assert spec.experiment_id == "12"
    assert spec.experiment == "12"


def test_bool_experiment_id_is_rejected() -> None:
    """True is not an experiment ID."""
    error = rejected("experiment_id", experiment_id=True, max_timestamp_millis=10)
    assert ("experiment_id",) in error_locations(error)


def test_experiment_by_name() -> None:
    """A name-based spec reports the name as its experiment."""
    spec = DeleteSpec(experiment_name="prod/agents", max_timestamp_millis=10)
    assert spec.experiment_id is None
    assert spec.experiment == "prod/agents"


# -- trace IDs ---------------------------------------------------------------------------


def test_ids_are_deduplicated_in_order() -> None:
    """Repeated IDs are dropped, keeping first-seen order."""
    spec = DeleteSpec(experiment_id="1", trace_ids=["tr-c", "tr-a", "tr-c", "tr-b", "tr-a"])
    assert spec.trace_ids == ("tr-c", "tr-a", "tr-b")


@pytest.mark.parametrize("ids", [[], ()])
def test_empty_id_list_is_rejected(ids: Any) -> None:
    """An empty trace_ids list selects nothing and is refused."""
    error = rejected("at least one trace ID", experiment_id="1", trace_ids=ids)
    assert error_locations(error) == [("trace_ids",)]


def test_ids_as_a_single_string_are_rejected() -> None:
    """A bare string is not split into characters: it is refused."""
    error = rejected("not a single string", experiment_id="1", trace_ids="tr-123")
    assert error_locations(error) == [("trace_ids",)]


@pytest.mark.parametrize("ids", [["tr-1", ""], [" tr-1"], ["tr-1", "tr-2\t"]])
def test_blank_or_padded_ids_are_rejected(ids: list[str]) -> None:
    """Each ID must be non-empty and unpadded; the error gives the position."""
    rejected("position", experiment_id="1", trace_ids=ids)


def test_non_string_ids_are_rejected() -> None:
    """IDs are strings."""
    error = rejected("trace_ids", experiment_id="1", trace_ids=[1, 2])
    assert all(location[0] == "trace_ids" for location in error_locations(error))


def test_filter_with_ids_is_rejected() -> None:
    """filter_string cannot narrow an ID job."""
    rejected(
        "filter_string cannot be combined with trace_ids",
        experiment_id="1",
        trace_ids=["tr-1"],
        filter_string="status = 'ERROR'",
    )


# -- filter ------------------------------------------------------------------------------


@pytest.mark.parametrize("filter_string", ["", "   "])
def test_empty_filter_without_cutoff_is_rejected(filter_string: str) -> None:
    """An empty filter and no cutoff would match everything: refused unless allowed."""
    rejected("allow_match_all", experiment_id="1", filter_string=filter_string)


def test_empty_filter_without_cutoff_is_allowed_with_allow_match_all() -> None:
    """allow_match_all lets a match-everything job through, deliberately."""
    spec = DeleteSpec(experiment_id="1", filter_string="", allow_match_all=True)
    assert spec.filter_string == ""
    assert spec.mode == "matching"  # there is no cutoff to run a cutoff job with


def test_empty_filter_with_a_cutoff_is_fine() -> None:
    """With a cutoff an empty filter is harmless."""
    spec = DeleteSpec(experiment_id="1", filter_string=" ", max_timestamp_millis=10)
    assert spec.filter_string == ""
    assert spec.mode == "cutoff"


def test_filter_is_stripped() -> None:
    """Surrounding whitespace of a filter is dropped."""
    spec = DeleteSpec(experiment_id="1", filter_string="  status = 'ERROR' ")
    assert spec.filter_string == "status = 'ERROR'"


# -- mode --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "mode"),
    [
        ({"max_timestamp_millis": 10}, "cutoff"),
        ({"older_than": timedelta(days=30)}, "cutoff"),
        ({"max_timestamp_millis": 10, "max_traces": 5}, "cutoff"),
        ({"trace_ids": ["tr-1"]}, "ids"),
        ({"filter_string": "status = 'ERROR'"}, "matching"),
        ({"filter_string": "status = 'ERROR'", "max_timestamp_millis": 10}, "matching"),
    ],
)
def test_mode(fields: dict[str, Any], mode: str) -> None:
    """mode tells which deletion path the job takes."""
    assert DeleteSpec(experiment_id="1", **fields).mode == mode


# -- durations and guardrail fields -------------------------------------------------------


@pytest.mark.parametrize("field", ["older_than", "min_retention"])
@pytest.mark.parametrize("duration", [timedelta(0), timedelta(seconds=-1)])
def test_non_positive_durations_are_rejected(field: str, duration: timedelta) -> None:
    """older_than and min_retention must be positive."""
    fields: dict[str, Any] = {field: duration}
    error = rejected("positive duration", experiment_id="1", max_timestamp_millis=10, **fields)
    assert error_locations(error) == [(field,)]


def test_negative_expect_at_most_is_rejected() -> None:
    """expect_at_most is >= 0 (0 means: refuse if anything would be deleted)."""
    error = rejected(
        "greater than or equal to 0", experiment_id="1", max_timestamp_millis=10, expect_at_most=-1
    )
    assert error_locations(error) == [("expect_at_most",)]
    assert DeleteSpec(experiment_id="1", max_timestamp_millis=10, expect_at_most=0)


# -- frozen, extra -----------------------------------------------------------------------


def test_spec_is_frozen() -> None:
    """Assigning to a field raises."""
    spec = DeleteSpec(experiment_id="1", max_timestamp_millis=10)
    with pytest.raises(SpecError, match="frozen"):
        spec.max_timestamp_millis = 0  # type: ignore[misc]
    assert spec.max_timestamp_millis == 10


def test_extra_fields_are_rejected() -> None:
    """Unknown fields (e.g. MLflow's request_ids) are refused, not ignored."""
    error = rejected(
        "request_ids", experiment_id="1", max_timestamp_millis=10, request_ids=["tr-1"]
    )
    assert error.errors()[0]["type"] == "extra_forbidden"


# -- resolve -----------------------------------------------------------------------------


def test_resolve_older_than_against_now_exactly() -> None:
    """older_than becomes now_millis minus the duration, to the millisecond."""
    spec = DeleteSpec(experiment_id="1", older_than=timedelta(days=30))
    resolved = spec.resolve(now_millis=NOW)
    assert resolved.cutoff_millis == NOW - 30 * DAY_MS
    assert resolved.experiment_id == "1"
    assert resolved.spec is spec


def test_resolve_keeps_an_explicit_cutoff() -> None:
    """A max_timestamp_millis cutoff is kept as is."""
    resolved = DeleteSpec(experiment_id="1", max_timestamp_millis=NOW - 5).resolve(now_millis=NOW)
    assert resolved.cutoff_millis == NOW - 5


def test_resolve_ids_spec_has_no_cutoff() -> None:
    """An ID job resolves without a cutoff."""
    resolved = DeleteSpec(experiment_id="1", trace_ids=["tr-1"]).resolve(now_millis=NOW)
    assert resolved.cutoff_millis is None


def test_resolve_name_spec_needs_the_resolved_id() -> None:
    """A name-based spec takes the ID it resolved to, and refuses to resolve without one."""
    spec = DeleteSpec(experiment_name="prod", max_timestamp_millis=10)
    assert spec.resolve(now_millis=NOW, experiment_id="42").experiment_id == "42"
    with pytest.raises(ValueError, match="experiment_name or a selector must be resolved"):
        spec.resolve(now_millis=NOW)


@given(age_ms=st.integers(min_value=1, max_value=NOW - 1))
@example(age_ms=1001)
@example(age_ms=869_073_099_287)
def test_resolve_older_than_is_exact_for_any_millisecond_duration(age_ms: int) -> None:
    """For every whole-millisecond older_than, the cutoff is exactly now - older_than."""
    spec = DeleteSpec(experiment_id="1", older_than=timedelta(milliseconds=age_ms))
    assert spec.resolve(now_millis=NOW).cutoff_millis == NOW - age_ms


@given(age_seconds=st.integers(min_value=1, max_value=NOW // 1000 - 1))
def test_resolve_older_than_is_exact_for_whole_seconds(age_seconds: int) -> None:
    """Whole-second durations (days, hours, ...) resolve exactly."""
    spec = DeleteSpec(experiment_id="1", older_than=timedelta(seconds=age_seconds))
    assert spec.resolve(now_millis=NOW).cutoff_millis == NOW - age_seconds * 1000


def test_older_than_before_1970_is_a_guardrail_error() -> None:
    """An age reaching before the epoch would give a cutoff <= 0: refused."""
    spec = DeleteSpec(experiment_id="1", older_than=timedelta(days=365 * 100))
    with pytest.raises(GuardrailError, match="older_than"):
        spec.resolve(now_millis=NOW)


def test_future_cutoff_is_a_guardrail_error() -> None:
    """A cutoff beyond now plus one minute of clock skew is refused."""
    spec = DeleteSpec(experiment_id="1", max_timestamp_millis=NOW + 60_001)
    with pytest.raises(GuardrailError, match=r"max_timestamp_millis.*future"):
        spec.resolve(now_millis=NOW)
    tolerated = DeleteSpec(experiment_id="1", max_timestamp_millis=NOW + 60_000)
    assert tolerated.resolve(now_millis=NOW).cutoff_millis == NOW + 60_000


def test_min_retention_refuses_a_too_new_cutoff() -> None:
    """A cutoff keeping less than min_retention is refused; the boundary itself is allowed."""
    retention = timedelta(days=7)
    too_new = DeleteSpec(
        experiment_id="1", max_timestamp_millis=NOW - 7 * DAY_MS + 1, min_retention=retention
    )
    with pytest.raises(GuardrailError, match="min_retention"):
        too_new.resolve(now_millis=NOW)
    boundary = DeleteSpec(
        experiment_id="1", max_timestamp_millis=NOW - 7 * DAY_MS, min_retention=retention
    )
    assert boundary.resolve(now_millis=NOW).cutoff_millis == NOW - 7 * DAY_MS


def test_min_retention_applies_to_older_than() -> None:
    """older_than shorter than min_retention is refused too."""
    spec = DeleteSpec(
        experiment_id="1", older_than=timedelta(days=1), min_retention=timedelta(days=7)
    )
    with pytest.raises(GuardrailError, match="min_retention"):
        spec.resolve(now_millis=NOW)


def test_force_overrides_min_retention() -> None:
    """force=True lets a too-new cutoff through (but not a future one)."""
    spec = DeleteSpec(
        experiment_id="1", max_timestamp_millis=NOW - 1, min_retention=timedelta(days=7), force=True
    )
    assert spec.resolve(now_millis=NOW).cutoff_millis == NOW - 1
    future = DeleteSpec(
        experiment_id="1",
        max_timestamp_millis=NOW + DAY_MS,
        min_retention=timedelta(days=7),
        force=True,
    )
    with pytest.raises(GuardrailError, match="future"):
        future.resolve(now_millis=NOW)


# -- ResolvedSpec ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"max_timestamp_millis": 123}, "timestamp_ms <= 123"),
        # Without a cutoff, a selective job is bounded by its submission (NOW).
        ({"filter_string": "status = 'ERROR'"}, f"status = 'ERROR' AND timestamp_ms <= {NOW}"),
        (
            {"filter_string": "status = 'ERROR'", "max_timestamp_millis": 123},
            "status = 'ERROR' AND timestamp_ms <= 123",
        ),
        ({"filter_string": "", "max_timestamp_millis": 5}, "timestamp_ms <= 5"),
        ({"filter_string": "", "allow_match_all": True}, f"timestamp_ms <= {NOW}"),
    ],
)
def test_search_filter(fields: dict[str, Any], expected: str) -> None:
    """search_filter selects exactly what the job deletes: the filter AND the cutoff (or the
    time of submission)."""
    resolved = DeleteSpec(experiment_id="1", **fields).resolve(now_millis=NOW)
    assert resolved.search_filter() == expected


def test_search_filter_uses_the_resolved_older_than() -> None:
    """An older_than job searches with the pinned cutoff."""
    spec = DeleteSpec(
        experiment_id="1", filter_string="tag.env = 'dev'", older_than=timedelta(days=1)
    )
    resolved = spec.resolve(now_millis=NOW)
    assert resolved.search_filter() == f"tag.env = 'dev' AND timestamp_ms <= {NOW - DAY_MS}"


def test_resolved_label_defaults_to_the_experiment() -> None:
    """The label is the user's label, else the experiment as named."""
    plain = DeleteSpec(experiment_name="prod", max_timestamp_millis=10)
    assert plain.resolve(now_millis=NOW, experiment_id="3").label == "prod"
    labelled = DeleteSpec(experiment_id="3", max_timestamp_millis=10, label="nightly")
    assert labelled.resolve(now_millis=NOW).label == "nightly"


def test_resolved_spec_is_frozen_and_strict() -> None:
    """ResolvedSpec is frozen and refuses extra fields."""
    resolved = DeleteSpec(experiment_id="1", max_timestamp_millis=10).resolve(now_millis=NOW)
    with pytest.raises(SpecError, match="frozen"):
        resolved.cutoff_millis = 0  # type: ignore[misc]
    with pytest.raises(SpecError, match="extra"):
        ResolvedSpec(
            spec=resolved.spec,
            experiment_id="1",
            cutoff_millis=1,
            extra=1,  # type: ignore[call-arg]
        )


# -- properties --------------------------------------------------------------------------


@given(
    cutoff=st.integers(min_value=1, max_value=2**63 - 1),
    cap=st.none() | st.integers(min_value=1, max_value=2**31 - 1),
)
def test_any_positive_cutoff_and_cap_validate_and_round_trip(cutoff: int, cap: int | None) -> None:
    """Every positive cutoff with an optional positive cap is valid and survives a dump/load."""
    spec = DeleteSpec(experiment_id="1", max_timestamp_millis=cutoff, max_traces=cap)
    assert spec.max_timestamp_millis == cutoff
    assert spec.max_traces == cap
    assert spec.mode == "cutoff"
    assert DeleteSpec(**spec.model_dump()) == spec
    assert DeleteSpec.model_validate_json(spec.model_dump_json()) == spec


@given(value=st.integers(max_value=0))
def test_any_non_positive_cutoff_is_rejected(value: int) -> None:
    """Zero and negative cutoffs are always refused, on the max_timestamp_millis field."""
    with pytest.raises(SpecError) as caught:
        DeleteSpec(experiment_id="1", max_timestamp_millis=value)
    assert error_locations(caught.value) == [("max_timestamp_millis",)]


@given(value=st.integers(max_value=0))
def test_any_non_positive_cap_is_rejected(value: int) -> None:
    """Zero and negative max_traces are always refused, on the max_traces field."""
    with pytest.raises(SpecError) as caught:
        DeleteSpec(experiment_id="1", max_timestamp_millis=10, max_traces=value)
    assert error_locations(caught.value) == [("max_traces",)]


@given(ids=st.lists(st.sampled_from(["tr-a", "tr-b", "tr-c", "tr-d"]), min_size=1))
def test_dedup_keeps_first_occurrence_order(ids: list[str]) -> None:
    """Deduplication keeps each ID once, in the order of first appearance."""
    spec = DeleteSpec(experiment_id="1", trace_ids=ids)
    assert spec.trace_ids is not None
    assert list(spec.trace_ids) == list(dict.fromkeys(ids))
