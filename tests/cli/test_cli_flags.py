"""Command-line parsing and bad flags: exit 2, one line naming the flag, nothing sent.

The CLI runs in-process (``run_cli``) against the simulated server behind a recording
transport (``tests/support/cli_harness.py``).
"""

from __future__ import annotations

import argparse
from datetime import timedelta
from pathlib import Path

import pytest

from async_trace_delete import FieldMessage
from async_trace_delete._cli.args import build_parser, prepare, run_cli
from async_trace_delete._cli.inputs import EXIT_BAD_INPUT, parse_instant
from async_trace_delete._cli.names import Namer
from tests.support.cli_harness import FAST, NOW_MS, Recorder, cli, one_error_line, write_policy
from tests.support.simulated_server import BASE_MS, SIM_URL


def test_parse_instant_needs_a_zone() -> None:
    """ISO 8601 with Z or an offset gives epoch ms; a naive time or garbage is refused."""
    assert parse_instant("2024-01-01T00:00:00Z") == BASE_MS
    assert parse_instant("2024-01-01T02:00:00+02:00") == BASE_MS
    with pytest.raises(ValueError, match="no time zone"):
        parse_instant("2024-01-01T00:00:00")
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_instant("yesterday")
    with pytest.raises(ValueError, match="after 1970"):
        parse_instant("1969-12-31T00:00:00Z")


def test_field_messages_use_the_typed_names() -> None:
    """Library field names in messages become flags; `force=True` becomes `--force`."""
    names = {"min_retention": "--min-retention", "force": "--force"}
    message = FieldMessage("{min_retention}: keeps less than 7 days; {force:pass} to override")
    assert str(message) == "min_retention: keeps less than 7 days; pass force=True to override"
    assert message.render(Namer(typed=names)) == (
        "--min-retention: keeps less than 7 days; pass --force to override"
    )


def test_parser_maps_flags_to_fields() -> None:
    """Repeatable experiments, durations and instants are parsed into typed values."""
    experiments = ["--experiment-id", "1", "--experiment-id", "2", "--experiment-name", "x"]
    selection = ["--older-than", "7d", "--filter", "status = 'ERROR'", "--max-traces", "5"]
    args = build_parser().parse_args(["delete", *experiments, *selection])
    assert args.experiment_id == ["1", "2"]
    assert args.experiment_name == ["x"]
    assert args.older_than == timedelta(days=7)
    assert args.filter == "status = 'ERROR'"
    assert args.max_traces == 5
    assert args.execute is False


# -- bad input: exit 2, one line naming the flag, nothing sent -------------------------------


BAD_INPUT_CASES = [
    (["--experiment-id", "1", "--older-than", "7x"], "--older-than"),
    (["--experiment-id", "1", "--before", "2024-01-01T00:00:00"], "--before"),
    (["--experiment-id", "1", "--before", "2099-01-01T00:00:00Z"], "--before"),
    (["--experiment-id", "1", "--older-than", "7d", "--trace-ids-file", "ids"], "--trace-ids-file"),
    (["--experiment-id", "1", "--trace-ids-file", "/no/such/file"], "--trace-ids-file"),
    (["--experiment-id", "1", "--older-than", "7d", "--max-traces", "0"], "--max-traces"),
    (["--experiment-id", "1", "--older-than", "7d", "--rate", "0"], "--rate"),
    (["--experiment-id", "1", "--older-than", "7d", "--rate", "fast"], "--rate"),
    (["--experiment-id", "1", "--older-than", "7d", "--concurrency", "0"], "--concurrency"),
    (["--experiment-id", "1", "--older-than", "7d", "--max-batch-size", "0"], "--max-batch-size"),
    (["--experiment-id", "1", "--older-than", "7d", "--expect-at-most", "-1"], "--expect-at-most"),
    (["--older-than", "7d"], "--experiment-id"),
    (["--experiment-id", "1"], "--older-than"),
    (["--experiment-id", "1", "--filter", ""], "--allow-match-all"),
    (["--experiment-id", "1", "--older-than", "1d", "--min-retention", "7d"], "--force"),
    (
        ["--experiment-id", "1", "--older-than", "7d", "--audit-log", "/no/dir/a.jsonl"],
        "--audit-log",
    ),
    (["--experiment-id", "1", "--older-than", "7d", "--tracking-uri", "ftp://x"], "--tracking-uri"),
]


