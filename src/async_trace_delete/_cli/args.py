"""The ``async-trace-delete`` command line: a thin layer over the library.

Parse arguments -> build the same :class:`DeleteSpec` list and :class:`EngineConfig` the
library takes -> run the :class:`Engine` (``plan`` for the dry run, ``run`` to execute) ->
render the report. Nothing is deleted without ``--execute``.

Exit codes: 0 done; 1 a job failed (or the server could not be used); 2 bad input (refused
before any delete was sent); 130 interrupted (Ctrl-C or SIGTERM).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, NoReturn, TextIO

from .. import __version__
from .._config import ClientConfig, EngineConfig, redact_url
from .._durations import format_duration, format_instant
from .._exceptions import SpecError
from .audit import known_secrets
from .environment import client_config
from .habits import add_refused_mlflow_flags, refuse_experiment_variable
from .inputs import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    PROG,
    BadInputError,
    Invocation,
    JobDefinition,
    build_engine_config,
    build_specs,
    check_cutoffs,
    check_experiment_id_text,
    parse_duration,
    parse_instant,
    parse_tag,
    parse_trace_ids,
    read_trace_ids,
)
from .names import ENGINE_OPTIONS, Namer
from .plan_file import parse_growth, read_plan
from .policy import load_policy
from .server import server_source
from .session import Session
from .sweep import SweepSession

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "build_parser",
    "main",
    "prepare",
    "run_cli",
]


class _Parser(argparse.ArgumentParser):
    """argparse, but flags match exactly and a usage error is one line naming the flag (exit 2).

    Abbreviations are off (``allow_abbrev=False``): otherwise ``--trace-ids`` silently meant
    ``--trace-ids-file`` and ``--exec`` meant ``--execute``, and any new flag could change
    what an abbreviation means. Subcommand parsers are this class too (``parser_class``).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"{PROG}: error: {message}\n")


