"""Compact small files and vacuum unreferenced ones in the conf's Delta tables.

    python -m jobs.maintain --conf conf/demo.yaml                       # every table that exists
    python -m jobs.maintain --table scores --table events --vacuum-only --dry-run
    ./spark-submit.sh jobs/maintain.py --conf conf/demo.yaml --compact-only
"""

from __future__ import annotations

import logging
import sys
from dataclasses import fields

from engine.cli import job_parser, run_job
from engine.errors import ConfError
from engine.storage import maintenance
from engine.storage.snapshots import table_exists
from engine.storage.table import CommitInfo
from jobs._backend import backend_for

log = logging.getLogger("lakescore.maintain")


def body(conf, ctx, args) -> None:
    known = [f.name for f in fields(conf.tables)]
    unknown = [t for t in args.table if t not in known]
    if unknown:
        raise ConfError(f"unknown table(s) {unknown}: the conf's tables are {known}")
    names = args.table or known
    retention = conf.maintain.retention_hours if args.retention_hours is None else args.retention_hours
    tables = [ctx.table(name, suffix="") for name in names]
    tables = [t for t in tables if table_exists(t)]
    if not tables:
        log.warning("no table of %s exists yet: nothing to maintain", names)
        return
    if not args.vacuum_only:
        with backend_for(conf) as backend:
            for table in tables:
                with ctx.stage(f"compact {table.name}", backend.name) as record:
                    result = maintenance.compact(
                        table, backend.rewrite_files,
                        CommitInfo(job="maintain", run_id=ctx.run_id, engine=backend.name),
                        target_bytes=conf.maintain.target_file_mb * 1024 * 1024,
                        min_files=conf.maintain.min_files)
                    record.rows_in = record.rows_out = result.rows
                    if result.version is None:
                        record.note = "no partition with small files"
                    else:
                        record.written[table.name] = result.version
                        record.note = (f"{result.files_removed} files "
                                       f"({result.bytes_before / 1e6:.1f} MB) → {result.files_added}")
    if not args.compact_only:
        for table in tables:
            with ctx.stage(f"vacuum {table.name}", "deltalake") as record:
                result = maintenance.vacuum(table, retention, dry_run=args.dry_run,
                                            enforce_retention=not args.allow_short_retention)
                verb = "would delete" if result.dry_run else "deleted"
                record.note = f"{verb} {result.files_deleted} files older than {retention:g} h"


def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__)
    parser.add_argument("--table", action="append", default=[],
                        help="logical table name from conf tables.* (repeatable; default: all)")
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--compact-only", action="store_true")
    only.add_argument("--vacuum-only", action="store_true")
    parser.add_argument("--dry-run", action="store_true", help="vacuum: list, do not delete")
    parser.add_argument("--retention-hours", type=float,
                        help="vacuum retention (default: maintain.retention_hours in conf)")
    parser.add_argument("--allow-short-retention", action="store_true",
                        help="allow a retention below the table's delta.deletedFileRetentionDuration "
                             "(breaks time travel and readers of old versions)")
    return run_job("maintain", parser, body, argv)


if __name__ == "__main__":
    sys.exit(main())
