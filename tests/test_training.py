"""Trainers on a small demo training set (features computed here with DuckDB, independently of the
feature engine): H2O GBM from the Delta table's Parquet files, Spark MLlib GBT, the out-of-time
split at an exact label time, and the local registry."""

from __future__ import annotations

import os

os.environ.setdefault("LAKESCORE_TEST_H2O_PORT", "54331")

import json  # noqa: E402
from datetime import datetime, timezone  # noqa: E402

import duckdb  # noqa: E402
import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pytest  # noqa: E402
from deltalake import DeltaTable, write_deltalake  # noqa: E402

from engine.conf import DemoConf  # noqa: E402
from engine.demo_data import generate_demo  # noqa: E402
from engine.errors import ConfError, DefinitionError, ModelMismatch  # noqa: E402
from engine.training import TrainedModel  # noqa: E402
from engine.training.metrics import logloss, roc_auc  # noqa: E402
from engine.training.split import OutOfTimeSplit  # noqa: E402

WINDOWS = (7, 30, 90)
FEATURES = [f"amount_{agg}_{w}d" for w in WINDOWS for agg in ("count", "sum", "mean")]
LABEL, TIME = "churned", "as_of"
# Exactly one of the demo's label times: rows at it must land on the validation side.
VALID_FROM = datetime(2025, 10, 28, tzinfo=timezone.utc)
PARAMS = {"ntrees": 20, "max_depth": 4, "seed": 42}


def demo_training_set() -> pa.Table:
    """Labels + count/sum/mean of amount over the 7/30/90 days before ``as_of`` (excluded)."""
    data = generate_demo(DemoConf(customers=1500, mean_events_per_customer=100.0, seed=11))
    events, labels = data.events, data.labels  # noqa: F841 - read by DuckDB
    columns = ", ".join(
        f"count(e.amount) FILTER (WHERE e.event_time >= l.as_of - INTERVAL {w} DAY) AS amount_count_{w}d, "
        f"coalesce(sum(e.amount) FILTER (WHERE e.event_time >= l.as_of - INTERVAL {w} DAY), 0) "
        f"AS amount_sum_{w}d, "
        f"avg(e.amount) FILTER (WHERE e.event_time >= l.as_of - INTERVAL {w} DAY) AS amount_mean_{w}d"
        for w in WINDOWS)
    table = duckdb.sql(f"""
        SELECT l.customer_id, l.as_of, l.churned, {columns}
        FROM labels l LEFT JOIN events e ON e.customer_id = l.customer_id
             AND e.event_time < l.as_of AND e.event_time >= l.as_of - INTERVAL 90 DAY
        GROUP BY l.customer_id, l.as_of, l.churned
        ORDER BY l.as_of, l.customer_id""").arrow()
    table = table.read_all() if hasattr(table, "read_all") else table
    schema = pa.schema([("customer_id", pa.int64()), ("as_of", pa.timestamp("us", tz="UTC")),
                        ("churned", pa.int64())]
                       + [(f, pa.int64() if "count" in f else pa.float64()) for f in FEATURES])
    return table.select(schema.names).cast(schema)


@pytest.fixture(scope="module")
def training_table(tmp_path_factory) -> tuple[str, pa.Table]:
    """The training set as a Delta table of two Parquet files (two appends)."""
    path = str(tmp_path_factory.mktemp("lake") / "training_set")
    table = demo_training_set()
    half = table.num_rows // 2
    write_deltalake(path, table.slice(0, half))
    write_deltalake(path, table.slice(half), mode="append")
    return path, table


def gbm_spec(split: OutOfTimeSplit, params: dict):
    """The binomial GBM of these tests: the demo features, label and time, ``split`` and ``params``."""
    from engine.training import TrainSpec

    return TrainSpec(features=tuple(FEATURES), label=LABEL, time_column=TIME, split=split, params=dict(params))


