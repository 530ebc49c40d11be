"""The CLI's streams: consoles on stdout and stderr, JSON on stdout, and the signals that
stop a run.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from collections.abc import Callable, Mapping
from typing import Any, TextIO

import anyio
from anyio.abc import TaskStatus
from rich.console import Console

__all__ = ["make_console", "print_json", "watch_signals"]

_WIDTH_WITHOUT_TERMINAL = 160


def make_console(stream: TextIO) -> Console:
    """A console on ``stream``, wide when it is not a terminal."""
    # Rich assumes 80 columns without a terminal; a file or pipe is better served wider.
    wide = not stream.isatty() and "COLUMNS" not in os.environ
    return Console(file=stream, highlight=False, width=_WIDTH_WITHOUT_TERMINAL if wide else None)


def print_json(redact: Callable[[str], str], payload: Mapping[str, Any]) -> None:
    """``payload`` as indented JSON on stdout, secrets removed by ``redact``."""
    sys.stdout.write(redact(json.dumps(payload, indent=2, ensure_ascii=False)) + "\n")
    sys.stdout.flush()


async def watch_signals(on_signal: Callable[[int], None], *, task_status: TaskStatus[None]) -> None:
    """Hand every SIGINT/SIGTERM to ``on_signal`` until cancelled (started at once)."""
    with contextlib.ExitStack() as stack:
        try:
            signals = stack.enter_context(anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM))
        except (ValueError, RuntimeError, NotImplementedError):
            # Not the main thread (or no signals here): Ctrl-C keeps its default.
            task_status.started()
            return
        task_status.started()
        async for signum in signals:
            on_signal(signum)
