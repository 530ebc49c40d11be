"""What a user of ``mlflow traces delete`` types: its flags work here (``-x``,
``--trace-ids a,b``, ``--max-timestamp-millis``, ``--max-traces``, and search's
``--filter-string``); MLflow's flags that do not fit are refused naming ours (exit 2, nothing
sent); an experiment is never taken from MLFLOW_EXPERIMENT_ID."""

from __future__ import annotations

import pytest

from tests.support.cli_harness import DAY_MS, FAST, NOW_MS, Recorder, cli, one_error_line

ERROR = "async-trace-delete: error: "


def test_mlflow_delete_by_ids_as_typed_for_mlflow(
    recorder: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    """``-x 1 --trace-ids a,b`` (MLflow's spelling) deletes exactly those two traces."""
    before = recorder.server.remaining("1")
    first, second = before[0].trace_id, before[1].trace_id
    argv = ["delete", "-x", "1", "--trace-ids", f"{first}, {second}", "--execute", *FAST]
    result = cli(recorder, capsys, *argv)
    assert result.code == 0, result.err
    left = {trace.trace_id for trace in recorder.server.remaining("1")}
    assert len(left) == len(before) - 2
    assert first not in left
    assert second not in left
    assert len(recorder.server.remaining("2")) == 110  # nothing outside the experiment


def test_mlflow_delete_by_cutoff_as_typed_for_mlflow(
    recorder: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--experiment-id 1 --max-timestamp-millis T --max-traces 5``: five oldest, no more."""
    cutoff = NOW_MS - 10 * DAY_MS
    argv = ["delete", "--experiment-id", "1", "--max-timestamp-millis", str(cutoff)]
    result = cli(recorder, capsys, *argv, "--max-traces", "5", "--execute", *FAST)
    assert result.code == 0, result.err
    assert len(recorder.server.remaining("1")) == 105
    assert all(t.timestamp_ms > cutoff for t in recorder.server.remaining("1")[-10:])


def test_filter_string_is_filter(recorder: Recorder, capsys: pytest.CaptureFixture[str]) -> None:
    """Search's ``--filter-string`` is an alias of ``--filter``: the same job, the same count."""
    argv = ["delete", "-x", "1", "--older-than", "7d", "--json"]
    one = cli(recorder, capsys, *argv, "--filter-string", "status = 'ERROR'")
    other = cli(recorder, capsys, *argv, "--filter", "status = 'ERROR'")
    assert one.code == other.code == 0, one.err
    assert one.json()["would_delete"] == other.json()["would_delete"] == 25
    assert recorder.delete_calls == 0


def test_x_selects_the_experiment_of_a_sweep(
    artifact_recorder: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    """``sweep-artifacts -x 1`` as ``--experiment-id 1``."""
    one = cli(artifact_recorder, capsys, "sweep-artifacts", "-x", "1", "--json")
    other = cli(artifact_recorder, capsys, "sweep-artifacts", "--experiment-id", "1", "--json")
    assert one.code == other.code == 0, one.err
    assert one.json()["experiments"] == other.json()["experiments"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--trace-id", "tr-1"], "argument --trace-id: not a flag of this command; this command "
         "takes --trace-ids ID[,ID...] (comma-separated, as in `mlflow traces delete`)"),
        (["--older-than", "7d", "--max-results", "10"], "argument --max-results: not a flag of "
         "this command; to cap what is deleted use --max-traces N (per experiment)"),
        (["--older-than", "7d", "--order-by", "timestamp_ms DESC"],
         "argument --order-by: not a flag of this command; deletion order is not chosen"),
        (["--older-than", "7d", "--run-id", "abc"],
         "argument --run-id: not a flag of this command; select a run's traces with a filter, "
         "as MLflow's client does: --filter \"attribute.run_id = 'RUN_ID'\""),
        (["--older-than", "7d", "--model-id", "m-1"],
         "argument --model-id: not a flag of this command; select a model's traces with a "
         "filter"),
    ],
    ids=["trace-id", "max-results", "order-by", "run-id", "model-id"],
)  # fmt: skip
def test_mlflow_flags_that_do_not_fit_name_ours(
    recorder: Recorder, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    """Each is refused with exit 2 before any request, naming the flag to use instead."""
    line = one_error_line(cli(recorder, capsys, "delete", "-x", "1", *argv))
    assert line.startswith(ERROR + message), line
    assert recorder.requests == []


def test_the_experiment_variable_is_named_not_used(
    recorder: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    """MLFLOW_EXPERIMENT_ID set, no experiment given: refused, saying how to name it."""
    env = {"MLFLOW_EXPERIMENT_ID": "2"}
    line = one_error_line(cli(recorder, capsys, "delete", "--older-than", "7d", env=env))
    assert line == (
        f"{ERROR}--experiment-id: no experiment given; MLFLOW_EXPERIMENT_ID=2 is set, but a "
        "deletion never takes its experiment from the environment: pass --experiment-id 2 "
        "(or -x 2) to delete in it"
    )
    assert recorder.requests == []
    sweep = one_error_line(cli(recorder, capsys, "sweep-artifacts", env=env))
    assert "MLFLOW_EXPERIMENT_ID=2 is set" in sweep


def test_the_experiment_variable_does_not_change_a_named_job(
    recorder: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    """With an experiment named, MLFLOW_EXPERIMENT_ID is ignored (only experiment 1 counted)."""
    env = {"MLFLOW_EXPERIMENT_ID": "2"}
    result = cli(recorder, capsys, "delete", "-x", "1", "--older-than", "7d", "--json", env=env)
    assert result.code == 0, result.err
    assert [job["experiment_id"] for job in result.json()["jobs"]] == ["1"]
