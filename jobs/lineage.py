"""Print what made a table version: scores ← model name/version ← training set table/version ←
feature hash ← source tables/versions, with the validation results that gated each step
(``--json`` for the same as JSON)."""

from __future__ import annotations

import json
import sys

from engine.cli import job_parser, run_job
from engine.lineage import model_lineage, render, trace


def body(conf, ctx, args) -> None:
    path = args.table
    for logical in sorted(conf.tables.__dataclass_fields__, key=len, reverse=True):
        if args.table == logical or args.table.startswith(f"{logical}_"):
            path = ctx.table(logical, suffix=args.table[len(logical) + 1:]).path
            break
    registry = ctx.model_registry()

    def lookup(name: str, version: int):
        record = registry.describe(name, version)
        return None if record is None else {**model_lineage(record), "registry": registry.tracking_uri}

    tree = trace(path, args.version, runs_dir=conf.lakehouse_path("runs"),
                 storage_options=dict(conf.storage_options), model_lookup=lookup)
    print(json.dumps(tree, indent=2) if args.json else render(tree))


def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__, engines=False)
    parser.add_argument("--table", default="scores",
                        help="a logical table name from conf (e.g. scores, scores_spark) or a path")
    parser.add_argument("--version", type=int, help="table version (default: latest)")
    parser.add_argument("--json", action="store_true", help="print the chain as JSON")
    return run_job("lineage", parser, body, argv, summary=False)


if __name__ == "__main__":
    sys.exit(main())
