"""MOJO scoring equals H2O's own predictions, on Spark (in the executors' JVMs) and Dask
(JPype), for every supported model type and category (score, label and class probabilities),
with missing values, levels the model never saw and a missing feature column; bad input is
refused before any job runs."""

from __future__ import annotations

import os

os.environ.setdefault("LAKESCORE_TEST_H2O_PORT", "54341")

import subprocess  # noqa: E402
import sys  # noqa: E402
import zipfile  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from engine.errors import DefinitionError, EnvironmentProblem, ModelMismatch  # noqa: E402
from engine.scoring.jars import scorer_jars  # noqa: E402
from engine.scoring.mojo import OutputColumn, output_columns, read_mojo_info  # noqa: E402

TOLERANCE = 1e-9
REPO = Path(__file__).resolve().parents[1]
FEATURES = ["x1", "x2", "x3", "segment", "region"]


@pytest.fixture(scope="module", autouse=True)
def built_jars():
    """The scorer jar as `make setup` builds it (a no-op when up to date)."""
    done = subprocess.run(["bash", str(REPO / "scripts" / "build_scorer.sh"), sys.executable],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return scorer_jars()


def make_frame(n: int, seed: int, scoring: bool) -> pd.DataFrame:
    """Numbers with NaN, two string categoricals (one of integer codes) with nulls.

    At scoring time both categoricals also hold levels never seen in training.
    """
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "x1": rng.normal(size=n),
        "x2": rng.exponential(size=n) * 100,
        "x3": rng.integers(0, 50, size=n).astype("float64"),
        "segment": rng.choice(["a", "b", "c", "d"], size=n).astype(object),
        "region": rng.integers(0, 6, size=n).astype(str).astype(object),
    })
    frame.loc[rng.random(n) < 0.05, "x1"] = np.nan
    frame.loc[rng.random(n) < 0.03, "segment"] = None
    if scoring:
        frame.loc[frame.index[::17], "segment"] = "never-seen"
        frame.loc[frame.index[::23], "region"] = "9"
        frame.loc[frame.index[5::29], "region"] = None
    logit = (0.8 * frame["x1"].fillna(0) - 0.01 * frame["x2"] + (frame["segment"] == "b") * 1.2
             + (frame["region"] == "2") * 0.7)
    frame["y_bin"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    frame["y_reg"] = logit + rng.normal(scale=0.3, size=n)
    noisy = logit + rng.normal(scale=0.8, size=n)
    frame["y_multi"] = np.select([noisy < -0.6, noisy < 0.4], ["low", "mid"], "high risk").astype(object)
    frame.insert(0, "row_id", np.arange(n, dtype="int64"))
    return frame


MODELS = {
    "gbm_binomial": ("H2OGradientBoostingEstimator", "y_bin", dict(ntrees=20, max_depth=5, seed=1)),
    "gbm_multinomial": ("H2OGradientBoostingEstimator", "y_multi", dict(ntrees=10, max_depth=4, seed=1)),
    "gbm_regression": ("H2OGradientBoostingEstimator", "y_reg", dict(ntrees=20, max_depth=5, seed=1)),
    "glm_binomial": ("H2OGeneralizedLinearEstimator", "y_bin", dict(family="binomial", seed=1)),
    "glm_multinomial": ("H2OGeneralizedLinearEstimator", "y_multi", dict(family="multinomial", seed=1)),
    "glm_regression": ("H2OGeneralizedLinearEstimator", "y_reg", dict(family="gaussian", seed=1)),
    "drf_binomial": ("H2ORandomForestEstimator", "y_bin", dict(ntrees=15, max_depth=8, seed=1)),
    "drf_multinomial": ("H2ORandomForestEstimator", "y_multi", dict(ntrees=10, max_depth=6, seed=1)),
    "drf_regression": ("H2ORandomForestEstimator", "y_reg", dict(ntrees=15, max_depth=8, seed=1)),
    # Trees deeper than TreeWalk lays out complete (12 levels): walked by child pointers.
    "drf_deep": ("H2ORandomForestEstimator", "y_reg", dict(ntrees=4, max_depth=24, seed=1)),
}
SCORING_PATH = {"gbm_binomial": "complete", "gbm_multinomial": "complete", "drf_binomial": "complete",
                "drf_deep": "pointers", "glm_regression": "genmodel"}
# Models also checked on a frame without the feature column x2 (H2O scores it as all-NA).
WITHOUT_X2 = ("gbm_binomial", "glm_multinomial", "drf_regression")


def expected_outputs(predicted: pd.DataFrame, label: str) -> dict[str, np.ndarray]:
    """H2O ``predict``'s frame as the scorers' output columns (see ``output_columns``)."""
    if label == "y_reg":
        return {"score": predicted["predict"].to_numpy(dtype="float64")}
    labels = predicted["predict"].astype(str).to_numpy(dtype=object)
    if label == "y_bin":
        return {"score": predicted["p1"].to_numpy(dtype="float64"), "prediction": labels}
    levels = ["high risk", "low", "mid"]
    probabilities = predicted[levels].to_numpy(dtype="float64")
    chosen = probabilities[np.arange(len(predicted)), [levels.index(v) for v in labels]]
    return {"score": chosen, "prediction": labels, "p_high_risk": probabilities[:, 0],
            "p_low": probabilities[:, 1], "p_mid": probabilities[:, 2]}


@pytest.fixture(scope="module")
def trained(h2o_cluster, tmp_path_factory):
    """Each model type trained once; its MOJO and H2O's predictions on a fresh scoring frame
    (and, for ``WITHOUT_X2``, on that frame without x2)."""
    import h2o
    from h2o import estimators

    train = make_frame(3000, seed=1, scoring=False)
    score = make_frame(2000, seed=2, scoring=True)
    directory = tmp_path_factory.mktemp("mojos")
    # Through Parquet, as lakescore's trainer hands data to H2O: nulls arrive as NA (H2OFrame's
    # pandas upload does not turn None into NA).
    train.to_parquet(directory / "train.parquet")
    score.to_parquet(directory / "score.parquet")
    score.drop(columns="x2").to_parquet(directory / "score_without_x2.parquet")
    train_hf = h2o.import_file(str(directory / "train.parquet"))
    train_hf["y_bin"] = train_hf["y_bin"].asfactor()
    score_hf = h2o.import_file(str(directory / "score.parquet"))
    without_x2_hf = h2o.import_file(str(directory / "score_without_x2.parquet"))
    assert train_hf["segment"].isfactor()[0] and train_hf["region"].isfactor()[0]
    assert train_hf["y_multi"].isfactor()[0]
    assert sorted(train_hf["y_multi"].levels()[0]) == ["high risk", "low", "mid"]
    assert score_hf["segment"].isna().sum() > 0 and score_hf["region"].isna().sum() > 0
    out, without_x2 = {}, {}
    for name, (cls, label, params) in MODELS.items():
        model = getattr(estimators, cls)(**params)
        model.train(x=FEATURES, y=label, training_frame=train_hf)
        mojo = model.download_mojo(str(directory / f"{name}.zip"))
        predicted = model.predict(score_hf).as_data_frame(use_multi_thread=False)
        out[name] = (mojo, expected_outputs(predicted, label))
        if name in WITHOUT_X2:
            predicted = model.predict(without_x2_hf).as_data_frame(use_multi_thread=False)
            without_x2[name] = expected_outputs(predicted, label)
    return score, out, without_x2


def scored_with(engine_name, frame, mojo, request, keep=("row_id",), npartitions=3,
                **options) -> pd.DataFrame:
    """The engine's scorer's output over ``frame``, as pandas sorted by row_id."""
    if engine_name == "spark":
        from engine.scoring.spark import score_mojo_spark

        spark = request.getfixturevalue("spark")
        scored = score_mojo_spark(spark.createDataFrame(frame), mojo, list(keep), **options).toPandas()
    else:
        import dask.dataframe as dd

        from engine.scoring.dask import score_mojo_dask

        scored = score_mojo_dask(dd.from_pandas(frame, npartitions=npartitions), mojo, list(keep),
                                 **options).compute()
    return scored.sort_values("row_id").reset_index(drop=True)


def score_with(engine_name, frame, mojo, request, keep=("row_id",), npartitions=3):
    """Scores sorted by row_id, from the engine's scorer over ``frame``."""
    return scored_with(engine_name, frame, mojo, request, keep, npartitions)["score"].to_numpy()


def assert_outputs_equal(scored: pd.DataFrame, expected: dict[str, np.ndarray]) -> None:
    assert list(scored.columns) == ["row_id", *expected]
    for name, values in expected.items():
        if values.dtype == object:
            assert scored[name].astype(str).tolist() == values.tolist(), name
        else:
            got = scored[name].to_numpy(dtype="float64")
            assert len(got) == len(values) and not np.isnan(got).any(), name
            assert np.max(np.abs(got - values)) <= TOLERANCE, name


@pytest.mark.parametrize("model_name", list(MODELS))
def test_outputs_equal_h2o_predict_with_missing_values_and_unseen_levels(engine_name, model_name,
                                                                         trained, request):
    frame, models, _ = trained
    mojo, expected = models[model_name]
    assert_outputs_equal(scored_with(engine_name, frame, mojo, request), expected)


@pytest.mark.parametrize("model_name", WITHOUT_X2)
def test_missing_feature_column_scores_as_h2o_predict_does_with_a_warning(engine_name, model_name,
                                                                           trained, request, caplog):
    frame, models, without_x2 = trained
    mojo = models[model_name][0]
    with caplog.at_level("WARNING", logger="engine.scoring.mojo"):
        scored = scored_with(engine_name, frame.drop(columns="x2"), mojo, request)
    assert_outputs_equal(scored, without_x2[model_name])
    warning = " ".join(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert "['x2']" in warning and mojo in warning
    # Scoring without x2 is not scoring with it: the check above compares different numbers.
    assert np.max(np.abs(scored["score"].to_numpy() - models[model_name][1]["score"])) > 1e-6


def test_unseen_level_scores_like_a_missing_value(engine_name, trained, request):
    frame, models, _ = trained
    rows = frame.iloc[:40].copy()
    unseen, missing = rows.copy(), rows.copy()
    unseen["segment"], missing["segment"] = "never-seen", None
    mojo = models["gbm_binomial"][0]
    assert np.array_equal(score_with(engine_name, unseen, mojo, request, npartitions=1),
                          score_with(engine_name, missing, mojo, request, npartitions=1))


def test_column_order_and_extra_columns_do_not_change_scores(engine_name, trained, request):
    frame, models, _ = trained
    mojo, expected = models["glm_binomial"][0], models["glm_binomial"][1]["score"]
    shuffled = frame.assign(extra=1.5)[["extra", "region", "segment", "row_id", "x3", "x2", "x1"]]
    assert np.max(np.abs(score_with(engine_name, shuffled, mojo, request) - expected)) <= TOLERANCE


def test_output_keeps_only_the_requested_columns_plus_a_double_score(engine_name, trained, request):
    frame, models, _ = trained
    mojo = models["gbm_regression"][0]
    if engine_name == "spark":
        from engine.scoring.spark import score_mojo_spark

        scored = score_mojo_spark(request.getfixturevalue("spark").createDataFrame(frame), mojo,
                                  ["row_id", "segment"], output="p")
        assert [(f.name, f.dataType.simpleString()) for f in scored.schema.fields] == [
            ("row_id", "bigint"), ("segment", "string"), ("p", "double")]
    else:
        import dask.dataframe as dd

        from engine.scoring.dask import score_mojo_dask

        scored = score_mojo_dask(dd.from_pandas(frame, npartitions=2), mojo, ["row_id", "segment"], output="p")
        assert list(scored.columns) == ["row_id", "segment", "p"]
        assert scored.dtypes["p"] == np.float64 and scored.dtypes["row_id"] == np.int64
        assert len(scored.compute()) == len(frame)


def test_kept_columns_of_every_common_type_pass_through_unchanged(engine_name, trained, request):
    """Kept values cross the scorer's blocks of rows (a partial last block included) intact:
    text with nulls, timestamps, 32-bit integers, nullable 64-bit integers and doubles."""
    frame, models, _ = trained
    n = len(frame)
    extra = pd.DataFrame({
        "key": pd.Series([None if i % 7 == 0 else f"k{i}" for i in range(n)], dtype=object),
        "as_of": pd.Timestamp("2025-03-01", tz="UTC") + pd.to_timedelta(np.arange(n), unit="s"),
        "small": np.arange(n, dtype="int32") * 3,
        "big": pd.array([None if i % 5 == 0 else i * 1_000_000_007 for i in range(n)], dtype="Int64"),
        "ratio": np.linspace(-1, 1, n),
    })
    keep = ["row_id", *extra.columns]
    with_extra = pd.concat([frame, extra], axis=1)
    scored = scored_with(engine_name, with_extra, models["gbm_binomial"][0], request, keep=keep)
    assert len(scored) == n
    for name in keep:
        got, want = scored[name].tolist(), with_extra[name].tolist()
        if name == "as_of":
            got = [pd.Timestamp(v).tz_localize("UTC") if pd.Timestamp(v).tzinfo is None else pd.Timestamp(v)
                   for v in got]
        got = [None if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)) else v for v in got]
        want = [None if v is None or v is pd.NA else v for v in want]
        assert got == want, name
    assert np.max(np.abs(scored["score"].to_numpy() - models["gbm_binomial"][1]["score"])) <= TOLERANCE


