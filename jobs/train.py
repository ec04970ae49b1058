"""Train the conf's model (train.algorithm: an H2O or a Spark MLlib algorithm) on the training set;
register it in MLflow as a new version of registry.model_name."""

from __future__ import annotations

import sys

from engine.cli import job_parser, run_job
from engine.pipeline import train_model
from jobs._backend import backend_for


def body(conf, ctx, args) -> None:
    with backend_for(conf) as backend:
        train_model(backend, ctx)


def main(argv: list[str] | None = None) -> int:
    return run_job("train", job_parser(__doc__), body, argv)


if __name__ == "__main__":
    sys.exit(main())
