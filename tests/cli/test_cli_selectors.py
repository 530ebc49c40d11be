"""Experiment selectors on the command line and in policy files (issue 16).

``--all-experiments``, ``--experiment-name-like``, ``--experiment-tag``, the exclusions and
``--retention-tag`` (and their ``[[jobs]]`` keys) delete in exactly the experiments they
select: every test checks what is left in every experiment, selected or not. Deleted
experiments, exclusions, unreadable retention tags and retentions shorter than
``--min-retention`` are reported as skipped; bad input exits 2 before any request.

The CLI runs in-process against the simulated server behind a recording transport
(``tests/support/cli_harness.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from async_trace_delete._cli.inputs import EXIT_OK
from async_trace_delete._cli.names import SELECTOR_FIELDS, Namer
from async_trace_delete._cli.policy import _JOB_KEYS
from tests.support.cli_harness import (
    DAY_MS,
    FAST,
    NOW_MS,
    Recorder,
    Result,
    audit_lines,
    cli,
    one_error_line,
    table_rows,
    write_policy,
)
from tests.support.simulated_server import _invalid, sim_traces

OLD = 10  # traces 20 days old in each experiment
NEW = 5  # traces 3 days old
SEVEN_DAYS = ["--older-than", "7d"]

# ID -> (name, tags, deleted)
WORLD: dict[str, tuple[str, dict[str, str], bool]] = {
    "1": ("chat-prod", {"team": "search"}, False),
    "2": ("chat-dev", {"team": "search", "env": "dev"}, False),
    "3": ("chat-golden", {"team": "search"}, False),
    "4": ("ads-prod", {"team": "ads"}, False),
    "5": ("ads-dev", {"team": "ads", "env": "dev"}, False),
    "6": ("chat-archived", {"team": "search"}, True),
    "7": ("misc", {}, False),
}
ALL_IDS = tuple(WORLD)
NAMES = {experiment_id: name for experiment_id, (name, _, _) in WORLD.items()}


def add(
    recorder: Recorder,
    name: str,
    tags: dict[str, str] | None = None,
    *,
    deleted: bool = False,
    old: int = OLD,
) -> str:
    """An experiment with ``old`` traces 20 days old and ``NEW`` 3 days old."""
    tag = len(recorder.server._experiments) + 1
    traces = [
        *sim_traces(old, start_ms=NOW_MS - 20 * DAY_MS, tag=tag),
        *sim_traces(NEW, start_ms=NOW_MS - 3 * DAY_MS, tag=tag + 1000),
    ]
    return recorder.server.add_experiment(name, traces, tags=tags, deleted=deleted)


@pytest.fixture
def world() -> Recorder:
    """The experiments of :data:`WORLD`, each with 10 old and 5 newer traces."""
    recorder = Recorder()
    for experiment_id, (name, tags, deleted) in WORLD.items():
        assert add(recorder, name, tags, deleted=deleted) == experiment_id
    return recorder


def left(recorder: Recorder, ids: tuple[str, ...] = ALL_IDS) -> dict[str, int]:
    """Traces remaining per experiment."""
    return {experiment_id: len(recorder.server.remaining(experiment_id)) for experiment_id in ids}


def after_seven_days(selected: set[str]) -> dict[str, int]:
    """What ``--older-than 7d`` leaves: the newer traces in the selected experiments, all
    of them elsewhere."""
    return {i: NEW if i in selected else OLD + NEW for i in ALL_IDS}


def refused(recorder: Recorder, result: Result) -> str:
    """The one error line of a run refused before any request."""
    line = one_error_line(result)
    assert recorder.requests == []
    return line


# -- each selector, exclusion and combination ----------------------------------------------

SELECTOR_CASES: list[tuple[str, list[str], set[str], dict[str, str]]] = [
    ("all", ["--all-experiments"], {"1", "2", "3", "4", "5", "7"}, {"6": "deleted"}),
    ("name like prefix", ["--experiment-name-like", "chat-%"], {"1", "2", "3"}, {"6": "deleted"}),
    ("name like suffix", ["--experiment-name-like", "%-dev"], {"2", "5"}, {}),
    ("name like one character", ["--experiment-name-like", "chat-_ev"], {"2"}, {}),
    ("name like is case-sensitive", ["--experiment-name-like", "CHAT-%"], set(), {}),
    ("one tag", ["--experiment-tag", "team=ads"], {"4", "5"}, {}),
    (
        "two tags, both must match",
        ["--experiment-tag", "team=search", "--experiment-tag", "env=dev"],
        {"2"},
        {},
    ),
    (
        "name and tag",
        ["--experiment-name-like", "%-prod", "--experiment-tag", "team=search"],
        {"1"},
        {},
    ),
    (
        "all, less a name and an ID",
        [
            "--all-experiments",
            *["--exclude-experiment-name", "chat-golden", "--exclude-experiment-id", "7"],
        ],
        {"1", "2", "4", "5"},
        {"3": "excluded", "6": "deleted", "7": "excluded"},
    ),
    (
        "pattern less a name",
        ["--experiment-name-like", "chat-%", "--exclude-experiment-name", "chat-golden"],
        {"1", "2"},
        {"3": "excluded", "6": "deleted"},
    ),
    (
        "tag less an ID",
        ["--experiment-tag", "team=search", "--exclude-experiment-id", "1"],
        {"2", "3"},
        {"1": "excluded", "6": "deleted"},
    ),
]


@pytest.mark.parametrize(
    ("flags", "selected", "skipped"),
    [pytest.param(f, s, k, id=name) for name, f, s, k in SELECTOR_CASES],
)
def test_each_selector_deletes_in_exactly_its_experiments(
    world: Recorder,
    capsys: pytest.CaptureFixture[str],
    flags: list[str],
    selected: set[str],
    skipped: dict[str, str],
) -> None:
    """The dry run lists exactly the selected experiments and deletes nothing; the run
    deletes the old traces of those and of no other experiment (a deleted one included)."""
    argv = ["delete", *flags, *SEVEN_DAYS, *FAST, "--json"]
    dry = cli(world, capsys, *argv)
    assert dry.code == EXIT_OK, dry.err
    plan = dry.json()
    assert {job["experiment_id"] for job in plan["jobs"]} == selected
    assert {job["label"] for job in plan["jobs"]} == {NAMES[i] for i in selected}
    assert all(job["would_delete"] == OLD for job in plan["jobs"])
    assert world.delete_calls == 0
    assert left(world) == after_seven_days(set())

    run = cli(world, capsys, *argv, "--execute")
    assert run.code == EXIT_OK, run.err
    report = run.json()
    # Nothing selected: the --execute run reports its (empty) plan, as for any job.
    assert report["deleted" if selected else "would_delete"] == OLD * len(selected)
    assert left(world) == after_seven_days(selected)
    reasons = {item["experiment_id"]: item["reason"] for item in report["skipped"]}
    assert set(reasons) == set(skipped)
    for experiment_id, word in skipped.items():
        assert word in reasons[experiment_id]


def test_a_named_job_with_a_selector_job_in_one_policy(
    world: Recorder, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Policy jobs may name experiments or select them; each selected experiment is labelled
    ``<job name>/<experiment name>``, and the excluded ID is left alone."""
    policy = write_policy(
        tmp_path,
        """
        [engine]
        rate = 10000

        [[jobs]]
        name = "chat"
        experiment_name_like = "chat-%"
        exclude_experiment_names = ["chat-golden"]
        older_than = "7d"

        [[jobs]]
        name = "ads"
        experiment_tags = {team = "ads"}
        exclude_experiment_ids = [5]
        older_than = "7d"

        [[jobs]]
        name = "named"
        experiment_names = ["misc"]
        older_than = "7d"
        """,
    )
    result = cli(world, capsys, "run", str(policy), "--execute", "--json")
    assert result.code == EXIT_OK, result.err
    report = result.json()
    assert {job["label"]: job["deleted"] for job in report["jobs"]} == {
        "chat/chat-prod": OLD,
        "chat/chat-dev": OLD,
        "ads/ads-prod": OLD,
        "named/misc": OLD,
    }
    assert left(world) == after_seven_days({"1", "2", "4", "7"})
    assert {(item["label"], item["reason"]) for item in report["skipped"]} == {
        ("chat/chat-golden", "excluded"),
        ("chat/chat-archived", "the experiment is deleted"),
        ("ads/ads-dev", "excluded"),
    }


