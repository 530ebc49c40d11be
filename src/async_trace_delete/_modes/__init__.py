"""Deletion modes, registered by name: one strategy per way MLflow deletes traces.

* ``cutoff`` (:mod:`.cutoff`) — ``max_timestamp_millis`` with ``max_traces`` batches;
* ``ids`` (:mod:`.ids`) — named trace IDs, in chunks;
* ``matching`` (:mod:`.matching`) — a search filter's matches, streamed into ID chunks;
* any of them :mod:`.artifacts` — with each deleted trace's artifact folder removed too.

A spec says which mode it is (:attr:`DeleteSpec.mode`); :func:`mode_of` returns the
strategy. To add a mode: write its module here (a class with the :class:`Mode` members),
add it to :data:`MODES`, teach :class:`~.._specs.DeleteSpec` when a spec is that mode, and
document it (see ``docs/architecture.md``).
"""

from __future__ import annotations

from collections.abc import Mapping

from .._specs import DeleteSpec
from .artifacts import WithArtifacts
from .base import ArtifactSide, JobContext, Mode, TraceSearcher
from .cutoff import CUTOFF
from .ids import IDS
from .matching import MATCHING

__all__ = ["MODES", "ArtifactSide", "JobContext", "Mode", "TraceSearcher", "mode_of"]

MODES: Mapping[str, Mode] = {mode.name: mode for mode in (CUTOFF, IDS, MATCHING)}
"""Every mode, by name."""


def mode_of(spec: DeleteSpec) -> Mode:
    """The strategy that runs ``spec`` (wrapped in :class:`WithArtifacts` when it removes
    the artifact folders too)."""
    mode = MODES[spec.mode]
    return WithArtifacts(mode) if spec.with_artifacts else mode
