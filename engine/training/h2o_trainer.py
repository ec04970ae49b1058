"""The H2O family (GBM, GLM, DRF, AutoML) on the training set's Parquet files, exported as MOJOs.

H2O imports the Delta table's data files itself (``h2o.import_file``), so the training data
never passes through the engine's driver or this Python process; only the label and the
prediction of the evaluated rows come back, to be scored by the same metric functions as every
other trainer (``engine.training.metrics``). The out-of-time split is done inside H2O on the
time column. H2O 3.46 parses a Parquet ``timestamp[us, UTC]`` column as an ``int`` column of the
raw microseconds since the epoch (not as a ``time`` column, which would be milliseconds), so the
boundary is expressed in the unit the Parquet schema declares (read from the first file's
footer) before comparing.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np

from engine.errors import ConfError, DefinitionError, SchemaMismatch
from engine.training import (DEFAULT_PARAMS, TrainedModel, TrainingData, TrainingSource, TrainSpec,
                             model_id_for, shares, write_evaluation, write_metrics)
from engine.training.metrics import evaluate

log = logging.getLogger(__name__)

MOJO_NAME = "model.mojo"
FOLD_COLUMN = "__ls_fold"

DEFAULTS: dict[str, dict[str, Any]] = {
    "h2o_gbm": dict(DEFAULT_PARAMS),
    "h2o_drf": {"ntrees": 50, "max_depth": 10, "seed": 42},
    "h2o_glm": {"seed": 42},
    "h2o_automl": {"max_models": 5, "seed": 42},
}
"""Hyper-parameters per algorithm when ``train.params`` does not set them (H2O's names)."""


def _h2o_path(uri: str) -> str:
    """H2O takes local files as plain paths; object-store URIs (s3://, hdfs://) as they are."""
    return uri.removeprefix("file://")


def _time_unit(first_file: str, time_column: str, h2o_type: str) -> str:
    """The unit of the epoch numbers H2O holds for ``time_column``.

    H2O's own ``time`` type is milliseconds; an integer column keeps the Parquet timestamp's
    unit, read from the file's footer (no data is read)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from pyarrow import fs

    if h2o_type == "time":
        return "ms"
    filesystem, path = fs.FileSystem.from_uri(first_file if "://" in first_file
                                              else Path(first_file).resolve().as_uri())
    field_type = pq.read_schema(path, filesystem=filesystem).field(time_column).type
    if not pa.types.is_timestamp(field_type):
        raise SchemaMismatch(f"{first_file}: time column {time_column!r} is {field_type}, "
                             "not a timestamp")
    return field_type.unit


def _estimator(algorithm: str, model_id: str, task: str, params: dict[str, Any]) -> Any:
    """The H2O estimator (or AutoML run) of ``algorithm`` with ``params``; ``ConfError`` naming
    the parameters when H2O rejects them."""
    from h2o.automl import H2OAutoML
    from h2o.estimators import (H2OGeneralizedLinearEstimator, H2OGradientBoostingEstimator,
                                H2ORandomForestEstimator)

    binary = task == "binary"
    try:
        if algorithm == "h2o_gbm":
            return H2OGradientBoostingEstimator(model_id=model_id,
                                                distribution="bernoulli" if binary else "gaussian", **params)
        if algorithm == "h2o_drf":
            return H2ORandomForestEstimator(model_id=model_id, **params)
        if algorithm == "h2o_glm":
            return H2OGeneralizedLinearEstimator(model_id=model_id,
                                                 family="binomial" if binary else "gaussian", **params)
        return H2OAutoML(project_name=model_id, **params)
    except (TypeError, ValueError) as exc:
        raise ConfError(f"train.params: H2O {algorithm} rejects {sorted(params)}: {exc}") from exc


def _pull(frame: Any) -> Any:
    """A small H2O frame (label and prediction columns) as pandas."""
    with warnings.catch_warnings():  # "install polars for a faster conversion"
        warnings.simplefilter("ignore")
        return frame.as_data_frame(use_multi_thread=False)


def _label_and_prediction(label_column: Any, predictions: Any, task: str) -> tuple[np.ndarray, np.ndarray]:
    """(labels, P(1) or the predicted value) as float arrays, row for row."""
    wanted = "p1" if task == "binary" else "predict"
    both = _pull(label_column.ascharacter().cbind(predictions[wanted]) if task == "binary"
                 else label_column.cbind(predictions[wanted]))
    return both.iloc[:, 0].astype("float64").to_numpy(), both[wanted].astype("float64").to_numpy()


def _importance(model: Any, features: Sequence[str]) -> dict[str, float]:
    """Each feature's share of H2O's variable importance (GLM: standardized coefficients);
    empty for models without one (stacked ensembles)."""
    try:
        table = model.varimp(use_pandas=False)
    except Exception:  # noqa: BLE001 - H2O raises for models that have no importance
        table = None
    if not table:
        return {}
    raw = {row[0]: float(row[1]) for row in table}
    # GLM reports a one-hot level as "column.level": fold levels into their column.
    out: dict[str, float] = {f: 0.0 for f in features}
    for name, value in raw.items():
        owner = name if name in out else next((f for f in features if name.startswith(f + ".")), None)
        if owner is not None:
            out[owner] += value
    return shares(out)


@dataclass(frozen=True)
class H2OTrainer:
    """GBM, GLM, DRF or AutoML (with a ``max_models`` or ``max_runtime_secs`` budget) in H2O.

    Reads ``data.files`` only, so it runs with any engine. AutoML selects its leader by its own
    cross-validation within the training period; the leader is then judged on the validation
    side like any other model. ``spec.folds`` adds a grouped k-fold on the training side for the
    single algorithms (AutoML's own folds are ``params.nfolds``)."""

    algorithm: str
    family: Literal["h2o", "mllib"] = "h2o"

    def training_data(self, source: TrainingSource) -> TrainingData:
        """The files on local disk (H2O imports files by path; an object store would need H2O's
        own S3 set-up), with the H2O cluster of ``source.h2o`` connected."""
        from engine.session import h2o_connection

        h2o_connection(source.h2o)
        return TrainingData(source.local_files())

    def train(self, data: TrainingData, spec: TrainSpec, out_dir: Path) -> TrainedModel:
        return train_h2o(self.algorithm, data.files, spec, out_dir)


def train_h2o(algorithm: str, files: Sequence[str], spec: TrainSpec, out_dir: Path) -> TrainedModel:
    """Train ``algorithm`` on the rows of ``files`` before ``spec.split.valid_from``; validate on
    the rest.

    ``files`` are the Parquet files of one version of the training-set Delta table
    (``DeltaTable(path, version=v).file_uris()``). A binary ``label`` must hold 0/1 and is made a
    factor (an integer label would train a regression). ``spec.params`` overlay ``DEFAULTS`` and
    are passed to the H2O estimator. Writes ``out_dir/model.mojo``, ``metrics.json`` and
    ``evaluation.json``. Needs a connected H2O (``engine.session.h2o_connection``).

    Rows whose time is null belong to neither side. Raises ``SchemaMismatch`` naming missing
    columns, ``DefinitionError`` when a side of the split is empty or a binary label is not 0/1,
    ``ConfError`` for a parameter H2O does not know.
    """
    import h2o

    if algorithm not in DEFAULTS:
        raise ConfError(f"train.algorithm {algorithm!r} is not an H2O algorithm ({', '.join(DEFAULTS)})")
    if not files:
        raise DefinitionError("the training set has no data files: nothing to train on; "
                              "build the training set (features job) first")
    if spec.folds and algorithm == "h2o_automl":
        raise ConfError("train.folds does not apply to h2o_automl, which cross-validates by itself; "
                        "set train.params.nfolds instead")
    features, label, task = tuple(spec.features), spec.label, spec.task
    params = {**DEFAULTS[algorithm], **spec.params}
    created_at = datetime.now(timezone.utc)
    model_id = model_id_for(algorithm, created_at, features=features, label=label, params=params,
                            inputs=[Path(f).name for f in files], valid_from=spec.split.valid_from)
    table = f"training set ({len(files)} file(s) under {str(Path(_h2o_path(files[0])).parent)})"
    estimator = _estimator(algorithm, model_id, task, params)

    frames: list[Any] = []
    models: list[Any] = []
    try:
        data = h2o.import_file(path=[_h2o_path(f) for f in files])
        frames.append(data)
        needed = (*features, label, spec.time_column, *([spec.group_column] if spec.folds else []))
        missing = [c for c in needed if c not in data.columns]
        if missing:
            raise SchemaMismatch(f"{table} lacks the column(s) {missing} needed for training "
                                 f"(it has {sorted(data.columns)})")
        unit = _time_unit(files[0], spec.time_column, data.types[spec.time_column])
        boundary = spec.split.boundary_epoch(unit)
        if task == "binary":
            labels = _pull(data[label].unique()).iloc[:, 0]
            if not set(labels.dropna().astype(str)) <= {"0", "1"} or labels.isna().any():
                raise DefinitionError(f"{table}: label {label!r} must hold only 0 and 1 (no nulls), "
                                      f"found {sorted(labels.astype(str))[:10]}")
        is_train = data[spec.time_column] < boundary
        train, valid = data[is_train], data[~is_train]
        frames += [is_train, train, valid]
        train_rows, valid_rows = train.nrows, valid.nrows
        spec.split.check_sides(train_rows, valid_rows, table, spec.time_column)
        counts = {"train_rows": float(train_rows), "valid_rows": float(valid_rows)}
        if task == "binary":
            counts |= {"train_positives": float(train[label].sum()),
                       "valid_positives": float(valid[label].sum())}
            for frame in (train, valid):
                frame[label] = frame[label].asfactor()
        fit_args: dict[str, Any] = {}
        if spec.folds:
            if spec.folds < 2:
                raise ConfError(f"train.folds must be 0 (off) or at least 2, got {spec.folds}")
            train[FOLD_COLUMN] = train[spec.group_column] % spec.folds
            fit_args = {"fold_column": FOLD_COLUMN}
            estimator.keep_cross_validation_predictions = True

        if algorithm == "h2o_automl":
            estimator.train(x=list(features), y=label, training_frame=train)
            model = estimator.leader
            models.append(estimator)
        else:
            estimator.train(x=list(features), y=label, training_frame=train, validation_frame=valid,
                            **fit_args)
            model = estimator
            models.append(model)

        predictions = model.predict(valid)
        frames.append(predictions)
        metrics, details = evaluate(task, *_label_and_prediction(valid[label], predictions, task),
                                    spec.threshold)
        train_perf = model.model_performance(train=True) if algorithm != "h2o_automl" else \
            model.model_performance(test_data=train)
        metrics |= ({"train_auc": float(train_perf.auc()), "train_logloss": float(train_perf.logloss())}
                    if task == "binary" else {"train_rmse": float(train_perf.rmse())})
        if spec.folds:
            holdout = model.cross_validation_holdout_predictions()
            frames.append(holdout)
            cv_metrics, cv_details = evaluate(task, *_label_and_prediction(train[label], holdout, task),
                                              spec.threshold, prefix="cv_")
            metrics |= cv_metrics | {"cv_folds": float(spec.folds)}
            details |= cv_details
        metrics = {k: v for k, v in metrics.items() if k not in ("rows", "positives")} | counts
        importance = _importance(model, features)

        out_dir.mkdir(parents=True, exist_ok=True)
        artifact = Path(model.download_mojo(path=str(out_dir / MOJO_NAME)))
        write_metrics(out_dir, metrics)
        write_evaluation(out_dir, details, importance)
        if algorithm == "h2o_automl":
            params = {**params, "leader": model.model_id}
    finally:
        # The MOJO is the model from here on: free the cluster's memory for the next job.
        for frame in frames:
            h2o.remove(frame, cascade=False)
        for each in models:
            h2o.remove(each)
    log.info("trained %s: %s", model_id, ", ".join(f"{k} {metrics[k]:.4f}" for k in ("auc", "rmse")
                                                  if k in metrics))
    return TrainedModel(model_id=model_id, algorithm=algorithm, features=features, label=label,
                        metrics=metrics, artifact=artifact, kind="mojo", params=params,
                        created_at=created_at, task=task, importance=importance)