@pytest.mark.parametrize(
    ("keys", "selected"),
    [
        pytest.param("all_experiments = true", {"1", "2", "3", "4", "5", "7"}, id="all"),
        pytest.param('experiment_tags = {team = "search", env = "dev"}', {"2"}, id="two tags"),
        pytest.param(
            'experiment_name_like = "%-prod"\nexperiment_tags = {team = "ads"}',
            {"4"},
            id="name and tag",
        ),
        pytest.param(
            'all_experiments = true\nexclude_experiment_ids = ["1", 2]\n'
            'exclude_experiment_names = "misc"',
            {"3", "4", "5"},
            id="all less IDs and a name",
        ),
    ],
)
def test_policy_keys_select_as_the_flags_do(
    world: Recorder,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    keys: str,
    selected: set[str],
) -> None:
    """Each selector key of a ``[[jobs]]`` table (here without a job name: labels are the
    experiments' names) deletes in exactly the experiments it selects."""
    policy = write_policy(tmp_path, f'[[jobs]]\n{keys}\nolder_than = "7d"\n')
    result = cli(world, capsys, "run", str(policy), "--execute", "--json", *FAST)
    assert result.code == EXIT_OK, result.err
    assert {job["label"] for job in result.json()["jobs"]} == {NAMES[i] for i in selected}
    assert left(world) == after_seven_days(selected)


