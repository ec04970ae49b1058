"""The Spark MLlib family (GBT, random forest, logistic/linear regression) as one saved
``PipelineModel`` each, with the feature preparation inside it, and scoring with it.

Every pipeline starts with the same preparation, so scoring applies exactly what training did:
string features are indexed (``StringIndexer``, unseen levels kept as one extra index), numeric
features are cast to double. Trees then get missing values as ``MISSING_FILL``: Spark's trees
have no missing-value handling (a NaN fails every ``value <= threshold`` test, so it always goes
right, whatever was learnt), and a value far below any real one puts missing rows on the left of
every split, so a tree can learn what "missing" means, much as H2O routes NAs (features are
assumed to be above ``MISSING_FILL``). A linear model gets instead the mean of the training rows
(``Imputer``) plus a 0/1 missing indicator per numeric feature, one-hot encoded levels, and
standardized inputs.

The validation side's label and prediction are collected (two columns) and scored by the same
metric functions as the H2O family; training-side metrics are computed by Spark.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from engine.errors import ConfError, DefinitionError, ModelMismatch, SchemaMismatch
from engine.training import (DEFAULT_PARAMS, TrainedModel, TrainingData, TrainingSource, TrainSpec,
                             model_id_for, shares, write_evaluation, write_metrics)
from engine.training.metrics import PROBABILITY_EPS, evaluate

if TYPE_CHECKING:
    from pyspark.ml import PipelineModel
    from pyspark.sql import DataFrame

log = logging.getLogger(__name__)

PIPELINE_DIR = "pipeline"
MISSING_FILL = -1.0e9
FILLED_PREFIX = "__ls_filled__"
INDEXED_PREFIX = "__ls_indexed__"
ONEHOT_PREFIX = "__ls_onehot__"
NUMERIC_PREFIX = "__ls_num__"
IMPUTED_PREFIX = "__ls_imputed__"
MISSING_PREFIX = "__ls_missing__"
VECTOR_COLUMN = "__ls_features"
SCALED_COLUMN = "__ls_scaled"
PROBABILITY_COLUMN = "__ls_probability"
PREDICTION_COLUMN = "__ls_prediction"
_PREFIXES = (FILLED_PREFIX, INDEXED_PREFIX, ONEHOT_PREFIX, IMPUTED_PREFIX, MISSING_PREFIX)

# The shared (H2O-style) parameter names and their Spark equivalents, per algorithm.
PARAM_NAMES: dict[str, dict[str, str]] = {
    "mllib_gbt": {"ntrees": "maxIter", "max_depth": "maxDepth", "learn_rate": "stepSize",
                  "seed": "seed", "sample_rate": "subsamplingRate", "min_rows": "minInstancesPerNode",
                  "nbins": "maxBins"},
    "mllib_rf": {"ntrees": "numTrees", "max_depth": "maxDepth", "seed": "seed",
                 "sample_rate": "subsamplingRate", "min_rows": "minInstancesPerNode", "nbins": "maxBins"},
    "mllib_lr": {"lambda": "regParam", "alpha": "elasticNetParam", "max_iterations": "maxIter"},
}
DEFAULTS: dict[str, dict[str, Any]] = {
    "mllib_gbt": dict(DEFAULT_PARAMS),
    "mllib_rf": {"ntrees": 50, "max_depth": 10, "seed": 42},
    "mllib_lr": {"lambda": 0.0, "max_iterations": 100},
}


def _estimator_class(algorithm: str, task: str) -> Any:
    from pyspark.ml import classification as c
    from pyspark.ml import regression as r

    binary = task == "binary"
    return {"mllib_gbt": c.GBTClassifier if binary else r.GBTRegressor,
            "mllib_rf": c.RandomForestClassifier if binary else r.RandomForestRegressor,
            "mllib_lr": c.LogisticRegression if binary else r.LinearRegression}[algorithm]


def estimator_params(algorithm: str, params: Mapping[str, Any] | None, task: str = "binary") -> dict[str, Any]:
    """``DEFAULTS[algorithm]`` overlaid by ``params``, in the Spark estimator's names. A key that
    is neither a shared name nor a parameter of the estimator raises ``ConfError`` listing the
    accepted ones."""
    cls = _estimator_class(algorithm, task)
    names = PARAM_NAMES[algorithm]
    known = {p.name for p in cls().params}
    out = {}
    for key, value in {**DEFAULTS[algorithm], **dict(params or {})}.items():
        name = names.get(key, key)
        if name not in known:
            raise ConfError(f"train.params.{key}: not a parameter of Spark's {cls.__name__}; use one "
                            f"of {sorted(names)} or a {cls.__name__} parameter "
                            f"({', '.join(sorted(known))})")
        out[name] = value
    return out


def _is_string(frame: DataFrame, column: str) -> bool:
    from pyspark.sql import types as T

    return isinstance(frame.schema[column].dataType, T.StringType)


def preparation_stages(frame: DataFrame, features: Sequence[str], linear: bool) -> tuple[list[Any], str]:
    """The feature-preparation stages and the vector column they end in (see the module doc)."""
    from pyspark.ml.feature import (Imputer, OneHotEncoder, SQLTransformer, StandardScaler,
                                    StringIndexer, VectorAssembler)

    strings = [f for f in features if _is_string(frame, f)]
    numbers = [f for f in features if f not in strings]
    stages: list[Any] = []
    if strings:
        stages.append(StringIndexer(inputCols=strings, outputCols=[INDEXED_PREFIX + f for f in strings],
                                    handleInvalid="keep", stringOrderType="alphabetAsc"))

    def missing(f: str) -> str:
        return f"`{f}` IS NULL OR isnan(CAST(`{f}` AS DOUBLE))"

    if linear:
        exprs = [f"CASE WHEN {missing(f)} THEN CAST('NaN' AS DOUBLE) ELSE CAST(`{f}` AS DOUBLE) END "
                 f"AS `{NUMERIC_PREFIX}{f}`, CASE WHEN {missing(f)} THEN 1.0 ELSE 0.0 END "
                 f"AS `{MISSING_PREFIX}{f}`" for f in numbers]
        inputs: list[str] = []
        if numbers:
            stages.append(SQLTransformer(statement=f"SELECT *, {', '.join(exprs)} FROM __THIS__"))
            stages.append(Imputer(strategy="mean", inputCols=[NUMERIC_PREFIX + f for f in numbers],
                                  outputCols=[IMPUTED_PREFIX + f for f in numbers]))
        if strings:
            stages.append(OneHotEncoder(inputCols=[INDEXED_PREFIX + f for f in strings],
                                        outputCols=[ONEHOT_PREFIX + f for f in strings],
                                        handleInvalid="keep"))
        for f in features:
            inputs += ([ONEHOT_PREFIX + f] if f in strings else [IMPUTED_PREFIX + f, MISSING_PREFIX + f])
        stages.append(VectorAssembler(inputCols=inputs, outputCol=VECTOR_COLUMN, handleInvalid="keep"))
        stages.append(StandardScaler(inputCol=VECTOR_COLUMN, outputCol=SCALED_COLUMN,
                                     withMean=True, withStd=True))
        return stages, SCALED_COLUMN
    if numbers:
        filled = ", ".join(f"CASE WHEN {missing(f)} THEN {MISSING_FILL!r} ELSE CAST(`{f}` AS DOUBLE) END "
                           f"AS `{FILLED_PREFIX}{f}`" for f in numbers)
        stages.append(SQLTransformer(statement=f"SELECT *, {filled} FROM __THIS__"))
    inputs = [(INDEXED_PREFIX if f in strings else FILLED_PREFIX) + f for f in features]
    stages.append(VectorAssembler(inputCols=inputs, outputCol=VECTOR_COLUMN, handleInvalid="keep"))
    return stages, VECTOR_COLUMN


def _owner(slot: str, features: Sequence[str]) -> str | None:
    """The feature a prepared column (or one-hot slot ``column_level``) comes from."""
    for prefix in _PREFIXES:
        if slot.startswith(prefix):
            rest = slot[len(prefix):]
            matches = [f for f in features if rest == f or rest.startswith(f + "_")]
            return max(matches, key=len) if matches else None
    return None


def model_features(model: PipelineModel) -> tuple[str, ...]:
    """The feature columns a pipeline saved by ``MllibTrainer`` reads, in order."""
    from pyspark.ml.feature import VectorAssembler

    assembler = next(s for s in model.stages if isinstance(s, VectorAssembler))
    names: list[str] = []
    for column in assembler.getInputCols():
        for prefix in _PREFIXES:
            if column.startswith(prefix):
                names.append(column[len(prefix):])
                break
    return tuple(dict.fromkeys(names))


def _probability_of_one(frame: DataFrame, output: str) -> DataFrame:
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as F

    return frame.withColumn(output, vector_to_array(F.col(PROBABILITY_COLUMN))[1].cast("double"))


def _output(frame: DataFrame, output: str) -> DataFrame:
    """``output``: P(1) of a classifier, the prediction of a regressor."""
    from pyspark.sql import functions as F

    if PROBABILITY_COLUMN in frame.columns:
        return _probability_of_one(frame, output)
    return frame.withColumn(output, F.col(PREDICTION_COLUMN).cast("double"))


def _train_side_metrics(predictions: DataFrame, label: str, task: str) -> dict[str, float]:
    """Training-side metrics computed by Spark (the training side can be large)."""
    from pyspark.ml.evaluation import BinaryClassificationEvaluator, RegressionEvaluator
    from pyspark.sql import functions as F

    if task != "binary":
        rmse = RegressionEvaluator(labelCol=label, predictionCol=PREDICTION_COLUMN,
                                   metricName="rmse").evaluate(predictions)
        return {"train_rmse": float(rmse)}
    # numBins=0: the exact curve; a binned one depends on how the rows are partitioned.
    auc = BinaryClassificationEvaluator(labelCol=label, rawPredictionCol=PROBABILITY_COLUMN,
                                        metricName="areaUnderROC", numBins=0).evaluate(predictions)
    p = F.least(F.greatest(F.col("__p"), F.lit(PROBABILITY_EPS)), F.lit(1 - PROBABILITY_EPS))
    y = F.col(label)
    loss = _probability_of_one(predictions, "__p").select(
        F.avg(-(y * F.log(p) + (1 - y) * F.log(1 - p))).alias("logloss")).first()[0]
    return {"train_auc": float(auc), "train_logloss": float(loss)}


def _collect(predictions: DataFrame, label: str) -> tuple[np.ndarray, np.ndarray]:
    """(labels, predictions) of the evaluated rows, in a deterministic order."""
    rows = _output(predictions, "__p").select(label, "__p").toPandas()
    return rows[label].to_numpy(dtype="float64"), rows["__p"].to_numpy(dtype="float64")


@dataclass(frozen=True)
class MllibTrainer:
    """GBT, random forest or logistic/linear regression as one Spark ``PipelineModel``.

    Reads ``data.frame`` (a Spark DataFrame of the training set), so it needs the Spark backend."""

    algorithm: str
    family: Literal["h2o", "mllib"] = "mllib"

    def training_data(self, source: TrainingSource) -> TrainingData:
        """The engine's (Spark's) frame of the training set, beside its files."""
        return TrainingData(source.files, source.frame())

    def train(self, data: TrainingData, spec: TrainSpec, out_dir: Path) -> TrainedModel:
        if data.frame is None:
            raise DefinitionError(f"{self.algorithm} trains on a Spark DataFrame of the training set; "
                                  "none was given")
        return train_mllib(self.algorithm, data.frame, spec, out_dir)


def train_mllib(algorithm: str, df: DataFrame, spec: TrainSpec, out_dir: Path) -> TrainedModel:
    """Fit the pipeline on rows with ``time_column < split.valid_from``; validate on the rest.

    Saves the fitted ``PipelineModel`` to ``out_dir/pipeline`` (overwriting), ``metrics.json``
    and ``evaluation.json``. A binary label must hold only 0 and 1. Raises ``SchemaMismatch``
    for missing columns, ``DefinitionError`` for an empty split side or a bad label,
    ``ConfError`` for an unknown parameter.
    """
    from pyspark.sql import functions as F

    if algorithm not in DEFAULTS:
        raise ConfError(f"train.algorithm {algorithm!r} is not an MLlib algorithm ({', '.join(DEFAULTS)})")
    features, label, task = tuple(spec.features), spec.label, spec.task
    table = "training set (Spark DataFrame)"
    needed = (*features, label, spec.time_column, *([spec.group_column] if spec.folds else []))
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise SchemaMismatch(f"{table} lacks the column(s) {missing} needed for training "
                             f"(it has {sorted(df.columns)})")
    if spec.folds == 1 or spec.folds < 0:
        raise ConfError(f"train.folds must be 0 (off) or at least 2, got {spec.folds}")
    native = estimator_params(algorithm, spec.params, task)
    shared = {**DEFAULTS[algorithm], **spec.params}
    created_at = datetime.now(timezone.utc)
    model_id = model_id_for(algorithm, created_at, features=features, label=label, params=shared,
                            inputs=[Path(f).name for f in df.inputFiles()], valid_from=spec.split.valid_from)
    extra = [spec.group_column] if spec.folds and spec.group_column not in (*features, spec.time_column) else []
    # Persisted: the split counts, the fits and the metric passes each read it again.
    frame = df.select(*features, F.col(label).cast("double").alias(label), spec.time_column,
                      *extra).persist()
    try:
        return _fit(algorithm, frame, model_id, created_at, spec, native, shared, out_dir, table)
    finally:
        frame.unpersist()


def _pipeline(algorithm: str, frame: DataFrame, spec: TrainSpec, native: dict[str, Any]) -> Any:
    from pyspark.ml import Pipeline

    stages, vector = preparation_stages(frame, spec.features, linear=algorithm == "mllib_lr")
    estimator = _estimator_class(algorithm, spec.task)(featuresCol=vector, labelCol=spec.label,
                                                       predictionCol=PREDICTION_COLUMN)
    if spec.task == "binary":
        estimator.setProbabilityCol(PROBABILITY_COLUMN).setRawPredictionCol("__ls_raw")
    for name, value in native.items():
        estimator.set(estimator.getParam(name), value)
    return Pipeline(stages=[*stages, estimator])


def _importance(model: PipelineModel, predictions: DataFrame, features: Sequence[str]) -> dict[str, float]:
    """Each feature's share of the trees' ``featureImportances`` or of the linear model's
    absolute standardized coefficients, slots mapped back to features by name."""
    last = model.stages[-1]
    if hasattr(last, "featureImportances"):
        weights = last.featureImportances.toArray()
        vector = VECTOR_COLUMN
    else:
        weights = np.abs(last.coefficients.toArray())
        vector = VECTOR_COLUMN
    attrs = predictions.schema[vector].metadata.get("ml_attr", {}).get("attrs", {})
    slots = {a["idx"]: a["name"] for kind in attrs.values() for a in kind}
    out = {f: 0.0 for f in features}
    for idx, weight in enumerate(weights):
        owner = _owner(slots.get(idx, ""), features)
        if owner is not None:
            out[owner] += float(weight)
    return shares(out)


def _fit(algorithm: str, frame: DataFrame, model_id: str, created_at: datetime, spec: TrainSpec,
         native: dict[str, Any], shared: dict[str, Any], out_dir: Path, table: str) -> TrainedModel:
    from pyspark.sql import functions as F

    label, task = spec.label, spec.task
    is_train = F.col(spec.time_column) < F.lit(spec.split.valid_from)
    is_valid = F.col(spec.time_column) >= F.lit(spec.split.valid_from)
    y = F.col(label)
    aggregates = [F.count(F.when(is_train, 1)).alias("train_rows"),
                  F.count(F.when(is_valid, 1)).alias("valid_rows")]
    if task == "binary":
        aggregates += [F.count(F.when(is_train & (y == 1), 1)).alias("train_positives"),
                       F.count(F.when(is_valid & (y == 1), 1)).alias("valid_positives"),
                       F.count(F.when(y.isNull() | ~y.isin(0.0, 1.0), 1)).alias("bad_labels")]
    else:
        aggregates += [F.count(F.when(y.isNull() | F.isnan(y), 1)).alias("bad_labels")]
    counts = frame.agg(*aggregates).first().asDict()
    if counts["bad_labels"]:
        wanted = "only 0 and 1" if task == "binary" else "a number in every row"
        raise DefinitionError(f"{table}: label {label!r} must hold {wanted}, but "
                              f"{counts['bad_labels']} row(s) hold null or another value")
    spec.split.check_sides(counts["train_rows"], counts["valid_rows"], table, spec.time_column)

    train = frame.where(is_train)
    model = _pipeline(algorithm, frame, spec, native).fit(train)
    validated = model.transform(frame.where(is_valid))
    metrics, details = evaluate(task, *_collect(validated, label), spec.threshold)
    metrics = {k: v for k, v in metrics.items() if k not in ("rows", "positives")}
    metrics |= _train_side_metrics(model.transform(train), label, task)
    if spec.folds:
        fold = F.pmod(F.xxhash64(F.col(spec.group_column)), F.lit(spec.folds))
        pooled = [_collect(_pipeline(algorithm, frame, spec, native).fit(train.where(fold != k))
                           .transform(train.where(fold == k)), label) for k in range(spec.folds)]
        cv_metrics, cv_details = evaluate(task, np.concatenate([p[0] for p in pooled]),
                                          np.concatenate([p[1] for p in pooled]), spec.threshold,
                                          prefix="cv_")
        metrics |= cv_metrics | {"cv_folds": float(spec.folds)}
        details |= cv_details
    metrics |= {k: float(v) for k, v in counts.items() if k != "bad_labels"}
    importance = _importance(model, validated, spec.features)

    out_dir.mkdir(parents=True, exist_ok=True)
    artifact = out_dir / PIPELINE_DIR
    model.write().overwrite().save(str(artifact))
    write_metrics(out_dir, metrics)
    write_evaluation(out_dir, details, importance)
    log.info("trained %s: %s", model_id, ", ".join(f"{k} {metrics[k]:.4f}" for k in ("auc", "rmse")
                                                  if k in metrics))
    return TrainedModel(model_id=model_id, algorithm=algorithm, features=tuple(spec.features),
                        label=label, metrics=metrics, artifact=artifact, kind="mllib", params=shared,
                        created_at=created_at, task=task, importance=importance)


def score_mllib(df: DataFrame, model_path: str | Path, keep: Sequence[str],
                output: str = "score", label: str = "prediction") -> DataFrame:
    """``keep`` columns of ``df`` and ``output``: the model's probability of class 1 (double),
    or its prediction for a regression model; a classifier adds ``label``, the predicted class
    at the model's own threshold as a string (``"0"``/``"1"``), as the MOJO scorers name it.

    Raises ``ModelMismatch`` naming the feature columns ``df`` lacks, before any job runs.
    """
    from pyspark.ml import PipelineModel
    from pyspark.sql import functions as F

    model = PipelineModel.load(str(model_path))
    missing = [c for c in (*model_features(model), *keep) if c not in df.columns]
    if missing:
        raise ModelMismatch(f"the frame to score lacks the column(s) {missing} that the MLlib model "
                            f"{model_path} needs (it has {sorted(df.columns)})")
    predicted = model.transform(df)
    scored = _output(predicted, output)
    if PROBABILITY_COLUMN not in predicted.columns:
        return scored.select(*keep, output)
    return scored.select(*keep, output, F.col(PREDICTION_COLUMN).cast("int").cast("string").alias(label))
