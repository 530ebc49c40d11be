"""The command line: ``async-trace-delete delete|run``.

Layers, each its own module:

* :mod:`.args` — the argument parser and the entry point (``main``);
* :mod:`.inputs` — flags and policy keys into validated specs and engine settings;
* :mod:`.policy` — TOML policy files into job definitions;
* :mod:`.session` — one invocation: resolve, plan, execute, signals, exit codes (:mod:`.lookup`:
  the read-only look-up of the experiments; :mod:`.terminal`: consoles, JSON, signals);
* :mod:`.render`, :mod:`.summary`, :mod:`.progress`, :mod:`.sweep_render` — the dry run,
  the summary, the live progress, the sweep's report, ``--json`` (:mod:`.layout`: tables that
  become blocks in a narrow terminal; :mod:`.formats`: times and durations; :mod:`.server`:
  which server, and where its URL came from; :mod:`.shell`: the printed command);
* :mod:`.audit` — the JSON-lines audit log and secret redaction.

The library (``async_trace_delete``) never imports from here.
"""

from .args import main

__all__ = ["main"]