def test_missing_feature_column_is_refused_naming_it_when_asked(engine_name, trained, request):
    frame, models, _ = trained
    with pytest.raises(ModelMismatch, match=r"lacks the column\(s\) \['x2'\] that the model .*gbm_binomial"):
        scored_with(engine_name, frame.drop(columns="x2"), models["gbm_binomial"][0], request,
                    missing_columns="error")


def test_string_column_for_a_numeric_feature_is_refused_naming_it(engine_name, trained, request):
    frame, models, _ = trained
    with pytest.raises(ModelMismatch, match=r"x3 \(string, the model wants numbers\)"):
        score_with(engine_name, frame.assign(x3=frame["x3"].astype(str)), models["drf_binomial"][0], request)


def test_numeric_codes_for_a_categorical_feature_are_refused_as_h2o_refuses_them(engine_name, trained,
                                                                                request):
    frame, models, _ = trained
    codes = pd.to_numeric(frame["region"], errors="coerce")
    with pytest.raises(ModelMismatch, match=r"region \(numeric, the model wants strings\)"):
        score_with(engine_name, frame.assign(region=codes), models["gbm_binomial"][0], request)


def test_score_column_that_is_also_kept_is_refused(engine_name, trained, request):
    frame, models, _ = trained
    with pytest.raises(DefinitionError, match=r"output column\(s\) \['score'\] .* are also columns to keep"):
        score_with(engine_name, frame.assign(score=0.0), models["gbm_binomial"][0], request,
                   keep=("row_id", "score"))


