"""Generate the demo's seeded events, labels and rows to score as Delta tables."""

from __future__ import annotations

import sys

from engine.cli import job_parser, run_job
from engine.demo_data import write_demo_tables


def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__, engines=False)
    return run_job("generate", parser, lambda conf, ctx, args: write_demo_tables(ctx), argv)


if __name__ == "__main__":
    sys.exit(main())
