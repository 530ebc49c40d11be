"""What a user of ``mlflow traces delete`` / ``mlflow traces search`` types out of habit.

MLflow's own CLI (``mlflow/cli/traces.py``, mlflow 3.17) deletes with ``--experiment-id``
(alias ``-x``, default ``MLFLOW_EXPERIMENT_ID``), ``--trace-ids a,b``,
``--max-timestamp-millis`` and ``--max-traces``, and searches with ``--filter-string``,
``--max-results``, ``--order-by``, ``--run-id``, ``--model-id``. What fits this CLI is
supported where the flags are declared (``-x``, ``--filter-string``, comma-separated
``--trace-ids``); the rest is refused here with the flag to use instead, and an experiment is
never taken from ``MLFLOW_EXPERIMENT_ID``: a deletion names its experiment.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import Any

from .inputs import BadInputError

__all__ = ["EXPERIMENT_VARIABLE", "add_refused_mlflow_flags", "refuse_experiment_variable"]

EXPERIMENT_VARIABLE = "MLFLOW_EXPERIMENT_ID"

# MLflow's flag -> why it is refused and what to write instead.
_REFUSED: Mapping[str, str] = {
    "--trace-id": "this command takes --trace-ids ID[,ID...] (comma-separated, as in "
    "`mlflow traces delete`)",
    "--max-results": "to cap what is deleted use --max-traces N (per experiment); the dry run "
    "shows --sample N traces per job",
    "--order-by": "deletion order is not chosen: the oldest traces go first",
    "--run-id": "select a run's traces with a filter, as MLflow's client does: "
    "--filter \"attribute.run_id = 'RUN_ID'\"",
    "--model-id": "select a model's traces with a filter, as MLflow's client does: "
    "--filter \"request_metadata.`mlflow.modelId` = 'MODEL_ID'\"",
}


class _Refused(argparse.Action):
    """An MLflow flag this CLI does not take: refused (exit 2) naming ours to use instead."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        raise argparse.ArgumentError(self, f"not a flag of this command; {_REFUSED[self.dest]}")


def add_refused_mlflow_flags(parser: argparse.ArgumentParser) -> None:
    """Declare MLflow's flags that do not fit, hidden from ``--help``, so that typing one
    gets its explanation instead of "unrecognized arguments"."""
    for flag in _REFUSED:
        parser.add_argument(
            flag, dest=flag, nargs="?", action=_Refused, help=argparse.SUPPRESS, default=None
        )


def refuse_experiment_variable(given: bool, environ: Mapping[str, str]) -> None:
    """Refuse a job without an experiment while ``MLFLOW_EXPERIMENT_ID`` is set, saying that
    it is not read (``mlflow traces delete`` would have used it).

    Raises:
        BadInputError: no experiment given, and the variable is set.
    """
    value = environ.get(EXPERIMENT_VARIABLE, "").strip()
    if not given and value:
        raise BadInputError(
            f"--experiment-id: no experiment given; {EXPERIMENT_VARIABLE}={value} is set, but "
            "a deletion never takes its experiment from the environment: pass "
            f"--experiment-id {value} (or -x {value}) to delete in it"
        )