def test_scorer_class_not_on_the_classpath_is_an_environment_problem_telling_to_run_make_setup(spark):
    from engine.scoring.spark import scorer_class

    assert scorer_class(spark) is not None
    with pytest.raises(EnvironmentProblem, match="ai.lakescore.NoSuchScorer.*make setup"):
        scorer_class(spark, class_name="ai.lakescore.NoSuchScorer")


def test_a_mojo_that_a_worker_cannot_read_is_an_environment_problem_naming_the_worker(engine_name, trained,
                                                                                      request, tmp_path):
    """The score job's preflight (``require_scorer``) has every executor / worker read each MOJO
    with genmodel in its own JVM before anything is computed: the trained MOJO passes; a
    truncated copy is named with the side that failed and genmodel's error."""
    if engine_name == "spark":
        from engine.backends.spark import SparkBackend

        backend, side = SparkBackend(request.getfixturevalue("spark")), "executor driver (JVM)"
    else:
        from engine.backends.dask import DaskBackend

        backend, side = DaskBackend(request.getfixturevalue("dask_cluster_client")), "worker tcp://127.0.0.1:"
    _, models, _ = trained
    mojo = models["gbm_binomial"][0]
    backend.require_scorer([mojo])
    damaged = tmp_path / "damaged.zip"
    damaged.write_bytes(Path(mojo).read_bytes()[:4000])
    with pytest.raises(EnvironmentProblem) as raised:
        backend.require_scorer([str(damaged)])
    message = str(raised.value)
    assert f"{side}" in message and "MOJO damaged.zip expected" in message and "read by genmodel" in message, message
    assert "java.util.zip.ZipException" in message, message  # genmodel's own error
    assert "room on its disk" in message, message


