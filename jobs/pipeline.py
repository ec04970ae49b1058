"""The whole pipeline: demo data, then features → validate → train → score on each engine.

The model is trained once, on the first engine's training set; every engine scores the same rows
with that same model, and the run ends by comparing the engines' scores. With ``--model`` (a
registered version, e.g. ``churn/3``) nothing is trained: every engine scores with that model.
This is how ``jobs.replay`` makes a pipeline run again: the scores are a function of the inputs
and the model the run registered, so the replay scores with that very version instead of
registering another one.
"""

from __future__ import annotations

import sys

from engine.cli import job_parser, run_job
from engine.errors import LakescoreError
from engine.demo_data import write_demo_tables
from engine.pipeline import (build_features, check_model_fits, resolve_model, score_rows,
                             train_model, validate_inputs, validate_table)
from engine.replay import compare_scores
from engine.training.carried import require_artifact
from jobs._backend import backend_for

TOLERANCE = 1e-9


def body(conf, ctx, args) -> None:
    engines = args.engines.split(",")
    model = None
    if args.model:  # scored with a registered version: refused before anything is written
        model = resolve_model(ctx, args.model)
        require_artifact(model)
        check_model_fits(model, ctx.feature_set())
    if not args.skip_generate:
        write_demo_tables(ctx)
    for engine in engines:
        ctx.output_suffix = engine if len(engines) > 1 else ""
        with backend_for(conf, engine) as backend:
            validate_inputs(backend, ctx, "events", "labels", "to_score")
            build_features(backend, ctx, "labels", "training_set", "features")
            validate_table(backend, ctx, "training_set", conf.validation.training_suites)
            if model is None:
                model = train_model(backend, ctx)
            build_features(backend, ctx, "to_score", "scoring_set", "score features")
            validate_table(backend, ctx, "scoring_set", conf.validation.scoring_suites,
                           stage="validate scoring set")
            score_rows(backend, ctx, model)
    ctx.output_suffix = ""
    if len(engines) > 1:
        diff = compare_scores(ctx, engines)
        if diff > TOLERANCE:
            raise LakescoreError(f"engines disagree: max abs score difference {diff:.3g} > {TOLERANCE}")


def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__, engines=False)
    parser.add_argument("--engines", default="spark,dask",
                        help="comma-separated engines to run in order (default: spark,dask)")
    parser.add_argument("--scheduler", help="Dask scheduler address (overrides dask.scheduler)")
    parser.add_argument("--skip-generate", action="store_true", help="use existing input tables")
    parser.add_argument("--model", help="score with this registered model (name/version, name@alias) "
                        "instead of training one")
    return run_job("pipeline", parser, body, argv)


if __name__ == "__main__":
    sys.exit(main())
