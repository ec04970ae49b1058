"""MOJO scoring on Dask workers: whole column batches through JPype into ``MojoScorer``.

Each worker process starts one JVM (on first use) with the scoring jars and keeps it, and the
loaded model, for its lifetime. A partition crosses into Java as one primitive array per
feature: doubles for numbers, and for string levels the indices into the model's domain,
encoded here with pandas (the domains come from ``read_mojo_info``), which is ~10x cheaper than
moving a million Java strings.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from engine.errors import EnvironmentProblem
from engine.scoring.jars import scorer_jars
from engine.scoring.mojo import (
    ColumnKind,
    MissingColumns,
    MojoInfo,
    check_scorable,
    output_columns,
    read_mojo_info,
)

if TYPE_CHECKING:
    import dask.dataframe as dd

SCORER_CLASS = "ai.lakescore.MojoScorer"


def column_kind(dtype) -> ColumnKind:
    """How a pandas dtype reaches the scorer: numbers and booleans as doubles, text as levels."""
    if pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_numeric_dtype(dtype):
        return "numeric"
    if (pd.api.types.is_string_dtype(dtype) or pd.api.types.is_object_dtype(dtype)
            or isinstance(dtype, pd.CategoricalDtype)):
        return "string"
    return "other"


def _scorer():
    """``MojoScorer`` in this process's JVM, starting the JVM with the scoring jars if needed."""
    import jpype

    if not jpype.isJVMStarted():
        jpype.startJVM(classpath=[str(j) for j in scorer_jars()], convertStrings=False)
    try:
        return jpype.JClass(SCORER_CLASS)
    except TypeError as exc:  # JPype raises TypeError for a class it cannot find
        raise EnvironmentProblem(
            f"{SCORER_CLASS} is not on the classpath of the JVM already running in this process; "
            "start JPype's JVM with engine.scoring.jars.scorer_jars() on its classpath") from exc


def encode_levels(values: pd.Series, domain: Sequence[str]) -> np.ndarray:
    """Indices of string ``values`` in ``domain`` (int32); -1 for missing and unseen levels.

    Levels match by exact string equality, as the Java scorer matches them.
    """
    if isinstance(values.dtype, pd.CategoricalDtype):
        values = values.astype(object)
    codes = pd.Categorical(values, categories=pd.Index(list(domain), dtype=object)).codes
    return np.ascontiguousarray(codes, dtype=np.int32)


def score_pandas(batch: pd.DataFrame, info: MojoInfo, output: str = "score") -> pd.DataFrame:
    """The model's ``output_columns`` for one pandas batch (same index): scores and
    probabilities as float64, labels as strings.

    A feature the batch lacks is passed as all-missing (``check_scorable`` decides whether that
    is allowed)."""
    import jpype

    scorer = _scorer()
    columns = []
    for name in info.feature_names:
        if name in info.domains:
            codes = (encode_levels(batch[name], info.domains[name]) if name in batch.columns
                     else np.full(len(batch), -1, dtype=np.int32))
            columns.append(jpype.JArray(jpype.JInt)(codes))
        else:
            doubles = (batch[name].astype("float64").to_numpy(dtype="float64", na_value=np.nan)
                       if name in batch.columns else np.full(len(batch), np.nan))
            columns.append(jpype.JArray(jpype.JDouble)(np.ascontiguousarray(doubles)))
    names = jpype.JArray(jpype.JString)(list(info.feature_names))
    values = scorer.scoreOutputs(info.path, names, jpype.JArray(jpype.JObject)(columns))
    out = {}
    for k, column in enumerate(output_columns(info, output)):
        array = np.asarray(values[k], dtype="float64")
        if column.type == "string":
            labels = np.asarray(info.response_domain, dtype=object)[array.astype(np.int64)]
            out[column.name] = pd.Series(labels, index=batch.index, dtype=LABEL_DTYPE)
        else:
            out[column.name] = pd.Series(array, index=batch.index, dtype="float64")
    return pd.DataFrame(out, index=batch.index)


LABEL_DTYPE = "string[pyarrow]"
"""The dtype of predicted labels: what Dask gives text read from Parquet by default."""


def score_mojo_dask(ddf: dd.DataFrame, mojo_path: str, keep: Sequence[str], output: str = "score",
                    missing_columns: MissingColumns = "na") -> dd.DataFrame:
    """``keep`` columns plus the model's ``output_columns`` (as ``score_mojo_spark``), partition
    by partition; nothing is collected.

    Checks the frame against the MOJO (``ModelMismatch``) and that the jars are built
    (``EnvironmentProblem``) before any task runs. ``mojo_path`` must be readable by the workers
    (a local or shared path). Missing values, unseen levels and feature columns the frame lacks
    score as in H2O's ``predict`` (the last with a warning, or refused with
    ``missing_columns="error"``).
    """
    info = read_mojo_info(mojo_path)
    keep = list(keep)
    check_scorable(info, {name: column_kind(dtype) for name, dtype in ddf.dtypes.items()}, keep, output,
                   missing_columns=missing_columns)
    scorer_jars()
    outputs = output_columns(info, output)

    def score_partition(part: pd.DataFrame) -> pd.DataFrame:
        return pd.concat([part[keep], score_pandas(part, info, output)], axis=1)

    meta = ddf._meta[keep].copy()
    for column in outputs:
        meta[column.name] = pd.Series([], dtype=LABEL_DTYPE if column.type == "string" else "float64")
    return ddf.map_partitions(score_partition, meta=meta)