def test_output_columns_are_known_from_the_mojo_alone(trained):
    _, models, _ = trained
    assert output_columns(read_mojo_info(models["glm_regression"][0])) == (OutputColumn("score", "double"),)
    assert output_columns(read_mojo_info(models["drf_binomial"][0]), "p") == (
        OutputColumn("p", "double"), OutputColumn("prediction", "string"))
    info = read_mojo_info(models["gbm_multinomial"][0])
    assert info.response_domain == ("high risk", "low", "mid")
    assert [(c.name, c.type) for c in output_columns(info)] == [
        ("score", "double"), ("prediction", "string"), ("p_high_risk", "double"), ("p_low", "double"),
        ("p_mid", "double")]
    binomial = read_mojo_info(models["gbm_binomial"][0])
    assert binomial.response_domain == ("0", "1") and 0 < binomial.default_threshold < 1


def test_probability_columns_of_levels_with_the_same_safe_name_get_their_index(trained):
    from dataclasses import replace

    info = replace(read_mojo_info(trained[1]["gbm_multinomial"][0]), response_domain=("a b", "a-b", "c"))
    assert [c.name for c in output_columns(info)][2:] == ["p_a_b_0", "p_a_b_1", "p_c"]


def test_classifier_outputs_have_the_same_types_on_both_engines(engine_name, trained, request):
    frame, models, _ = trained
    mojo = models["drf_multinomial"][0]
    if engine_name == "spark":
        from engine.scoring.spark import score_mojo_spark

        scored = score_mojo_spark(request.getfixturevalue("spark").createDataFrame(frame), mojo, ["row_id"])
        assert [(f.name, f.dataType.simpleString()) for f in scored.schema.fields] == [
            ("row_id", "bigint"), ("score", "double"), ("prediction", "string"), ("p_high_risk", "double"),
            ("p_low", "double"), ("p_mid", "double")]
    else:
        import dask.dataframe as dd

        from engine.scoring.dask import score_mojo_dask

        scored = score_mojo_dask(dd.from_pandas(frame, npartitions=2), mojo, ["row_id"])
        types = ["int64", "float64", "string", "float64", "float64", "float64"]
        assert [str(t) for t in scored.dtypes] == types
        assert [str(t) for t in scored.compute().dtypes] == types


