"""Which server: every dry run, run and sweep names the server it talks to and where its URL
came from (``--tracking-uri``, a policy file, ``MLFLOW_TRACKING_URI``, an ``apply`` plan),
first thing, and in ``--json`` as a ``server`` object; credentials never appear.

The CLI runs in-process against the simulated server (it answers whatever the host), so a
run "on" another URL is still checked against what it prints and what it sent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from async_trace_delete._cli.inputs import EXIT_OK
from async_trace_delete._cli.server import ServerSource, server_line, server_source, shown_url
from tests.support.cli_harness import (
    FAST,
    Recorder,
    artifact_world,
    audit_lines,
    cli,
    write_policy,
)
from tests.support.simulated_server import SIM_URL

SEVEN_DAYS = ["--older-than", "7d"]
ALPHA = ["delete", "--experiment-name", "alpha", *SEVEN_DAYS]
POLICY_URL = "http://policy-host:5000"


def server_of(payload: Any) -> dict[str, Any]:
    """The ``server`` object of a ``--json`` answer."""
    server: dict[str, Any] = payload["server"]
    return server


def policy_file(tmp_path: Path, tracking_uri: str | None) -> Path:
    """A policy deleting alpha's traces older than 7 days, with ``tracking_uri`` if given."""
    top = "" if tracking_uri is None else f'tracking_uri = "{tracking_uri}"\n'
    return write_policy(
        tmp_path,
        top
        + """
        [[jobs]]
        name = "old"
        experiment_names = ["alpha"]
        older_than = "7d"
        """,
    )


