"""One hierarchy: every public model refuses invalid input with SpecError, a TraceDeleteError
(and a ValueError) naming the field, with pydantic's details kept and hidden input hidden."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pydantic
import pytest

from async_trace_delete import (
    ClientConfig,
    DeleteSpec,
    EngineConfig,
    ExperimentSelector,
    LimitSettings,
    ResolvedSpec,
    RetryPolicy,
    SizerSettings,
    SpecError,
    TraceDeleteError,
    UsageError,
)
from tests.support.simulated_server import SIM_URL

SPEC = {"experiment_id": "1", "max_timestamp_millis": 1_700_000_000_000}

CASES: list[tuple[str, Callable[[], object], str, str]] = [
    # id, what builds the invalid model, its name, the message's start
    ("spec-field", lambda: DeleteSpec(**{**SPEC, "max_traces": 0}), "DeleteSpec",
     "max_traces: Input should be greater than 0 (got 0)"),
    ("spec-rule", lambda: DeleteSpec(experiment_id="1"), "DeleteSpec",
     "there is nothing to select traces by: give a cutoff (older_than or max_timestamp_millis), "
     "trace_ids, or a filter_string (a filter alone is enough"),
    ("spec-validate", lambda: DeleteSpec.model_validate({**SPEC, "older_than": timedelta(0)}),
     "DeleteSpec", "older_than: must be a positive duration"),
    ("spec-json", lambda: DeleteSpec.model_validate_json('{"experiment_id":"1","max_traces":-1}'),
     "DeleteSpec", "max_traces: Input should be greater than 0 (got -1)"),
    ("spec-nested",
     lambda: DeleteSpec(experiments={"all_experiments": "yes"}, older_than=timedelta(days=1)),
     "DeleteSpec", "experiments.all_experiments: Input should be a valid boolean (got 'yes')"),
    ("selector", lambda: ExperimentSelector(name_like="a'b"), "ExperimentSelector",
     "name_like: must not contain a quote or a backslash"),
    ("resolved", lambda: ResolvedSpec.model_validate({"experiment_id": "1"}), "ResolvedSpec",
     "spec: Field required"),
    ("client", lambda: ClientConfig(tracking_uri=SIM_URL, timeout=0), "ClientConfig",
     "timeout: Input should be greater than 0"),
    ("engine", lambda: EngineConfig(rate_limit=-1), "EngineConfig",
     "rate_limit: Input should be greater than 0"),
    ("engine-rule",
     lambda: EngineConfig(min_batch_size=10, initial_batch_size=5, max_batch_size=20),
     "EngineConfig",
     "batch sizes must satisfy min_batch_size <= initial_batch_size <= max_batch_size"),
    ("retry", lambda: RetryPolicy(max_attempts=0), "RetryPolicy", "max_attempts: "),
    ("sizer", lambda: SizerSettings(min_size=0), "SizerSettings", "min_size: "),
    ("limit", lambda: LimitSettings(max_limit=0), "LimitSettings", "max_limit: "),
]  # fmt: skip


@pytest.mark.parametrize(
    ("build", "model", "start"),
    [pytest.param(build, model, start, id=name) for name, build, model, start in CASES],
)
def test_except_trace_delete_error_catches_every_model(
    build: Callable[[], object], model: str, start: str
) -> None:
    """Each model's invalid input is caught by ``except TraceDeleteError``, names the field,
    and keeps pydantic's ValidationError as its cause and its ``errors()``."""
    try:
        build()
    except TraceDeleteError as error:
        caught: TraceDeleteError = error
    else:  # pragma: no cover - the test fails here
        pytest.fail("no error raised")
    assert isinstance(caught, SpecError)
    assert isinstance(caught, UsageError)
    assert isinstance(caught, ValueError)
    assert caught.model == model
    assert str(caught).startswith(start), str(caught)
    assert isinstance(caught.__cause__, pydantic.ValidationError)
    assert caught.validation_error is caught.__cause__
    assert caught.errors(include_input=True) == caught.__cause__.errors()
    assert caught.errors(include_url=False)[0]["loc"] == caught.__cause__.errors()[0]["loc"]


def test_more_problems_are_counted() -> None:
    """The first problem is named, the others counted; all are in ``errors()``."""
    with pytest.raises(SpecError) as caught:
        DeleteSpec(experiment_id="1", max_traces=0, expect_at_most=-1, older_than=timedelta(0))
    assert str(caught.value).endswith("(and 2 more problems)")
    assert len(caught.value.errors()) == 3


def test_a_rule_keeps_its_field_message_for_front_ends() -> None:
    """A rule between fields renders in a front end's names (the CLI's flags)."""
    with pytest.raises(SpecError) as caught:
        DeleteSpec(experiment_id="1", trace_ids=["tr-1"], max_traces=5)
    flags = {"max_traces": "--max-traces", "trace_ids": "--trace-ids"}
    rendered = caught.value.render(lambda field, verb: flags.get(field, field))
    assert rendered == "--max-traces cannot be used with --trace-ids (MLflow's rule)"


def test_a_field_rule_naming_its_field_is_not_named_twice() -> None:
    """``tracking_uri must be an http(s):// URL``, not ``tracking_uri: tracking_uri must...``."""
    with pytest.raises(SpecError) as caught:
        ClientConfig(tracking_uri="ftp://files.internal/mlruns")
    assert str(caught.value).startswith("tracking_uri must be an http(s):// URL")


def test_hidden_input_stays_hidden() -> None:
    """Models that hide their input (a URI, a credential) never echo it in SpecError."""
    with pytest.raises(SpecError) as client:
        ClientConfig(tracking_uri=SIM_URL, token=12345, timeout="s3cret-timeout")
    with pytest.raises(SpecError) as engine:
        EngineConfig(rate_limit="s3cret-rate")
    for error in (client.value, engine.value):
        assert "s3cret" not in str(error)
        assert "s3cret" not in repr(error)
        assert "s3cret" not in str(error.__cause__)


def test_shown_input_of_a_spec() -> None:
    """A spec shows the value refused (nothing secret in a spec)."""
    with pytest.raises(SpecError, match=r"max_traces: .* \(got 'ten'\)"):
        DeleteSpec(**SPEC, max_traces="ten")


def test_assignment_to_a_frozen_model_is_a_spec_error() -> None:
    """Mutating a frozen model is refused the same way."""
    spec = DeleteSpec(**SPEC)
    with pytest.raises(SpecError, match="frozen"):
        spec.force = True  # type: ignore[misc]


def test_errors_of_a_model_that_hides_its_input_leave_the_input_out() -> None:
    """SpecError.errors() of ClientConfig never returns the URI with its password."""
    with pytest.raises(SpecError) as caught:
        ClientConfig(tracking_uri="postgresql://u:s3cret@db/mlflow")
    assert "s3cret" not in repr(caught.value.errors())
    assert "s3cret" in repr(caught.value.errors(include_input=True))  # asked for: given
