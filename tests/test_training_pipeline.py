"""Training, registry, champion/challenger scoring and lineage through the pipeline's stages, on
the session's own engines and a small demo lakehouse: models trained on the Spark-built and on
the Dask-built training set agree, two models score in one commit, the lineage query follows
every score back to its data, and a model whose features are defined differently is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from deltalake import DeltaTable

from engine.backends.dask import DaskBackend
from engine.backends.spark import SparkBackend
from engine.conf import REPO_ROOT, load_conf
from engine.errors import ModelMismatch, ValidationFailed
from engine.demo_data import write_demo_tables
from engine.pipeline import (build_features, resolve_model, score_rows, train_model,
                             validate_table)
from engine.run_context import RunContext, model_registry

OVERRIDES = ("demo.customers=300",)


def context(lakehouse: Path, suffix: str, *overrides: str) -> RunContext:
    conf = load_conf("conf/test.yaml", overrides=[f"lakehouse={lakehouse}", *OVERRIDES, *overrides])
    ctx = RunContext.start(conf)
    ctx.output_suffix = suffix
    return ctx


def backend_for(engine_name: str, request):
    if engine_name == "spark":
        return SparkBackend(request.getfixturevalue("spark"))
    return DaskBackend(request.getfixturevalue("dask_cluster_client"), show_progress=False)


@pytest.fixture(scope="module")
def lakehouse(tmp_path_factory):
    lake = tmp_path_factory.mktemp("training_pipeline")
    write_demo_tables(context(lake, ""))
    return lake


@pytest.fixture(scope="module")
def trained_on_both(lakehouse, request, h2o_cluster):
    """An H2O GBM trained on each engine's validated training set: churn/1 (Spark), churn/2 (Dask)."""
    models = {}
    for engine in ("spark", "dask"):
        ctx = context(lakehouse, engine)
        backend = backend_for(engine, request)
        build_features(backend, ctx, "labels", "training_set", "features")
        validate_table(backend, ctx, "training_set", ctx.conf.validation.training_suites)
        models[engine] = train_model(backend, ctx)
    return models


def test_models_trained_on_the_spark_and_the_dask_training_set_have_the_same_metrics(trained_on_both):
    spark, dask = trained_on_both["spark"], trained_on_both["dask"]
    assert (spark.model_id, dask.model_id) == ("churn/1", "churn/2")
    assert spark.training_table.endswith("training_set_spark")
    assert dask.training_table.endswith("training_set_dask")
    assert spark.feature_hash == dask.feature_hash
    assert spark.metrics["train_rows"] == dask.metrics["train_rows"]
    assert spark.metrics["valid_rows"] == dask.metrics["valid_rows"]
    keys = ("auc", "pr_auc", "logloss", "accuracy", "f1", "train_auc")
    print("h2o_gbm spark-built vs dask-built:", {k: abs(spark.metrics[k] - dask.metrics[k]) for k in keys})
    for key in keys:
        assert spark.metrics[key] == pytest.approx(dask.metrics[key], abs=1e-9), key
    assert spark.metrics["auc"] > 0.7


def test_mllib_on_the_spark_and_the_dask_training_set_gives_the_same_metrics(
        trained_on_both, lakehouse, request):
    """MLlib runs in Spark, but can read the training set Dask built."""
    spark = backend_for("spark", request)
    metrics = {}
    for built_by in ("spark", "dask"):
        ctx = context(lakehouse, built_by, "train.algorithm=mllib_gbt",
                      "train.params={ntrees: 10, max_depth: 3, seed: 42}")
        model = train_model(spark, ctx)
        assert model.kind == "mllib" and model.training_table.endswith(f"training_set_{built_by}")
        metrics[built_by] = model.metrics
    keys = ("auc", "pr_auc", "logloss", "accuracy")
    print("mllib_gbt spark-built vs dask-built:", {k: abs(metrics["spark"][k] - metrics["dask"][k]) for k in keys})
    for key in keys:
        assert metrics["spark"][key] == pytest.approx(metrics["dask"][key], abs=1e-9), key


