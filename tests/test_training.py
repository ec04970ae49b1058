"""Trainers on a small demo training set (features computed here with DuckDB, independently of the
feature engine): H2O GBM from the Delta table's Parquet files, Spark MLlib GBT, the out-of-time
split at an exact label time, and the local registry."""

from __future__ import annotations

import os

os.environ.setdefault("LAKESCORE_TEST_H2O_PORT", "54331")

import json  # noqa: E402
from datetime import datetime, timedelta, timezone  # noqa: E402
from pathlib import Path  # noqa: E402

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
from engine.training.registry import register, resolve  # noqa: E402
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


@pytest.fixture(scope="module")
def h2o_model(h2o_cluster, training_table, tmp_path_factory) -> TrainedModel:
    from engine.training.h2o_trainer import train_h2o_gbm

    path, _ = training_table
    model = train_h2o_gbm(DeltaTable(path).file_uris(), FEATURES, LABEL, TIME, OutOfTimeSplit(VALID_FROM),
                          PARAMS, tmp_path_factory.mktemp("h2o_model"))
    return model


@pytest.fixture(scope="module")
def spark_frame(spark, training_table):
    path, _ = training_table
    return spark.read.parquet(*DeltaTable(path).file_uris())


@pytest.fixture(scope="module")
def mllib_model(spark_frame, tmp_path_factory) -> TrainedModel:
    from engine.training.mllib_trainer import train_mllib_gbt

    model = train_mllib_gbt(spark_frame, FEATURES, LABEL, TIME, OutOfTimeSplit(VALID_FROM), PARAMS,
                            tmp_path_factory.mktemp("mllib_model"))
    return model


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
    from engine.training.h2o_trainer import train_h2o_gbm

    path, _ = training_table
    again = train_h2o_gbm(DeltaTable(path).file_uris(), FEATURES, LABEL, TIME, OutOfTimeSplit(VALID_FROM),
                          PARAMS, tmp_path)
    assert again.metrics == h2o_model.metrics
    # Same inputs and parameters: same content hash; a new training run: a new id.
    assert again.model_id != h2o_model.model_id
    assert again.model_id.rsplit("-", 1)[1] == h2o_model.model_id.rsplit("-", 1)[1]


def test_h2o_empty_validation_side_is_a_definition_error_naming_boundary_and_counts(
        h2o_cluster, training_table, tmp_path):
    from engine.training.h2o_trainer import train_h2o_gbm

    path, table = training_table
    with pytest.raises(DefinitionError, match=rf"2030-01-01T00:00:00\+00:00 leaves the validation side "
                                              rf"empty \({table.num_rows} rows before, 0 rows"):
        train_h2o_gbm(DeltaTable(path).file_uris(), FEATURES, LABEL, TIME,
                      OutOfTimeSplit(datetime(2030, 1, 1)), PARAMS, tmp_path)


def test_h2o_unknown_parameter_is_a_conf_error(h2o_cluster, training_table, tmp_path):
    from engine.training.h2o_trainer import train_h2o_gbm

    path, _ = training_table
    with pytest.raises(ConfError, match="n_trees"):
        train_h2o_gbm(DeltaTable(path).file_uris(), FEATURES, LABEL, TIME, OutOfTimeSplit(VALID_FROM),
                      {"n_trees": 5}, tmp_path)


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
    assert list(scored.columns) == ["customer_id", TIME, "score"]
    assert len(scored) == table.num_rows
    assert scored["score"].notna().all() and scored["score"].between(0, 1).all()
    assert scored["score"].nunique() > 50


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
    from engine.training.mllib_trainer import train_mllib_gbt

    with pytest.raises(DefinitionError, match=r"leaves the training side empty \(0 rows before"):
        train_mllib_gbt(spark_frame, FEATURES, LABEL, TIME, OutOfTimeSplit(datetime(2020, 1, 1)),
                        PARAMS, tmp_path)


def test_mllib_unknown_parameter_is_a_conf_error_listing_the_shared_names(spark):
    from engine.training.mllib_trainer import gbt_params

    assert gbt_params({"ntrees": 7})["maxIter"] == 7
    with pytest.raises(ConfError, match=r"train.params.n_trees: .*learn_rate"):
        gbt_params({"n_trees": 7})