def test_policy_defaults_give_every_selector_job_the_same_exclusions(
    world: Recorder, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Selector keys in ``[defaults]`` apply to each job that does not set them."""
    policy = write_policy(
        tmp_path,
        """
        [defaults]
        exclude_experiment_names = ["chat-golden", "ads-dev"]
        older_than = "7d"

        [[jobs]]
        name = "search"
        experiment_tags = {team = "search"}

        [[jobs]]
        name = "ads"
        experiment_tags = {team = "ads"}
        """,
    )
    result = cli(world, capsys, "run", str(policy), "--execute", "--json", *FAST)
    assert result.code == EXIT_OK, result.err
    assert left(world) == after_seven_days({"1", "2", "4"})


# -- deleted experiments ---------------------------------------------------------------------


def test_deleted_experiments_are_skipped_with_a_note(
    world: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    """A deleted experiment the selector finds is never touched, and said so under the dry
    run's table and under the summary."""
    argv = ["delete", "--experiment-tag", "team=search", *SEVEN_DAYS, *FAST]
    dry = cli(world, capsys, *argv)
    assert dry.code == EXIT_OK, dry.err
    assert "skipped chat-archived: the experiment is deleted" in dry.out
    assert [row[0] for row in table_rows(dry.out)][:3] == ["chat-prod", "chat-dev", "chat-golden"]
    run = cli(world, capsys, *argv, "--execute")
    assert run.code == EXIT_OK, run.err
    assert "skipped chat-archived: the experiment is deleted" in run.out
    assert left(world) == after_seven_days({"1", "2", "3"})


NAMED_DELETED = [
    (["--experiment-name", "chat-archived"], "--experiment-name"),
    (["--experiment-id", "6"], "--experiment-id"),
]


@pytest.mark.parametrize(("flags", "flag"), NAMED_DELETED)
def test_a_deleted_experiment_named_explicitly_exits_2(
    world: Recorder, capsys: pytest.CaptureFixture[str], flags: list[str], flag: str
) -> None:
    """Naming a deleted experiment is refused with the library's message; it is looked up
    (read-only), and nothing is deleted."""
    result = cli(world, capsys, "delete", *flags, *SEVEN_DAYS, "--execute")
    line = one_error_line(result)
    assert "experiment 'chat-archived' (ID 6) is deleted" in line
    assert "restore it first" in line
    assert world.delete_calls == 0
    assert all("/experiments/" in request.url.path for request in world.requests)


@pytest.mark.parametrize(
    ("flags", "flag"),
    NAMED_DELETED,
)
def test_a_deleted_experiment_named_explicitly_names_the_flag(
    world: Recorder, capsys: pytest.CaptureFixture[str], flags: list[str], flag: str
) -> None:
    """The refusal starts with the flag that named the experiment."""
    line = one_error_line(cli(world, capsys, "delete", *flags, *SEVEN_DAYS, "--execute"))
    assert f"error: {flag}: experiment 'chat-archived' (ID 6) is deleted" in line


def test_a_deleted_experiment_in_a_policy_names_the_job_and_key(
    world: Recorder, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """In a policy file the refusal names the job and its key."""
    policy = write_policy(
        tmp_path,
        '[[jobs]]\nexperiment_names = ["chat-archived"]\nolder_than = "7d"\n',
    )
    line = one_error_line(cli(world, capsys, "run", str(policy), "--execute"))
    assert "policy.toml: jobs[1]: experiment_names: experiment 'chat-archived' (ID 6)" in line
    assert world.delete_calls == 0


# -- retention tags ----------------------------------------------------------------------------


@pytest.fixture
def retention_world() -> Recorder:
    """Four experiments tagged ``keep=yes`` with retention tags ``2d`` (1), ``soon`` (2),
    none (3) and ``1d`` (4), plus one untagged (5)."""
    recorder = Recorder()
    add(recorder, "keeps-2d", {"keep": "yes", "retention": "2d"})
    add(recorder, "keeps-soon", {"keep": "yes", "retention": "soon"})
    add(recorder, "keeps-default", {"keep": "yes"})
    add(recorder, "keeps-1d", {"keep": "yes", "retention": "1d"})
    add(recorder, "untagged")
    return recorder


RETENTION = ["--experiment-tag", "keep=yes", "--retention-tag", "retention", *SEVEN_DAYS]
IDS_1_TO_5 = ("1", "2", "3", "4", "5")


def test_an_unreadable_retention_tag_is_reported_and_the_others_deleted(
    retention_world: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each experiment's retention tag is its own cutoff (2d and 1d delete the 3-day-old
    traces too); the untagged one uses --older-than; ``soon`` is skipped, never read as
    "delete everything"."""
    result = cli(retention_world, capsys, "delete", *RETENTION, *FAST, "--execute", "--json")
    assert result.code == EXIT_OK, result.err
    assert left(retention_world, IDS_1_TO_5) == {"1": 0, "2": 15, "3": 5, "4": 0, "5": 15}
    (skipped,) = result.json()["skipped"]
    assert skipped["label"] == skipped["name"] == "keeps-soon"
    assert skipped["experiment_id"] == "2"
    assert "its tag retention='soon' is not a retention" in skipped["reason"]
    assert "nothing is deleted in it" in skipped["reason"]


def test_a_retention_shorter_than_min_retention_is_reported(
    retention_world: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--min-retention 36h`` holds for tags too: ``1d`` is skipped with the reason, ``2d``
    and the job's own 7d go ahead."""
    argv = ["delete", *RETENTION, "--min-retention", "36h", *FAST]
    dry = cli(retention_world, capsys, *argv)
    assert dry.code == EXIT_OK, dry.err
    assert "skipped keeps-1d: its tag retention='1d':" in dry.out
    assert "keeps less than" in dry.out
    run = cli(retention_world, capsys, *argv, "--execute", "--json")
    assert run.code == EXIT_OK, run.err
    reasons = {item["name"]: item["reason"] for item in run.json()["skipped"]}
    assert set(reasons) == {"keeps-soon", "keeps-1d"}
    assert "keeps less than" in reasons["keeps-1d"]
    assert left(retention_world, IDS_1_TO_5) == {"1": 0, "2": 15, "3": 5, "4": 15, "5": 15}


def test_retention_tag_in_a_policy(
    retention_world: Recorder, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """``retention_tag`` with ``all_experiments``: the untagged experiment is selected too
    and keeps the job's cutoff."""
    policy = write_policy(
        tmp_path,
        """
        [[jobs]]
        name = "all"
        all_experiments = true
        retention_tag = "retention"
        older_than = "7d"
        """,
    )
    result = cli(retention_world, capsys, "run", str(policy), "--execute", "--json", *FAST)
    assert result.code == EXIT_OK, result.err
    assert [item["label"] for item in result.json()["skipped"]] == ["all/keeps-soon"]
    assert left(retention_world, IDS_1_TO_5) == {"1": 0, "2": 15, "3": 5, "4": 0, "5": 5}


def test_retention_tag_with_named_experiments(
    retention_world: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    """A retention tag also applies to experiments named explicitly."""
    argv = ["delete", "--experiment-id", "1", "--experiment-id", "2", "--experiment-id", "3"]
    argv += ["--retention-tag", "retention", *SEVEN_DAYS, *FAST, "--execute", "--json"]
    result = cli(retention_world, capsys, *argv)
    assert result.code == EXIT_OK, result.err
    assert [item["experiment_id"] for item in result.json()["skipped"]] == ["2"]
    assert left(retention_world, IDS_1_TO_5) == {"1": 0, "2": 15, "3": 5, "4": 15, "5": 15}


# -- --json, the audit log, notes ----------------------------------------------------------


def test_json_skipped_has_label_id_name_and_reason(
    world: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    """Dry run and run: ``skipped`` holds one object per experiment left out."""
    argv = ["delete", "--experiment-name-like", "chat-%", "--exclude-experiment-id", "3"]
    for extra in ([], ["--execute"]):
        result = cli(world, capsys, *argv, *SEVEN_DAYS, *FAST, "--json", *extra)
        assert result.code == EXIT_OK, result.err
        assert sorted(result.json()["skipped"], key=lambda item: item["experiment_id"]) == [
            {
                "label": "chat-golden",
                "experiment_id": "3",
                "name": "chat-golden",
                "reason": "excluded",
            },
            {
                "label": "chat-archived",
                "experiment_id": "6",
                "name": "chat-archived",
                "reason": "the experiment is deleted",
            },
        ]


def test_the_audit_log_records_the_selector_and_the_selection_before_any_delete(
    world: Recorder, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """``run_start`` holds the selector as given; a ``selection`` line lists the selected
    experiment IDs and how many were left out, before the plan and every delete."""
    log = tmp_path / "audit.jsonl"
    argv = ["delete", "--experiment-tag", "team=search", "--exclude-experiment-name"]
    argv += ["chat-golden", *SEVEN_DAYS, *FAST, "--execute", "--audit-log", str(log)]
    assert cli(world, capsys, *argv).code == EXIT_OK
    records = audit_lines(log)
    events = [record["event"] for record in records]
    assert events[:3] == ["run_start", "selection", "plan"]
    (job,) = records[0]["jobs"]
    assert job["experiments"] == {
        "all_experiments": False,
        "tags": {"team": "search"},
        "exclude_names": ["chat-golden"],
        "exclude_ids": [],
    }
    selection = records[1]
    assert selection["experiment_ids"] == ["1", "2"]
    assert selection["skipped"] == 2
    (selector,) = selection["selectors"]
    assert selector["filter"] == "tags.`team` = 'search'"
    assert {item["experiment_id"]: item["reason"] for item in selector["skipped"]} == {
        "3": "excluded",
        "6": "the experiment is deleted",
    }
    batches = [record for record in records if record["event"] == "batch"]
    assert {batch["experiment_id"] for batch in batches} == {"1", "2"}
    assert events.index("selection") < events.index("batch")


def test_named_jobs_write_no_selection_line(
    world: Recorder, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Without a selector the audit log is as before."""
    log = tmp_path / "audit.jsonl"
    argv = ["delete", "--experiment-id", "1", *SEVEN_DAYS, "--audit-log", str(log)]
    assert cli(world, capsys, *argv).code == EXIT_OK
    assert "selection" not in [record["event"] for record in audit_lines(log)]


def test_an_exclusion_that_matches_nothing_is_noted(
    world: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    """A misspelt exclusion protects nothing: the run says so (and still runs)."""
    argv = ["delete", "--experiment-name-like", "chat-%", "--exclude-experiment-name"]
    result = cli(world, capsys, *argv, "chat-goldne", *SEVEN_DAYS)
    assert result.code == EXIT_OK, result.err
    assert (
        "note: --exclude-experiment-name 'chat-goldne': the selector found no such "
        "experiment, so it excluded nothing"
    ) in result.err


def test_a_selector_that_chooses_nothing_deletes_nothing(
    world: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    """No match: nothing to delete, a note, exit 0."""
    argv = ["delete", "--experiment-tag", "team=nobody", *SEVEN_DAYS, "--execute"]
    result = cli(world, capsys, *argv)
    assert result.code == EXIT_OK, result.err
    assert "the selector chose no experiment" in result.err
    assert "Nothing to delete now" in result.out
    assert world.delete_calls == 0
    assert left(world) == after_seven_days(set())


def test_an_experiment_search_the_server_rejects_names_the_selector_flags(
    world: Recorder, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that refuses the experiment search (an older MLflow, a proxy) is bad input
    naming the selector flags and the filter sent; nothing is deleted."""
    monkeypatch.setattr(
        world.server, "_search_experiments", lambda body: _invalid("filter not supported")
    )
    argv = ["delete", "--experiment-tag", "team=ads", *SEVEN_DAYS, "--execute"]
    line = one_error_line(cli(world, capsys, *argv))
    assert (
        "--all-experiments / --experiment-name-like / --experiment-tag: the server rejected "
        "the experiment search \"tags.`team` = 'ads'\": "
    ) in line
    assert "filter not supported" in line
    assert world.delete_calls == 0


# -- many experiments ------------------------------------------------------------------------


def test_a_dry_run_of_55_experiments_lists_each_and_samples_the_10_largest(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Every selected experiment is one row with its cutoff and count; the sample shows the
    ten largest jobs only (3 traces each), and its title says so."""
    recorder = Recorder()
    for index in range(55):
        add(recorder, f"exp-{index:02d}", {"team": "bulk"}, old=index + 1)
    result = cli(recorder, capsys, "delete", "--experiment-tag", "team=bulk", *SEVEN_DAYS)
    assert result.code == EXIT_OK, result.err
    assert "Sample (oldest first) of the 10 largest of 55 jobs" in result.out
    rows = table_rows(result.out)
    cutoff = "2024-01-24T00:00:00Z"  # now - 7 days
    plan_rows = [row for row in rows if len(row) == 7]
    assert [row[0] for row in plan_rows] == [f"exp-{i:02d}" for i in range(55)] + ["total"]
    assert all(row[2] == cutoff and row[4] == str(int(row[0][4:]) + 1) for row in plan_rows[:55])
    assert plan_rows[-1][4] == f"{sum(range(1, 56)):,}"
    sample_rows = [row for row in rows if len(row) == 4]
    assert len(sample_rows) == 30
    assert {row[0] for row in sample_rows} == {f"exp-{i}" for i in range(45, 55)}
    assert recorder.delete_calls == 0


def test_a_run_over_60_experiments_shows_few_progress_lines(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With --execute the progress display ends as the total and one line of counts, not
    sixty bars; every experiment's old traces are gone."""
    recorder = Recorder()
    ids = tuple(add(recorder, f"bulk-{index:02d}", {"team": "bulk"}) for index in range(60))
    argv = ["delete", "--experiment-tag", "team=bulk", *SEVEN_DAYS, *FAST, "--execute"]
    result = cli(recorder, capsys, *argv)
    assert result.code == EXIT_OK, result.err
    progress = [line for line in result.err.splitlines() if line.strip()]
    assert len(progress) <= 10, result.err
    assert any(line.startswith("total") and "600/600" in line for line in progress)
    assert "60 jobs done, 0 running, 0 waiting" in result.err
    assert left(recorder, ids) == dict.fromkeys(ids, NEW)


# -- bad input: exit 2, no request -------------------------------------------------------------

BAD_FLAGS: list[tuple[str, list[str], str]] = [
    ("tag without =", ["--experiment-tag", "team"], "--experiment-tag: 'team' is not KEY=VALUE"),
    ("tag empty key", ["--experiment-tag", "=search"], "--experiment-tag: '=search' has an empty"),
    ("tag empty value", ["--experiment-tag", "team="], "'team=' has an empty value"),
    ("tag key with a space", ["--experiment-tag", "my team=x"], "--experiment-tag: tag key"),
    ("tag value with a quote", ["--experiment-tag", "team=it's"], "--experiment-tag: tag 'team'"),
    (
        "tag given twice",
        ["--experiment-tag", "team=a", "--experiment-tag", "team=b"],
        "--experiment-tag: team is given twice",
    ),
    (
        "quote in a pattern",
        ["--experiment-name-like", "chat-'%"],
        "--experiment-name-like: must not contain a quote",
    ),
    ("backslash in a pattern", ["--experiment-name-like", "chat\\%"], "--experiment-name-like"),
    ("empty pattern", ["--experiment-name-like", " "], "--experiment-name-like: must not be empty"),
    (
        "exclude ID not a number",
        ["--all-experiments", "--exclude-experiment-id", "seven"],
        "--exclude-experiment-id: 'seven' is not an experiment ID",
    ),
    (
        "all and a pattern",
        ["--all-experiments", "--experiment-name-like", "chat-%"],
        "--all-experiments selects every experiment; --experiment-name-like and "
        "--experiment-tag narrow",
    ),
    (
        "all and a tag",
        ["--all-experiments", "--experiment-tag", "team=ads"],
        "--all-experiments selects every experiment",
    ),
    (
        "selector and an experiment",
        ["--all-experiments", "--experiment-id", "1"],
        "--experiment-id and --all-experiments: a job names its experiments or selects them",
    ),
    (
        "selector and named experiments",
        ["--experiment-tag", "team=ads", "--experiment-name", "misc", "--experiment-id", "1"],
        "--experiment-id and --experiment-name and --experiment-tag: a job names",
    ),
    (
        "exclusion without a selector",
        ["--experiment-id", "1", "--exclude-experiment-name", "misc"],
        "--exclude-experiment-name: exclusions narrow a selector; add --all-experiments",
    ),
    (
        "exclusions alone",
        ["--exclude-experiment-id", "1", "--exclude-experiment-name", "misc"],
        "--exclude-experiment-name and --exclude-experiment-id: exclusions narrow a selector",
    ),
    ("no experiment at all", [], "give at least one experiment, or a selector"),
    ("empty retention tag", ["--all-experiments", "--retention-tag", " "], "--retention-tag"),
]
NO_CUTOFF_CASES: list[tuple[str, list[str], str]] = [
    (
        "retention tag without a cutoff",
        ["--all-experiments", "--retention-tag", "retention", "--filter", "status = 'ERROR'"],
        "--retention-tag needs the job's own cutoff (--older-than or --before / "
        "--max-timestamp-millis)",
    ),
    (
        "trace IDs with a selector",
        ["--experiment-name-like", "chat-%", "--trace-ids", "tr-1,tr-2"],
        "--trace-ids belong to one experiment: name it with --experiment-id or "
        "--experiment-name, not a selector",
    ),
    (
        "selector without a cutoff",
        ["--all-experiments"],
        "there is nothing to select traces by",
    ),
]


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [pytest.param([*f, *SEVEN_DAYS], m, id=name) for name, f, m in BAD_FLAGS]
    + [pytest.param(f, m, id=name) for name, f, m in NO_CUTOFF_CASES],
)
def test_bad_selector_flags_exit_2_before_any_request(
    world: Recorder, capsys: pytest.CaptureFixture[str], flags: list[str], fragment: str
) -> None:
    """Each exits 2 with one line naming the flag(s), and sends nothing, even with
    --execute."""
    line = refused(world, cli(world, capsys, "delete", *flags, "--execute"))
    assert fragment in line
    assert left(world) == after_seven_days(set())


BAD_POLICIES: list[tuple[str, str, str]] = [
    (
        "selector and experiment IDs",
        'all_experiments = true\nexperiment_ids = [1]\nolder_than = "7d"',
        "jobs[1]: experiment_ids and all_experiments: a job names its experiments",
    ),
    (
        "exclusion without a selector",
        'experiment_ids = [1]\nexclude_experiment_ids = [2]\nolder_than = "7d"',
        "jobs[1]: exclude_experiment_ids: exclusions narrow a selector; add all_experiments, "
        "experiment_name_like, experiment_tags",
    ),
    (
        "all is false",
        'all_experiments = false\nexclude_experiment_ids = [2]\nolder_than = "7d"',
        "jobs[1]: exclude_experiment_ids: exclusions narrow a selector",
    ),
    (
        "all is not a boolean",
        'all_experiments = "yes"\nolder_than = "7d"',
        "jobs[1]: all_experiments: Input should be a valid boolean",
    ),
    (
        "all and a pattern",
        'all_experiments = true\nexperiment_name_like = "a%"\nolder_than = "7d"',
        "jobs[1]: all_experiments selects every experiment; experiment_name_like and "
        "experiment_tags narrow",
    ),
    (
        "tags not a table",
        'experiment_tags = "team=ads"\nolder_than = "7d"',
        "jobs[1]: experiment_tags: must be a table",
    ),
    (
        "empty tag value",
        'experiment_tags = {team = ""}\nolder_than = "7d"',
        "jobs[1]: experiment_tags: team: the value must be a non-empty string",
    ),
    (
        "tag value a number",
        'experiment_tags = {team = 3}\nolder_than = "7d"',
        "jobs[1]: experiment_tags: team: the value must be a non-empty string",
    ),
    (
        "empty tag key",
        'experiment_tags = {"" = "x"}\nolder_than = "7d"',
        "jobs[1]: experiment_tags: tag key '' must be",
    ),
    (
        "no tags",
        'experiment_tags = {}\nolder_than = "7d"',
        "jobs[1]: an experiment selector needs all_experiments, experiment_name_like or "
        "experiment_tags",
    ),
    (
        "quote in a pattern",
        'experiment_name_like = "it\'s%"\nolder_than = "7d"',
        "jobs[1]: experiment_name_like: must not contain a quote",
    ),
    (
        "pattern not a string",
        'experiment_name_like = 5\nolder_than = "7d"',
        "jobs[1]: experiment_name_like: Input should be a valid string",
    ),
    (
        "exclude ID not a number",
        'all_experiments = true\nexclude_experiment_ids = ["x"]\nolder_than = "7d"',
        "jobs[1]: exclude_experiment_ids: 'x' is not an experiment ID",
    ),
    (
        "exclude names not a list",
        'all_experiments = true\nexclude_experiment_names = {a = 1}\nolder_than = "7d"',
        "jobs[1]: exclude_experiment_names: must be a list",
    ),
    (
        "retention tag without a cutoff",
        'all_experiments = true\nretention_tag = "r"\nfilter = "status = \'OK\'"',
        "jobs[1]: retention_tag needs the job's own cutoff (older_than or max_timestamp_millis)",
    ),
    (
        "retention tag not a string",
        'all_experiments = true\nretention_tag = 7\nolder_than = "7d"',
        "jobs[1]: retention_tag: Input should be a valid string",
    ),
]


@pytest.mark.parametrize(
    ("keys", "fragment"), [pytest.param(k, m, id=name) for name, k, m in BAD_POLICIES]
)
def test_bad_selector_keys_exit_2_before_any_request(
    world: Recorder,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    keys: str,
    fragment: str,
) -> None:
    """Each bad ``[[jobs]]`` selector key exits 2 with one line naming the job and key."""
    policy = write_policy(tmp_path, f"[[jobs]]\n{keys}\n")
    line = refused(world, cli(world, capsys, "run", str(policy), "--execute"))
    assert fragment in line


def test_a_selector_and_a_named_job_on_one_experiment_conflict(
    world: Recorder, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A selector's job on an experiment that another job names differently is refused
    after the read-only lookups, before any delete."""
    policy = write_policy(
        tmp_path,
        """
        [[jobs]]
        name = "all"
        all_experiments = true
        older_than = "7d"

        [[jobs]]
        name = "errors"
        experiment_names = ["misc"]
        filter = "status = 'ERROR'"
        """,
    )
    line = one_error_line(cli(world, capsys, "run", str(policy), "--execute"))
    assert "jobs 'all/misc' and 'errors/misc' both delete from experiment 7" in line
    assert world.delete_calls == 0


def test_two_experiments_under_one_label_are_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Job ``a`` selecting ``b/c`` and job ``a/b`` naming ``c`` would both be ``a/b/c``."""
    recorder = Recorder()
    add(recorder, "b/c")
    add(recorder, "c")
    policy = write_policy(
        tmp_path,
        """
        [[jobs]]
        name = "a"
        experiment_name_like = "b/%"
        older_than = "7d"

        [[jobs]]
        name = "a/b"
        experiment_names = ["c"]
        older_than = "7d"
        """,
    )
    line = one_error_line(cli(recorder, capsys, "run", str(policy), "--execute"))
    assert "jobs on experiments 1 and 2 are both labelled 'a/b/c'" in line
    assert recorder.delete_calls == 0


def test_every_selector_field_has_a_flag_and_a_policy_key() -> None:
    """The names the library's messages use for the selector are in the CLI's table, as a
    flag and as a ``[[jobs]]`` key."""
    fields = [*SELECTOR_FIELDS.values(), "retention_tag"]
    flags: dict[str, Any] = {field: Namer()(field) for field in fields}
    assert all(flag.startswith("--") for flag in flags.values()), flags
    keys = {field: Namer(origin="p.toml: jobs[1]")(field) for field in fields}
    assert set(keys.values()) <= _JOB_KEYS, keys
    assert keys == {field: field for field in fields}


def test_plan_out_and_apply_delete_exactly_the_selected_experiments(
    world: Recorder, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A selector's dry run pinned with --plan-out is applied as those experiments: one
    created afterwards that the selector would match is not touched."""
    plan = tmp_path / "plan.json"
    argv = ["delete", "--experiment-name-like", "ads-%", *SEVEN_DAYS, "--plan-out", str(plan)]
    assert cli(world, capsys, *argv).code == EXIT_OK
    late = add(world, "ads-late", {"team": "ads"})
    result = cli(world, capsys, "apply", str(plan), *FAST, "--json")
    assert result.code == EXIT_OK, result.err
    assert left(world) == after_seven_days({"4", "5"})
    assert len(world.server.remaining(late)) == OLD + NEW
