"""Profile a Delta table (exactly, over every row) and write a starting Great Expectations suite.

The suite (column set, types, null rates, ranges, value sets of low-cardinality columns) passes
on the profiled data and loads with ``load_suite``; edit it, then name it in
``validation.*_suites``. Example:
``python -m jobs.profile_table --engine dask --table training_set --out expectations/my_suite.json``
"""

from __future__ import annotations

import sys

from engine.cli import job_parser, run_job
from engine.policies.profile import profile_table, suite_from_profile, write_suite
from jobs._backend import backend_for


def body(conf, ctx, args) -> None:
    table = ctx.table(args.table)
    with backend_for(conf) as backend, ctx.stage("profile", backend.name) as record:
        read = backend.read(table)
        profile = profile_table(backend, read, max_values=args.max_values)
        suite = suite_from_profile(profile, args.name or table.name, max_values=args.max_values)
        path = write_suite(suite, args.out)
        record.rows_in = profile.rows
        record.outputs[f"suite {suite['name']}"] = str(path)
        record.note = f"{len(suite['expectations'])} expectations from {table.name}@v{read.version}"


def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__)
    parser.add_argument("--table", required=True,
                        help="logical table name from conf (tables.*), e.g. training_set")
    parser.add_argument("--out", required=True, help="where to write the suite JSON")
    parser.add_argument("--name", help="suite name (default: the table's name)")
    parser.add_argument("--max-values", type=int, default=20,
                        help="columns with at most this many distinct values get a value set")
    return run_job("profile", parser, body, argv)


if __name__ == "__main__":
    sys.exit(main())
