"""MOJO scoring equals H2O's own predictions, on Spark (Java UDF) and Dask (JPype), for every
supported model type; bad input is refused before any job runs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from engine.errors import ModelMismatch
from engine.scoring.jars import scorer_jars
from engine.scoring.mojo import read_mojo_info

TOLERANCE = 1e-9


def make_frame(n: int, seed: int, unseen_level: bool) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "x1": rng.normal(size=n),
        "x2": rng.exponential(size=n) * 100,
        "x3": rng.integers(0, 50, size=n).astype("float64"),
        "segment": rng.choice(["a", "b", "c", "d"], size=n),
    })
    frame.loc[rng.random(n) < 0.05, "x1"] = np.nan
    frame.loc[rng.random(n) < 0.03, "segment"] = None
    if unseen_level:
        frame.loc[frame.index[::17], "segment"] = "never-seen"
    logit = 0.8 * frame["x1"].fillna(0) - 0.01 * frame["x2"] + (frame["segment"] == "b") * 1.2
    frame["y_bin"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    frame["y_reg"] = logit + rng.normal(scale=0.3, size=n)
    frame.insert(0, "row_id", np.arange(n, dtype="int64"))
    return frame


MODELS = {
    "gbm_binomial": ("H2OGradientBoostingEstimator", "y_bin", dict(ntrees=20, max_depth=5, seed=1)),
    "gbm_regression": ("H2OGradientBoostingEstimator", "y_reg", dict(ntrees=20, max_depth=5, seed=1)),
    "glm_binomial": ("H2OGeneralizedLinearEstimator", "y_bin", dict(family="binomial", seed=1)),
    "drf_binomial": ("H2ORandomForestEstimator", "y_bin", dict(ntrees=15, max_depth=8, seed=1)),
}


@pytest.fixture(scope="module")
def trained(h2o_cluster, tmp_path_factory):
    """Each model type trained once; its MOJO and H2O's predictions on a fresh scoring frame."""
    import h2o
    from h2o import estimators

    scorer_jars()  # the tests need `make setup`'s jar
    train = make_frame(3000, seed=1, unseen_level=False)
    score = make_frame(2000, seed=2, unseen_level=True)
    features = ["x1", "x2", "x3", "segment"]
    out = {}
    directory = tmp_path_factory.mktemp("mojos")
    # Through Parquet, as lakescore's trainer hands data to H2O: nulls arrive as NA (H2OFrame's
    # pandas upload does not turn None into NA).
    train.to_parquet(directory / "train.parquet")
    score.to_parquet(directory / "score.parquet")
    train_hf = h2o.import_file(str(directory / "train.parquet"))
    train_hf["y_bin"] = train_hf["y_bin"].asfactor()
    score_hf = h2o.import_file(str(directory / "score.parquet"))
    assert train_hf["segment"].isfactor()[0] and score_hf["segment"].isna().sum() > 0
    for name, (cls, label, params) in MODELS.items():
        model = getattr(estimators, cls)(**params)
        model.train(x=features, y=label, training_frame=train_hf)
        mojo = model.download_mojo(str(directory / f"{name}.zip"))
        predicted = model.predict(score_hf).as_data_frame(use_multi_thread=False)
        expected = predicted["p1"] if label == "y_bin" else predicted["predict"]
        out[name] = (mojo, expected.to_numpy(dtype="float64"))
    return score, out


def score_with(engine_name, frame, mojo, spark=None):
    if engine_name == "spark":
        from engine.scoring.spark import score_mojo_spark

        scored = score_mojo_spark(spark.createDataFrame(frame), mojo, ["row_id"]).toPandas()
    else:
        import dask.dataframe as dd

        from engine.scoring.dask import score_mojo_dask

        scored = score_mojo_dask(dd.from_pandas(frame, npartitions=3), mojo, ["row_id"]).compute()
    return scored.sort_values("row_id")["score"].to_numpy()


@pytest.mark.parametrize("model_name", list(MODELS))
def test_scores_equal_h2o_predict(engine_name, model_name, trained, request):
    frame, models = trained
    mojo, expected = models[model_name]
    spark = request.getfixturevalue("spark") if engine_name == "spark" else None
    scores = score_with(engine_name, frame, mojo, spark)
    assert len(scores) == len(expected)
    assert np.nanmax(np.abs(scores - expected)) <= TOLERANCE
    assert not np.isnan(scores).any()


def test_mojo_info_reads_features_and_domains_without_a_jvm(trained):
    _, models = trained
    info = read_mojo_info(models["gbm_binomial"][0])
    assert info.feature_names == ("x1", "x2", "x3", "segment")
    assert info.domains["segment"] == ("a", "b", "c", "d")
    assert info.category == "Binomial"


def test_missing_feature_column_is_refused_naming_it(engine_name, trained, request):
    frame, models = trained
    spark = request.getfixturevalue("spark") if engine_name == "spark" else None
    with pytest.raises(ModelMismatch, match=r"\['x2'\]"):
        score_with(engine_name, frame.drop(columns="x2"), models["gbm_binomial"][0], spark)