@pytest.mark.parametrize(("argv", "flag"), BAD_INPUT_CASES)
def test_bad_input_is_one_line_naming_the_flag(
    recorder: Recorder,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    flag: str,
) -> None:
    """Each bad input exits 2 with one stderr line naming the flag, before any request."""
    monkeypatch.chdir(tmp_path)
    Path("ids").write_text("tr-1\n")
    result = cli(recorder, capsys, "delete", *argv)
    assert result.code == EXIT_BAD_INPUT
    assert result.out == ""
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    assert flag in lines[0]
    assert lines[0].startswith("async-trace-delete: error: ")
    assert recorder.requests == []


def test_ids_with_max_traces_names_both_flags(
    recorder: Recorder, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """MLflow's "no max_traces with IDs" rule is reported with the flags the user typed."""
    ids = tmp_path / "ids.txt"
    ids.write_text("tr-1\n")
    result = cli(
        recorder, capsys, "delete", "--experiment-id", "1", "--trace-ids-file", str(ids),
        "--max-traces", "3",
    )  # fmt: skip
    assert result.code == EXIT_BAD_INPUT
    assert "--max-traces cannot be used with --trace-ids-file" in result.err
    assert recorder.requests == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("tr-abc,tr-def", ("tr-abc", "tr-def")),
        (" tr-abc , tr-def ", ("tr-abc", "tr-def")),
        ("tr-abc", ("tr-abc",)),
    ],
)
def test_trace_ids_flag_takes_mlflows_comma_separated_list(
    value: str, expected: tuple[str, ...]
) -> None:
    """`--trace-ids a,b` (MLflow's own spelling) gives a spec with exactly those IDs."""
    for argv in (["--trace-ids", value], [f"--trace-ids={value}"]):
        invocation = prepare(
            ["delete", "--experiment-id", "1", *argv],
            environ={"MLFLOW_TRACKING_URI": SIM_URL},
            stdin=None,
            now_ms=NOW_MS,
        )
        assert [spec.trace_ids for spec, _ in invocation.jobs] == [expected]