@pytest.fixture(scope="module")
def h2o_model(h2o_cluster, training_table, tmp_path_factory) -> TrainedModel:
    from engine.training.h2o_trainer import train_h2o

    path, _ = training_table
    model = train_h2o("h2o_gbm", DeltaTable(path).file_uris(),
                      gbm_spec(OutOfTimeSplit(VALID_FROM), PARAMS), tmp_path_factory.mktemp("h2o_model"))
    return model


@pytest.fixture(scope="module")
def spark_frame(spark, training_table):
    path, _ = training_table
    return spark.read.parquet(*DeltaTable(path).file_uris())


@pytest.fixture(scope="module")
def mllib_model(spark_frame, tmp_path_factory) -> TrainedModel:
    from engine.training import TrainingData, trainer_for

    return trainer_for("mllib_gbt").train(TrainingData((), spark_frame),
                                          gbm_spec(OutOfTimeSplit(VALID_FROM), PARAMS),
                                          tmp_path_factory.mktemp("mllib_model"))


def side_counts(table: pa.Table) -> tuple[int, int]:
    as_of = table.column(TIME).to_pandas()
    return int((as_of < VALID_FROM).sum()), int((as_of >= VALID_FROM).sum())


# --- the training set itself -------------------------------------------------------------------


def test_training_set_has_missing_means_and_both_classes_on_each_side(training_table):
    _, table = training_table
    frame = table.to_pandas()
    assert frame["amount_mean_7d"].isna().sum() > 0  # customers quiet for a week
    assert frame.loc[frame[TIME] < VALID_FROM, LABEL].nunique() == 2
    assert frame.loc[frame[TIME] >= VALID_FROM, LABEL].nunique() == 2
    assert (frame[TIME] == VALID_FROM).sum() > 0


# --- H2O GBM -----------------------------------------------------------------------------------


def test_h2o_gbm_learns_churn_on_later_rows_and_writes_a_mojo(h2o_model, training_table):
    from engine.scoring.mojo import read_mojo_info

    assert h2o_model.kind == "mojo" and h2o_model.algorithm == "h2o_gbm"
    assert h2o_model.metrics["auc"] > 0.7, h2o_model.metrics
    assert 0 < h2o_model.metrics["logloss"] < 0.6
    assert h2o_model.artifact.name == "model.mojo" and h2o_model.artifact.stat().st_size > 1000
    info = read_mojo_info(h2o_model.artifact)
    assert info.category == "Binomial" and info.feature_names == tuple(FEATURES)
    saved = json.loads((h2o_model.artifact.parent / "metrics.json").read_text())
    assert saved == pytest.approx(h2o_model.metrics)


def test_h2o_split_puts_rows_at_valid_from_on_the_validation_side(h2o_model, training_table):
    _, table = training_table
    train_rows, valid_rows = side_counts(table)
    assert h2o_model.metrics["train_rows"] == train_rows
    assert h2o_model.metrics["valid_rows"] == valid_rows


def test_h2o_training_twice_with_the_same_seed_gives_identical_metrics(h2o_model, training_table, tmp_path):
    from engine.training.h2o_trainer import train_h2o

    path, _ = training_table
    again = train_h2o("h2o_gbm", DeltaTable(path).file_uris(),
                      gbm_spec(OutOfTimeSplit(VALID_FROM), PARAMS), tmp_path)
    assert again.metrics == h2o_model.metrics
    # Same inputs and parameters: same content hash; a new training run: a new id.
    assert again.model_id != h2o_model.model_id
    assert again.model_id.rsplit("-", 1)[1] == h2o_model.model_id.rsplit("-", 1)[1]


def test_h2o_empty_validation_side_is_a_definition_error_naming_boundary_and_counts(
        h2o_cluster, training_table, tmp_path):
    from engine.training.h2o_trainer import train_h2o

    path, table = training_table
    with pytest.raises(DefinitionError, match=rf"2030-01-01T00:00:00\+00:00 leaves the validation side "
                                              rf"empty \({table.num_rows} rows before, 0 rows"):
        train_h2o("h2o_gbm", DeltaTable(path).file_uris(),
                  gbm_spec(OutOfTimeSplit(datetime(2030, 1, 1)), PARAMS), tmp_path)


