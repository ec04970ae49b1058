"""H2O GBM on the training set's Parquet files, exported as a MOJO.

H2O imports the Delta table's data files itself (``h2o.import_file``), so the training data
never passes through the engine's driver or this Python process. The out-of-time split is done
inside H2O on the time column. H2O 3.46 parses a Parquet ``timestamp[us, UTC]`` column as an
``int`` column of the raw microseconds since the epoch (not as a ``time`` column, which would be
milliseconds), so the boundary is expressed in the unit the Parquet schema declares (read from
the first file's footer) before comparing.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from engine.errors import ConfError, DefinitionError, SchemaMismatch
from engine.training import TrainedModel, merged_params, model_id_for, write_metrics
from engine.training.split import OutOfTimeSplit

log = logging.getLogger(__name__)

ALGORITHM = "h2o_gbm"
MOJO_NAME = "model.mojo"


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


def train_h2o_gbm(files: Sequence[str], features: Sequence[str], label: str, time_column: str,
                  split: OutOfTimeSplit, params: Mapping[str, Any] | None, out_dir: Path) -> TrainedModel:
    """Train a binomial GBM on the rows of ``files`` before ``split.valid_from``; validate on the rest.

    ``files`` are the Parquet files of one version of the training-set Delta table
    (``DeltaTable(path, version=v).file_uris()``). ``label`` must hold 0/1 and is made a factor
    (an integer label would train a regression). ``params`` overlay ``DEFAULT_PARAMS`` and are
    passed to ``H2OGradientBoostingEstimator``. Writes ``out_dir/model.mojo`` and
    ``out_dir/metrics.json``. Needs a connected H2O (``engine.session.h2o_connection``).

    Rows whose time is null belong to neither side. Raises ``SchemaMismatch`` naming missing
    columns, ``DefinitionError`` when a side of the split is empty or the label is not binary,
    ``ConfError`` for a parameter H2O does not know.
    """
    import h2o
    from h2o.estimators import H2OGradientBoostingEstimator

    if not files:
        raise DefinitionError("the training set has no data files: nothing to train on; "
                              "build the training set (features job) first")
    features = tuple(features)
    params = merged_params(params)
    created_at = datetime.now(timezone.utc)
    model_id = model_id_for(ALGORITHM, created_at, features=features, label=label, params=params,
                            inputs=[Path(f).name for f in files], valid_from=split.valid_from)
    table = f"training set ({len(files)} file(s) under {str(Path(_h2o_path(files[0])).parent)})"
    try:
        estimator = H2OGradientBoostingEstimator(model_id=model_id, distribution="bernoulli", **params)
    except (TypeError, ValueError) as exc:
        raise ConfError(f"train.params: H2O GBM rejects {sorted(params)}: {exc}") from exc

    frames: list[Any] = []
    trained = False
    try:
        data = h2o.import_file(path=[_h2o_path(f) for f in files])
        frames.append(data)
        missing = [c for c in (*features, label, time_column) if c not in data.columns]
        if missing:
            raise SchemaMismatch(f"{table} lacks the column(s) {missing} needed for training "
                                 f"(it has {sorted(data.columns)})")
        unit = _time_unit(files[0], time_column, data.types[time_column])
        boundary = split.boundary_epoch(unit)
        with warnings.catch_warnings():  # "install polars for a faster conversion": two values
            warnings.simplefilter("ignore")
            labels = data[label].unique().as_data_frame(use_multi_thread=False).iloc[:, 0]
        if not set(labels.dropna().astype(str)) <= {"0", "1"} or labels.isna().any():
            raise DefinitionError(f"{table}: label {label!r} must hold only 0 and 1 (no nulls), "
                                  f"found {sorted(labels.astype(str))[:10]}")
        is_train = data[time_column] < boundary
        train, valid = data[is_train], data[~is_train]
        frames += [is_train, train, valid]
        train_rows, valid_rows = train.nrows, valid.nrows
        split.check_sides(train_rows, valid_rows, table, time_column)
        positives = {"train_positives": float(train[label].sum()),
                     "valid_positives": float(valid[label].sum())}
        for frame in (train, valid):
            frame[label] = frame[label].asfactor()

        estimator.train(x=list(features), y=label, training_frame=train, validation_frame=valid)
        trained = True
        valid_perf = estimator.model_performance(valid=True)
        train_perf = estimator.model_performance(train=True)
        metrics = {"auc": float(valid_perf.auc()), "logloss": float(valid_perf.logloss()),
                   "train_auc": float(train_perf.auc()), "train_logloss": float(train_perf.logloss()),
                   "train_rows": float(train_rows), "valid_rows": float(valid_rows), **positives}

        out_dir.mkdir(parents=True, exist_ok=True)
        artifact = Path(estimator.download_mojo(path=str(out_dir / MOJO_NAME)))
        write_metrics(out_dir, metrics)
    finally:
        # The MOJO is the model from here on: free the cluster's memory for the next job.
        for frame in frames:
            h2o.remove(frame, cascade=False)
        if trained:
            h2o.remove(estimator)
    log.info("trained %s: validation AUC %.4f on %d rows", model_id, metrics["auc"], valid_rows)
    return TrainedModel(model_id=model_id, algorithm=ALGORITHM, features=features, label=label,
                        metrics=metrics, artifact=artifact, kind="mojo", params=params,
                        created_at=created_at)