def test_registered_versions_carry_the_training_sets_validation_results(trained_on_both, lakehouse):
    for engine, model in trained_on_both.items():
        assert len(model.validation_ids) == 2
        reports = [p for v in model.validation_ids
                   for p in (lakehouse / "runs").glob(f"*/validation/{engine}/*{v}*.json")]
        assert len(reports) == 2 and all(json.loads(p.read_text())["success"] for p in reports)
        table = DeltaTable(model.training_table)
        assert model.training_version == table.version()


def score_champion_and_challenger(engine_name: str, lakehouse: Path, request):
    """churn/1 as champion, churn/2 as challenger, both scoring ``scores_cc_<engine>``."""
    registry = model_registry(context(lakehouse, "").conf)
    registry.set_alias("churn/1", "champion")
    registry.set_alias("churn/2", "challenger")
    ctx = context(lakehouse, f"cc_{engine_name}", "score.challenger=churn@challenger")
    backend = backend_for(engine_name, request)
    build_features(backend, ctx, "to_score", "scoring_set", "score features")
    validate_table(backend, ctx, "scoring_set", ctx.conf.validation.scoring_suites,
                   stage="validate scoring set")
    champion = resolve_model(ctx, "churn@champion")
    challenger = resolve_model(ctx, ctx.conf.score.challenger)
    return backend, champion, challenger, score_rows(backend, ctx, champion, challenger)


def test_champion_and_challenger_score_the_same_rows_in_one_commit(engine_name, trained_on_both,
                                                                   lakehouse, request):
    backend, champion, challenger, result = score_champion_and_challenger(engine_name, lakehouse, request)
    table = DeltaTable(result.table.path)
    assert table.version() == 0 and len(table.history()) == 1  # one commit for both models
    scores = table.to_pandas()
    to_score = DeltaTable(str(lakehouse / "tables" / "to_score")).to_pandas()
    assert len(scores) == 2 * len(to_score)
    by_model = scores.groupby("model_id")["customer_id"].nunique().to_dict()
    assert by_model == {"churn/1": len(to_score), "churn/2": len(to_score)}
    assert scores["score"].between(0, 1).all()
    meta = table.history(1)[0]
    models = json.loads(meta["lakescore.models"])
    assert [(m["role"], m["name"], m["version"]) for m in models] == [
        ("champion", "churn", "1"), ("challenger", "churn", "2")]
    assert meta["lakescore.model_name"] == "churn" and meta["lakescore.model_version"] == "1"
    assert meta["lakescore.model_run_id"] == champion.mlflow_run_id
    assert models[1]["mlflow_run_id"] == challenger.mlflow_run_id
    # The same two models and rows again: the commit is already in, nothing is added.
    again = score_rows(backend, context(lakehouse, f"cc_{engine_name}"), champion, challenger)
    assert again.skipped and DeltaTable(result.table.path).version() == 0


