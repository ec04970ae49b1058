"""Dask compiler of a ``FeatureSet``: an out-of-core point-in-time join with NumPy.

The spine and the events are hash-partitioned by entity into the same number of partitions
(Dask's shuffle assigns a key to the same partition in both), so each pair of partitions holds
every event of its spine rows' entities and nothing is ever gathered on one worker. Per pair,
events are sorted by (entity, time, values); one merged sort finds each spine row's window
``[as_of - window, as_of)`` as a slice of that order, and sums are added left to right in that
order, exactly as Spark's window frame adds them, so both engines give bit-identical numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from engine.features.definitions import FeatureSet, check_inputs

if TYPE_CHECKING:
    import dask.dataframe as dd


def pandas_kind(dtype: Any) -> str:
    """The simple column kind ``check_inputs`` understands for a pandas / Dask dtype.

    ``object`` stays ``"object"`` (it may hold anything: cast it to ``string`` explicitly).
    """
    from pandas.api import types as t

    if isinstance(dtype, pd.ArrowDtype):
        import pyarrow as pa

        arrow = dtype.pyarrow_dtype
        checks = ((pa.types.is_boolean, "bool"), (pa.types.is_integer, "int"),
                  (pa.types.is_floating, "float"), (pa.types.is_decimal, "decimal"),
                  (pa.types.is_timestamp, "timestamp"), (pa.types.is_date, "date"),
                  (lambda a: pa.types.is_string(a) or pa.types.is_large_string(a), "string"))
        return next((kind for check, kind in checks if check(arrow)), str(arrow))
    if dtype == object:
        return "object"
    if t.is_bool_dtype(dtype):
        return "bool"
    if t.is_integer_dtype(dtype):
        return "int"
    if t.is_float_dtype(dtype):
        return "float"
    if t.is_datetime64_any_dtype(dtype):
        return "timestamp"
    if t.is_string_dtype(dtype):
        return "string"
    return str(dtype)


def pandas_column_kinds(dtypes: Mapping[str, Any]) -> dict[str, str]:
    """Column name → kind for a pandas/Dask ``dtypes`` mapping (see ``check_inputs``)."""
    return {str(name): pandas_kind(dtype) for name, dtype in dtypes.items()}


def _micros(times: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(microseconds since the epoch as int64, mask of non-null); naive times are read as UTC."""
    utc = pd.to_datetime(times, utc=True)
    valid = utc.notna().to_numpy()
    micros = utc.dt.as_unit("us").array.asi8.copy()
    micros[~valid] = 0
    return micros, valid


def _values(column: pd.Series) -> np.ndarray:
    """float64 values with null (and NaN) as NaN."""
    return pd.to_numeric(column, errors="raise").astype("float64").to_numpy(na_value=np.nan)


