"""Plan files: a dry run written down, pinned, and applied exactly (terraform's plan / apply).

``delete ... --plan-out PLAN.json`` writes what the dry run showed, pinned: the server
(credentials never written), each job's experiment ID and name, its spec, its cutoff in
epoch ms, its count, when the plan was made and the engine settings. ``apply PLAN.json``
runs exactly those jobs: no name is resolved again, no ``--older-than`` recomputed. It refuses
(exit 2, before any delete) another server, an experiment gone, deleted or renamed, or a plan
older than ``--max-plan-age``; and each job's planned count is a ceiling: a job stops (and
fails) rather than delete more than its count plus ``--max-growth``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, cast, get_args

import anyio
from pydantic import ValidationError

from .._config import redact_url
from .._engine import Engine
from .._exceptions import NotFoundError
from .._planning import CountMethod, PlanReport, job_plan
from .._specs import DeleteSpec, ResolvedSpec
from .inputs import BadInputError

__all__ = [
    "PLAN_VERSION",
    "PlanFile",
    "PlannedJob",
    "checked_plan",
    "parse_growth",
    "read_plan",
    "save_plan",
    "write_plan",
]

PLAN_VERSION = 1


@dataclass(frozen=True)
class PlannedJob:
    """One job of a plan file."""

    experiment_name: str
    resolved: ResolvedSpec
    would_delete: int
    matched: int
    count_method: CountMethod


@dataclass(frozen=True)
class PlanFile:
    """A plan file as read back."""

    server: str
    created_ms: int
    engine: dict[str, Any]
    jobs: tuple[PlannedJob, ...]

    def report(self, *, growth: float) -> PlanReport:
        """The plan for ``Engine.run``, each job capped at its count plus ``growth``
        (``expect_at_most``: the job fails if more still match once it reached it)."""
        jobs = []
        for job in self.jobs:
            spec = job.resolved.spec
            # Exact: 10% of 200 is 20, not 20.000000000000004 rounded up.
            ceiling = job.would_delete + math.floor(Fraction(str(growth)) * job.would_delete)
            if spec.expect_at_most is not None:
                ceiling = min(ceiling, spec.expect_at_most)
            capped = DeleteSpec.model_validate({**spec.model_dump(), "expect_at_most": ceiling})
            resolved = job.resolved.model_copy(update={"spec": capped})
            jobs.append(job_plan(resolved, job.matched, (), None, None, job.count_method, None))
        return PlanReport(jobs=tuple(jobs))


def write_plan(
    path: Path,
    plan: PlanReport,
    *,
    server: str,
    created_ms: int,
    engine: dict[str, Any],
    names: dict[str, str],
) -> None:
    """Write ``plan`` (every job holding its resolved spec) to ``path``.

    Args:
        path: Where.
        plan: The dry run.
        server: The server, credentials redacted.
        created_ms: When the plan was made (epoch ms).
        engine: The engine settings (without the client).
        names: Experiment ID -> its name when planned (to refuse a renamed one).
    """
    jobs = []
    for job in plan.jobs:
        resolved = job.planned()
        jobs.append(
            {
                "label": job.label,
                "experiment_id": job.experiment_id,
                "experiment_name": names[job.experiment_id],
                "spec": resolved.spec.model_dump(mode="json", exclude_none=True),
                "cutoff_millis": resolved.cutoff_millis,
                "bound_millis": resolved.bound_millis,
                "would_delete": job.would_delete,
                "matched": job.matched,
                "count_method": job.count_method,
            }
        )
    payload = {
        "version": PLAN_VERSION,
        "server": server,
        "created_ms": created_ms,
        "engine": engine,
        "would_delete": plan.would_delete,
        "jobs": jobs,
    }
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")


def read_plan(path: Path) -> PlanFile:
    """Read a plan file back.

    Raises:
        BadInputError: it cannot be read, or is not a plan this version wrote.
    """
    where = f"PLAN {str(path)!r}"
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise BadInputError(f"{where}: cannot read it: {error.strerror or error}") from None
    except ValueError as error:
        raise BadInputError(f"{where}: not JSON: {error}") from None
    if not isinstance(payload, dict) or payload.get("version") != PLAN_VERSION:
        raise BadInputError(f"{where}: not a plan file of version {PLAN_VERSION}")
    try:
        jobs = tuple(_job(item) for item in payload["jobs"])
        return PlanFile(
            server=str(payload["server"]),
            created_ms=int(payload["created_ms"]),
            engine=dict(payload["engine"]),
            jobs=jobs,
        )
    except (KeyError, TypeError, ValueError, ValidationError) as error:
        raise BadInputError(f"{where}: unreadable ({type(error).__name__}: {error})") from None


def _job(item: dict[str, Any]) -> PlannedJob:
    spec = DeleteSpec.model_validate(item["spec"])
    resolved = ResolvedSpec(
        spec=spec,
        experiment_id=str(item["experiment_id"]),
        cutoff_millis=item["cutoff_millis"],
        bound_millis=item["bound_millis"],
    )
    return PlannedJob(
        experiment_name=str(item["experiment_name"]),
        resolved=resolved,
        would_delete=int(item["would_delete"]),
        matched=int(item["matched"]),
        count_method=_method(item["count_method"]),
    )


def parse_growth(text: str) -> float:
    """``10%`` or ``0.1`` -> 0.1; must be >= 0."""
    value = text.strip()
    try:
        growth = float(value[:-1]) / 100 if value.endswith("%") else float(value)
    except ValueError:
        raise ValueError(f"cannot read {text!r}; write a share such as 10% or 0.1") from None
    if not math.isfinite(growth) or growth < 0:
        raise ValueError(f"must be >= 0, got {text!r}")
    return growth


async def checked_plan(engine: Engine, plan_file: PlanFile, *, growth: float) -> PlanReport:
    """The plan to run, once every experiment is checked still there under its name.

    Raises:
        BadInputError: an experiment is gone, deleted or renamed since the plan.
    """
    for job in plan_file.jobs:
        experiment_id = job.resolved.experiment_id
        try:
            experiment = await engine.client.get_experiment(experiment_id)
        except NotFoundError:
            raise BadInputError(
                f"PLAN: experiment {experiment_id} ({job.experiment_name!r}) is gone; "
                "nothing was deleted"
            ) from None
        if experiment.lifecycle_stage == "deleted":
            raise BadInputError(
                f"PLAN: experiment {experiment_id} ({job.experiment_name!r}) was deleted "
                "since the plan; nothing was deleted"
            )
        if experiment.name != job.experiment_name:
            raise BadInputError(
                f"PLAN: experiment {experiment_id} was {job.experiment_name!r} when "
                f"planned and is {experiment.name!r} now; make a new plan (nothing was "
                "deleted)"
            )
    return plan_file.report(growth=growth)


async def save_plan(
    engine: Engine, plan: PlanReport, path: Path, created_ms: int, settings: dict[str, Any]
) -> None:
    """Write ``plan`` with each experiment's current name (``--plan-out``).

    Raises:
        BadInputError: the file cannot be written.
    """
    names = {}
    for job in plan.jobs:
        names[job.experiment_id] = (await engine.client.get_experiment(job.experiment_id)).name
    server = redact_url(engine.client.config.tracking_uri)
    try:
        await anyio.to_thread.run_sync(
            lambda: write_plan(
                path, plan, server=server, created_ms=created_ms, engine=settings, names=names
            )
        )
    except OSError as error:
        raise BadInputError(
            f"--plan-out: cannot write {str(path)!r}: {error.strerror or error}"
        ) from None


def _method(value: object) -> CountMethod:
    if value not in get_args(CountMethod):
        raise ValueError(f"count_method {value!r} is not one this version writes")
    return cast(CountMethod, value)