def test_lineage_job_prints_the_whole_chain_of_a_champion_challenger_scores_table(
        trained_on_both, lakehouse, request, capsys):
    from jobs.lineage import main

    score_champion_and_challenger("dask", lakehouse, request)
    args = ["--conf", "conf/test.yaml", "--set", f"lakehouse={lakehouse}", "--table", "scores_cc_dask"]
    assert main([*args, "--json"]) == 0
    tree = json.loads(capsys.readouterr().out)
    assert tree["table"].endswith("scores_cc_dask") and tree["version"] == 0 and tree["job"] == "score"
    assert [v["success"] for v in tree["validations"]] == [True]
    champion, challenger = tree["models"]
    assert tree["model"] == champion
    assert (champion["role"], champion["model_id"], challenger["model_id"]) == (
        "champion", "churn/1", "churn/2")
    for node, engine in ((champion, "spark"), (challenger, "dask")):
        assert node["mlflow_run_id"] == trained_on_both[engine].mlflow_run_id
        assert node["feature_hash"] == tree["feature_hash"]
        assert node["metrics"]["auc"] == pytest.approx(trained_on_both[engine].metrics["auc"])
        assert [v["success"] for v in node["validations"]] == [True, True]
        training = node["training_set"]
        assert training["table"].endswith(f"training_set_{engine}")
        assert training["version"] == trained_on_both[engine].training_version
        assert training["feature_hash"] == tree["feature_hash"] and training["engine"] == engine
        sources = {Path(n["table"]).name: n["version"] for n in training["inputs"]}
        assert sources == {"events": DeltaTable(str(lakehouse / "tables" / "events")).version(),
                           "labels": DeltaTable(str(lakehouse / "tables" / "labels")).version()}
    scoring_set = tree["inputs"][0]
    assert scoring_set["table"].endswith("scoring_set_cc_dask")
    assert {Path(n["table"]).name for n in scoring_set["inputs"]} == {"events", "to_score"}

    assert main(args) == 0
    text = capsys.readouterr().out
    assert "<- champion model churn/1 (h2o_gbm) auc" in text
    assert "<- challenger model churn/2 (h2o_gbm)" in text
    assert f"<- {lakehouse / 'tables' / 'training_set_spark'} @ v" in text
    assert "(passed)" in text and "<- " + str(lakehouse / "tables" / "labels") in text


def test_lineage_of_a_missing_table_or_version_exits_2_naming_it(lakehouse, capsys):
    from jobs.lineage import main

    args = ["--conf", "conf/test.yaml", "--set", f"lakehouse={lakehouse}"]
    assert main([*args, "--table", "scores_nowhere"]) == 2
    assert "no Delta table at" in capsys.readouterr().err
    assert main([*args, "--table", "events", "--version", "99"]) == 2
    assert "has no version 99" in capsys.readouterr().err


def test_scoring_with_a_model_whose_features_are_defined_differently_is_refused(
        trained_on_both, lakehouse, tmp_path, request):
    definition = yaml.safe_load((REPO_ROOT / "conf" / "features" / "customer.yaml").read_text())
    definition["aggregations"][0]["windows"] = ["7d", "30d", "60d"]
    changed = tmp_path / "customer_60d.yaml"
    changed.write_text(yaml.safe_dump(definition))
    ctx = context(lakehouse, "changed", f"features={changed}")
    with pytest.raises(ModelMismatch) as refused:
        score_rows(backend_for("dask", request), ctx, resolve_model(ctx, "churn@champion"))
    message = str(refused.value)
    assert "churn/1" in message
    assert "only in the model: amount_count_90d, amount_sum_90d, amount_mean_90d" in message
    assert "only in the definition: amount_count_60d, amount_sum_60d, amount_mean_60d" in message


def test_a_champion_that_already_scored_the_input_is_not_scored_again_next_to_a_challenger(
        engine_name, trained_on_both, lakehouse, request):
    backend, champion, challenger, _ = score_champion_and_challenger(engine_name, lakehouse, request)
    ctx = context(lakehouse, f"solo_{engine_name}")
    build_features(backend, ctx, "to_score", "scoring_set", "score features")
    first = score_rows(backend, ctx, champion)  # the champion alone first
    both = score_rows(backend, context(lakehouse, f"solo_{engine_name}"), champion, challenger)
    assert not first.skipped and not both.skipped and both.version == first.version + 1
    scores = DeltaTable(first.table.path).to_pandas()
    to_score = DeltaTable(str(lakehouse / "tables" / "to_score")).to_pandas()
    assert scores.groupby("model_id").size().to_dict() == {"churn/1": len(to_score),
                                                           "churn/2": len(to_score)}
    models = json.loads(DeltaTable(first.table.path).history(1)[0]["lakescore.models"])
    assert [(m["role"], m["version"]) for m in models] == [("challenger", "2")]
    again = score_rows(backend, context(lakehouse, f"solo_{engine_name}"), champion, challenger)
    assert again.skipped and DeltaTable(first.table.path).version() == both.version


