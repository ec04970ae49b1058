"""Drift between the training set and a scoring batch: population stability index and null rate.

For each numeric feature, bin edges are the training set's exact quantiles at ``1/bins, ...,
(bins-1)/bins`` (linear interpolation, as numpy's default and Spark's ``percentile``; repeated
edges merged), so each training bin holds about the same share of rows. A value falls in bin
``k`` when exactly ``k`` edges are below it (the same rule on both engines). Over the non-null
values, with shares floored at ``EPSILON`` so an empty bin stays finite::

    PSI = sum_k (score_k - train_k) * ln(score_k / train_k)

A string or boolean feature (e.g. ``last(category)``) is binned by its levels instead: one bin
per level of the training set (the ``drift.max_levels`` most frequent; booleans as ``true`` and
``false`` on both engines) and one bin for every other value, so a level the model never saw
lands in that bin and raises the PSI. Features of other types (timestamps) are not measured:
their row says so (``psi`` null, ``bins`` 0).

Null rates are compared separately (nulls are not a bin). A feature warns when its PSI exceeds
``drift.psi_threshold`` or its null rate moved by more than ``drift.null_rate_threshold``. Both
engines compute the quantiles and counts exactly over every row (``CanMeasureDrift``); the
figures are written by the client as one Delta commit carrying lineage (``write_drift_metrics``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

log = logging.getLogger(__name__)

EPSILON = 1e-4
NUMERIC_KINDS = frozenset({"integer", "float"})
CATEGORICAL_KINDS = frozenset({"string", "boolean"})


@dataclass(frozen=True)
class FeatureDrift:
    feature: str
    psi: float | None
    train_null_rate: float | None
    score_null_rate: float | None
    train_rows: int
    score_rows: int
    bins: int
    warn: bool


def quantile_probabilities(bins: int) -> list[float]:
    return [k / bins for k in range(1, bins)]


def bin_edges(quantiles: Sequence[float | None]) -> list[float]:
    """Strictly increasing edges from quantiles (repeated values merged, missing dropped)."""
    return sorted({float(q) for q in quantiles if q is not None})


def population_stability_index(train_counts: Sequence[int], score_counts: Sequence[int]) -> float | None:
    """PSI of two histograms over the same bins; None when either side has no value."""
    train_total, score_total = sum(train_counts), sum(score_counts)
    if not train_total or not score_total:
        return None
    psi = 0.0
    for t, s in zip(train_counts, score_counts, strict=True):
        p, q = max(t / train_total, EPSILON), max(s / score_total, EPSILON)
        psi += (q - p) * math.log(q / p)
    return psi


def measure_drift(backend: Any, train_frame: Any, score_frame: Any, features: Sequence[str],
                  bins: int, psi_threshold: float, null_rate_threshold: float,
                  kinds: Mapping[str, str] | None = None, max_levels: int = 20) -> list[FeatureDrift]:
    """Each feature's drift from the training frame to the scoring frame (see the module doc).

    ``kinds`` maps a feature to its column kind (``engine.validation.profile.column_kinds``);
    a feature missing from it is taken as numeric."""
    from engine.backend import CanMeasureDrift, require

    measurer = require(backend, CanMeasureDrift, "drift measurement")
    kinds = dict(kinds or {})
    numeric = [f for f in features if kinds.get(f, "float") in NUMERIC_KINDS]
    categorical = [f for f in features if kinds.get(f) in CATEGORICAL_KINDS]
    figures: dict[str, tuple[list[int], list[int], dict, dict]] = {}
    if numeric:
        quantiles = measurer.column_quantiles(train_frame, numeric, quantile_probabilities(bins))
        edges = {f: bin_edges(quantiles[f]) for f in numeric}
        train = measurer.bin_counts(train_frame, edges)
        score = measurer.bin_counts(score_frame, edges)
        figures |= {f: (train[f]["counts"], score[f]["counts"], train[f], score[f]) for f in numeric}
    if categorical:
        train = measurer.level_counts(train_frame, categorical)
        score = measurer.level_counts(score_frame, categorical)
        for f in categorical:
            levels = top_levels(train[f]["levels"], max_levels)
            figures[f] = (level_histogram(train[f]["levels"], levels),
                          level_histogram(score[f]["levels"], levels), train[f], score[f])
    out = []
    for f in features:
        if f not in figures:
            log.info("drift of feature %s not measured: its type (%s) has no drift measure",
                     f, kinds.get(f))
            out.append(FeatureDrift(feature=f, psi=None, train_null_rate=None, score_null_rate=None,
                                    train_rows=0, score_rows=0, bins=0, warn=False))
            continue
        train_counts, score_counts, t, s = figures[f]
        psi = population_stability_index(train_counts, score_counts)
        t_null = _rate(t["nulls"], t["rows"])
        s_null = _rate(s["nulls"], s["rows"])
        warn = (psi is not None and psi > psi_threshold) or (
            t_null is not None and s_null is not None and abs(s_null - t_null) > null_rate_threshold)
        out.append(FeatureDrift(feature=f, psi=psi, train_null_rate=t_null, score_null_rate=s_null,
                                train_rows=int(t["rows"]), score_rows=int(s["rows"]),
                                bins=len(train_counts), warn=bool(warn)))
        if warn:
            log.warning("drift in feature %s: PSI %s (threshold %s), null rate %s → %s",
                        f, _fmt(psi), psi_threshold, _fmt(t_null), _fmt(s_null))
    return out


def top_levels(counts: Mapping[str, int], max_levels: int) -> list[str]:
    """The training set's ``max_levels`` most frequent levels (ties by level, so both engines
    pick the same ones)."""
    return [level for level, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:max_levels]]


def level_histogram(counts: Mapping[str, int], levels: Sequence[str]) -> list[int]:
    """Counts of ``levels`` in order, then one bin for every other value (unseen levels)."""
    known = set(levels)
    return [int(counts.get(level, 0)) for level in levels] + \
        [int(sum(n for level, n in counts.items() if level not in known))]


def drift_rows(drifts: Sequence[FeatureDrift], constants: Mapping[str, Any]) -> Any:
    """The figures as an Arrow table, one row per feature, with ``constants`` as columns."""
    import pyarrow as pa

    rows = [{**constants, **asdict(d)} for d in drifts]
    schema = pa.schema([*(pa.field(k, pa.string()) for k in constants),
                        ("feature", pa.string()), ("psi", pa.float64()),
                        ("train_null_rate", pa.float64()), ("score_null_rate", pa.float64()),
                        ("train_rows", pa.int64()), ("score_rows", pa.int64()),
                        ("bins", pa.int64()), ("warn", pa.bool_())])
    return pa.Table.from_pylist(rows, schema=schema)


def write_drift_metrics(drifts: Sequence[FeatureDrift], table: Any, commit: Any,
                        constants: Mapping[str, Any]) -> Any:
    """Append the figures to the Delta metrics table ``table`` in one commit (skipped when this
    commit's app transaction is already in, so a rerun writes nothing twice)."""
    from engine.storage.commit import commit_files
    from engine.storage.data_files import write_parquet_file
    from engine.storage.snapshots import committed_in, open_table
    from engine.storage.table import WriteMode, WriteResult

    delta = open_table(table)
    if committed_in(delta, commit):
        return WriteResult(table=table, version=delta.version(), rows=0, files=0, skipped=True)
    data = drift_rows(drifts, constants)
    files = write_parquet_file(data, table)
    version = commit_files(table, files, data.schema, WriteMode.APPEND, commit)
    return WriteResult(table=table, version=version, rows=data.num_rows, files=len(files))


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