def _left_fold_sums(values: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``sum(values[lo[i]:hi[i]])`` added strictly left to right from 0.0, NaN skipped.

    The order matters: Spark's sliding window frame adds its buffer in this order, and a
    pairwise or prefix-difference sum would differ in the last bits. Rows are processed longest
    first, so step ``j`` touches only the rows that still have a ``j``-th value: the work is the
    total window length, in as many NumPy steps as the longest window.
    """
    addends = np.where(np.isnan(values), 0.0, values)
    lengths = hi - lo
    order = np.argsort(-lengths, kind="stable")
    starts, descending = lo[order], lengths[order]
    acc = np.zeros(len(lo), dtype="float64")
    longest = int(descending[0]) if len(descending) else 0
    for j in range(longest):
        active = int(np.searchsorted(-descending, -j, side="left"))
        acc[:active] += addends[starts[:active] + j]
    sums = np.empty_like(acc)
    sums[order] = acc
    return sums


def _positions(event_codes: np.ndarray, event_times: np.ndarray, query_codes: np.ndarray,
               bounds: list[np.ndarray]) -> list[np.ndarray]:
    """For each bound array and each query row (code, time): how many of the (code, time)-sorted
    events are strictly before it, i.e. the index of its entity's first event at or after
    ``time``. Times are replaced by their dense rank, so (code, rank) packs into one int64 key
    that is sorted wherever the events are, and one binary search per query finds it."""
    n_events = len(event_times)
    ranks = np.unique(np.concatenate([event_times, *bounds]), return_inverse=True)[1].astype("int64")
    width = int(ranks.max(initial=0)) + 1
    event_keys = event_codes.astype("int64") * width + ranks[:n_events]
    out, offset = [], n_events
    for bound in bounds:
        keys = query_codes.astype("int64") * width + ranks[offset:offset + len(bound)]
        out.append(np.searchsorted(event_keys, keys, side="left"))
        offset += len(bound)
    return out


def features_of_partition(spine: pd.DataFrame, events: pd.DataFrame, fs: FeatureSet) -> pd.DataFrame:
    """``spine`` with one column per feature, computed from ``events`` (which must hold every
    event of the spine's entities). Pure pandas/NumPy; the spine's rows, order and index are
    kept."""
    summed = fs.summed_columns()
    ev_times, ev_valid = _micros(events[fs.timestamp])
    ev_valid &= events[fs.entity].notna().to_numpy()
    ev_times = ev_times[ev_valid]
    ev_values = [_values(events[c])[ev_valid] for c in summed]

    q_times, q_valid = _micros(spine[fs.as_of])
    entities = pd.concat([events[fs.entity][ev_valid], spine[fs.entity]], ignore_index=True)
    codes, _ = pd.factorize(entities, use_na_sentinel=True)
    n_events = int(ev_valid.sum())
    ev_codes, q_codes = codes[:n_events], codes[n_events:]
    q_valid &= q_codes >= 0

    # Same order as Spark's sort: entity, time, then values ascending with nulls last.
    order = np.lexsort((*reversed(ev_values), ev_times, ev_codes))
    ev_codes, ev_times = ev_codes[order], ev_times[order]
    ev_values = [v[order] for v in ev_values]
    present = {c: np.concatenate([[0], np.cumsum(~np.isnan(v))]) for c, v in zip(summed, ev_values)}

    # Invalid queries (null entity or as-of time) get an empty window: the defaults.
    q_codes = np.where(q_valid, q_codes, -1)
    windows = sorted({agg.micros for agg in fs.aggregations})
    hi, *los = _positions(ev_codes, ev_times, q_codes, [q_times, *(q_times - w for w in windows)])
    lo_of = {w: np.where(q_valid, lo, hi) for w, lo in zip(windows, los)}
    columns: dict[str, np.ndarray] = {}
    sums: dict[tuple[str, int], np.ndarray] = {}
    for agg in fs.aggregations:
        lo = lo_of[agg.micros]
        if agg.function == "count":
            columns[agg.name] = (hi - lo).astype("int64")
            continue
        key = (agg.column, agg.micros)
        if key not in sums:
            sums[key] = _left_fold_sums(ev_values[summed.index(agg.column)], lo, hi)
        total = sums[key]
        if agg.function == "sum":
            columns[agg.name] = total
        else:
            n = present[agg.column][hi] - present[agg.column][lo]
            with np.errstate(invalid="ignore", divide="ignore"):
                columns[agg.name] = np.where(n > 0, total / n, np.nan)
    return spine.assign(**{name: pd.Series(values, index=spine.index, dtype=_dtype(fs, name))
                           for name, values in columns.items()})


def _dtype(fs: FeatureSet, name: str) -> str:
    return next(agg.dtype for agg in fs.aggregations if agg.name == name)


def training_set_dask(fs: FeatureSet, events: dd.DataFrame, spine: dd.DataFrame) -> dd.DataFrame:
    """Every row of ``spine`` exactly once, with one column per feature of ``fs``.

    A feature of a spine row is computed over the events of the same entity with
    ``as_of - window <= event_time < as_of`` (see ``engine.features.definitions`` for nulls and
    defaults). Spine columns and dtypes are kept; features are ``int64`` (count) or ``float64``
    (sum, mean; NaN for a null mean). Lazy; each worker holds one entity-hash partition of the
    events at a time. Raises ``DefinitionError`` / ``SchemaMismatch`` (from dtypes only) before
    any task runs.
    """
    import dask.dataframe as dd

    check_inputs(fs, pandas_column_kinds(events.dtypes), pandas_column_kinds(spine.dtypes))
    events = events[[fs.entity, fs.timestamp, *fs.summed_columns()]]
    if pandas_kind(events.dtypes[fs.entity]) == "string":
        # Dask hashes numbers as float64 whatever their width, but strings by dtype.
        events = events.astype({fs.entity: spine.dtypes[fs.entity]})
    n = max(events.npartitions, spine.npartitions)
    events = events.shuffle(on=fs.entity, npartitions=n)
    spine_parts = spine.shuffle(on=fs.entity, npartitions=n)
    meta = features_of_partition(spine._meta, events._meta, fs)
    return dd.map_partitions(features_of_partition, spine_parts, events, fs, meta=meta,
                             align_dataframes=False, enforce_metadata=False)
