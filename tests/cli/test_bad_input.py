"""Every invalid flag, environment variable and policy file makes the CLI exit 2 with one line
naming it, before any HTTP.

A counting transport proves that no request was sent, except where the check needs the server
(an unknown experiment, a guardrail counting matches), which must still send no *delete*.

Part of the bad-input sweep (``tests/control/test_bad_specs.py``,
``tests/http/test_bad_client_calls.py``, ``tests/engine/test_bad_engine_input.py``,
``tests/cli/test_bad_input.py``): each table row is one invalid input and a fragment of the
message that must name what is wrong.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from async_trace_delete import DeleteSpec
from async_trace_delete._cli.args import prepare, run_cli
from async_trace_delete._durations import format_instant
from tests.support.counting_server import DAY_MS, NOW_MS, TRACE_ID, CountingServer
from tests.support.simulated_server import BASE_MS, SIM_URL

ERROR = "async-trace-delete: error: "


# -- the CLI: exit 2, one line naming the flag, no request -------------------------------------

IDS_FILE = "@ids"  # replaced by a file holding one trace ID
EMPTY_FILE = "@empty"  # replaced by a file holding only a comment
OLD = ["--older-than", "30d"]
CLI_CASES: list[tuple[str, list[str], str]] = [
    ("cap negative", [*OLD, "--max-traces", "-1"], "--max-traces: Input should be greater than 0"),
    ("cap zero", [*OLD, "--max-traces", "0"], "--max-traces: Input should be greater than 0"),
    ("cap not a number", [*OLD, "--max-traces", "abc"], "--max-traces: invalid int value"),
    ("cap fraction", [*OLD, "--max-traces", "1.5"], "--max-traces: invalid int value"),
    ("cutoff zero", ["--max-timestamp-millis", "0"], "--max-timestamp-millis: Input should be"),
    ("cutoff negative", ["--max-timestamp-millis", "-5"], "--max-timestamp-millis: Input"),
    ("cutoff text", ["--max-timestamp-millis", "soon"], "--max-timestamp-millis: invalid int"),
    (
        "cutoff in the future",
        ["--max-timestamp-millis", str(NOW_MS + DAY_MS)],
        f"--max-timestamp-millis: the cutoff {format_instant(NOW_MS + DAY_MS)} "
        f"({NOW_MS + DAY_MS} ms) is in the future (now is {format_instant(NOW_MS)})",
    ),
    (
        "cutoff huge",
        ["--max-timestamp-millis", str(10**20)],
        f"the cutoff {10**20} ms is in the future",
    ),
    ("before in the future", ["--before", "2099-01-01T00:00:00Z"], "--before: "),
    ("before without zone", ["--before", "2020-01-01T00:00:00"], "has no time zone"),
    ("before 1970", ["--before", "1960-01-01T00:00:00Z"], "is not after 1970"),
    (
        "two cutoffs",
        ["--max-timestamp-millis", "5", *OLD],
        "--older-than: not allowed with argument --max-timestamp-millis",
    ),
    ("no selection", [], "there is nothing to select traces by"),
    ("age zero", ["--older-than", "0s"], "--older-than: must be a positive duration"),
    ("age negative", ["--older-than", "-1d"], "--older-than: expected one argument"),
    ("age unreadable", ["--older-than", "a while"], "cannot read 'a while' as a duration"),
    ("age before 1970", ["--older-than", "100000w"], "--older-than: "),
    (
        "age in months",
        ["--older-than", "6M"],
        "--older-than: cannot read '6M' as a duration: months",
    ),
    ("age in years", ["--older-than", "1y"], "months and years have no fixed length"),
    ("age unit uppercase", ["--older-than", "7D"], "units are lowercase: write 7d"),
    ("retention in months", [*OLD, "--min-retention", "6M"], "--min-retention: cannot read '6M'"),
    ("retention uppercase", [*OLD, "--min-retention", "2W"], "units are lowercase: write 2w"),
    ("empty filter", ["--filter", ""], "pass --allow-match-all"),
    ("IDs and cap", ["--trace-ids-file", IDS_FILE, "--max-traces", "5"], "--max-traces cannot"),
    ("IDs and filter", ["--trace-ids-file", IDS_FILE, "--filter", "status = 'OK'"], "--filter"),
    ("IDs file empty", ["--trace-ids-file", EMPTY_FILE], "no trace IDs in"),
    ("IDs file missing", ["--trace-ids-file", "/nonexistent/ids.txt"], "cannot read"),
    (
        "IDs inline and file",
        ["--trace-ids", TRACE_ID, "--trace-ids-file", IDS_FILE],
        "--trace-ids-file: not allowed with argument --trace-ids",
    ),
    ("IDs inline empty item", ["--trace-ids", f"{TRACE_ID},,"], "--trace-ids: empty trace ID"),
    (
        "IDs inline and cap",
        ["--trace-ids", TRACE_ID, "--max-traces", "5"],
        "--max-traces cannot be used with --trace-ids (",
    ),
    ("abbreviated flag", [*OLD, "--max-trace", "5"], "unrecognized arguments: --max-trace 5"),
    ("rate zero", [*OLD, "--rate", "0"], "--rate: Input should be greater than 0"),
    ("read rate zero", [*OLD, "--read-rate", "0"], "--read-rate: Input should be greater than 0"),
    (
        "budget zero",
        [*OLD, "--foreground-budget", "0"],
        "--foreground-budget: Input should be greater than 0",
    ),
    ("budget nan", [*OLD, "--foreground-budget", "nan"], "--foreground-budget: Input should be"),
    (
        "throttle not http",
        [*OLD, "--throttle-url", "ftp://ops.example/t?token=s3cret"],
        "--throttle-url must be an http(s):// URL (it is not shown here)",
    ),
    ("rate nan", [*OLD, "--rate", "nan"], "--rate: Input should be a finite number"),
    ("rate infinite", [*OLD, "--rate", "inf"], "--rate: Input should be a finite number"),
    ("rate huge", [*OLD, "--rate", "1e9"], "--rate: Input should be less than or equal"),
    ("concurrency zero", [*OLD, "--concurrency", "0"], "--concurrency: Input should be"),
    ("concurrency huge", [*OLD, "--concurrency", "1000"], "--concurrency: Input should be"),
    ("concurrency fraction", [*OLD, "--concurrency", "1.5"], "--concurrency: invalid int"),
    ("target zero", [*OLD, "--target-latency", "0"], "--target-latency: Input should be"),
    ("min batch zero", [*OLD, "--min-batch-size", "0"], "--min-batch-size: Input should be"),
    (
        "min batch above max",
        [*OLD, "--min-batch-size", "500", "--max-batch-size", "100"],
        "--min-batch-size <= --initial-batch-size <= --max-batch-size",
    ),
    ("max batch huge", [*OLD, "--max-batch-size", str(10**7)], "--max-batch-size: Input"),
    ("sleep negative", [*OLD, "--sleep-coefficient", "-1"], "--sleep-coefficient: Input"),
    ("timeout zero", [*OLD, "--request-timeout", "0"], "--request-timeout: Input should be"),
    ("timeout huge", [*OLD, "--request-timeout", "1e6"], "--request-timeout: Input should be"),
    ("sample negative", [*OLD, "--sample", "-1"], "--sample: must be >= 0"),
    ("guardrail negative", [*OLD, "--expect-at-most", "-1"], "--expect-at-most: Input"),
    (
        "retention too short",
        ["--older-than", "1d", "--min-retention", "7d"],
        "--min-retention: the cutoff",
    ),
    ("unknown flag", [*OLD, "--bogus"], "unrecognized arguments: --bogus"),
]


@pytest.fixture
def id_files(tmp_path: Path) -> dict[str, str]:
    """Paths of a file with one trace ID and of a file with none."""
    ids = tmp_path / "ids.txt"
    ids.write_text(f"{TRACE_ID}\n")
    empty = tmp_path / "empty.txt"
    empty.write_text("# no IDs here\n\n")
    return {IDS_FILE: str(ids), EMPTY_FILE: str(empty)}


def run_refused(
    argv: list[str], capsys: pytest.CaptureFixture[str], environ: dict[str, str] | None = None
) -> tuple[str, CountingServer]:
    """Run the CLI on a counting server; assert it exited 2; return its one error line."""
    server = CountingServer()
    env = {"MLFLOW_TRACKING_URI": SIM_URL} if environ is None else environ
    code = run_cli(argv, environ=env, transport=server.transport, wall_clock_ms=lambda: NOW_MS)
    captured = capsys.readouterr()
    assert code == 2, captured
    lines = captured.err.strip().splitlines()
    assert lines, captured
    assert lines[-1].startswith(ERROR), captured.err
    return lines[-1], server


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        *[pytest.param(flags, fragment, id=name) for name, flags, fragment in CLI_CASES],
        pytest.param(
            [*OLD, "--max-id-chunk", "0"],
            "--max-id-chunk: Input should be",
            id="ID chunk zero",
        ),
    ],
)
def test_invalid_command_line_exits_2_naming_the_flag_without_a_request(
    flags: list[str],
    fragment: str,
    id_files: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Each invalid flag (combination) exits 2 with one line naming it, and sends nothing."""
    argv = ["delete", "--experiment-id", "1", *(id_files.get(flag, flag) for flag in flags)]
    line, server = run_refused(argv, capsys)
    assert fragment in line
    assert server.requests == []


