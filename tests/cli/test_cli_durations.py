"""Durations on the command line: one meaning per unit, as flags and as policy keys.

Months and years have no fixed length, and uppercase units are refused; ``parse_duration`` is
tested on its own, then through the flags and the policy keys that take a duration.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from async_trace_delete._cli.args import prepare
from async_trace_delete._cli.inputs import parse_duration
from tests.support.cli_harness import NOW_MS, Recorder, cli, one_error_line, write_policy
from tests.support.simulated_server import SIM_URL

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
