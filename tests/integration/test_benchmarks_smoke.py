"""Smoke test of the benchmark runner: quick mode on SQLite, every variant verified correct.

It runs one uvicorn worker (`--workers 1`): the test checks what the harness does with the
data, not speed, and four workers per server double the start-up on a busy 2-core machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
RUN_TIMEOUT_SECONDS = 280.0  # ~140 s with 5 other workers on the 2 cores; slack for worse
EXPECTED_VARIANTS = {
    "docs-recipe",
    "fixed-300-sleep-0",
    "fixed-1000-sleep-0.1",
    "fixed-3000-sleep-0",
    "unbounded",
    "engine-0.25s",
    "engine",
    "engine-5s",
    "engine-concurrent",
    "unbounded-big",
    "engine-5s-big",
}
BUDGET_VARIANT = "engine-budget"  # the engine paced by `foreground_budget`


@pytest.mark.integration
@pytest.mark.timeout(RUN_TIMEOUT_SECONDS + 10)
def test_quick_benchmark_verifies_every_variant(tmp_path: Path) -> None:
    """`python -m benchmarks --quick` deletes every old trace, keeps every new one, writes JSON."""
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--quick",
            "--backends",
            "sqlite",
            "--workers",
            "1",
            "--no-plot",
            "--output",
            str(tmp_path),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_SECONDS,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr[-4000:]

    document: dict[str, Any] = json.loads((tmp_path / "quick.json").read_text())
    [section] = document["backends"]
    assert section["backend"] == "sqlite"
    variants = {variant["name"]: variant for variant in section["variants"]}
    assert set(variants) == EXPECTED_VARIANTS | {BUDGET_VARIANT}
    for name, variant in variants.items():
        verification = variant["verification"]
        assert variant["status"] in {"done", "time-boxed"}, (name, variant["errors"])
        assert verification["verified"] is True, (name, verification)
        assert verification["new_kept"], name
        assert verification["old_gone"], name  # quick mode cleans the rest of a time box
        assert verification["orphan_child_rows"] == 0, name
        if variant["status"] == "done":
            assert variant["deleted_measured"] == verification["old_before"], name
        else:
            assert verification["deleted_oldest_first"], name
    assert "== sqlite" in completed.stdout
    # Every probe tick is either sent or stalled, and the frontier comes from the fixed loops.
    for name, variant in variants.items():
        probe = variant["probe"]["all"]
        assert probe["count"] == probe["sent"] + probe["stalled"], name
        assert probe["errors"] <= probe["sent"], name
    assert section["frontier"], section
    assert all(point["name"].startswith("fixed-") for point in section["frontier"])
    assert {target["name"].split(" ")[0] for target in section["targets"]} >= {
        "engine-0.25s",
        "engine",
        "engine-5s",
    }
