"""Compute the declared features as of each label's time into the training-set Delta table."""

from __future__ import annotations

import sys

from engine.cli import job_parser, run_job
from engine.pipeline import build_features, validate_inputs
from jobs._backend import backend_for


def body(conf, ctx, args) -> None:
    with backend_for(conf) as backend:
        validate_inputs(backend, ctx, "events", "labels")
        build_features(backend, ctx, "labels", "training_set", "features")


def main(argv: list[str] | None = None) -> int:
    return run_job("features", job_parser(__doc__), body, argv)


if __name__ == "__main__":
    sys.exit(main())