@pytest.mark.parametrize("value", ["tr-abc,,tr-def", "tr-abc,", ",tr-abc", "tr-abc, ,tr-def", ""])
def test_trace_ids_flag_refuses_empty_items(
    recorder: Recorder, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    """An empty item in `--trace-ids` (`a,,b`, a trailing comma) is refused naming the flag."""
    result = cli(recorder, capsys, "delete", "--experiment-id", "1", "--trace-ids", value)
    line = one_error_line(result)
    assert "--trace-ids: " in line
    assert "empty trace ID" in line
    assert recorder.requests == []


@pytest.mark.parametrize(
    "other",
    [["--trace-ids-file", "ids"], ["--older-than", "7d"], ["--max-timestamp-millis", "5"]],
)
def test_trace_ids_flag_is_one_selection(
    recorder: Recorder,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    other: list[str],
) -> None:
    """`--trace-ids` with `--trace-ids-file` or a cutoff is refused by argparse, exit 2."""
    monkeypatch.chdir(tmp_path)
    Path("ids").write_text("tr-1\n")
    result = cli(recorder, capsys, "delete", "--experiment-id", "1", "--trace-ids", "a", *other)
    line = one_error_line(result)
    assert line.endswith(f"argument {other[0]}: not allowed with argument --trace-ids")
    assert recorder.requests == []


@pytest.mark.parametrize(("flag", "value"), [("--trace-ids", "tr-1"), ("--trace-ids-file", "ids")])
@pytest.mark.parametrize(
    ("extra", "rule"),
    [
        (["--max-traces", "3"], "--max-traces cannot be used with {flag} (MLflow's rule)"),
        (["--filter", "status = 'OK'"], "--filter cannot be combined with {flag}"),
    ],
)
def test_trace_id_errors_name_the_flag_typed(
    recorder: Recorder,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    flag: str,
    value: str,
    extra: list[str],
    rule: str,
) -> None:
    """A rule on the trace IDs names `--trace-ids` or `--trace-ids-file`, whichever was typed."""
    monkeypatch.chdir(tmp_path)
    Path("ids").write_text("tr-1\n")
    result = cli(recorder, capsys, "delete", "--experiment-id", "1", flag, value, *extra)
    line = one_error_line(result)
    assert rule.format(flag=flag) in line
    if flag == "--trace-ids":
        assert "--trace-ids-file" not in line
    assert recorder.requests == []


@pytest.mark.parametrize(
    ("argv", "unrecognized"),
    [
        (["delete", "--experiment", "1", "--older-than", "7d"], "--experiment 1"),
        (["delete", "--experiment-i", "1", "--older-than", "7d"], "--experiment-i 1"),
        (["delete", "--experiment-id", "1", "--trace-ids-f", "ids"], "--trace-ids-f ids"),
        (
            ["delete", "--experiment-id", "1", "--older-than", "7d", "--max-trace", "5"],
            "--max-trace 5",
        ),
        (["delete", "--experiment-id", "1", "--older-than", "7d", "--exec"], "--exec"),
        (["run", "policy.toml", "--exec"], "--exec"),
        (["--vers", "delete", "--experiment-id", "1", "--older-than", "7d"], "--vers"),
    ],
)
def test_abbreviated_flags_are_refused(
    recorder: Recorder,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    unrecognized: str,
) -> None:
    """A prefix of a flag is not that flag (a new flag could shadow it): argparse exits 2."""
    monkeypatch.chdir(tmp_path)
    write_policy(tmp_path, "[[jobs]]\nexperiment_ids = [1]\nolder_than = '7d'\n")
    line = one_error_line(cli(recorder, capsys, *argv))
    assert line.endswith(f"unrecognized arguments: {unrecognized}")
    assert recorder.requests == []


def test_no_parser_allows_abbreviations() -> None:
    """The program's parser and each subcommand's parser match flags exactly."""
    parser = build_parser()
    subcommands = next(
        action for action in parser._actions if isinstance(action, argparse._SubParsersAction)
    )
    parsers = [parser, *subcommands.choices.values()]
    assert sorted(subcommands.choices) == ["apply", "delete", "run", "sweep-artifacts"]
    assert [p.allow_abbrev for p in parsers] == [False] * 5


def test_missing_tracking_uri_names_the_flag(
    recorder: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --tracking-uri or MLFLOW_TRACKING_URI the error says how to give one."""
    code = run_cli(
        ["delete", "--experiment-id", "1", "--older-than", "7d"],
        environ={},
        transport=recorder.transport,
    )
    err = capsys.readouterr().err
    assert code == EXIT_BAD_INPUT
    assert "--tracking-uri" in err
    assert "MLFLOW_TRACKING_URI" in err
    assert recorder.requests == []


def test_unknown_experiment_name_is_bad_input_and_deletes_nothing(
    recorder: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unknown name is found by a read-only lookup and refused with exit 2."""
    result = cli(
        recorder, capsys, "delete", "--experiment-name", "alpha", "--experiment-name", "nope",
        "--older-than", "7d", "--execute",
    )  # fmt: skip
    assert result.code == EXIT_BAD_INPUT
    assert result.err.splitlines() == [
        f"async-trace-delete: error: --experiment-name: no experiment named 'nope' on {SIM_URL}"
    ]
    assert recorder.delete_calls == 0
    assert all(r.method == "GET" for r in recorder.requests)


def test_filter_rejected_by_the_server_names_the_flag(
    recorder: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    """A filter the server cannot parse is bad input, reported before any delete."""
    result = cli(
        recorder, capsys, "delete", "--experiment-id", "1", "--filter", "colour = 'red'",
        "--execute", *FAST,
    )  # fmt: skip
    assert result.code == EXIT_BAD_INPUT
    assert "--filter: the server rejected the filter" in result.err
    assert recorder.delete_calls == 0


def test_expect_at_most_refuses_before_deleting(
    recorder: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    """--expect-at-most refuses the run when more traces match, and nothing is deleted."""
    result = cli(
        recorder, capsys, "delete", "--experiment-id", "1", "--older-than", "7d",
        "--expect-at-most", "50", "--execute", *FAST,
    )  # fmt: skip
    assert result.code == EXIT_BAD_INPUT
    assert "--expect-at-most" in result.err
    assert "100" in result.err
    assert recorder.delete_calls == 0


def test_a_closed_pipe_exits_with_richs_code_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``... | head``: rich raises SystemExit(1) inside the run's task group; the console
    entry point returns 1 instead of printing the exception group."""
    from async_trace_delete._cli import args as cli_args

    def closed_pipe(argv: object, **options: object) -> int:
        raise BaseExceptionGroup("unhandled errors in a TaskGroup", [SystemExit(1)])

    monkeypatch.setattr(cli_args, "run_cli", closed_pipe)
    assert cli_args.main(["delete"]) == 1


def test_other_errors_in_the_group_still_surface(monkeypatch: pytest.MonkeyPatch) -> None:
    """A group holding anything besides SystemExit is not swallowed."""
    from async_trace_delete._cli import args as cli_args

    def broken(argv: object, **options: object) -> int:
        raise BaseExceptionGroup("errors", [SystemExit(1), RuntimeError("bug")])

    monkeypatch.setattr(cli_args, "run_cli", broken)
    with pytest.raises(BaseExceptionGroup):
        cli_args.main(["delete"])
