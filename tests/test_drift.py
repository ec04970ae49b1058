"""Drift between the training set and a scoring batch: the same exact PSI and null rates on both
engines as an independent numpy computation; a shifted feature warns, a stable one does not;
the figures land in a Delta metrics table with lineage."""

from __future__ import annotations

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
from engine.pipeline import RunContext, check_drift
from engine.training.registry import ModelRecord
from engine.validation.drift import EPSILON, bin_edges, measure_drift, population_stability_index

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
    with caplog.at_level(logging.WARNING, logger="engine.validation.drift"):
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
