"""Replay a run from its manifest and compare: inputs pinned to the versions the run read, into
another lakehouse; exit 0 only when every table it wrote is made again equal (10 when not).

    python -m jobs.replay --manifest lakehouse/runs/<run_id>/manifest.json
    python -m jobs.replay --manifest s3://lake/runs/<run_id>/manifest.json --engine dask \\
        --into s3://lake-replays/r1 --set storage_options.AWS_SECRET_ACCESS_KEY=...
"""

from __future__ import annotations

import argparse
import sys

from engine.backend import backend_names
from engine.cli import configure_logging
from engine.errors import LakescoreError, ReplayDiffers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", required=True, help="runs/<run_id>/manifest.json of the run")
    parser.add_argument("--engine", choices=backend_names(), help="default: the run's engine")
    parser.add_argument("--into", help="lakehouse to write the replay into (default: "
                        "<lakehouse>/replays/<replay run id>); never the original's")
    parser.add_argument("--env", help="environment conf merged over the run's conf")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a conf key of the replay, e.g. a redacted secret (repeatable)")
    parser.add_argument("--run-id", help="the replay's run id")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--verbose", action="store_true", help="also the libraries' INFO lines")
    args = parser.parse_args(argv)
    configure_logging(args.log_level, args.verbose)
    from engine.replay import replay

    options = {}
    for item in args.overrides:  # the manifest itself may live on the object store
        key, _, value = item.partition("=")
        if key.startswith("storage_options."):
            options[key.removeprefix("storage_options.")] = value
    try:
        report = replay(args.manifest, engine=args.engine, into=args.into, overrides=args.overrides,
                        env=args.env, storage_options=options, run_id=args.run_id)
    except LakescoreError as exc:
        print(f"lakescore replay: {type(exc).__name__}: {exc}", file=sys.stderr)
        return exc.exit_code
    print(report.render())
    if report.exit_code:
        print(f"lakescore replay: the replayed job failed with exit code {report.exit_code}", file=sys.stderr)
        return report.exit_code
    return 0 if report.equal else ReplayDiffers.exit_code


if __name__ == "__main__":
    sys.exit(main())
