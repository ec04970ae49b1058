"""What every job shares: its arguments, conf loading, logging, the run summary and exit codes.

A job is ``run_job(name, body)``: ``body(conf, ctx, args)`` does the work; this module turns
lakescore errors into a one-paragraph message and the error's exit code (``engine.errors.
EXIT_CODES``: 2 conf/definition, 3 schema, 4 validation, 5 conflict, 6 model mismatch,
7 environment, 8 unreadable file, 9 storage unavailable), any other exception into exit 1 with
its traceback logged, prints the summary either way, and saves it under the run directory
(through the storage layer, so an object-store lakehouse gets it there).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

from engine.backend import backend_names
from engine.conf import Conf, load_conf
from engine.errors import LakescoreError, StorageUnavailable
from engine.metrics import push_run_metrics
from engine.openlineage import emit_run_event

log = logging.getLogger("lakescore")


def job_parser(description: str, engines: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--conf", help="job conf YAML, merged over conf/base.yaml")
    parser.add_argument("--env", help="environment conf: conf/env/<ENV>.yaml, merged last")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one conf key, e.g. --set spark.master=local[2] (repeatable)")
    parser.add_argument("--run-id", help="reuse a run id: a rerun of a finished run writes nothing twice")
    if engines:
        parser.add_argument("--engine", choices=backend_names(), help="overrides `engine:` in conf")
        parser.add_argument("--scheduler", help="Dask scheduler address (overrides dask.scheduler)")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--verbose", action="store_true",
                        help="also show the INFO lines of Spark, Dask, py4j, H2O, GE and MLflow")
    return parser


def load_job_conf(args: argparse.Namespace) -> Conf:
    overrides = list(args.overrides)
    if getattr(args, "engine", None):
        overrides.append(f"engine={args.engine}")
    if getattr(args, "scheduler", None):
        overrides.append(f"dask.scheduler={args.scheduler}")
    return load_conf(args.conf, env=args.env, overrides=overrides)


OWN_LOGGERS = ("lakescore", "engine", "jobs")


class QuietThirdParty(logging.Filter):
    """Below WARNING, only lakescore's own lines: one per stage and the run summary.

    A filter on the handler, not levels on named loggers, because the libraries re-raise their
    own levels when they are imported (GE sets a module logger to INFO) or log through the root
    logger (py4j's "Exception while sending command", which it retries on its own)."""

    # WARNINGs that say nothing to a user: Dask's P2P shuffle logs one per shuffle it starts
    # and ends ("Shuffle … initialized by task", "… deactivated due to stimulus").
    ROUTINE_WARNINGS = ("distributed.shuffle._scheduler_plugin",)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.split(".")[0] in OWN_LOGGERS:
            return True
        if record.name in self.ROUTINE_WARNINGS:
            return record.levelno >= logging.ERROR
        return record.levelno >= logging.WARNING


def configure_logging(level: str, verbose: bool = False) -> None:
    logging.basicConfig(level=level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    if verbose:
        return
    for handler in logging.getLogger().handlers:
        handler.addFilter(QuietThirdParty())
    # MLflow logs through a handler of its own, at the level this variable names.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")


def report_run(name: str, ctx, code: int, error: str | None) -> None:
    """The run's end, for operators: OpenLineage COMPLETE/FAIL and the pushed metrics (each
    off unless conf sets it; a failure of either is a warning, never the job's exit code)."""
    emit_run_event(name, ctx, "COMPLETE" if code == 0 else "FAIL", error)
    push_run_metrics(name, ctx, code)


def run_job(name: str, parser: argparse.ArgumentParser,
            body: Callable[[Conf, Any, argparse.Namespace], None],
            argv: list[str] | None = None, summary: bool = True) -> int:
    """Parse, load conf, run ``body``, print the summary (jobs that only report skip it);
    return the exit code."""
    from engine.manifest import write_manifest
    from engine.run_context import RunContext
    from engine.storage.files import check_reachable

    args = parser.parse_args(argv)
    configure_logging(args.log_level, args.verbose)
    ctx, error = None, None
    try:
        conf = load_job_conf(args)
        ctx = RunContext.start(conf, args.run_id)
        check_reachable(conf.lakehouse_path(), conf.storage_options)
        log.info("%s: run %s, engine %s, lakehouse %s", name, ctx.run_id, conf.engine,
                 conf.resolve(conf.lakehouse))
        emit_run_event(name, ctx, "START")
        body(conf, ctx, args)
        ctx.summary.facts["manifest"] = write_manifest(ctx, name, sys.argv[1:] if argv is None else argv)
        code = 0
    except LakescoreError as exc:
        print(f"lakescore {name}: {type(exc).__name__}: {exc}", file=sys.stderr)
        code, error = exc.exit_code, f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # noqa: BLE001 - whatever fails, the run still ends with its summary
        log.error("%s: unexpected error", name, exc_info=True)
        first_line = (str(exc).strip().splitlines() or [""])[0]
        print(f"lakescore {name}: unexpected {type(exc).__name__}: {first_line} (traceback "
              "above; please report it if lakescore should have caught it)", file=sys.stderr)
        code, error = 1, f"{type(exc).__name__}: {first_line}"
    if ctx is not None:
        report_run(name, ctx, code, error)
    if ctx is not None and summary:
        print(ctx.summary.render())
        try:
            print(f"summary saved to {ctx.summary.save(dict(ctx.conf.storage_options))}")
        except StorageUnavailable as exc:
            print(f"lakescore {name}: summary not saved: {exc}", file=sys.stderr)
            code = code or exc.exit_code
    if code:
        print(f"lakescore {name}: failed with exit code {code}", file=sys.stderr)
    return code