def test_java_scorer_takes_levels_as_strings_or_domain_indices(dask_cluster_client, trained):
    """``MojoScorer.scoreColumns`` gives one score whatever form a categorical arrives in."""
    frame, models, _ = trained
    mojo, expected = models["gbm_binomial"][0], models["gbm_binomial"][1]["score"]
    info = read_mojo_info(mojo)

    def score_two_ways(batch: pd.DataFrame) -> list[np.ndarray]:
        import jpype

        from engine.scoring.dask import _scorer, encode_levels

        scorer = _scorer()

        def doubles(name):
            return jpype.JArray(jpype.JDouble)(batch[name].to_numpy(dtype="float64"))

        def strings(name):
            return jpype.JArray(jpype.JString)([None if v is None else str(v) for v in batch[name]])

        def indices(name):
            return jpype.JArray(jpype.JInt)(encode_levels(batch[name], info.domains[name]))

        names = jpype.JArray(jpype.JString)(["x1", "x2", "x3", "segment", "region"])
        out = []
        for levels in (strings, indices):
            columns = jpype.JArray(jpype.JObject)([doubles("x1"), doubles("x2"), doubles("x3"),
                                                   levels("segment"), levels("region")])
            out.append(np.asarray(scorer.scoreColumns(mojo, names, columns)))
        return out

    by_strings, by_indices = dask_cluster_client.submit(score_two_ways, frame, pure=False).result()
    assert np.max(np.abs(by_strings - expected)) <= TOLERANCE
    assert np.array_equal(by_strings, by_indices)


