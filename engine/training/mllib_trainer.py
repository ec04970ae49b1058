"""Spark MLlib GBT as one saved ``PipelineModel``, and scoring with it.

The pipeline is ``SQLTransformer`` (missing values → ``MISSING_FILL``) → ``VectorAssembler`` →
``GBTClassifier``. Missing-value handling lives inside the saved pipeline, so scoring applies
exactly what training did and the two cannot skew. Spark's trees have no missing-value handling
(a NaN fails every ``value <= threshold`` test, so it always goes right, whatever was learnt),
hence the fill: a value far below any real feature value puts missing rows on the left of every
split, so a tree can learn what "missing" means, much as H2O routes NAs. Features are assumed to
be above ``MISSING_FILL``.

Metrics are computed with DataFrame aggregations; no rows are collected to the driver.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import ConfError, DefinitionError, ModelMismatch, SchemaMismatch
from engine.training import TrainedModel, merged_params, model_id_for, write_metrics
from engine.training.metrics import PROBABILITY_EPS
from engine.training.split import OutOfTimeSplit

if TYPE_CHECKING:
    from pyspark.ml import PipelineModel
    from pyspark.sql import DataFrame

log = logging.getLogger(__name__)

ALGORITHM = "mllib_gbt"
PIPELINE_DIR = "pipeline"
MISSING_FILL = -1.0e9
FILLED_PREFIX = "__ls_filled__"
VECTOR_COLUMN = "__ls_features"
PROBABILITY_COLUMN = "__ls_probability"

# The shared (H2O-style) parameter names and their GBTClassifier equivalents.
PARAM_NAMES = {"ntrees": "maxIter", "max_depth": "maxDepth", "learn_rate": "stepSize",
               "seed": "seed", "sample_rate": "subsamplingRate", "min_rows": "minInstancesPerNode",
               "nbins": "maxBins"}


def gbt_params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    """``DEFAULT_PARAMS`` overlaid by ``params``, in GBTClassifier's names. A key that is neither a
    shared name nor a GBTClassifier parameter raises ``ConfError`` listing the accepted ones."""
    from pyspark.ml.classification import GBTClassifier

    known = {p.name for p in GBTClassifier().params}
    out = {}
    for key, value in merged_params(params).items():
        name = PARAM_NAMES.get(key, key)
        if name not in known:
            raise ConfError(f"train.params.{key}: not a parameter of Spark's GBTClassifier; use one "
                            f"of {sorted(PARAM_NAMES)} or a GBTClassifier parameter "
                            f"({', '.join(sorted(known))})")
        out[name] = value
    return out


def _fill_statement(features: Sequence[str]) -> str:
    filled = ", ".join(
        f"CASE WHEN `{f}` IS NULL OR isnan(CAST(`{f}` AS DOUBLE)) THEN {MISSING_FILL!r} "
        f"ELSE CAST(`{f}` AS DOUBLE) END AS `{FILLED_PREFIX}{f}`" for f in features)
    return f"SELECT *, {filled} FROM __THIS__"


def model_features(model: PipelineModel) -> tuple[str, ...]:
    """The feature columns a pipeline saved by ``train_mllib_gbt`` reads, in order."""
    from pyspark.ml.feature import VectorAssembler

    assembler = next(s for s in model.stages if isinstance(s, VectorAssembler))
    return tuple(c.removeprefix(FILLED_PREFIX) for c in assembler.getInputCols())


def _probability_of_one(frame: DataFrame, output: str) -> DataFrame:
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as F

    return frame.withColumn(output, vector_to_array(F.col(PROBABILITY_COLUMN))[1].cast("double"))


def _side_metrics(predictions: DataFrame, label: str) -> tuple[float, float]:
    """(AUC, logloss) of ``PROBABILITY_COLUMN`` against ``label``, computed by Spark."""
    from pyspark.ml.evaluation import BinaryClassificationEvaluator
    from pyspark.sql import functions as F

    auc = BinaryClassificationEvaluator(labelCol=label, rawPredictionCol=PROBABILITY_COLUMN,
                                        metricName="areaUnderROC").evaluate(predictions)
    p = F.least(F.greatest(F.col("__p"), F.lit(PROBABILITY_EPS)), F.lit(1 - PROBABILITY_EPS))
    y = F.col(label)
    loss = _probability_of_one(predictions, "__p").select(
        F.avg(-(y * F.log(p) + (1 - y) * F.log(1 - p))).alias("logloss")).first()[0]
    return float(auc), float(loss)


def train_mllib_gbt(df: DataFrame, features: Sequence[str], label: str, time_column: str,
                    split: OutOfTimeSplit, params: Mapping[str, Any] | None,
                    out_dir: Path) -> TrainedModel:
    """Fit the GBT pipeline on rows with ``time_column < split.valid_from``; validate on the rest.

    Saves the fitted ``PipelineModel`` to ``out_dir/pipeline`` (overwriting) and the metrics to
    ``out_dir/metrics.json``. ``label`` must hold only 0 and 1. Raises ``SchemaMismatch`` for
    missing columns, ``DefinitionError`` for an empty split side or a non-binary label,
    ``ConfError`` for an unknown parameter.
    """
    from pyspark.sql import functions as F

    features = tuple(features)
    table = "training set (Spark DataFrame)"
    missing = [c for c in (*features, label, time_column) if c not in df.columns]
    if missing:
        raise SchemaMismatch(f"{table} lacks the column(s) {missing} needed for training "
                             f"(it has {sorted(df.columns)})")
    gbt = gbt_params(params)
    shared = merged_params(params)
    created_at = datetime.now(timezone.utc)
    model_id = model_id_for(ALGORITHM, created_at, features=features, label=label, params=shared,
                            inputs=[Path(f).name for f in df.inputFiles()], valid_from=split.valid_from)

    # Persisted: the split counts, the fit and four metric passes each read it again.
    frame = df.select(*features, F.col(label).cast("double").alias(label), time_column).persist()
    try:
        return _fit(frame, model_id, created_at, features, label, time_column, split, gbt, shared,
                    out_dir, table)
    finally:
        frame.unpersist()


def _fit(frame: DataFrame, model_id: str, created_at: datetime, features: tuple[str, ...], label: str,
         time_column: str, split: OutOfTimeSplit, gbt: dict[str, Any], shared: dict[str, Any],
         out_dir: Path, table: str) -> TrainedModel:
    from pyspark.ml import Pipeline
    from pyspark.ml.classification import GBTClassifier
    from pyspark.ml.feature import SQLTransformer, VectorAssembler
    from pyspark.sql import functions as F

    is_train = F.col(time_column) < F.lit(split.valid_from)
    is_valid = F.col(time_column) >= F.lit(split.valid_from)
    y = F.col(label)
    counts = frame.agg(
        F.count(F.when(is_train, 1)).alias("train_rows"), F.count(F.when(is_valid, 1)).alias("valid_rows"),
        F.count(F.when(is_train & (y == 1), 1)).alias("train_positives"),
        F.count(F.when(is_valid & (y == 1), 1)).alias("valid_positives"),
        F.count(F.when(y.isNull() | ~y.isin(0.0, 1.0), 1)).alias("bad_labels"),
    ).first().asDict()
    if counts["bad_labels"]:
        raise DefinitionError(f"{table}: label {label!r} must hold only 0 and 1, but "
                              f"{counts['bad_labels']} row(s) hold null or another value")
    split.check_sides(counts["train_rows"], counts["valid_rows"], table, time_column)

    classifier = (GBTClassifier(featuresCol=VECTOR_COLUMN, labelCol=label, predictionCol="__ls_prediction")
                  .setProbabilityCol(PROBABILITY_COLUMN).setRawPredictionCol("__ls_raw"))
    for name, value in gbt.items():
        classifier.set(classifier.getParam(name), value)
    pipeline = Pipeline(stages=[
        SQLTransformer(statement=_fill_statement(features)),
        VectorAssembler(inputCols=[FILLED_PREFIX + f for f in features], outputCol=VECTOR_COLUMN,
                        handleInvalid="keep"),
        classifier,
    ])
    model = pipeline.fit(frame.where(is_train))
    auc, loss = _side_metrics(model.transform(frame.where(is_valid)), label)
    train_auc, train_loss = _side_metrics(model.transform(frame.where(is_train)), label)
    metrics = {"auc": auc, "logloss": loss, "train_auc": train_auc, "train_logloss": train_loss,
               **{k: float(v) for k, v in counts.items() if k != "bad_labels"}}

    out_dir.mkdir(parents=True, exist_ok=True)
    artifact = out_dir / PIPELINE_DIR
    model.write().overwrite().save(str(artifact))
    write_metrics(out_dir, metrics)
    log.info("trained %s: validation AUC %.4f on %d rows", model_id, auc, counts["valid_rows"])
    return TrainedModel(model_id=model_id, algorithm=ALGORITHM, features=features, label=label,
                        metrics=metrics, artifact=artifact, kind="mllib", params=shared,
                        created_at=created_at)


def score_mllib(df: DataFrame, model_path: str | Path, keep: Sequence[str],
                output: str = "score") -> DataFrame:
    """``keep`` columns of ``df`` and ``output``: the model's probability of class 1 (double).

    Raises ``ModelMismatch`` naming the feature columns ``df`` lacks, before any job runs.
    """
    from pyspark.ml import PipelineModel

    model = PipelineModel.load(str(model_path))
    missing = [c for c in (*model_features(model), *keep) if c not in df.columns]
    if missing:
        raise ModelMismatch(f"the frame to score lacks the column(s) {missing} that the MLlib model "
                            f"{model_path} needs (it has {sorted(df.columns)})")
    return _probability_of_one(model.transform(df), output).select(*keep, output)