# --- registry ----------------------------------------------------------------------------------


def fake_model(tmp_path: Path, model_id: str, created_at: datetime) -> TrainedModel:
    artifact = tmp_path / model_id / "model.mojo"
    artifact.parent.mkdir(parents=True)
    artifact.write_bytes(b"not really a mojo")
    return TrainedModel(model_id=model_id, algorithm="h2o_gbm", features=("a", "b"), label="y",
                        metrics={"auc": 0.8}, artifact=artifact, kind="mojo", created_at=created_at)


def register_fake(models: Path, trained: TrainedModel):
    return register(models, trained, feature_hash="f" * 64, training_table="/lake/training_set",
                    training_version=3, run_id="run-1", engine="dask")


def test_registry_resolves_latest_by_creation_time_and_by_id(tmp_path):
    t0 = datetime(2025, 6, 1, tzinfo=timezone.utc)
    models = tmp_path / "models"
    # Registered newest first: "latest" must follow created_at, not registration order.
    newer = register_fake(models, fake_model(tmp_path, "m-new", t0 + timedelta(hours=1)))
    older = register_fake(models, fake_model(tmp_path, "m-old", t0))
    assert resolve(models, "latest") == newer
    assert resolve(models, "m-old") == older
    assert older.artifact_path == models / "m-old" / "model.mojo"
    assert older.artifact_path.read_bytes() == b"not really a mojo"
    meta = json.loads((models / "m-old" / "meta.json").read_text())
    assert meta["training_version"] == 3 and meta["artifact"] == "model.mojo"
    assert meta["engine"] == "dask" and meta["features"] == ["a", "b"]


def test_unknown_model_id_is_a_conf_error_listing_the_registered_ones(tmp_path):
    models = tmp_path / "models"
    register_fake(models, fake_model(tmp_path, "m-1", datetime(2025, 6, 1, tzinfo=timezone.utc)))
    with pytest.raises(ConfError, match=r"'m-2' is not registered in .*models.*: m-1"):
        resolve(models, "m-2")


def test_resolving_in_an_empty_registry_says_to_train_first(tmp_path):
    with pytest.raises(ConfError, match="no model is registered .* run the train job first"):
        resolve(tmp_path / "models", "latest")


def test_a_registered_model_cannot_be_registered_again(tmp_path):
    trained = fake_model(tmp_path, "m-1", datetime(2025, 6, 1, tzinfo=timezone.utc))
    register_fake(tmp_path / "models", trained)
    with pytest.raises(ConfError, match="already registered"):
        register_fake(tmp_path / "models", trained)


def test_trained_models_register_with_their_artifacts(h2o_model, mllib_model, tmp_path):
    from engine.training.mllib_trainer import model_features
    from pyspark.ml import PipelineModel

    models = tmp_path / "models"
    for trained, engine in ((h2o_model, "dask"), (mllib_model, "spark")):
        register(models, trained, feature_hash="h", training_table="t", training_version=1,
                 run_id="r", engine=engine)
    latest = resolve(models, "latest")
    assert latest.model_id == max((h2o_model, mllib_model), key=lambda m: m.created_at).model_id
    mojo = resolve(models, h2o_model.model_id)
    assert mojo.kind == "mojo" and mojo.artifact_path.is_file()
    assert mojo.metrics == pytest.approx(h2o_model.metrics)
    pipeline = resolve(models, mllib_model.model_id)
    assert pipeline.kind == "mllib" and pipeline.artifact_path.is_dir()
    assert model_features(PipelineModel.load(str(pipeline.artifact_path))) == tuple(FEATURES)



# --- metrics -----------------------------------------------------------------------------------


def test_roc_auc_counts_ties_as_half_and_is_nan_for_one_class():
    assert roc_auc([0, 1, 0, 1], [0.1, 0.4, 0.5, 0.8]) == 0.75
    assert roc_auc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == 0.5
    assert np.isnan(roc_auc([1, 1], [0.2, 0.3]))


def test_logloss_clips_certain_wrong_predictions_to_a_finite_loss():
    assert logloss([1, 0], [0.5, 0.5]) == pytest.approx(np.log(2))
    assert np.isfinite(logloss([1, 0], [0.0, 1.0]))
