"""Run the conf's Great Expectations suites over a table; exit 4 when they fail."""

from __future__ import annotations

import sys

from engine.cli import job_parser, run_job
from engine.pipeline import validate_table
from jobs._backend import backend_for


def body(conf, ctx, args) -> None:
    from dataclasses import fields

    from engine.errors import ConfError

    known = [f.name for f in fields(conf.tables)]
    if args.table not in known:
        raise ConfError(f"unknown table {args.table!r}: the conf's tables are {known}")
    suites = conf.validation.suites_for(args.table)
    if not suites:
        raise ConfError(f"table {args.table!r} has no suites: set validation.suites.{args.table} "
                        "(or training_suites/scoring_suites) in conf")
    with backend_for(conf) as backend:
        validate_table(backend, ctx, args.table, suites)


def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__)
    parser.add_argument("--table", default="training_set",
                        help="logical table to validate (default: training_set; any of tables.*)")
    return run_job("validate", parser, body, argv)


if __name__ == "__main__":
    sys.exit(main())
