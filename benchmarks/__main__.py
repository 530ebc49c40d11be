"""`python -m benchmarks` (from the repository root, so that `tests.support` is importable)."""

from benchmarks.cli import main

raise SystemExit(main())