def _argument_type(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    convert.__name__ = parse.__name__
    return convert


def _common_options() -> _Parser:
    common = _Parser(add_help=False)
    run = common.add_argument_group("running")
    run.add_argument(
        "--execute",
        action="store_true",
        help="really delete (without it: a dry run that counts and prints the command)",
    )
    run.add_argument(
        "--tracking-uri",
        metavar="URL",
        help="MLflow server (default: MLFLOW_TRACKING_URI); credentials come from "
        "MLFLOW_TRACKING_TOKEN or MLFLOW_TRACKING_USERNAME/_PASSWORD",
    )
    run.add_argument("--audit-log", metavar="PATH", help="append a JSON-lines audit log here")
    run.add_argument(
        "--plan-out", metavar="PATH", help="dry run: write the plan, pinned, for `apply`"
    )
    run.add_argument(
        "--verify", action="store_true", help="count matches on the server before and after"
    )
    run.add_argument("--json", action="store_true", help="print a JSON report on stdout")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress and no tables")
    run.add_argument(
        "--sample", type=int, default=3, metavar="N", help="dry run: traces shown per job"
    )
    _pacing_options(common)
    return common


def _pacing_options(parser: argparse.ArgumentParser) -> None:
    pace = parser.add_argument_group("pacing (EngineConfig)")
    pace.add_argument("--rate", type=float, metavar="PER_S", help="delete calls per second")
    pace.add_argument(
        "--read-rate", type=float, metavar="PER_S", help="searches, counts, lookups per second"
    )
    pace.add_argument(
        "--artifact-rate", type=float, metavar="PER_S", help="artifact API calls per second"
    )
    pace.add_argument(
        "--foreground-budget",
        type=float,
        metavar="SECONDS",
        help="yield while another client's request (a canary) takes longer than this",
    )
    pace.add_argument(
        "--throttle-url",
        metavar="URL",
        help="hold every call while this URL answers anything but 2xx (never logged)",
    )
    pace.add_argument("--concurrency", type=int, metavar="N", help="most calls in flight")
    pace.add_argument(
        "--target-latency", type=float, metavar="SECONDS", help="seconds one call should take"
    )
    pace.add_argument("--min-batch-size", type=int, metavar="N", help="smallest cutoff batch")
    pace.add_argument("--max-batch-size", type=int, metavar="N", help="largest cutoff batch")
    pace.add_argument("--initial-batch-size", type=int, metavar="N", help="first cutoff batch")
    pace.add_argument("--max-id-chunk", type=int, metavar="N", help="most IDs per call")
    pace.add_argument(
        "--sleep-coefficient", type=float, metavar="X", help="pause X * latency after calls"
    )
    pace.add_argument(
        "--min-sleep", type=float, metavar="SECONDS", help="the shortest pause after a call"
    )
    pace.add_argument("--request-timeout", type=float, metavar="SECONDS", help="per call")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``async-trace-delete``."""
    parser = _Parser(
        prog=PROG,
        description="Delete MLflow traces in bulk, safely: a dry run unless --execute.",
        epilog="Exit codes: 0 done, 1 failed job(s), 2 bad input, 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )
    common = _common_options()
    delete = commands.add_parser(
        "delete", parents=[common], help="delete traces of some experiments", prog=f"{PROG} delete"
    )
    where = delete.add_argument_group("what to delete")
    where.add_argument(
        "--experiment-id", "-x", action="append", default=[], metavar="ID", help="repeatable"
    )
    where.add_argument(
        "--experiment-name",
        action="append",
        default=[],
        metavar="NAME",
        help="repeatable; looked up before anything is deleted",
    )
    chosen = delete.add_argument_group(
        "or select experiments (once, before any delete; deleted ones are skipped)"
    )
    chosen.add_argument(
        "--all-experiments", action="store_true", help="every active experiment of the server"
    )
    chosen.add_argument(
        "--experiment-name-like",
        metavar="PATTERN",
        help="names matching an MLflow LIKE pattern (%% any run of characters, _ one; "
        "case-sensitive), e.g. 'chat-%%'",
    )
    chosen.add_argument(
        "--experiment-tag",
        type=_argument_type(parse_tag),
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="experiments with this tag value; repeatable (all must match)",
    )
    chosen.add_argument(
        "--exclude-experiment-name",
        action="append",
        default=[],
        metavar="NAME",
        help="never this experiment, whatever the selector picks; repeatable",
    )
    chosen.add_argument(
        "--exclude-experiment-id",
        action="append",
        default=[],
        metavar="ID",
        help="never this experiment (by ID); repeatable",
    )
    chosen.add_argument(
        "--retention-tag",
        metavar="KEY",
        help="an experiment whose tag KEY holds a duration (30d) keeps its traces that long; "
        "the others use --older-than / --before / --max-timestamp-millis (required)",
    )
    selection = where.add_mutually_exclusive_group()
    selection.add_argument(
        "--max-timestamp-millis", type=int, metavar="MS", help="cutoff in epoch milliseconds"
    )
    selection.add_argument(
        "--older-than",
        type=_argument_type(parse_duration),
        metavar="AGE",
        help="e.g. 30m, 12h, 7d, 2w (m = minutes; lowercase units; no months or years)",
    )
    selection.add_argument(
        "--before",
        type=_argument_type(parse_instant),
        metavar="TIME",
        help="ISO 8601 with a zone, e.g. 2026-11-01T00:00:00Z",
    )
    selection.add_argument(
        "--trace-ids",
        type=_argument_type(parse_trace_ids),
        metavar="ID,...",
        help="these trace IDs, comma-separated (as in mlflow traces delete --trace-ids)",
    )
    selection.add_argument("--trace-ids-file", metavar="PATH", help="one ID per line; - = stdin")
    where.add_argument("--filter", "--filter-string", metavar="FILTER", help="MLflow search filter")
    where.add_argument("--max-traces", type=int, metavar="N", help="cap per experiment")
    where.add_argument(
        "--with-artifacts",
        action="store_true",
        help="also remove each deleted trace's artifact folder (traces.json) via the server",
    )
    add_refused_mlflow_flags(delete)
    guard = delete.add_argument_group("guardrails")
    guard.add_argument("--expect-at-most", type=int, metavar="N", help="refuse if more match")
    guard.add_argument(
        "--min-retention",
        type=_argument_type(parse_duration),
        metavar="AGE",
        help="refuse cutoffs newer than now - AGE",
    )
    guard.add_argument("--force", action="store_true", help="override --min-retention")
    guard.add_argument(
        "--allow-match-all", action="store_true", help="allow an empty filter without cutoff"
    )
    policy = commands.add_parser(
        "run", parents=[common], help="run the jobs of a TOML policy file", prog=f"{PROG} run"
    )
    policy.add_argument("policy", metavar="POLICY", help="TOML policy file")
    apply = commands.add_parser(
        "apply",
        parents=[common],
        help="execute exactly the jobs of a plan file (--plan-out)",
        prog=f"{PROG} apply",
    )
    sweep = commands.add_parser(
        "sweep-artifacts",
        help="remove artifact folders whose trace no longer exists (a dry run unless --execute)",
        prog=f"{PROG} sweep-artifacts",
    )
    sweep_where = sweep.add_argument_group("where to sweep")
    sweep_where.add_argument(
        "--experiment-id", "-x", action="append", default=[], metavar="ID", help="repeatable"
    )
    sweep_where.add_argument(
        "--experiment-name", action="append", default=[], metavar="NAME", help="repeatable"
    )
    sweep_run = sweep.add_argument_group("running")
    sweep_run.add_argument(
        "--execute", action="store_true", help="really remove (without it: count only)"
    )
    sweep_run.add_argument("--tracking-uri", metavar="URL", help="MLflow server")
    sweep_run.add_argument("--audit-log", metavar="PATH", help="append a JSON-lines audit log here")
    sweep_run.add_argument("--json", action="store_true", help="print a JSON report on stdout")
    sweep_run.add_argument("-q", "--quiet", action="store_true", help="no progress and no tables")
    sweep_run.add_argument(
        "--no-bytes",
        action="store_true",
        help="do not list each orphan's files to count its bytes (one call less per folder)",
    )
    _pacing_options(sweep)
    apply.add_argument("plan", metavar="PLAN", help="a plan file written by --plan-out")
    apply.add_argument(
        "--max-plan-age",
        type=_argument_type(parse_duration),
        default=timedelta(hours=24),
        metavar="AGE",
        help="refuse a plan older than this (default 24h)",
    )
    apply.add_argument(
        "--max-growth",
        type=_argument_type(parse_growth),
        default=0.1,
        metavar="SHARE",
        help="stop a job deleting more than its planned count plus this (default 10%%)",
    )
    return parser


def _definition_from_args(args: argparse.Namespace, stdin: TextIO | None) -> JobDefinition:
    fields: dict[str, Any] = {}
    names: dict[str, str] = {}
    if args.before is not None:
        fields["max_timestamp_millis"] = args.before
        names["max_timestamp_millis"] = "--before"
    elif args.max_timestamp_millis is None:  # a message asking for a cutoff names both flags
        names["max_timestamp_millis"] = "--before / --max-timestamp-millis"
    for field_name in ("max_timestamp_millis", "older_than", "max_traces", "expect_at_most"):
        if getattr(args, field_name) is not None:
            fields[field_name] = getattr(args, field_name)
    if args.min_retention is not None:
        fields["min_retention"] = args.min_retention
    if args.filter is not None:
        fields["filter_string"] = args.filter
    if args.trace_ids is not None:
        fields["trace_ids"] = args.trace_ids
        names["trace_ids"] = "--trace-ids"
    if args.trace_ids_file is not None:
        fields["trace_ids"] = read_trace_ids(args.trace_ids_file, "--trace-ids-file", stdin)
        names["trace_ids"] = "--trace-ids-file"
    if args.force:
        fields["force"] = True
    if args.allow_match_all:
        fields["allow_match_all"] = True
    if args.with_artifacts:
        fields["with_artifacts"] = True
    if args.retention_tag is not None:
        fields["retention_tag"] = args.retention_tag
    return JobDefinition(
        origin="",
        name=None,
        experiment_ids=tuple(args.experiment_id),
        experiment_names=tuple(args.experiment_name),
        fields=fields,
        names=names,
        selector=_selector_from_args(args),
    )


def _selector_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The ExperimentSelector fields the selector flags give (empty: none given).

    Raises:
        BadInputError: one tag key is given two different values (no experiment matches).
    """
    selector: dict[str, Any] = {}
    if args.all_experiments:
        selector["all_experiments"] = True
    if args.experiment_name_like is not None:
        selector["name_like"] = args.experiment_name_like
    tags: dict[str, str] = {}
    for key, value in args.experiment_tag:
        if tags.get(key, value) != value:
            raise BadInputError(
                f"--experiment-tag: {key} is given twice ({tags[key]!r} and {value!r}); "
                "every tag must match, so no experiment would"
            )
        tags[key] = value
    if tags:
        selector["tags"] = tags
    if args.exclude_experiment_name:
        selector["exclude_names"] = tuple(args.exclude_experiment_name)
    if args.exclude_experiment_id:
        selector["exclude_ids"] = tuple(args.exclude_experiment_id)
    return selector


def _client_config(
    uri: str | None, environ: Mapping[str, str], source: str | None = "--tracking-uri"
) -> ClientConfig:
    """The server's settings; a refusal names ``source`` (how ``uri`` was given) or, for a
    URI from the environment, ``MLFLOW_TRACKING_URI`` (see :mod:`.environment`)."""
    return client_config(uri, source if uri is not None else None, environ)


def prepare(
    argv: Sequence[str], *, environ: Mapping[str, str], stdin: TextIO | None, now_ms: int
) -> Invocation:
    """Parse and check a command line; everything that can be refused without HTTP is.

    Raises:
        BadInputError: the input breaks a rule (the message names the flag or key).
        SystemExit: argparse refused the command line (one line, exit 2) or printed help.
    """
    args = build_parser().parse_args(list(argv))
    if args.command == "apply":
        return _prepare_apply(argv, args, environ, now_ms)
    if args.command == "sweep-artifacts":
        return _prepare_sweep(argv, args, environ)
    engine_options = {key: getattr(args, key) for key in ENGINE_OPTIONS}
    flags = Namer()
    engine_names = {key: flags(field) for key, field in ENGINE_OPTIONS.items()}
    uri = args.tracking_uri
    server = server_source(uri, environ)
    uri_source = "--tracking-uri"
    if args.command == "run":
        policy = load_policy(args.policy)
        definitions: tuple[JobDefinition, ...] = policy.jobs
        for key, value in policy.engine.items():
            if engine_options[key] is None:
                engine_options[key] = value
                engine_names[key] = policy.engine_names[key]
        server = server_source(
            uri, environ, policy_uri=policy.tracking_uri, policy_file=args.policy
        )
        if not uri and policy.tracking_uri is not None:
            uri, uri_source = policy.tracking_uri, f"{args.policy}: tracking_uri"
    else:
        definitions = (_definition_from_args(args, stdin),)
        refuse_experiment_variable(
            bool(definitions[0].experiment_ids or definitions[0].experiment_names)
            or bool(definitions[0].selector),
            environ,
        )
    if args.sample < 0:
        raise BadInputError(f"--sample: must be >= 0 (got {args.sample})")
    jobs = build_specs(definitions)
    client = _client_config(uri, environ, uri_source)
    config = build_engine_config(engine_options, engine_names, client)
    check_cutoffs(jobs, now_ms)
    return Invocation(
        argv=tuple(argv),
        args=args,
        jobs=tuple(jobs),
        config=config,
        secrets=tuple(known_secrets(environ, client)),
        server=server,
    )


def _prepare_sweep(
    argv: Sequence[str], args: argparse.Namespace, environ: Mapping[str, str]
) -> Invocation:
    """``sweep-artifacts``: its experiments and engine settings, checked before any call."""
    refuse_experiment_variable(bool(args.experiment_id or args.experiment_name), environ)
    if not args.experiment_id and not args.experiment_name:
        raise BadInputError(
            "--experiment-id / --experiment-name: give at least one experiment to sweep"
        )
    for experiment_id in args.experiment_id:
        if not experiment_id.strip() or experiment_id != experiment_id.strip():
            raise BadInputError(
                f"--experiment-id: {experiment_id!r} is empty or has surrounding whitespace"
            )
        check_experiment_id_text(experiment_id, Namer())
    engine_options = {key: getattr(args, key) for key in ENGINE_OPTIONS}
    flags = Namer()
    engine_names = {key: flags(field) for key, field in ENGINE_OPTIONS.items()}
    client = _client_config(args.tracking_uri, environ)
    return Invocation(
        argv=tuple(argv),
        args=args,
        jobs=(),
        config=build_engine_config(engine_options, engine_names, client),
        secrets=tuple(known_secrets(environ, client)),
        server=server_source(args.tracking_uri, environ),
    )


def _prepare_apply(
    argv: Sequence[str], args: argparse.Namespace, environ: Mapping[str, str], now_ms: int
) -> Invocation:
    """``apply PLAN``: the plan's server (unless another is named, which is then refused),
    its engine settings (pacing flags given here win), and its age checked, all before any
    HTTP call."""
    if args.plan_out is not None:
        raise BadInputError("--plan-out: apply executes a plan; it does not write one")
    plan = read_plan(Path(args.plan).expanduser())
    uri = args.tracking_uri or environ.get("MLFLOW_TRACKING_URI") or plan.server
    client = _client_config(
        uri,
        environ,
        "--tracking-uri"
        if args.tracking_uri
        else None
        if environ.get("MLFLOW_TRACKING_URI")
        else "PLAN: server",
    )
    server = redact_url(client.tracking_uri)
    if server != plan.server:
        raise BadInputError(
            f"PLAN: made for {plan.server}, but the server is {server} (from "
            f"{'--tracking-uri' if args.tracking_uri else 'MLFLOW_TRACKING_URI'}); "
            "nothing was deleted"
        )
    age_ms = now_ms - plan.created_ms
    if age_ms > args.max_plan_age // timedelta(milliseconds=1):
        raise BadInputError(
            f"--max-plan-age: the plan is {format_duration(timedelta(milliseconds=age_ms))} "
            f"old (made {format_instant(plan.created_ms)}), older than "
            f"{format_duration(args.max_plan_age)}; make a new one (nothing was deleted)"
        )
    # Pacing flags given here win over the plan's (as over a policy's): they change how fast,
    # never what is deleted.
    given = {
        field: getattr(args, key)
        for key, field in ENGINE_OPTIONS.items()
        if getattr(args, key, None) is not None
    }
    try:
        config = EngineConfig.model_validate({**plan.engine, **given, "client": client})
    except SpecError as error:
        where = "" if given else "PLAN: engine settings: "
        raise BadInputError(f"{where}{Namer().validation(error)}") from None
    return Invocation(
        argv=tuple(argv),
        args=args,
        jobs=(),
        config=config,
        secrets=tuple(known_secrets(environ, client)),
        plan_file=plan,
        server=server_source(args.tracking_uri, environ, plan_file=args.plan),
    )


def run_cli(
    argv: Sequence[str],
    *,
    environ: Mapping[str, str] | None = None,
    stdin: TextIO | None = None,
    wall_clock_ms: Callable[[], int] | None = None,
    **engine_seams: Any,
) -> int:
    """Run the command line ``argv`` and return its exit code.

    Args:
        argv: The arguments, without the program name.
        environ: The environment (default ``os.environ``).
        stdin: Where ``--trace-ids-file -`` reads (default ``sys.stdin``).
        wall_clock_ms: Epoch milliseconds now (a test seam).
        **engine_seams: ``transport``, ``clock``, ``sleep``, ``random`` for the
            :class:`Engine` (test seams; ``main`` passes none).
    """
    env = os.environ if environ is None else environ
    now_ms = wall_clock_ms or (lambda: time.time_ns() // 1_000_000)
    try:
        invocation = prepare(argv, environ=env, stdin=stdin, now_ms=now_ms())
    except BadInputError as error:
        sys.stderr.write(f"{PROG}: error: {error}\n")
        return EXIT_BAD_INPUT
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else EXIT_BAD_INPUT
    if invocation.args.command == "sweep-artifacts":
        return SweepSession(invocation, engine_seams=dict(engine_seams)).run()
    return Session(invocation, engine_seams={**engine_seams, "wall_clock_ms": now_ms}).run()


def main(argv: Sequence[str] | None = None) -> int:
    """Console-script entry point: ``async-trace-delete``."""
    try:
        return run_cli(sys.argv[1:] if argv is None else argv)
    except KeyboardInterrupt:  # outside the run, where the signal handlers are not installed
        sys.stderr.write(f"{PROG}: interrupted\n")
        return EXIT_INTERRUPTED
    except BaseExceptionGroup as error:
        # rich answers a closed pipe (``... | head``) with SystemExit(1) from inside the run's
        # task group: exit with its code, not a traceback of the group.
        exits, rest = error.split(SystemExit)
        if rest is not None or exits is None:
            raise
        first = _leaves(exits)[0]
        assert isinstance(first, SystemExit)
        return first.code if isinstance(first.code, int) else EXIT_FAILED


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    leaves: list[BaseException] = []
    for item in group.exceptions:
        leaves.extend(_leaves(item) if isinstance(item, BaseExceptionGroup) else [item])
    return leaves