@pytest.mark.parametrize("model_name", [m for m in MODELS if not m.startswith("glm")])
def test_tree_walk_is_bit_identical_to_genmodel_score0(dask_cluster_client, trained, model_name):
    """The fast tree walk gives every output of every row exactly as genmodel's own score0."""
    frame, models, _ = trained
    mojo = models[model_name][0]
    info = read_mojo_info(mojo)

    def both_ways(batch: pd.DataFrame) -> list[np.ndarray]:
        import jpype

        from engine.scoring.dask import _scorer, encode_levels

        scorer = _scorer()  # starts this worker's JVM, which JArray needs
        columns = [jpype.JArray(jpype.JInt)(encode_levels(batch[name], info.domains[name]))
                   if name in info.domains
                   else jpype.JArray(jpype.JDouble)(batch[name].to_numpy(dtype="float64"))
                   for name in info.feature_names]
        args = (mojo, jpype.JArray(jpype.JString)(list(info.feature_names)),
                jpype.JArray(jpype.JObject)(columns))
        return [np.asarray([np.asarray(column) for column in scorer.scoreOutputs(*args, walk)])
                for walk in (True, False)]

    walked, genmodel = dask_cluster_client.submit(both_ways, frame, pure=False).result()
    assert walked.shape == (len(output_columns(info)), len(frame))
    assert np.array_equal(walked, genmodel)


@pytest.mark.parametrize("model_name", list(SCORING_PATH))
def test_each_model_is_scored_by_the_expected_path(dask_cluster_client, trained, model_name):
    """The bit-identity test above covers both tree layouts only if each is actually used."""
    mojo = trained[1][model_name][0]

    def scoring_path() -> str:
        from engine.scoring.dask import _scorer

        return str(_scorer().scoringPath(mojo))

    assert dask_cluster_client.submit(scoring_path, pure=False).result().startswith(SCORING_PATH[model_name])


