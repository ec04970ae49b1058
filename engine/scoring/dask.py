"""MOJO scoring on Dask workers: whole column batches through JPype into ``MojoScorer``.

Each worker process starts one JVM (on first use) with the scoring jars and keeps it, and the
model, for its lifetime; a batch crosses into Java as one primitive array per column.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from engine.scoring.jars import scorer_jars
from engine.scoring.mojo import read_mojo_info


def _scorer():
    import jpype

    if not jpype.isJVMStarted():
        jpype.startJVM(classpath=[str(j) for j in scorer_jars()], convertStrings=False)
    return jpype.JClass("ai.lakescore.MojoScorer")


def score_pandas(batch: pd.DataFrame, mojo_path: str, features: Sequence[str],
                 categorical: Sequence[str]) -> np.ndarray:
    """Score one pandas batch; ``categorical`` features go in as strings, the rest as doubles."""
    import jpype

    scorer = _scorer()
    columns = []
    for name in features:
        if name in categorical:
            values = batch[name].astype(object).where(batch[name].notna(), None)
            columns.append(jpype.JArray(jpype.JString)([None if v is None else str(v) for v in values]))
        else:
            values = pd.to_numeric(batch[name], errors="raise").astype("float64").to_numpy(na_value=np.nan)
            columns.append(jpype.JArray(jpype.JDouble)(np.ascontiguousarray(values)))
    names = jpype.JArray(jpype.JString)(list(features))
    result = scorer.scoreColumns(mojo_path, names, jpype.JArray(jpype.JObject)(columns))
    return np.asarray(result, dtype="float64")


def score_mojo_dask(ddf, mojo_path: str, keep: Sequence[str], output: str = "score"):
    """``keep`` columns plus ``output``, partition by partition (nothing is collected)."""
    info = read_mojo_info(mojo_path)
    info.check_columns(list(ddf.columns), "the frame to score")
    scorer_jars()  # fail here, on the client, when the jar was never built
    features = list(info.feature_names)
    categorical = [name for name in features if name in info.domains]
    keep = list(keep)

    def score_partition(part: pd.DataFrame) -> pd.DataFrame:
        out = part[keep].copy()
        out[output] = score_pandas(part, mojo_path, features, categorical) if len(part) else np.array([], "float64")
        return out

    meta = ddf._meta[keep].copy()
    meta[output] = pd.Series([], dtype="float64")
    return ddf.map_partitions(score_partition, meta=meta)
