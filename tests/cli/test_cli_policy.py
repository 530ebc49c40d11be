"""Policy files (``async-trace-delete run``): every job runs, a bad key is one line naming it.

The CLI runs in-process (``run_cli``) against the simulated server behind a recording
transport (``tests/support/cli_harness.py``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from async_trace_delete._cli.args import main
from async_trace_delete._cli.inputs import EXIT_BAD_INPUT, EXIT_OK
from tests.support.cli_harness import Recorder, cli, write_policy


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
