"""Unit tests of the command line: parsing, bad input, dry run, execute, JSON, audit, resume.

The CLI runs in-process (``run_cli``) against the simulated MLflow server
(``tests/support/simulated_server.py``) through an httpx ``MockTransport`` that also records
every request, so "nothing was sent" is checked, not assumed.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest

from async_trace_delete._cli.args import build_parser, main, prepare, run_cli
from async_trace_delete._cli.audit import Redactor, read_confirmed_ids
from async_trace_delete._cli.inputs import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    parse_duration,
    parse_instant,
    rename_fields,
)
from tests.support.simulated_server import (
    BASE_MS,
    SIM_URL,
    DeleteCall,
    Fault,
    SimulatedServer,
    sim_traces,
)

DAY_MS = 86_400_000
NOW_MS = BASE_MS + 30 * DAY_MS
FAST = ["--rate", "10000"]
TOKEN = "tok-SECRET-5e6f7a8b"
PASSWORD = "pw-SECRET-0c1d2e3f"


@dataclass
class Recorder:
    """The simulated server behind a transport that records every request."""

    server: SimulatedServer = field(default_factory=SimulatedServer)
    requests: list[httpx.Request] = field(default_factory=list)

    async def handle(self, request: httpx.Request) -> httpx.Response:
        """Record, yield to the event loop as real I/O would, then answer."""
        self.requests.append(request)
        await anyio.lowlevel.checkpoint()
        return await self.server.handle(request)

    @property
    def transport(self) -> httpx.MockTransport:
        """The transport to hand to the CLI."""
        return httpx.MockTransport(self.handle)

    @property
    def delete_calls(self) -> int:
        """Delete requests received."""
        return sum(1 for r in self.requests if r.url.path.endswith("/delete-traces"))


@dataclass
class Result:
    """What one CLI run returned and printed."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        """Stdout parsed as JSON."""
        return json.loads(self.out)


@pytest.fixture
def recorder() -> Recorder:
    """A simulated server with three experiments: 'alpha' (1), 'beta' (2), 'gamma' (3).

    Each has 100 traces 20 days old (every 4th an ERROR) and 10 traces 1 day old.
    """
    rec = Recorder()
    for tag, name in enumerate(("alpha", "beta", "gamma"), start=1):
        old = sim_traces(100, start_ms=NOW_MS - 20 * DAY_MS, error_every=4, tag=tag)
        new = sim_traces(10, start_ms=NOW_MS - DAY_MS, tag=tag + 10)
        rec.server.add_experiment(name, [*old, *new])
    return rec


def cli(
    recorder: Recorder,
    capsys: pytest.CaptureFixture[str],
    *argv: str,
    env: dict[str, str] | None = None,
    stdin: Any = None,
) -> Result:
    """Run the CLI in-process against the recorder's server."""
    environ = {"MLFLOW_TRACKING_URI": SIM_URL, **(env or {})}
    code = run_cli(
        list(argv),
        environ=environ,
        stdin=stdin,
        wall_clock_ms=lambda: NOW_MS,
        transport=recorder.transport,
        clock=recorder.server.clock,
        sleep=recorder.server.clock.sleep,
        random=lambda: 0.5,
    )
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)


def audit_lines(path: Path) -> list[dict[str, Any]]:
    """Every record of an audit log."""
    return [json.loads(line) for line in path.read_text().splitlines()]


# -- pure parsing -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", timedelta(minutes=30)),
        ("12h", timedelta(hours=12)),
        ("7d", timedelta(days=7)),
        ("2w", timedelta(weeks=2)),
        ("1d12h", timedelta(days=1, hours=12)),
        ("90s", timedelta(seconds=90)),
        ("1.5h", timedelta(minutes=90)),
    ],
)
def test_parse_duration_accepts_units(text: str, expected: timedelta) -> None:
    """Durations are a number and a unit (s, m, h, d, w), possibly combined."""
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "7", "7x", "d7", "7 days", "-3d", "1d-2h"])
def test_parse_duration_rejects_other_forms(text: str) -> None:
    """Anything else is refused with a hint."""
    with pytest.raises(ValueError, match=r"e\.g\. 30m"):
        parse_duration(text)