def test_h2o_unknown_parameter_is_a_conf_error(h2o_cluster, training_table, tmp_path):
    from engine.training.h2o_trainer import train_h2o

    path, _ = training_table
    with pytest.raises(ConfError, match="n_trees"):
        train_h2o("h2o_gbm", DeltaTable(path).file_uris(),
                  gbm_spec(OutOfTimeSplit(VALID_FROM), {"n_trees": 5}), tmp_path)


# --- Spark MLlib GBT ---------------------------------------------------------------------------


def test_mllib_gbt_learns_churn_and_splits_at_valid_from(mllib_model, training_table):
    _, table = training_table
    train_rows, valid_rows = side_counts(table)
    assert mllib_model.kind == "mllib" and mllib_model.artifact.is_dir()
    assert mllib_model.metrics["auc"] > 0.7, mllib_model.metrics
    assert (mllib_model.metrics["train_rows"], mllib_model.metrics["valid_rows"]) == (train_rows, valid_rows)


def test_score_mllib_gives_a_probability_for_every_row_missing_features_included(
        mllib_model, spark_frame, training_table):
    from engine.training.mllib_trainer import score_mllib

    _, table = training_table
    scored = score_mllib(spark_frame, mllib_model.artifact, ["customer_id", TIME]).toPandas()
    assert list(scored.columns) == ["customer_id", TIME, "score", "prediction"]
    assert len(scored) == table.num_rows
    assert scored["score"].notna().all() and scored["score"].between(0, 1).all()
    assert scored["score"].nunique() > 50
    # The predicted class at MLlib's default threshold (0.5), as a string like the MOJO scorers'.
    clear = scored[(scored["score"] - 0.5).abs() > 1e-12]
    assert (clear["prediction"] == (clear["score"] > 0.5).map({True: "1", False: "0"})).all()
    assert set(scored["prediction"]) == {"0", "1"}


def test_mllib_metrics_equal_a_reference_computed_from_the_scores(mllib_model, spark_frame):
    """The DataFrame-computed AUC and logloss match numpy on the model's own scores."""
    from engine.training.mllib_trainer import score_mllib

    scored = score_mllib(spark_frame, mllib_model.artifact, [LABEL, TIME]).toPandas()
    valid = scored[scored[TIME] >= VALID_FROM.replace(tzinfo=None)]  # toPandas: naive UTC
    assert mllib_model.metrics["auc"] == pytest.approx(roc_auc(valid[LABEL], valid["score"]), abs=1e-6)
    assert mllib_model.metrics["logloss"] == pytest.approx(logloss(valid[LABEL], valid["score"]), rel=1e-9)


def test_score_mllib_refuses_a_frame_without_a_feature_naming_it(mllib_model, spark_frame):
    from engine.training.mllib_trainer import score_mllib

    with pytest.raises(ModelMismatch, match=r"\['amount_sum_30d'\]"):
        score_mllib(spark_frame.drop("amount_sum_30d"), mllib_model.artifact, ["customer_id"])


def test_mllib_empty_training_side_is_a_definition_error(spark_frame, tmp_path):
    from engine.training import TrainingData, trainer_for

    with pytest.raises(DefinitionError, match=r"leaves the training side empty \(0 rows before"):
        trainer_for("mllib_gbt").train(TrainingData((), spark_frame),
                                       gbm_spec(OutOfTimeSplit(datetime(2020, 1, 1)), PARAMS), tmp_path)


def test_mllib_unknown_parameter_is_a_conf_error_listing_the_shared_names(spark):
    from engine.training.mllib_trainer import estimator_params

    assert estimator_params("mllib_gbt", {"ntrees": 7})["maxIter"] == 7
    with pytest.raises(ConfError, match=r"train.params.n_trees: .*learn_rate"):
        estimator_params("mllib_gbt", {"n_trees": 7})


