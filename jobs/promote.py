"""Point a registry alias (e.g. champion, challenger) at a model version: what the score job
uses next. Prints the alias's previous and new version."""

from __future__ import annotations

import sys

from engine.cli import job_parser, run_job


def body(conf, ctx, args) -> None:
    registry = ctx.model_registry()
    before = registry.resolve(args.model)
    previous = registry.aliases(before.name).get(args.alias)
    after = registry.set_alias(before.model_id, args.alias)
    was = f"v{previous}" if previous is not None else "unset"
    print(f"{after.name}@{args.alias}: {was} -> v{after.version} "
          f"(MLflow run {after.mlflow_run_id}, {after.algorithm}, "
          + ", ".join(f"{k} {after.metrics[k]:.4f}" for k in ("auc", "logloss", "rmse") if k in after.metrics)
          + ")")


def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__, engines=False)
    parser.add_argument("--model", required=True,
                        help="the version to promote: name/version, name@alias, a name or latest")
    parser.add_argument("--alias", default="champion", help="alias to set (default: champion)")
    return run_job("promote", parser, body, argv, summary=False)


if __name__ == "__main__":
    sys.exit(main())