def test_numeric_na_vs_rest_splits_score_as_genmodel_and_h2o_do(dask_cluster_client, h2o_cluster, spark,
                                                                tmp_path):
    """When missingness itself predicts the label, H2O splits "NA vs rest" on a numeric column;
    the walk sends those rows (and actual infinities) exactly where genmodel and H2O do."""
    import h2o
    from h2o.estimators import H2OGradientBoostingEstimator

    rng = np.random.default_rng(7)
    n = 4000
    frame = pd.DataFrame({"m": rng.normal(size=n), "z": rng.normal(size=n)})
    missing = rng.random(n) < 0.3
    frame.loc[missing, "m"] = np.nan
    # Rows missing m are all positive: a pure NA side is what makes H2O split "NA vs rest".
    frame["y"] = np.where(missing, True, rng.random(n) < 0.1 + 0.2 * (frame["z"] > 0)).astype(int)
    frame.to_parquet(tmp_path / "train.parquet")
    train = h2o.import_file(str(tmp_path / "train.parquet"))
    train["y"] = train["y"].asfactor()
    model = H2OGradientBoostingEstimator(ntrees=10, max_depth=4, seed=1)
    model.train(x=["m", "z"], y="y", training_frame=train)
    mojo = model.download_mojo(str(tmp_path / "na_vs_rest.zip"))
    score = frame[["m", "z"]].copy()
    score.loc[::97, "m"] = np.inf
    score.loc[5::101, "m"] = -np.inf
    score.to_parquet(tmp_path / "score.parquet")
    expected = model.predict(h2o.import_file(str(tmp_path / "score.parquet"))).as_data_frame(
        use_multi_thread=False)["p1"].to_numpy(dtype="float64")

    def both_ways() -> tuple[str, list[np.ndarray]]:
        import jpype

        from engine.scoring.dask import _scorer

        scorer = _scorer()  # starts this worker's JVM, which JArray needs
        args = (mojo, jpype.JArray(jpype.JString)(["m", "z"]), jpype.JArray(jpype.JObject)(
            [jpype.JArray(jpype.JDouble)(score[name].to_numpy(dtype="float64")) for name in ("m", "z")]))
        return (str(scorer.scoringPath(mojo)),
                [np.asarray([np.asarray(c) for c in scorer.scoreOutputs(*args, walk)]) for walk in (True, False)])

    path, (walked, genmodel) = dask_cluster_client.submit(both_ways, pure=False).result()
    assert "complete layout" in path and " 0 numeric NA-vs-rest" not in path, path
    assert np.array_equal(walked, genmodel)
    # H2O scores an infinity imported from Parquet as a missing value, so H2O is compared on finite rows;
    # genmodel, which the walk equals above, keeps infinities as numbers.
    finite = ~np.isinf(score["m"].to_numpy())
    assert np.max(np.abs(walked[0][finite] - expected[finite])) <= TOLERANCE
    # Spark reads an all-double frame on its own fast path: NaN and null are both missing there.
    from pyspark.sql import functions as F

    from engine.scoring.spark import score_mojo_spark

    frame = spark.createDataFrame(score.assign(row_id=np.arange(n)))
    # createDataFrame turns pandas' NaN into null: bring NaN back for every other missing row.
    frame = frame.withColumn("m", F.when(F.col("m").isNull() & (F.col("row_id") % 2 == 0), F.lit(float("nan")))
                             .otherwise(F.col("m")))
    assert frame.where(F.col("m").isNull()).count() > 0 and frame.where(F.isnan("m")).count() > 0
    scored = score_mojo_spark(frame, mojo, ["row_id"]).toPandas().sort_values("row_id")
    assert np.array_equal(scored["score"].to_numpy(), walked[0])


def test_java_scorer_names_the_missing_feature(dask_cluster_client, trained):
    frame, models, _ = trained
    mojo = models["gbm_regression"][0]

    def score_without_x2() -> str:
        import jpype

        from engine.scoring.dask import _scorer

        names = jpype.JArray(jpype.JString)(["x1"])
        columns = jpype.JArray(jpype.JObject)([jpype.JArray(jpype.JDouble)([1.0, 2.0])])
        try:
            _scorer().scoreColumns(mojo, names, columns)
        except Exception as exc:  # noqa: BLE001 - the Java exception surfaces as a JPype type
            return f"{type(exc).__name__}: {exc}"
        return "no error"

    message = dask_cluster_client.submit(score_without_x2, pure=False).result()
    assert "IllegalArgumentException" in message
    assert "[x2, x3, segment, region]" in message


def test_mojo_info_reads_features_and_domains_without_a_jvm(trained):
    _, models, _ = trained
    info = read_mojo_info(models["gbm_binomial"][0])
    assert info.feature_names == tuple(FEATURES)
    assert info.domains == {"segment": ("a", "b", "c", "d"), "region": ("0", "1", "2", "3", "4", "5")}
    assert (info.category, info.response, info.algo) == ("Binomial", "y_bin", "gbm")
    assert read_mojo_info(models["glm_regression"][0]).category == "Regression"


def test_mojo_info_unescapes_domain_values_as_genmodel_does(tmp_path):
    path = tmp_path / "escaped.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("model.ini", "[info]\ncategory = Binomial\nsupervised = true\nn_features = 1\n"
                                      "escape_domain_values = true\n\n[columns]\nc\ny\n\n[domains]\n0: 3 d000.txt\n")
        archive.writestr("domains/d000.txt", "two\\nlines\nback\\\\slash\nplain\u2028text\n")
    assert read_mojo_info(path).domains == {"c": ("two\nlines", "back\\slash", "plain\u2028text")}


def test_a_file_that_is_not_a_mojo_is_a_model_mismatch(tmp_path):
    path = tmp_path / "model.zip"
    path.write_bytes(b"not a zip")
    with pytest.raises(ModelMismatch, match="model.zip"):
        read_mojo_info(path)
