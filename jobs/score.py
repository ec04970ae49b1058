"""Compute the features of the rows to score, validate them, score them into the scores table.

With ``features: null`` (``--set features=null``) the features are the ones the model carries
(``--model churn@champion`` alone is enough); with a features file, a model trained on other
definitions is refused naming the features that differ."""

from __future__ import annotations

import sys

from engine.cli import job_parser, run_job
from engine.pipeline import (build_features, check_model_fits, require_scorer, resolve_model,
                             score_rows, validate_inputs, validate_table)
from engine.training.carried import conf_with_carried_features, require_artifact
from jobs._backend import backend_for


def body(conf, ctx, args) -> None:
    model = resolve_model(ctx, args.model)
    challenger = resolve_model(ctx, conf.score.challenger) if conf.score.challenger else None
    for each in filter(None, [model, challenger]):
        require_artifact(each)
    if conf.features is None:
        ctx.conf = conf = conf_with_carried_features(conf, model, ctx.run_dir)
    definition = ctx.feature_set()
    for each in filter(None, [model, challenger]):  # refused before anything is computed or written
        check_model_fits(each, definition)
    with backend_for(conf) as backend:
        require_scorer(backend, model, challenger)
        validate_inputs(backend, ctx, "events", "to_score")
        build_features(backend, ctx, "to_score", "scoring_set", "score features")
        validate_table(backend, ctx, "scoring_set", conf.validation.scoring_suites,
                       stage="validate scoring set")
        score_rows(backend, ctx, model, challenger)


def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__)
    parser.add_argument("--model", help="name@alias, name/version, a name or 'latest' (overrides score.model)")
    return run_job("score", parser, body, argv)


if __name__ == "__main__":
    sys.exit(main())