def test_a_scores_batch_failing_its_suite_is_not_written(engine_name, trained_on_both, lakehouse,
                                                         request, tmp_path):
    suite = tmp_path / "scores.json"
    suite.write_text(json.dumps({"name": "scores", "expectations": [
        {"type": "expect_column_values_to_be_between",
         "kwargs": {"column": "score", "min_value": 0.0, "max_value": 0.01}}]}))
    ctx = context(lakehouse, f"gate_{engine_name}", f"validation.suites.scores=[{suite}]")
    backend = backend_for(engine_name, request)
    build_features(backend, ctx, "to_score", "scoring_set", "score features")
    with pytest.raises(ValidationFailed, match=r"expect_column_values_to_be_between\(score\): \d+ unexpected"):
        score_rows(backend, ctx, resolve_model(ctx, "churn/1"))
    assert not DeltaTable.is_deltatable(ctx.table("scores").path)


def test_scores_are_partitioned_by_date_and_model_and_rescoring_a_date_replaces_only_that_model(
        engine_name, trained_on_both, lakehouse, request):
    """Rescoring a date after its input changed (here: half the rows) replaces that model's
    scores of that date, never adds to them; the other model's scores are untouched; the stage
    reports rows/s and the deciles of what it wrote."""
    import re

    import numpy as np
    from deltalake import write_deltalake

    backend = backend_for(engine_name, request)
    ctx = context(lakehouse, f"part_{engine_name}")
    build_features(backend, ctx, "to_score", "scoring_set", "score features")
    champion, challenger = resolve_model(ctx, "churn/1"), resolve_model(ctx, "churn/2")
    first = score_rows(backend, ctx, champion, challenger)
    table = DeltaTable(first.table.path)
    assert table.metadata().partition_columns == ["score_date", "model_id"]
    scores = table.to_pandas()
    assert (scores["score_date"] == scores["as_of"].dt.tz_convert("UTC").dt.date).all()
    to_score = DeltaTable(str(lakehouse / "tables" / "to_score")).to_pandas()
    assert scores.groupby("model_id").size().to_dict() == {"churn/1": len(to_score), "churn/2": len(to_score)}

    note = ctx.summary.stages[-1].note
    assert re.search(r"[\d,]+ rows/s", note), note
    shown = re.search(r"churn/1 score deciles ([^;]+)", note).group(1).split()
    champion_scores = np.sort(scores.loc[scores["model_id"] == "churn/1", "score"].to_numpy())
    for p, value in zip(np.arange(1, 10) / 10, map(float, shown)):
        low = np.quantile(champion_scores, max(p - 0.02, 0), method="lower")
        high = np.quantile(champion_scores, min(p + 0.02, 1), method="higher")
        assert low * (1 - 5e-3) <= value <= high * (1 + 5e-3), (p, value, low, high)

    scoring_set = ctx.table("scoring_set").path
    half = DeltaTable(scoring_set).to_pyarrow_table()
    half = half.slice(0, half.num_rows // 2)
    write_deltalake(scoring_set, half, mode="overwrite")  # changed input, same score date
    again_ctx = context(lakehouse, f"part_{engine_name}")
    again = score_rows(backend, again_ctx, champion)
    assert not again.skipped and again.version == first.version + 1
    after = DeltaTable(first.table.path).to_pandas()
    assert after.groupby("model_id").size().to_dict() == {"churn/1": half.num_rows, "churn/2": len(to_score)}
    assert set(after.loc[after["model_id"] == "churn/1", "run_id"]) == {again_ctx.run_id}
    assert set(after.loc[after["model_id"] == "churn/2", "run_id"]) == {ctx.run_id}
    assert not after.duplicated(["customer_id", "as_of", "model_id"]).any()
    # The same input again: the commit is in, nothing is written.
    assert score_rows(backend, context(lakehouse, f"part_{engine_name}"), champion).skipped