# --- registry ---------------------------------------------------------------------------------


def test_trained_models_register_with_their_artifacts(h2o_model, mllib_model, tmp_path):
    from engine.training.mllib_trainer import model_features
    from engine.training.registry import Registry
    from pyspark.ml import PipelineModel

    registry = Registry(f"sqlite:///{tmp_path}/mlflow.db", (tmp_path / "artifacts").as_uri())
    for trained, engine in ((h2o_model, "dask"), (mllib_model, "spark")):
        registry.register(trained, feature_hash="h", training_table="t", training_version=1,
                          run_id="r", engine=engine)
    mojo = registry.resolve("churn/1")
    assert mojo.kind == "mojo" and mojo.artifact_path.is_file()
    assert mojo.artifact_path.read_bytes() == h2o_model.artifact.read_bytes()
    assert mojo.metrics == pytest.approx(h2o_model.metrics)
    pipeline = registry.resolve("latest")
    assert pipeline.version == 2 and pipeline.kind == "mllib" and pipeline.artifact_path.is_dir()
    assert model_features(PipelineModel.load(str(pipeline.artifact_path))) == tuple(FEATURES)


# --- metrics -----------------------------------------------------------------------------------


def test_roc_auc_counts_ties_as_half_and_is_nan_for_one_class():
    assert roc_auc([0, 1, 0, 1], [0.1, 0.4, 0.5, 0.8]) == 0.75
    assert roc_auc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == 0.5
    assert np.isnan(roc_auc([1, 1], [0.2, 0.3]))


def test_logloss_clips_certain_wrong_predictions_to_a_finite_loss():
    assert logloss([1, 0], [0.5, 0.5]) == pytest.approx(np.log(2))
    assert np.isfinite(logloss([1, 0], [0.0, 1.0]))


def test_pr_auc_is_average_precision_with_ties_as_one_step():
    from engine.training.metrics import pr_auc

    # Sorted: .9(1) .8(0) {.7(1) .7(0)} .1(1): recall steps of 1/3 at precision 1, 2/4, 3/5.
    assert pr_auc([1, 0, 1, 0, 1], [0.9, 0.8, 0.7, 0.7, 0.1]) == pytest.approx((1 + 0.5 + 0.6) / 3)
    assert pr_auc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert np.isnan(pr_auc([0, 0], [0.1, 0.2]))