# Months and years have no fixed length; `M` must not quietly mean minutes.
MONTHS_OR_YEARS = ["6M", "1mo", "6MO", "3Mo", "1y", "1Y", "2yr", "6months", "1year", "1d6M"]
# A unit means exactly one thing: uppercase spellings of s, m, h, d, w are refused.
UPPERCASE_UNITS = [("1D", "1d"), ("2W", "2w"), ("30S", "30s"), ("12H", "12h"), ("1D12h", "1d12h")]
DURATION_REFUSALS = [
    *[
        pytest.param(text, "months and years have no fixed length", id=text)
        for text in MONTHS_OR_YEARS
    ],
    *[
        pytest.param(text, f"units are lowercase: write {lowercase}", id=text)
        for text, lowercase in UPPERCASE_UNITS
    ],
]
GOOD_DURATIONS = [
    ("30m", timedelta(minutes=30)),
    ("12h", timedelta(hours=12)),
    ("7d", timedelta(days=7)),
    ("2w", timedelta(weeks=2)),
    ("1d12h", timedelta(days=1, hours=12)),
    ("1.5h", timedelta(minutes=90)),
]


@pytest.mark.parametrize("text", MONTHS_OR_YEARS)
def test_parse_duration_refuses_months_and_years(text: str) -> None:
    """Months and years are refused with a hint to write days, and `m` is said to be minutes."""
    with pytest.raises(ValueError, match="months and years have no fixed length") as raised:
        parse_duration(text)
    message = str(raised.value)
    assert "180d" in message
    assert "365d" in message
    assert "m means minutes" in message


@pytest.mark.parametrize(("text", "lowercase"), UPPERCASE_UNITS)
def test_parse_duration_refuses_uppercase_units(text: str, lowercase: str) -> None:
    """An uppercase unit is refused, naming the lowercase spelling to write instead."""
    with pytest.raises(ValueError, match=rf"units are lowercase: write {lowercase}$"):
        parse_duration(text)


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