ENVIRONMENT_CASES: list[tuple[str, list[str], dict[str, str], str]] = [
    ("no experiment", ["delete", *OLD], {"MLFLOW_TRACKING_URI": SIM_URL}, "give at least one"),
    (
        "empty experiment id",
        ["delete", "--experiment-id", "", *OLD],
        {"MLFLOW_TRACKING_URI": SIM_URL},
        "--experiment-id: must not be empty",
    ),
    ("no server", ["delete", "--experiment-id", "1", *OLD], {}, "no MLflow server given"),
    (
        "file tracking URI",
        ["delete", "--experiment-id", "1", *OLD, "--tracking-uri", "file:///tmp/mlruns"],
        {},
        "--tracking-uri is 'file:///tmp/mlruns', a local folder (a file store), not a server",
    ),
    (
        "timeout variable",
        ["delete", "--experiment-id", "1", *OLD],
        {"MLFLOW_TRACKING_URI": SIM_URL, "MLFLOW_HTTP_REQUEST_TIMEOUT": "soon"},
        "MLFLOW_HTTP_REQUEST_TIMEOUT: expected seconds",
    ),
    (
        "TLS variable",
        ["delete", "--experiment-id", "1", *OLD],
        {"MLFLOW_TRACKING_URI": SIM_URL, "MLFLOW_TRACKING_INSECURE_TLS": "maybe"},
        "MLFLOW_TRACKING_INSECURE_TLS: expected true/false",
    ),
    (
        "user without password",
        ["delete", "--experiment-id", "1", *OLD],
        {"MLFLOW_TRACKING_URI": SIM_URL, "MLFLOW_TRACKING_USERNAME": "bob"},
        "MLFLOW_TRACKING_PASSWORD must be given together",
    ),
    ("no command", [], {}, "the following arguments are required"),
]


