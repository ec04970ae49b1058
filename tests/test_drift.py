"""Drift between the training set and a scoring batch: the same exact PSI and null rates on both
engines as an independent numpy computation; a shifted feature warns, a stable one does not;
the figures land in a Delta metrics table with lineage."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from deltalake import DeltaTable, write_deltalake

from engine.backends.dask import DaskBackend
from engine.backends.spark import SparkBackend
from engine.conf import load_conf
from engine.pipeline import check_drift
from engine.run_context import RunContext
from engine.training.registry import ModelRecord
from engine.policies.drift import EPSILON, bin_edges, measure_drift, population_stability_index

FEATURES = ["shifted", "stable", "nullier", "counts"]


def frames(rows: int = 3000, seed: int = 3) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)

    def batch(shift: float, null_share: float) -> pd.DataFrame:
        frame = pd.DataFrame({
            "customer_id": np.arange(rows, dtype="int64"),
            "shifted": rng.normal(100 + shift, 20, rows),
            "stable": rng.uniform(0, 1, rows),
            "nullier": rng.exponential(5, rows),
            "counts": rng.integers(0, 4, rows).astype("int64"),  # few values: merged edges
        })
        frame.loc[rng.random(rows) < null_share, "nullier"] = np.nan
        return frame

    return batch(0.0, 0.02), batch(30.0, 0.2)


def reference(train: pd.Series, score: pd.Series, bins: int = 10) -> tuple[float, float, float]:
    """PSI and null rates with numpy alone: linear quantiles, ``k`` edges below → bin ``k``."""
    t, s = train.dropna().to_numpy(float), score.dropna().to_numpy(float)
    edges = np.unique(np.quantile(t, [k / bins for k in range(1, bins)]))
    tc = np.bincount(np.searchsorted(edges, t, side="left"), minlength=len(edges) + 1) / len(t)
    sc = np.bincount(np.searchsorted(edges, s, side="left"), minlength=len(edges) + 1) / len(s)
    tc, sc = np.maximum(tc, EPSILON), np.maximum(sc, EPSILON)
    return float(np.sum((sc - tc) * np.log(sc / tc))), train.isna().mean(), score.isna().mean()


def backend_for(engine_name, request):
    if engine_name == "spark":
        return SparkBackend(request.getfixturevalue("spark"))
    return DaskBackend(request.getfixturevalue("dask_cluster_client"), show_progress=False)


def engine_frame(engine_name, request, frame):
    if engine_name == "spark":
        return request.getfixturevalue("spark").createDataFrame(frame)
    import dask.dataframe as dd

    return dd.from_pandas(frame, npartitions=3)


def test_psi_of_identical_histograms_is_zero_and_grows_with_the_shift():
    assert population_stability_index([10, 20, 30], [1, 2, 3]) == 0.0
    small = population_stability_index([50, 50], [45, 55])
    large = population_stability_index([50, 50], [10, 90])
    assert 0 < small < large
    assert large == pytest.approx(0.4 * math.log(0.9 / 0.5) - 0.4 * math.log(0.1 / 0.5))
    assert population_stability_index([0, 0], [1, 1]) is None
    assert bin_edges([1.0, 1.0, None, 2.0]) == [1.0, 2.0]


def test_drift_figures_match_numpy_and_warn_on_the_shifted_feature(engine_name, request, caplog):
    train, score = frames()
    backend = backend_for(engine_name, request)
    with caplog.at_level(logging.WARNING, logger="engine.policies.drift"):
        drifts = measure_drift(backend, engine_frame(engine_name, request, train),
                               engine_frame(engine_name, request, score), FEATURES, bins=10,
                               psi_threshold=0.2, null_rate_threshold=0.05)
    by_feature = {d.feature: d for d in drifts}
    for feature in FEATURES:
        psi, train_nulls, score_nulls = reference(train[feature], score[feature])
        d = by_feature[feature]
        assert d.psi == pytest.approx(psi, rel=1e-9, abs=1e-12), feature
        assert (d.train_null_rate, d.score_null_rate) == pytest.approx((train_nulls, score_nulls))
        assert (d.train_rows, d.score_rows) == (len(train), len(score))
    assert by_feature["shifted"].psi > 1.0 and by_feature["stable"].psi < 0.05
    deciles = np.quantile(train["counts"], [k / 10 for k in range(1, 10)])
    assert by_feature["counts"].bins == len(np.unique(deciles)) + 1 < 10  # repeated edges merged
    assert {d.feature for d in drifts if d.warn} == {"shifted", "nullier"}
    assert "drift in feature shifted" in caplog.text and "drift in feature stable" not in caplog.text


def test_score_stage_writes_drift_figures_with_lineage(engine_name, request, tmp_path):
    train, score = frames(rows=1500)
    conf = load_conf("conf/test.yaml", overrides=[f"lakehouse={tmp_path}"])
    ctx = RunContext.start(conf)
    ctx.output_suffix = engine_name
    training_path = str(tmp_path / "tables" / "training_set_x")
    write_deltalake(training_path, train, mode="overwrite")
    write_deltalake(training_path, train.iloc[:10], mode="overwrite")  # v1: not the trained one
    write_deltalake(ctx.table("scoring_set").path, score, mode="overwrite")
    model = ModelRecord(name="m", version=1, mlflow_run_id="mlflow-run", algorithm="h2o_gbm",
                        kind="mojo", task="binary", features=tuple(FEATURES),
                        label="churned", feature_hash="h", training_table=training_path,
                        training_version=0, metrics={}, created_at="", run_id="r", engine="spark",
                        artifact="model.zip", path=Path(tmp_path))
    result = check_drift(backend_for(engine_name, request), ctx, model)

    table = DeltaTable(ctx.table("drift").path)
    metrics = table.to_pandas().set_index("feature")
    assert result.version == 0 and list(metrics.index) == FEATURES
    psi, _, _ = reference(train["shifted"], score["shifted"])  # the trained version (v0) is used
    assert metrics.loc["shifted", "psi"] == pytest.approx(psi, rel=1e-9)
    assert bool(metrics.loc["shifted", "warn"]) and not bool(metrics.loc["stable", "warn"])
    assert set(metrics["training_table"]) == {"training_set_x@v0"}
    assert set(metrics["scoring_table"]) == {f"scoring_set_{engine_name}@v0"}
    assert set(metrics["run_id"]) == {ctx.run_id} and set(metrics["model_id"]) == {"m/1"}
    commit = table.history(1)[0]
    assert json.loads(commit["lakescore.inputs"]) == {"training_set_x": 0, f"scoring_set_{engine_name}": 0}
    assert commit["lakescore.model_id"] == "m/1" and commit["lakescore.job"] == "drift"
    assert "drift warned: shifted, nullier" in ctx.summary.stages[-1].note
    # The same run scoring the same batch again writes nothing twice.
    again = check_drift(backend_for(engine_name, request), ctx, model)
    assert again.skipped and DeltaTable(ctx.table("drift").path).version() == 0


def categorical_frames(rows: int = 1200) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A string feature (``last(category)``-like) whose scoring batch has a level the training
    set never had, a boolean feature, and a timestamp feature (no drift measure)."""
    levels = np.array(["grocery", "dining", "travel"])
    train = pd.DataFrame({"customer_id": np.arange(rows, dtype="int64"),
                          "category_last_30d": levels[np.arange(rows) % 3],
                          "weekend_last_7d": np.arange(rows) % 2 == 0,
                          "amount_sum_7d": np.linspace(0, 100, rows),
                          "event_time_last_7d": pd.Timestamp("2025-06-01", tz="UTC")})
    train.loc[::10, "category_last_30d"] = None
    score = train.copy()
    score.loc[: rows // 2, "category_last_30d"] = "crypto"  # unseen level
    return train, score


def test_string_features_drift_over_their_levels_with_unseen_levels_as_a_bin(engine_name, request, caplog):
    train, score = categorical_frames()
    backend = backend_for(engine_name, request)
    kinds = {"category_last_30d": "string", "weekend_last_7d": "boolean",
             "amount_sum_7d": "float", "event_time_last_7d": "timestamp"}
    features = list(kinds)
    with caplog.at_level(logging.WARNING, logger="engine.policies.drift"):
        drifts = {d.feature: d for d in measure_drift(
            backend, engine_frame(engine_name, request, train), engine_frame(engine_name, request, score),
            features, bins=10, psi_threshold=0.2, null_rate_threshold=0.05, kinds=kinds)}
    category = drifts["category_last_30d"]
    # Reference: training levels dining/grocery/travel + one bin for anything else.
    t = train["category_last_30d"].dropna().value_counts()
    s = score["category_last_30d"].dropna().value_counts()
    train_hist = [t.get(level, 0) for level in sorted(t.index)] + [0]
    score_hist = [s.get(level, 0) for level in sorted(t.index)] + [s.get("crypto", 0)]
    assert category.bins == 4
    assert category.psi == pytest.approx(population_stability_index(train_hist, score_hist), rel=1e-12)
    assert category.warn and category.psi > 1.0
    assert category.train_null_rate == pytest.approx(0.1) and category.score_null_rate < 0.1
    assert drifts["weekend_last_7d"].bins == 3 and drifts["weekend_last_7d"].psi == 0.0
    assert drifts["amount_sum_7d"].psi == 0.0 and not drifts["amount_sum_7d"].warn
    assert drifts["event_time_last_7d"].psi is None and drifts["event_time_last_7d"].bins == 0
    assert "drift in feature category_last_30d" in caplog.text


def test_drift_never_fails_the_score_stage(engine_name, request, tmp_path, caplog):
    """A string feature is measured (it used to crash the cast to double); a training set that
    cannot be read only leaves a warning and a note: the stage returns, scoring goes on."""
    train, score = categorical_frames(rows=300)
    conf = load_conf("conf/test.yaml", overrides=[f"lakehouse={tmp_path}"])
    ctx = RunContext.start(conf)
    ctx.output_suffix = engine_name
    training_path = str(tmp_path / "tables" / "training_set_x")
    write_deltalake(training_path, train)
    write_deltalake(ctx.table("scoring_set").path, score)
    features = ("category_last_30d", "weekend_last_7d", "amount_sum_7d", "event_time_last_7d")
    model = ModelRecord(name="m", version=1, mlflow_run_id="mlflow-run", algorithm="h2o_gbm",
                        kind="mojo", task="binary", features=features, label="churned",
                        feature_hash="h", training_table=training_path, training_version=0,
                        metrics={}, created_at="", run_id="r", engine="spark",
                        artifact="model.zip", path=Path(tmp_path))
    result = check_drift(backend_for(engine_name, request), ctx, model)
    metrics = DeltaTable(ctx.table("drift").path).to_pandas().set_index("feature")
    assert result.version == 0 and bool(metrics.loc["category_last_30d", "warn"])
    assert ctx.summary.stages[-1].status == "ok"

    gone = dataclasses.replace(model, training_table=str(tmp_path / "no_such_table"))
    with caplog.at_level(logging.WARNING, logger="lakescore"):
        assert check_drift(backend_for(engine_name, request), ctx, gone) is None
    stage = ctx.summary.stages[-1]
    assert (stage.stage, stage.status) == ("drift", "not measured")
    assert "TableNotFound" in stage.note and "drift not measured, scoring goes on" in caplog.text
    assert DeltaTable(ctx.table("drift").path).version() == 0  # nothing written