def test_rename_fields_uses_the_typed_names() -> None:
    """Library field names in messages become flags; `force=True` becomes `--force`."""
    names = {"min_retention": "--min-retention", "force": "--force"}
    message = "min_retention: keeps less than 7 days; pass force=True to override"
    assert rename_fields(message, names) == (
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


def one_error_line(result: Result) -> str:
    """The single stderr line of a run refused as bad input."""
    assert result.code == EXIT_BAD_INPUT, result
    assert result.out == ""
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("async-trace-delete: error: ")
    return lines[0]


@pytest.mark.parametrize("flag", ["--older-than", "--min-retention"])
@pytest.mark.parametrize(("text", "fragment"), DURATION_REFUSALS)
def test_duration_flags_refuse_months_years_and_uppercase(
    recorder: Recorder, capsys: pytest.CaptureFixture[str], flag: str, text: str, fragment: str
) -> None:
    """`--older-than 6M` (or `1D`, `1y`, ...) exits 2 naming the flag, before any request."""
    cutoff = [] if flag == "--older-than" else ["--older-than", "30d"]
    result = cli(recorder, capsys, "delete", "--experiment-id", "1", *cutoff, flag, text)
    line = one_error_line(result)
    assert f"{flag}: " in line
    assert fragment in line
    assert recorder.requests == []


@pytest.mark.parametrize("key", ["older_than", "min_retention"])
@pytest.mark.parametrize(("text", "fragment"), DURATION_REFUSALS)
def test_duration_keys_refuse_months_years_and_uppercase(
    recorder: Recorder,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    key: str,
    text: str,
    fragment: str,
) -> None:
    """`older_than = "6M"` in a policy exits 2 naming the job and the key, before any request."""
    values = {"older_than": "30d", key: text}
    lines = "".join(f'{name} = "{value}"\n' for name, value in values.items())
    policy = write_policy(tmp_path, "[[jobs]]\nexperiment_ids = [1]\n" + lines)
    line = one_error_line(cli(recorder, capsys, "run", str(policy)))
    assert f"policy.toml: jobs[1]: {key}: " in line
    assert fragment in line
    assert recorder.requests == []


@pytest.mark.parametrize(("text", "expected"), GOOD_DURATIONS)
def test_lowercase_durations_still_work_as_flags_and_keys(
    tmp_path: Path, text: str, expected: timedelta
) -> None:
    """The lowercase units keep working for both duration flags and both policy keys."""
    environ = {"MLFLOW_TRACKING_URI": SIM_URL}
    flags = ["delete", "--experiment-id", "1", "--older-than", text]
    retention = ["delete", "--experiment-id", "1", "--older-than", "30d", "--min-retention", text]
    policy = write_policy(
        tmp_path,
        f"""
        [[jobs]]
        name = "age"
        experiment_ids = [1]
        older_than = "{text}"

        [[jobs]]
        name = "retention"
        experiment_ids = [1]
        older_than = "30d"
        min_retention = "{text}"
        """,
    )
    by_age, by_retention, by_policy = (
        [spec for spec, _ in prepare(argv, environ=environ, stdin=None, now_ms=NOW_MS).jobs]
        for argv in (flags, retention, ["run", str(policy)])
    )
    assert [spec.older_than for spec in by_age] == [expected]
    assert [spec.min_retention for spec in by_retention] == [expected]
    assert [(spec.older_than, spec.min_retention) for spec in by_policy] == [
        (expected, None),
        (timedelta(days=30), expected),
    ]


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
    assert sorted(subcommands.choices) == ["delete", "run"]
    assert [p.allow_abbrev for p in parsers] == [False, False, False]


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


# -- dry run ---------------------------------------------------------------------------------


def test_dry_run_is_the_default_and_prints_the_execute_command(
    recorder: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --execute nothing is deleted; the output ends with the command to execute."""
    argv = ["delete", "--experiment-name", "alpha", "--experiment-id", "2", "--older-than", "7d"]
    result = cli(recorder, capsys, *argv)
    assert result.code == EXIT_OK
    assert recorder.delete_calls == 0
    assert recorder.server.deleted("1") == recorder.server.deleted("2") == 0
    assert "200 traces would be deleted" in result.out
    last_line = result.out.strip().splitlines()[-1]
    assert shlex.split(last_line) == ["async-trace-delete", *argv, "--execute"]


def test_dry_run_json_shape(recorder: Recorder, capsys: pytest.CaptureFixture[str]) -> None:
    """--json prints the plan: per job counts, bounds, a sample, and the execute command."""
    result = cli(
        recorder, capsys, "delete", "--experiment-id", "3", "--older-than", "7d",
        "--filter", "status = 'ERROR'", "--json", "--sample", "2",
    )  # fmt: skip
    assert result.code == EXIT_OK
    report = result.json()
    assert report["dry_run"] is True
    assert report["would_delete"] == 25
    (job,) = report["jobs"]
    assert job["label"] == "3"
    assert job["mode"] == "matching"
    assert job["would_delete"] == 25
    assert job["cutoff_millis"] == NOW_MS - 7 * DAY_MS
    assert job["cutoff"].endswith("Z")
    assert len(job["sample"]) == 2
    assert all(item["state"] == "ERROR" for item in job["sample"])
    assert report["execute_command"].endswith("--execute")
    assert recorder.delete_calls == 0


# -- execute ---------------------------------------------------------------------------------


def test_execute_deletes_and_reports_json(
    recorder: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    """--execute deletes what the dry run counted; the JSON report matches the server."""
    result = cli(
        recorder, capsys, "delete", "--experiment-id", "1", "--experiment-name", "beta",
        "--older-than", "7d", "--execute", "--json", *FAST,
    )  # fmt: skip
    assert result.code == EXIT_OK, result.err
    report = result.json()
    assert report["dry_run"] is False
    assert report["interrupted"] is False
    assert report["exit_code"] == EXIT_OK
    assert report["expected"] == report["deleted"] == 200
    assert report["ambiguous"] == 0
    assert {job["label"]: job["deleted"] for job in report["jobs"]} == {"1": 100, "beta": 100}
    assert {job["state"] for job in report["jobs"]} == {"completed"}
    assert recorder.server.deleted("1") == recorder.server.deleted("2") == 100
    assert len(recorder.server.remaining("1")) == 10
    assert recorder.server.deleted("3") == 0


def test_execute_prints_a_summary_table(
    recorder: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --json the summary table goes to stdout and progress to stderr."""
    result = cli(
        recorder, capsys, "delete", "--experiment-id", "1", "--older-than", "7d", "--execute",
        *FAST,
    )  # fmt: skip
    assert result.code == EXIT_OK
    assert "Summary" in result.out
    assert "100" in result.out
    assert "Summary" not in result.err
    assert "total" in result.err  # the final frame of the progress bars


def test_quiet_prints_nothing(recorder: Recorder, capsys: pytest.CaptureFixture[str]) -> None:
    """--quiet deletes without progress or tables."""
    result = cli(
        recorder, capsys, "delete", "--experiment-id", "1", "--older-than", "7d", "--execute",
        "--quiet", *FAST,
    )  # fmt: skip
    assert result.code == EXIT_OK
    assert (result.out, result.err) == ("", "")
    assert recorder.server.deleted("1") == 100


def test_failed_job_exits_1(recorder: Recorder, capsys: pytest.CaptureFixture[str]) -> None:
    """A job the server refuses fails (exit 1) while its sibling completes."""

    def refuse_beta(call: DeleteCall) -> Fault | None:
        if call.experiment_id == "2":
            return Fault(status=403, text="Permission denied")
        return None

    recorder.server.fault_rule = refuse_beta
    result = cli(
        recorder, capsys, "delete", "--experiment-id", "1", "--experiment-id", "2",
        "--older-than", "7d", "--execute", *FAST,
    )  # fmt: skip
    assert result.code == EXIT_FAILED
    assert "job 2 failed: permission denied" in result.out
    assert recorder.server.deleted("1") == 100
    assert recorder.server.deleted("2") == 0


def test_trace_ids_from_stdin(recorder: Recorder, capsys: pytest.CaptureFixture[str]) -> None:
    """`--trace-ids-file -` reads IDs from stdin (comments and blank lines skipped)."""
    ids = [trace.trace_id for trace in recorder.server.remaining("1")[:7]]
    stdin = _Stdin("# to delete\n\n" + "\n".join(ids) + "\n")
    result = cli(
        recorder, capsys, "delete", "--experiment-id", "1", "--trace-ids-file", "-",
        "--execute", "--json", *FAST, stdin=stdin,
    )  # fmt: skip
    assert result.code == EXIT_OK, result.err
    assert result.json()["deleted"] == 7
    assert recorder.server.deleted("1") == 7


def test_trace_ids_inline_are_deleted(
    recorder: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--trace-ids a,b,c --execute` deletes exactly those traces, like MLflow's CLI."""
    ids = [trace.trace_id for trace in recorder.server.remaining("1")[:3]]
    result = cli(
        recorder, capsys, "delete", "--experiment-id", "1", "--trace-ids", ", ".join(ids),
        "--execute", "--json", *FAST,
    )  # fmt: skip
    assert result.code == EXIT_OK, result.err
    assert result.json()["deleted"] == 3
    assert recorder.server.deleted("1") == 3
    assert not {trace.trace_id for trace in recorder.server.remaining("1")} & set(ids)


class _Stdin:
    def __init__(self, text: str) -> None:
        self.text = text

    def read(self) -> str:
        return self.text


# -- audit log, secrets, resume ------------------------------------------------------------


def test_audit_log_records_the_run(
    recorder: Recorder, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Start, plan, every batch, job ends and run end are logged; runs append."""
    log = tmp_path / "audit.jsonl"
    for _ in range(2):
        result = cli(
            recorder, capsys, "delete", "--experiment-id", "1", "--older-than", "7d",
            "--execute", "--audit-log", str(log), "--max-batch-size", "30", *FAST,
        )  # fmt: skip
        assert result.code == EXIT_OK
    records = audit_lines(log)
    runs = list(dict.fromkeys(record["run_id"] for record in records))
    assert len(runs) == 2
    first = [record for record in records if record["run_id"] == runs[0]]
    events = [record["event"] for record in first]
    assert events[:3] == ["run_start", "plan", "job_start"]
    assert events[-2:] == ["job_end", "run_end"]
    start = first[0]
    assert {"user", "host", "pid", "command", "tracking_uri", "jobs", "engine"} <= set(start)
    assert start["execute"] is True
    batches = [record for record in first if record["event"] == "batch"]
    assert sum(batch["deleted"] for batch in batches) == 100
    assert {"time", "experiment_id", "requested", "deleted", "latency", "attempt"} <= set(
        batches[0]
    )
    assert first[-1]["outcome"] == "completed"
    assert first[-1]["deleted"] == 100
    second_end = records[-1]
    assert second_end["event"] == "run_end"
    assert second_end["deleted"] == 0


def test_secrets_never_appear(
    recorder: Recorder, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Tokens and passwords appear in no output, audit line or printed command."""
    log = tmp_path / "audit.jsonl"
    env = {
        "MLFLOW_TRACKING_TOKEN": TOKEN,
        "MLFLOW_TRACKING_USERNAME": "alice",
        "MLFLOW_TRACKING_PASSWORD": PASSWORD,
    }
    outputs = []
    for extra in ([], ["--execute"], ["--execute", "--json"]):
        recorder.server.add_traces("1", sim_traces(5, start_ms=NOW_MS - 9 * DAY_MS, tag=99))
        result = cli(
            recorder, capsys, "delete", "--experiment-id", "1", "--older-than", "7d",
            "--audit-log", str(log), *extra, *FAST, env=env,
        )  # fmt: skip
        assert result.code == EXIT_OK
        outputs += [result.out, result.err]
    outputs.append(log.read_text())
    bad = cli(recorder, capsys, "delete", "--experiment-id", "1", env=env)
    outputs += [bad.out, bad.err]
    for text in outputs:
        assert TOKEN not in text
        assert PASSWORD not in text
    assert any(record.get("auth") == "basic" for record in audit_lines(log))


def test_redactor_scrubs_raw_and_escaped_forms() -> None:
    """A secret is scrubbed whether it appears raw or JSON-escaped."""
    redact = Redactor(['pa"ss\\word'])
    assert redact('x pa"ss\\word y') == "x *** y"
    assert redact(json.dumps({"v": 'pa"ss\\word'})) == '{"v": "***"}'


def test_id_file_rerun_skips_ids_the_audit_log_confirmed(
    recorder: Recorder, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Every answered ID call is logged with its IDs; a rerun sends only the unconfirmed ones."""
    log = tmp_path / "audit.jsonl"
    ids_file = tmp_path / "ids.txt"
    first_ids = [trace.trace_id for trace in recorder.server.remaining("2")[:40]]
    ids_file.write_text("\n".join(first_ids) + "\n")
    argv = [
        "delete", "--experiment-name", "beta", "--trace-ids-file", str(ids_file), "--execute",
        "--audit-log", str(log), "--json", "--max-id-chunk", "15", *FAST,
    ]  # fmt: skip
    assert cli(recorder, capsys, *argv).code == EXIT_OK
    assert read_confirmed_ids(log) == {"2": set(first_ids)}
    deletes_after_first = recorder.delete_calls

    rerun = cli(recorder, capsys, *argv)
    assert rerun.code == EXIT_OK
    assert recorder.delete_calls == deletes_after_first  # nothing left to send
    assert rerun.json()["skipped"][0]["skipped_ids"] == 40

    more_ids = [trace.trace_id for trace in recorder.server.remaining("2")[:5]]
    ids_file.write_text("\n".join(first_ids + more_ids) + "\n")
    sent_before = len(recorder.requests)
    grown = cli(recorder, capsys, *argv)
    assert grown.code == EXIT_OK
    report = grown.json()
    assert report["deleted"] == 5
    assert report["skipped"][0]["remaining_ids"] == 5
    assert sent_ids(recorder.requests[sent_before:]) == set(more_ids)


def test_interrupted_id_run_resumes_where_it_stopped(
    recorder: Recorder, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """After a SIGINT, the rerun sends exactly the IDs no answered call confirmed."""
    log = tmp_path / "audit.jsonl"
    ids_file = tmp_path / "ids.txt"
    ids = [trace.trace_id for trace in recorder.server.remaining("1")[:60]]
    ids_file.write_text("\n".join(ids) + "\n")
    recorder.server.fault_rule = _interrupt_at_first_delete()
    argv = [
        "delete", "--experiment-id", "1", "--trace-ids-file", str(ids_file), "--execute",
        "--audit-log", str(log), "--json", "--max-id-chunk", "10", "--concurrency", "1", *FAST,
    ]  # fmt: skip
    first = cli(recorder, capsys, *argv)
    assert first.code == EXIT_INTERRUPTED
    confirmed = read_confirmed_ids(log)["1"]
    assert 0 < len(confirmed) < 60
    assert first.json()["deleted"] == len(confirmed) == recorder.server.deleted("1")

    recorder.server.fault_rule = None
    sent_before = len(recorder.requests)
    rerun = cli(recorder, capsys, *argv)
    assert rerun.code == EXIT_OK
    assert sent_ids(recorder.requests[sent_before:]) == set(ids) - confirmed
    assert rerun.json()["deleted"] == 60 - len(confirmed)
    assert not set(ids) & {trace.trace_id for trace in recorder.server.remaining("1")}


def sent_ids(requests: list[httpx.Request]) -> set[str]:
    """The trace IDs of the delete requests among ``requests``."""
    bodies = [json.loads(r.content) for r in requests if r.url.path.endswith("delete-traces")]
    return {trace_id for body in bodies for trace_id in body.get("request_ids", [])}


def _interrupt_at_first_delete() -> Callable[[DeleteCall], Fault | None]:
    sent: list[DeleteCall] = []

    def interrupt_once(call: DeleteCall) -> Fault | None:
        if not sent:
            sent.append(call)
            os.kill(os.getpid(), signal.SIGINT)
        return None

    return interrupt_once


# -- interruption ----------------------------------------------------------------------------


def test_sigint_stops_gracefully_with_an_exact_partial_report(
    recorder: Recorder, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A SIGINT during the first delete stops scheduling; exit 130 and exact counts."""
    recorder.server.fault_rule = _interrupt_at_first_delete()
    log = tmp_path / "audit.jsonl"
    result = cli(
        recorder, capsys, "delete", "--experiment-id", "1", "--experiment-id", "2",
        "--older-than", "7d", "--max-batch-size", "10", "--concurrency", "1",
        "--execute", "--json", "--audit-log", str(log), *FAST,
    )  # fmt: skip
    assert result.code == EXIT_INTERRUPTED
    report = result.json()
    assert report["interrupted"] is True
    assert report["ambiguous"] == 0
    lost = recorder.server.deleted("1") + recorder.server.deleted("2")
    assert 0 < lost < 200
    assert report["deleted"] == lost
    assert "SIGINT: stopping" in result.err
    records = audit_lines(log)
    assert any(r["event"] == "interrupt" and r["action"] == "stop" for r in records)
    assert records[-1]["outcome"] == "interrupted"
    assert records[-1]["deleted"] == lost


# -- policy files ----------------------------------------------------------------------------


def write_policy(tmp_path: Path, text: str) -> Path:
    """A policy file in tmp_path."""
    path = tmp_path / "policy.toml"
    path.write_text(textwrap.dedent(text))
    return path


def test_policy_runs_every_job(
    recorder: Recorder, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A policy's jobs become one spec per experiment; engine keys map to EngineConfig."""
    policy = write_policy(
        tmp_path,
        """
        [engine]
        rate = 10000
        max_batch_size = 40

        [defaults]
        older_than = "7d"

        [[jobs]]
        name = "old"
        experiment_ids = [1]
        experiment_names = ["beta"]

        [[jobs]]
        name = "errors"
        experiment_names = ["gamma"]
        filter = "status = 'ERROR'"
        max_traces = 20
        """,
    )
    dry = cli(recorder, capsys, "run", str(policy), "--json")
    assert dry.code == EXIT_OK, dry.err
    plan = dry.json()
    assert {job["label"]: job["would_delete"] for job in plan["jobs"]} == {
        "old/1": 100,
        "old/beta": 100,
        "errors/gamma": 20,
    }
    assert recorder.delete_calls == 0
    executed = cli(recorder, capsys, "run", str(policy), "--execute", "--json")
    assert executed.code == EXIT_OK, executed.err
    assert executed.json()["deleted"] == 220
    assert [recorder.server.deleted(e) for e in ("1", "2", "3")] == [100, 100, 20]
    assert all(t.state == "OK" for t in recorder.server.remaining("3")[:5])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "[[jobs]]\nexperiment_ids = [1]\nolder_tahn = '7d'\n",
            "jobs[1]: unknown key 'older_tahn'",
        ),
        ("[[jobs]]\nexperiment_ids = [1]\nolder_than = '7 days'\n", "jobs[1]: older_than:"),
        ("[[jobs]]\nexperiment_ids = [1]\nbefore = 2024-01-01\n", "jobs[1]: before:"),
        ("[engine]\nrate = -1\n[[jobs]]\nexperiment_ids = [1]\nolder_than = '7d'\n", "rate"),
        ("[[jobs]]\nolder_than = '7d'\n", "experiment_ids"),
        ("jobs = 3\n", "at least one [[jobs]]"),
        ("[[jobs]\n", "not valid TOML"),
        ("[[jobs]]\nexperiment_ids = [1]\ntrace_ids_file = 'missing.txt'\n", "trace_ids_file"),
    ],
)
def test_bad_policy_is_one_line_naming_the_key(
    recorder: Recorder,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    text: str,
    expected: str,
) -> None:
    """A policy error names the file, the job and the key; nothing is sent."""
    policy = write_policy(tmp_path, text)
    result = cli(recorder, capsys, "run", str(policy))
    assert result.code == EXIT_BAD_INPUT
    assert len(result.err.splitlines()) == 1, result.err
    assert expected in result.err
    assert recorder.requests == []


def test_missing_policy_file(recorder: Recorder, capsys: pytest.CaptureFixture[str]) -> None:
    """An unreadable policy is bad input."""
    result = cli(recorder, capsys, "run", "/no/such/policy.toml")
    assert result.code == EXIT_BAD_INPUT
    assert "POLICY: cannot read" in result.err


def test_example_policy_parses(tmp_path: Path) -> None:
    """examples/policy.toml is a valid policy file."""
    from async_trace_delete._cli.policy import load_policy

    example = Path(__file__).parents[2] / "examples" / "policy.toml"
    policy = load_policy(str(example))
    assert len(policy.jobs) >= 2


def test_main_without_subcommand_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    """`main([])` is a usage error: one line, exit 2."""
    assert main([]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1
    assert "COMMAND" in err or "command" in err