def test_binary_metrics_at_a_threshold_and_the_calibration_table():
    from engine.training.metrics import binary_metrics, calibration_table

    y = [1, 1, 0, 0, 1]
    p = [0.9, 0.4, 0.6, 0.1, 0.95]
    m = binary_metrics(y, p, threshold=0.5)
    # Predicted 1: .9 .6 .95 -> tp 2, fp 1, fn 1.
    assert (m["accuracy"], m["precision"], m["recall"]) == (0.6, 2 / 3, 2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    assert binary_metrics(y, p, threshold=0.99)["f1"] == 0.0
    table = calibration_table(y, p, bins=2)
    assert table == [{"lower": 0.0, "upper": 0.5, "rows": 2, "mean_predicted": 0.25, "observed_rate": 0.5},
                     {"lower": 0.5, "upper": 1.0, "rows": 3, "mean_predicted": pytest.approx(2.45 / 3),
                      "observed_rate": pytest.approx(2 / 3)}]
    assert calibration_table([1], [1.0], bins=10)[0]["upper"] == 1.0


def test_regression_metrics():
    from engine.training.metrics import regression_metrics

    m = regression_metrics([1.0, 2.0, 3.0], [1.0, 2.0, 5.0])
    assert m["rmse"] == pytest.approx(np.sqrt(4 / 3)) and m["mae"] == pytest.approx(2 / 3)
    assert m["r2"] == pytest.approx(1 - 4 / 2)


# --- one trainer interface, two families --------------------------------------------------------

FAMILY_PARAMS = {
    "h2o_gbm": {"ntrees": 20, "max_depth": 4, "seed": 42},
    "h2o_drf": {"ntrees": 20, "max_depth": 8, "seed": 42},
    "h2o_glm": {"seed": 42},
    "mllib_gbt": {"ntrees": 15, "max_depth": 4, "seed": 42},
    "mllib_rf": {"ntrees": 20, "max_depth": 6, "seed": 42},
    "mllib_lr": {"lambda": 0.01},
}


def spec_for(algorithm: str, **kwargs):
    from engine.training import TrainSpec

    return TrainSpec(features=tuple(FEATURES), label=LABEL, time_column=TIME,
                     split=OutOfTimeSplit(VALID_FROM), params=FAMILY_PARAMS.get(algorithm, {}),
                     group_column="customer_id", **kwargs)


def data_for(algorithm: str, request, training_table):
    from engine.training import TrainingData

    path, _ = training_table
    files = tuple(DeltaTable(path).file_uris())
    if algorithm.startswith("h2o"):
        request.getfixturevalue("h2o_cluster")
        return TrainingData(files)
    return TrainingData(files, request.getfixturevalue("spark_frame"))


@pytest.mark.parametrize("algorithm", sorted(FAMILY_PARAMS))
def test_every_algorithm_learns_churn_through_one_interface_and_reports_its_evaluation(
        algorithm, request, training_table, tmp_path):
    from engine.training import Trainer, trainer_for

    trainer = trainer_for(algorithm)
    assert isinstance(trainer, Trainer) and trainer.family == algorithm.split("_")[0]
    model = trainer.train(data_for(algorithm, request, training_table), spec_for(algorithm), tmp_path)
    _, table = training_table
    assert model.algorithm == algorithm and model.task == "binary"
    m = model.metrics
    assert m["auc"] > 0.7, m
    assert 0 < m["pr_auc"] <= 1 and 0 < m["logloss"] < 0.7 and 0.5 < m["accuracy"] <= 1
    assert 0 <= m["f1"] <= 1 and "train_auc" in m
    assert (m["train_rows"], m["valid_rows"]) == side_counts(table)
    evaluation = json.loads((tmp_path / "evaluation.json").read_text())
    calibration = evaluation["calibration"]
    assert sum(row["rows"] for row in calibration) == m["valid_rows"]
    importance = evaluation["variable_importance"]
    assert set(importance) == set(FEATURES) and sum(importance.values()) == pytest.approx(1.0)
    assert max(importance.values()) > 1 / len(FEATURES)  # some feature matters more than others


@pytest.mark.parametrize("algorithm", ["h2o_drf", "mllib_rf", "mllib_lr"])
def test_same_seed_and_data_give_the_same_metrics(algorithm, request, training_table, tmp_path):
    from engine.training import trainer_for

    data = data_for(algorithm, request, training_table)
    first = trainer_for(algorithm).train(data, spec_for(algorithm), tmp_path / "a")
    second = trainer_for(algorithm).train(data, spec_for(algorithm), tmp_path / "b")
    # Validation metrics come from the collected predictions: bit-identical. Spark computes the
    # training side's with distributed sums, added in task-completion order: equal to ~1e-15.
    exact = {k: v for k, v in first.metrics.items() if not k.startswith("train_") or k == "train_rows"}
    assert exact == {k: second.metrics[k] for k in exact}
    assert first.metrics == pytest.approx(second.metrics, rel=1e-12)
    assert first.importance == second.importance


@pytest.mark.parametrize("algorithm", ["h2o_gbm", "mllib_gbt"])
def test_k_fold_within_the_training_period_pools_every_training_row(algorithm, request, training_table,
                                                                     tmp_path):
    from engine.training import trainer_for

    model = trainer_for(algorithm).train(data_for(algorithm, request, training_table),
                                         spec_for(algorithm, folds=3), tmp_path)
    m = model.metrics
    assert m["cv_folds"] == 3 and m["cv_rows"] == m["train_rows"]
    assert m["cv_auc"] > 0.7 and abs(m["cv_auc"] - m["auc"]) < 0.1
    assert "cv_calibration" in json.loads((tmp_path / "evaluation.json").read_text())


@pytest.mark.parametrize("algorithm", ["h2o_gbm", "h2o_glm", "mllib_gbt"])
def test_regression_reports_rmse_mae_and_r2(algorithm, request, training_table, tmp_path):
    """Predict the 7-day spend from the other windows (its own count and mean left out)."""
    import dataclasses

    from engine.training import trainer_for

    features = tuple(f for f in FEATURES if not f.endswith("_7d"))
    spec = dataclasses.replace(spec_for(algorithm), features=features, label="amount_sum_7d",
                               task="regression")
    model = trainer_for(algorithm).train(data_for(algorithm, request, training_table), spec, tmp_path)
    m = model.metrics
    assert model.task == "regression" and "auc" not in m
    assert m["r2"] > 0.3 and m["rmse"] > 0 and 0 < m["mae"] < m["rmse"] and m["train_rmse"] > 0
    if model.kind == "mojo":
        from engine.scoring.mojo import read_mojo_info

        assert read_mojo_info(model.artifact).category == "Regression"


def test_h2o_automl_with_a_model_budget_exports_its_leader_as_a_mojo(h2o_cluster, training_table, tmp_path):
    import dataclasses

    from engine.scoring.mojo import read_mojo_info
    from engine.training import TrainingData, trainer_for

    path, _ = training_table
    spec = dataclasses.replace(spec_for("h2o_automl"), params={
        "max_models": 2, "seed": 42, "nfolds": 2, "include_algos": ["GLM", "GBM"]})
    model = trainer_for("h2o_automl").train(TrainingData(tuple(DeltaTable(path).file_uris())), spec, tmp_path)
    assert model.metrics["auc"] > 0.7 and model.params["leader"]
    assert read_mojo_info(model.artifact).category == "Binomial"


def test_unknown_automl_parameters_and_algorithms_are_conf_errors(h2o_cluster, training_table, tmp_path):
    import dataclasses

    from engine.training import TrainingData, trainer_for

    path, _ = training_table
    spec = dataclasses.replace(spec_for("h2o_automl"), params={"max_modelz": 2})
    with pytest.raises(ConfError, match=r"H2O h2o_automl rejects \['max_models', 'max_modelz', 'seed'\]"):
        trainer_for("h2o_automl").train(TrainingData(tuple(DeltaTable(path).file_uris())), spec, tmp_path)
    with pytest.raises(ConfError, match="train.algorithm 'xgboost' is not known; choose one of h2o_automl"):
        trainer_for("xgboost")


def test_mllib_pipeline_indexes_string_features_and_scores_unseen_levels(spark, spark_frame, tmp_path):
    from pyspark.sql import functions as F

    from engine.training import TrainingData, trainer_for
    from engine.training.mllib_trainer import model_features, score_mllib

    from pyspark.ml import PipelineModel

    segment = F.when(F.col("amount_count_30d") > 10, "busy").otherwise("quiet")
    frame = spark_frame.withColumn("segment", segment)
    features = ("segment", *FEATURES[:3])
    for algorithm in ("mllib_lr", "mllib_rf"):
        import dataclasses

        spec = dataclasses.replace(spec_for(algorithm), features=features)
        model = trainer_for(algorithm).train(TrainingData((), frame), spec, tmp_path / algorithm)
        assert model.metrics["auc"] > 0.6 and model.importance["segment"] > 0
        assert model_features(PipelineModel.load(str(model.artifact))) == features
        unseen = frame.withColumn("segment", F.lit("never seen"))
        scored = score_mllib(unseen, model.artifact, ["customer_id"]).toPandas()
        assert scored["score"].between(0, 1).all() and len(scored) == frame.count()
