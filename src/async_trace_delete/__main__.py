"""``python -m async_trace_delete``: the same command line as ``async-trace-delete``."""

from ._cli import main

if __name__ == "__main__":
    raise SystemExit(main())
