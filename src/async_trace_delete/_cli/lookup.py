"""The read-only look-up before a plan: every job's experiments found (a selector's by
experiment search), one job per experiment, and the trace IDs the audit log already
confirms deleted dropped.

Nothing here deletes. A refusal names the flag or policy key that gave the job.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio

from .._config import redact_url
from .._engine import Engine
from .._exceptions import GuardrailError, InvalidParameterError, NotFoundError, UsageError
from .._modes import mode_of
from .._selection import Selection
from .._specs import DeleteSpec, ResolvedSpec, one_job_per_experiment
from .audit import AuditLog, read_confirmed_ids
from .inputs import BadInputError, Invocation, JobDefinition, describe_guardrail

__all__ = ["Lookup"]


class Lookup:
    """Looks up one invocation's jobs, and keeps what it left out and why.

    Args:
        invocation: The checked command line.
        audit: The audit log (its ``selection`` record; the IDs it confirms deleted).
        note: Prints a note for the user (stderr).
        now_ms: Epoch milliseconds now (a job's cutoff is pinned again after a resume).

    Attributes:
        definitions: Each job's label -> the definition that gave it (for refusals).
        skipped: Experiments and IDs left out, each with its reason.
        confirmed: Experiment ID -> trace IDs the audit log confirms deleted there.
    """

    def __init__(
        self,
        invocation: Invocation,
        *,
        audit: AuditLog,
        note: Callable[[str], None],
        now_ms: Callable[[], int],
    ) -> None:
        self.invocation = invocation
        self.audit = audit
        self._note = note
        self._now_ms = now_ms
        self.definitions = {
            spec.label or spec.experiment: definition for spec, definition in invocation.jobs
        }
        self.skipped: list[dict[str, Any]] = []
        self.confirmed: dict[str, set[str]] = {}

    async def resolve(self, engine: Engine) -> list[ResolvedSpec]:
        """Look every experiment up once (read-only), a selector's by experiment search, into
        one job per experiment; drop trace IDs the audit log confirmed."""
        now = self._now_ms()
        resolved: list[ResolvedSpec] = []
        found: list[tuple[DeleteSpec, ResolvedSpec]] = []
        selections: list[dict[str, Any]] = []
        for spec, definition in self.invocation.jobs:
            selection = await self._select(engine, spec, definition)
            for item in selection.resolved:
                # The first job on an experiment is the one kept (one_job_per_experiment).
                self.definitions.setdefault(item.label, definition)
                found.append((item.spec, item))
            self.skipped += [
                {
                    "label": left_out.label,
                    "experiment_id": left_out.experiment_id,
                    "name": left_out.name,
                    "reason": left_out.reason,
                }
                for left_out in selection.skipped
            ]
            if spec.experiments is not None:
                selections.append(self._selected(spec, definition, selection))
        _one_label_per_experiment([item for _, item in found])
        await self._read_confirmed(engine, [item for _, item in found])
        for spec, item in found:
            left = self._resume(spec, item.experiment_id)
            if left is None:
                continue
            if left is not spec:  # fewer IDs, same experiment: pinned again, no lookup
                item = left.resolve(now_millis=now, experiment_id=item.experiment_id)
            resolved.append(item)
        # After names are resolved, one job per experiment: identical ones collapse (the
        # first is kept), different ones are refused before anything is sent.
        jobs = one_job_per_experiment(resolved)
        if selections:
            self.audit.write(
                "selection",
                experiment_ids=[item.experiment_id for item in jobs],
                skipped=sum(len(selected["skipped"]) for selected in selections),
                selectors=selections,
            )
        return jobs

    async def _select(
        self, engine: Engine, spec: DeleteSpec, definition: JobDefinition
    ) -> Selection:
        """One definition's spec looked up (read-only): its job per experiment and the
        experiments its selector left out; a refusal names the definition's flag or key."""
        namer = definition.namer
        by_id = spec.experiment_id is not None
        try:
            return await engine.select([spec])
        except NotFoundError:
            if spec.experiments is not None:
                raise
            flag = namer.qualified("experiment_id" if by_id else "experiment_name")
            what = "with ID" if by_id else "named"
            raise BadInputError(
                f"{flag}: no experiment {what} {spec.experiment!r} on "
                f"{engine.client.config.tracking_uri}"
            ) from None
        except InvalidParameterError as error:
            if spec.experiments is None:
                raise
            raise BadInputError(
                f"{namer.qualified('experiments')}: the server rejected the experiment "
                f"search {spec.experiments.filter_string()!r}: {error.message}; nothing was "
                "deleted"
            ) from None
        except GuardrailError as error:
            raise BadInputError(describe_guardrail(error, definition)) from None
        except UsageError as error:  # a named experiment is deleted
            raise BadInputError(namer.message(error)) from None

    def _selected(
        self, spec: DeleteSpec, definition: JobDefinition, selection: Selection
    ) -> dict[str, Any]:
        """A selector's line in the audit log's ``selection`` record; a note for each
        exclusion that matched nothing (a typo there would not protect anything)."""
        selector = spec.experiments
        assert selector is not None
        seen = {(item.experiment_id, item.name) for item in selection.skipped}
        namer = definition.namer
        for flag, values, position in (
            ("exclude_experiment_names", selector.exclude_names, 1),
            ("exclude_experiment_ids", selector.exclude_ids, 0),
        ):
            for value in values:
                if all(pair[position] != value for pair in seen):
                    self._note(
                        f"note: {namer.qualified(flag)} {value!r}: the selector found no such "
                        "experiment, so it excluded nothing"
                    )
        if not selection.resolved:
            self._note(
                f"note: {namer.where}{definition.name or selector.describe()}: the selector "
                f"chose no experiment ({len(selection.skipped)} left out)"
            )
        return {
            "job": spec.label or spec.experiment,
            "selector": selector.model_dump(mode="json", exclude_none=True),
            "filter": selector.filter_string(),
            "experiment_ids": [item.experiment_id for item in selection.resolved],
            "skipped": [
                {"experiment_id": item.experiment_id, "name": item.name, "reason": item.reason}
                for item in selection.skipped
            ],
        }

    async def _read_confirmed(self, engine: Engine, resolved: list[ResolvedSpec]) -> None:
        """The IDs of this run's ID jobs that the audit log confirms gone on this server."""
        path = self.audit.path
        wanted: dict[str, set[str]] = {}
        for item in resolved:
            if mode_of(item.spec).names_ids:
                wanted.setdefault(item.experiment_id, set()).update(item.spec.trace_ids or ())
        if path is None or not wanted:
            return
        server = redact_url(engine.client.config.tracking_uri)
        try:
            self.confirmed = await anyio.to_thread.run_sync(
                lambda: read_confirmed_ids(path, server=server, wanted=wanted)
            )
        except OSError as error:
            raise BadInputError(
                f"--audit-log: cannot read {str(path)!r}: {error.strerror or error}"
            ) from None

    def _resume(self, spec: DeleteSpec, experiment_id: str) -> DeleteSpec | None:
        if spec.trace_ids is None:
            return spec
        label = spec.label or spec.experiment
        done = self.confirmed.get(experiment_id, set())
        left = tuple(trace_id for trace_id in spec.trace_ids if trace_id not in done)
        if len(left) < len(spec.trace_ids):
            self.skipped.append(
                {
                    "label": label,
                    "experiment_id": experiment_id,
                    "skipped_ids": len(spec.trace_ids) - len(left),
                    "remaining_ids": len(left),
                    "reason": f"{len(spec.trace_ids) - len(left):,} of {len(spec.trace_ids):,} "
                    "IDs already confirmed deleted by the audit log",
                }
            )
        if not left:
            return None
        if len(left) == len(spec.trace_ids):
            return spec
        return DeleteSpec.model_validate({**spec.model_dump(), "trace_ids": left})


def _one_label_per_experiment(found: list[ResolvedSpec]) -> None:
    """Refuse two experiments under one label (a job ``a`` selecting ``b/c`` and a job
    ``a/b`` naming ``c``): reports and progress go by label.

    Raises:
        BadInputError: two experiments share a label.
    """
    owner: dict[str, str] = {}
    for item in found:
        first = owner.setdefault(item.label, item.experiment_id)
        if first != item.experiment_id:
            raise BadInputError(
                f"jobs on experiments {first} and {item.experiment_id} are both labelled "
                f"{item.label!r}; rename a job (nothing was deleted)"
            )