@pytest.mark.parametrize(
    ("argv", "environ", "fragment"),
    [pytest.param(a, e, f, id=name) for name, a, e, f in ENVIRONMENT_CASES],
)
def test_invalid_experiment_or_environment_exits_2_without_a_request(
    argv: list[str], environ: dict[str, str], fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A missing experiment or server, or a bad MLflow variable, exits 2 before any request."""
    line, server = run_refused(argv, capsys, environ)
    assert fragment in line
    assert server.requests == []


POLICY_CASES: list[tuple[str, str, str]] = [
    ("not TOML", "jobs = [", "is not valid TOML"),
    ("no jobs", 'tracking_uri = "http://x:5000"\n', "needs at least one [[jobs]] table"),
    (
        "unknown key",
        '[[jobs]]\nexperiment_ids = ["1"]\nolder_than = "30d"\ncolour = "red"\n',
        "unknown key 'colour'",
    ),
    (
        "unknown engine option",
        '[engine]\nturbo = true\n[[jobs]]\nexperiment_ids = ["1"]\nolder_than = "30d"\n',
        "[engine]: unknown key 'turbo'",
    ),
    (
        "duplicate job",
        '[[jobs]]\nexperiment_ids = ["1"]\nolder_than = "30d"\n'
        '[[jobs]]\nexperiment_ids = ["1"]\nolder_than = "7d"\n',
        "job '1' is defined twice",
    ),
    (
        "bad value in a job",
        '[[jobs]]\nexperiment_ids = ["1"]\nolder_than = "30d"\nmax_traces = 0\n',
        "jobs[1]: max_traces: Input should be greater than 0",
    ),
    (
        "months in a job",
        '[[jobs]]\nexperiment_ids = ["1"]\nolder_than = "6M"\n',
        "jobs[1]: older_than: cannot read '6M' as a duration: months and years",
    ),
    (
        "uppercase unit in the defaults",
        '[defaults]\nmin_retention = "7D"\n[[jobs]]\nexperiment_ids = ["1"]\nolder_than = "30d"\n',
        "jobs[1]: min_retention: cannot read '7D' as a duration: units are lowercase: write 7d",
    ),
    (
        "both cutoffs in a job",
        '[[jobs]]\nexperiment_ids = ["1"]\nbefore = 2020-01-01T00:00:00Z\n'
        "max_timestamp_millis = 5\n",
        "give before or max_timestamp_millis, not both",
    ),
]


@pytest.mark.parametrize(
    ("policy", "fragment"), [pytest.param(p, f, id=name) for name, p, f in POLICY_CASES]
)
def test_invalid_policy_file_exits_2_without_a_request(
    policy: str, fragment: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An invalid policy file exits 2 with one line naming the key, and sends nothing."""
    path = tmp_path / "policy.toml"
    path.write_text(policy)
    line, server = run_refused(["run", str(path)], capsys)
    assert fragment in line
    assert server.requests == []


def test_unknown_experiment_name_exits_2_and_deletes_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An unknown ``--experiment-name`` is looked up (read-only), then refused: nothing deleted."""
    argv = ["delete", "--experiment-name", "no-such-experiment", *OLD, "--execute"]
    line, server = run_refused(argv, capsys)
    assert "--experiment-name: no experiment named 'no-such-experiment'" in line
    assert server.deletes == 0
    assert [request.url.path for request in server.requests] == [
        "/api/2.0/mlflow/experiments/get-by-name"
    ]


def test_duplicates_are_collapsed_not_run_twice() -> None:
    """Duplicate experiments and trace IDs are deduplicated: one job, each ID once."""
    invocation = prepare(
        ["delete", "--experiment-id", "1", "--experiment-id", "1", *OLD],
        environ={"MLFLOW_TRACKING_URI": SIM_URL},
        stdin=None,
        now_ms=NOW_MS,
    )
    assert len(invocation.jobs) == 1
    spec = DeleteSpec(experiment_id="1", trace_ids=(TRACE_ID, "tr-" + "b" * 32, TRACE_ID))
    assert spec.trace_ids == (TRACE_ID, "tr-" + "b" * 32)


def test_conflicting_jobs_on_one_experiment_exit_2_before_any_delete(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two policy jobs that name one experiment (by name and by ID) with different
    selections exit 2 naming both jobs, after read-only lookups and before any delete."""
    path = tmp_path / "policy.toml"
    path.write_text(
        '[[jobs]]\nname = "errors"\nexperiment_names = ["exp"]\nfilter = "status = \'ERROR\'"\n'
        '\n[[jobs]]\nname = "old"\nexperiment_ids = ["1"]\nolder_than = "30d"\n'
    )
    line, server = run_refused(["run", str(path), "--execute"], capsys)
    assert "jobs 'errors/exp' and 'old/1' both delete from experiment 1" in line
    assert server.deletes == 0
    assert all("/experiments/" in request.url.path for request in server.requests)


def test_one_experiment_named_twice_with_one_selection_is_one_job(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``--experiment-id 1 --experiment-name exp --max-traces 10`` (exp is 1) deletes 10
    traces, not 20: after names are resolved the two are one job."""
    server = CountingServer()
    argv = [
        "delete",
        "--experiment-id",
        "1",
        "--experiment-name",
        "exp",
        "--max-timestamp-millis",
        str(BASE_MS + 29),  # all 30 traces
        "--max-traces",
        "10",
        "--execute",
        "--json",
    ]
    code = run_cli(
        argv,
        environ={"MLFLOW_TRACKING_URI": SIM_URL},
        transport=server.transport,
        wall_clock_ms=lambda: NOW_MS,
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert server.server.deleted(server.experiment_id) == 10
    assert '"deleted": 10' in captured.out
