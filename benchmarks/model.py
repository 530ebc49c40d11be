"""What a run is given (`Settings`) and what one variant gives back (`VariantResult`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.probe import LatencySummary
from benchmarks.scenario import Scenario
from benchmarks.variants import VariantRun

HAND_LOOP = (1000, 0.1)
"""The hand-written loop the engine must beat: `max_traces=1000`, `sleep(0.1)`."""


@dataclass(frozen=True)
class Settings:
    """Everything a run needs, as parsed from the command line."""

    mode: str
    backends: tuple[str, ...]
    scenario: Scenario
    variants: tuple[str, ...] | None
    grid_sizes: tuple[int, ...]
    grid_pauses: tuple[float, ...]
    time_box: float
    engine_box: float
    concurrent_box: float
    target_latency: float
    engine_targets: tuple[float, ...]
    large_target: float
    foreground_budget: float
    workers: int
    big_old: int
    big_backends: tuple[str, ...]
    tracking_uri: str | None
    seed: bool
    output: Path
    plot: bool
    idle_seconds: float
    probe_interval: float
    variant_timeout: float
    clean_rest: bool

    def runs_big(self, backend: str) -> bool:
        """Whether `backend` runs the big experiment too."""
        return self.big_old > 0 and backend in self.big_backends

    @property
    def grid(self) -> tuple[tuple[int, float], ...]:
        """The (batch size, pause) points of the frontier, the hand-written loop included."""
        points = [(size, pause) for size in self.grid_sizes for pause in self.grid_pauses]
        if HAND_LOOP not in points:
            points.append(HAND_LOOP)
        return tuple(sorted(points))


def engine_name(settings: Settings, target: float) -> str:
    """`engine` at the default target, `engine-<t>s` at the others."""
    return "engine" if target == settings.target_latency else f"engine-{target:g}s"


@dataclass
class VariantResult:
    """One variant's figures, checked against the database."""

    name: str
    description: str
    status: str  # "done", "time-boxed", "failed"
    scenario: str  # "main" or "big"
    run: VariantRun = field(default_factory=VariantRun)
    measured_deleted: int = 0
    old_before: int = 0
    old_after: int = 0
    new_before: int = 0
    new_after: int = 0
    old_after_cleanup: int | None = None
    cleanup_seconds: float | None = None
    orphans: int = 0
    oldest_first: bool | None = None
    probe: dict[str, LatencySummary] = field(default_factory=dict)
    probe_window: float = 0.0
    note: str = ""

    @property
    def throughput(self) -> float | None:
        """Traces deleted (as the database saw it) per second of the variant's run."""
        if self.run.elapsed <= 0:
            return None
        return self.measured_deleted / self.run.elapsed

    @property
    def new_kept(self) -> bool:
        """Every trace newer than the cutoff is still there."""
        return self.new_after == self.new_before

    @property
    def count_consistent(self) -> bool:
        """The variant's own count matches what disappeared (within its ambiguous calls)."""
        ambiguous = int(sum(job["ambiguous"] for job in self.run.details.get("jobs", [])))
        return self.run.deleted <= self.measured_deleted <= self.run.deleted + ambiguous

    @property
    def old_gone(self) -> bool:
        """No old trace left: after the variant, or after the untimed cleanup of a time box."""
        left = self.old_after if self.old_after_cleanup is None else self.old_after_cleanup
        return left == 0

    @property
    def verified(self) -> bool:
        """What the database confirms of the variant's work.

        Always: every new trace kept, no orphaned tag or metadata row, and the variant's own
        count equal to what disappeared. A completed variant must also have left no old trace;
        a time-boxed one must have deleted the oldest first (the rest is cleaned untimed and
        checked with `--clean-rest`); a failed one is only checked not to have done harm.
        """
        base = self.new_kept and self.count_consistent and self.orphans == 0
        if self.status == "done":
            return base and self.old_gone
        if self.status == "time-boxed":
            cleaned = self.old_after_cleanup is None or self.old_after_cleanup == 0
            return base and bool(self.oldest_first) and cleaned
        return base
