"""The pipeline's stages in process, on the session's own engines: the same run on Spark and on
Dask, MLlib training and scoring on Spark, and the refusals a user meets (MLlib on Dask, a model
whose feature code differs from the definition)."""

from __future__ import annotations

import dataclasses

import pytest
from deltalake import DeltaTable

from engine.backends.dask import DaskBackend
from engine.backends.spark import SparkBackend
from engine.conf import load_conf
from engine.errors import ModelMismatch, NotSupportedByBackend, ValidationFailed
from engine.demo_data import write_demo_tables
from engine.pipeline import build_features, score_rows, train_model, validate_table
from engine.run_context import RunContext


@pytest.fixture(scope="module")
def lakehouse(tmp_path_factory):
    return tmp_path_factory.mktemp("stages")


def context(lakehouse, *overrides: str) -> RunContext:
    conf = load_conf("conf/test.yaml", overrides=[f"lakehouse={lakehouse}",
                                                  "demo.customers=300", *overrides])
    return RunContext.start(conf)


@pytest.fixture(scope="module")
def demo_tables(lakehouse):
    write_demo_tables(context(lakehouse))
    return lakehouse


def backend_for(engine_name, request):
    if engine_name == "spark":
        return SparkBackend(request.getfixturevalue("spark"))
    return DaskBackend(request.getfixturevalue("dask_cluster_client"), show_progress=False)


def test_training_set_has_one_row_per_label_and_a_validated_version(engine_name, demo_tables, request):
    ctx = context(demo_tables)
    ctx.output_suffix = engine_name
    backend = backend_for(engine_name, request)
    result = build_features(backend, ctx, "labels", "training_set", "features")
    labels = DeltaTable(str(demo_tables / "tables" / "labels")).to_pandas()
    assert result.rows == len(labels)
    reports = validate_table(backend, ctx, "training_set", ctx.conf.validation.training_suites)
    assert all(r.success for r in reports)
    assert len(ctx.validation_ids[f"training_set_{engine_name}"]) == 2


def test_unchanged_inputs_do_not_rewrite_the_training_set(engine_name, demo_tables, request):
    backend = backend_for(engine_name, request)
    first = context(demo_tables)
    first.output_suffix = f"{engine_name}_rerun"
    written = build_features(backend, first, "labels", "training_set", "features")
    again = context(demo_tables)
    again.output_suffix = f"{engine_name}_rerun"
    skipped = build_features(backend, again, "labels", "training_set", "features")
    assert not written.skipped and skipped.skipped and skipped.version == written.version


def test_mllib_trains_and_scores_on_spark(demo_tables, request):
    ctx = context(demo_tables, "train.algorithm=mllib_gbt", "train.params={ntrees: 10, max_depth: 3}")
    ctx.output_suffix = "mllib"
    backend = backend_for("spark", request)
    build_features(backend, ctx, "labels", "training_set", "features")
    model = train_model(backend, ctx)
    assert model.kind == "mllib" and model.metrics["auc"] > 0.6
    build_features(backend, ctx, "to_score", "scoring_set", "score features")
    result = score_rows(backend, ctx, model)
    scores = DeltaTable(result.table.path).to_pandas()
    assert len(scores) == len(DeltaTable(str(demo_tables / "tables" / "to_score")).to_pandas())
    assert scores["score"].between(0, 1).all() and set(scores["model_id"]) == {model.model_id}


def test_mllib_on_dask_is_refused_naming_the_backend(demo_tables, request):
    ctx = context(demo_tables, "train.algorithm=mllib_gbt")
    ctx.output_suffix = "dask"
    backend = backend_for("dask", request)
    build_features(backend, ctx, "labels", "training_set", "features")
    with pytest.raises(NotSupportedByBackend, match="MLlib training.*not supported by the 'dask' backend"):
        train_model(backend, ctx)


def test_a_model_trained_on_other_feature_code_is_refused(demo_tables, request, h2o_cluster):
    ctx = context(demo_tables)
    ctx.output_suffix = "h2o"
    backend = backend_for("dask", request)
    build_features(backend, ctx, "labels", "training_set", "features")
    model = train_model(backend, ctx)
    stale = dataclasses.replace(model, feature_hash="0" * 64)
    with pytest.raises(ModelMismatch, match="trained on feature set 'customer_activity'.*Retrain"):
        score_rows(backend, ctx, stale)


def test_validation_failure_raises_with_table_expectation_column_and_count(demo_tables, request):
    import pandas as pd
    from deltalake import write_deltalake

    ctx = context(demo_tables)
    ctx.output_suffix = "broken"
    backend = backend_for("spark", request)
    build_features(backend, ctx, "labels", "training_set", "features")
    table = ctx.table("training_set")
    frame = DeltaTable(table.path).to_pandas()
    frame["amount_count_7d"] = frame["amount_count_7d"].astype("float64")
    frame.loc[frame.index[:7], "amount_count_7d"] = float("nan")
    frame["amount_count_7d"] = frame["amount_count_7d"].astype(pd.Int64Dtype())
    write_deltalake(table.path, frame, mode="overwrite")
    with pytest.raises(ValidationFailed) as failed:
        validate_table(backend, ctx, "training_set", ctx.conf.validation.training_suites)
    message = str(failed.value)
    assert "training_set_broken" in message
    assert "expect_column_values_to_not_be_null(amount_count_7d): 7 unexpected" in message
