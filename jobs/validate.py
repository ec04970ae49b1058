"""Run the conf's Great Expectations suites over a feature table; exit 4 when they fail."""

from __future__ import annotations

import sys

from engine.cli import job_parser, run_job
from engine.pipeline import validate_table
from jobs._backend import backend_for


def body(conf, ctx, args) -> None:
    suites = (conf.validation.training_suites if args.table == "training_set"
              else conf.validation.scoring_suites)
    with backend_for(conf) as backend:
        validate_table(backend, ctx, args.table, suites)


def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__)
    parser.add_argument("--table", default="training_set", choices=["training_set", "scoring_set"],
                        help="which feature table to validate (default: training_set)")
    return run_job("validate", parser, body, argv)


if __name__ == "__main__":
    sys.exit(main())