def test_a_dry_run_names_the_server_from_the_environment_first(
    recorder: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    """The first line of the dry run, and ``server`` in ``--json``; nothing deleted."""
    result = cli(recorder, capsys, *ALPHA)
    assert result.code == EXIT_OK, result.err
    assert result.out.splitlines()[0] == f"Server: {SIM_URL} (from MLFLOW_TRACKING_URI)"
    as_json = cli(recorder, capsys, *ALPHA, "--json")
    assert server_of(as_json.json()) == {
        "url": SIM_URL,
        "source": "MLFLOW_TRACKING_URI",
        "file": None,
        "overrides": None,
    }
    assert recorder.delete_calls == 0


def test_the_flag_is_named_when_it_wins_over_the_environment(
    recorder: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--tracking-uri`` beside a different ``MLFLOW_TRACKING_URI``: the flag's URL, and
    the requests go there."""
    flagged = ["--tracking-uri", "http://flag-host:5000/"]
    result = cli(recorder, capsys, *ALPHA, *flagged)
    assert result.code == EXIT_OK, result.err
    assert result.out.splitlines()[0] == "Server: http://flag-host:5000 (from --tracking-uri)"
    assert {request.url.host for request in recorder.requests} == {"flag-host"}
    payload = cli(recorder, capsys, *ALPHA, *flagged, "--json").json()
    assert server_of(payload)["source"] == "--tracking-uri"
    assert server_of(payload)["url"] == "http://flag-host:5000"


def test_a_policy_url_that_overrides_the_environment_says_so(
    recorder: Recorder, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The policy's ``tracking_uri`` wins over a set, different ``MLFLOW_TRACKING_URI``: the
    line names the policy file and the variable it overrode, dry run and run alike."""
    policy = policy_file(tmp_path, POLICY_URL)
    expected = (
        f"Server: {POLICY_URL} (from the policy file {policy}; it overrides "
        f"MLFLOW_TRACKING_URI={SIM_URL})"
    )
    dry = cli(recorder, capsys, "run", str(policy))
    assert dry.code == EXIT_OK, dry.err
    assert dry.out.splitlines()[0] == expected
    payload = cli(recorder, capsys, "run", str(policy), "--json").json()
    assert server_of(payload) == {
        "url": POLICY_URL,
        "source": "policy",
        "file": str(policy),
        "overrides": SIM_URL,
    }
    assert recorder.delete_calls == 0

    executed = cli(recorder, capsys, "run", str(policy), "--execute", *FAST)
    assert executed.code == EXIT_OK, executed.err
    # Before the progress (stderr) and atop the summary (stdout).
    assert executed.err.splitlines()[0] == expected
    assert executed.out.splitlines()[0] == expected
    assert recorder.server.deleted("1") == 100
    assert {request.url.host for request in recorder.requests} == {"policy-host"}


@pytest.mark.parametrize(
    ("environment", "overrides"),
    [("", None), (POLICY_URL + "/", None), (SIM_URL, SIM_URL)],
    ids=["unset", "the-same-url", "a-different-url"],
)
def test_a_policy_url_notes_the_environment_only_when_it_differs(
    recorder: Recorder,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    environment: str,
    overrides: str | None,
) -> None:
    """Unset or the same URL (a trailing slash aside): no note; a different one: named."""
    policy = policy_file(tmp_path, POLICY_URL)
    env = {"MLFLOW_TRACKING_URI": environment}
    payload = cli(recorder, capsys, "run", str(policy), "--json", env=env).json()
    assert server_of(payload)["source"] == "policy"
    assert server_of(payload)["overrides"] == overrides


def test_a_policy_without_a_url_uses_the_environment(
    recorder: Recorder, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """No ``tracking_uri`` in the policy: the variable's URL, named as such."""
    result = cli(recorder, capsys, "run", str(policy_file(tmp_path, None)))
    assert result.code == EXIT_OK, result.err
    assert result.out.splitlines()[0] == f"Server: {SIM_URL} (from MLFLOW_TRACKING_URI)"


def test_apply_names_the_plan_file_when_nothing_else_gives_a_url(
    recorder: Recorder, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """``apply PLAN`` without the flag or the variable runs on the plan's server and says so
    (the line atop its summary, and in ``--json``)."""
    plan = tmp_path / "plan.json"
    made = cli(recorder, capsys, *ALPHA, "--plan-out", str(plan))
    assert made.code == EXIT_OK, made.err
    env = {"MLFLOW_TRACKING_URI": ""}
    applied = cli(recorder, capsys, "apply", str(plan), *FAST, env=env)
    assert applied.code == EXIT_OK, applied.err
    assert applied.out.splitlines()[0] == f"Server: {SIM_URL} (from the plan file {plan})"
    assert recorder.server.deleted("1") == 100
    again = cli(recorder, capsys, "apply", str(plan), *FAST, "--json")
    assert server_of(again.json())["source"] == "MLFLOW_TRACKING_URI"


def test_sweep_artifacts_names_its_server(capsys: pytest.CaptureFixture[str]) -> None:
    """The sweep's report starts with the server; ``--json`` has it; a flag is named."""
    world = artifact_world()
    sweep = ["sweep-artifacts", "--experiment-name", "alpha"]
    dry = cli(world, capsys, *sweep)
    assert dry.code == EXIT_OK, dry.err
    assert dry.out.splitlines()[0] == f"Server: {SIM_URL} (from MLFLOW_TRACKING_URI)"
    flagged = cli(world, capsys, *sweep, "--tracking-uri", "http://sweep-host:5000", "--json")
    assert server_of(flagged.json()) == {
        "url": "http://sweep-host:5000",
        "source": "--tracking-uri",
        "file": None,
        "overrides": None,
    }
    assert not [call for call in world.artifacts.calls if call.method == "DELETE"]


def test_credentials_in_an_overridden_url_never_appear(
    recorder: Recorder, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A ``MLFLOW_TRACKING_URI`` with ``user:password@`` that the policy overrides is named
    as ``***@host``; neither the password nor the token is printed anywhere."""
    policy = policy_file(tmp_path, POLICY_URL)
    env = {
        "MLFLOW_TRACKING_URI": "https://alice:hunter2-pw@prod.example:443",
        "MLFLOW_TRACKING_TOKEN": "tok-9f8e7d-secret",
    }
    runs = [
        cli(recorder, capsys, "run", str(policy), env=env),
        cli(recorder, capsys, "run", str(policy), "--json", env=env),
        cli(recorder, capsys, "run", str(policy), "--execute", *FAST, env=env),
    ]
    assert all(run.code == EXIT_OK for run in runs), [run.err for run in runs]
    assert "MLFLOW_TRACKING_URI=https://***@prod.example:443)" in runs[0].out.splitlines()[0]
    assert server_of(runs[1].json())["overrides"] == "https://***@prod.example:443"
    for run in runs:
        for secret in ("hunter2-pw", "alice", "tok-9f8e7d-secret"):
            assert secret not in run.out + run.err


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("https://bob:pw@mlflow.example/", "https://***@mlflow.example/"),
        ("https://mlflow.example/?token=abc", "https://mlflow.example/?***"),
        (" http://h:5000 ", "http://h:5000"),
    ],
)
def test_a_shown_url_has_no_credentials(url: str, shown: str) -> None:
    """``user:password@`` and a query string (which may hold a token) are scrubbed."""
    assert shown_url(url) == shown
    assert server_line(url, ServerSource("--tracking-uri")).startswith(f"Server: {shown} (")


def test_the_source_follows_the_same_precedence_as_the_url() -> None:
    """Flag, then the policy's URL, then the variable, then the plan's server."""
    env = {"MLFLOW_TRACKING_URI": SIM_URL}
    assert server_source("http://f", env, policy_uri="http://p").origin == "--tracking-uri"
    assert server_source(None, env, policy_uri="http://p", policy_file="p.toml") == ServerSource(
        "policy", file="p.toml", overrides=SIM_URL
    )
    assert server_source(None, env, plan_file="plan.json").origin == "MLFLOW_TRACKING_URI"
    assert server_source(None, {}, plan_file="plan.json") == ServerSource("plan", file="plan.json")
    assert server_source(None, {"MLFLOW_TRACKING_URI": ""}).origin == "MLFLOW_TRACKING_URI"


def test_the_audit_log_records_where_the_url_came_from(
    recorder: Recorder, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """``run_start`` and ``sweep_start`` hold the same ``server`` object as ``--json``."""
    audit = tmp_path / "audit.jsonl"
    policy = policy_file(tmp_path, POLICY_URL)
    assert cli(recorder, capsys, "run", str(policy), "--audit-log", str(audit)).code == EXIT_OK
    world = artifact_world()
    sweep = ["sweep-artifacts", "--experiment-id", "1", "--audit-log", str(audit)]
    assert cli(world, capsys, *sweep).code == EXIT_OK
    starts = [line for line in audit_lines(audit) if line["event"].endswith("_start")]
    assert [line["event"] for line in starts] == ["run_start", "sweep_start"]
    assert starts[0]["server"] == {
        "url": POLICY_URL,
        "source": "policy",
        "file": str(policy),
        "overrides": SIM_URL,
    }
    assert starts[1]["server"]["source"] == "MLFLOW_TRACKING_URI"


def test_apply_takes_pacing_flags_over_the_plans(
    recorder: Recorder, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """``apply PLAN --concurrency 1 --rate 5000`` runs with those (they were ignored): the
    audit's run_start shows them, and the plan's own settings stay for the rest."""
    plan = tmp_path / "plan.json"
    made = cli(recorder, capsys, *ALPHA, *FAST, "--min-sleep", "0.2", "--plan-out", str(plan))
    assert made.code == EXIT_OK, made.err
    audit = tmp_path / "audit.jsonl"
    applied = cli(
        recorder,
        capsys,
        "apply",
        str(plan),
        "--concurrency",
        "1",
        "--rate",
        "5000",
        "--audit-log",
        str(audit),
    )
    assert applied.code == EXIT_OK, applied.err
    engine = next(line for line in audit_lines(audit) if line["event"] == "run_start")["engine"]
    assert (engine["max_concurrency"], engine["rate_limit"], engine["min_sleep"]) == (1, 5000, 0.2)
    assert recorder.server.deleted("1") == 100
