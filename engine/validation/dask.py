"""Validate a Dask DataFrame exactly, over every row, with Great Expectations' own verdicts.

GE 1.x has no Dask engine (GE #5816), so the suite is split by what each expectation needs:

* row-level (map) expectations run through GE's pandas engine on every partition; their counts
  (rows, nulls, unexpected) add up exactly across partitions;
* aggregate ones get their metric from one exact distributed computation: the row count, the
  column mean, and, for uniqueness, the number of rows whose value occurs more than once in the
  whole frame (a per-partition check would miss duplicates split across partitions);
* schema ones run through GE's pandas engine on the frame's empty ``_meta``.

The combined metrics are then judged by the GE expectation's own ``_validate`` (``mostly``,
strict bounds, vacuous truth on empty frames), so success flags, unexpected/element counts and
observed values match GE's Spark engine on the same data. Nothing is sampled and nothing but
metrics reaches the client.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from engine.validation.suite import (
    AGGREGATE_EXPECTATIONS,
    MAP_EXPECTATIONS,
    QUARANTINE_REASONS,
    RESULT_FORMAT,
    SCHEMA_EXPECTATIONS,
    TYPE_EXPECTATIONS,
    ExpectationSpec,
    ExpectationSupport,
    Outcome,
    Suite,
    ValidationReport,
    build_report,
    check_supported,
    ge_context,
    ge_results_by_index,
    ge_suite,
    outcome_from_ge,
    plain_value,
)

if TYPE_CHECKING:
    import dask.dataframe as dd
    import pandas as pd

SUPPORTED_EXPECTATIONS = ExpectationSupport(
    types=MAP_EXPECTATIONS | SCHEMA_EXPECTATIONS | AGGREGATE_EXPECTATIONS | TYPE_EXPECTATIONS,
    row_condition_types=MAP_EXPECTATIONS, without_mostly=TYPE_EXPECTATIONS)
"""What this module evaluates exactly (the table in ``engine.validation``): row conditions only
on row-level types, whose counts it sums (aggregates are computed by lakescore itself); type
checks without ``mostly``. The Dask backend declares it (``engine.backend.Capabilities``)."""


def validate_dask(ddf: dd.DataFrame, suite: Suite, table: str) -> ValidationReport:
    """Run ``suite`` over the whole of ``ddf`` in one Dask computation; never raises on failures.

    Raises ``NotSupportedByBackend`` (before computing anything) for an expectation type Dask
    cannot evaluate exactly. Outcomes are in suite order.
    """
    import dask

    check_supported(suite, "dask", SUPPORTED_EXPECTATIONS)
    columns = set(ddf.columns)
    outcomes: dict[int, Outcome] = {}
    map_indices, schema_indices, aggregate_indices, type_indices = [], [], [], []
    for index, spec in enumerate(suite.expectations):
        missing = [c for c in spec.columns if c not in columns]
        if missing and spec.type != "expect_column_to_exist":
            outcomes[index] = outcome_from_ge(spec, False, {}, exception=_missing_column(missing[0]))
        elif spec.type in MAP_EXPECTATIONS:
            map_indices.append(index)
        elif spec.type in AGGREGATE_EXPECTATIONS:
            aggregate_indices.append(index)
        elif spec.type in TYPE_EXPECTATIONS:
            type_indices.append(index)
        else:
            schema_indices.append(index)

    if schema_indices:
        schema_results = _validate_pandas(ddf._meta, suite, schema_indices)  # noqa: SLF001
        for index in schema_indices:
            outcomes[index] = outcome_from_ge(suite.expectations[index], **schema_results[index])

    row_count = ddf.map_partitions(len, meta=("rows", "int64")).sum()
    aggregates = {index: _aggregate_metric(ddf, suite.expectations[index], row_count)
                  for index in aggregate_indices}
    # One row of counts per partition, as a Dask frame: the whole check is one expression graph.
    counts = (ddf.map_partitions(_map_counts_of_partition, suite, map_indices,
                                 meta=_counts_meta(map_indices))
              if map_indices else None)
    verdicts = (ddf.map_partitions(_type_verdicts_of_partition, suite, type_indices,
                                   meta=_type_meta(type_indices))
                if type_indices else None)
    counts, rows, aggregates, verdicts = dask.compute(counts, row_count, aggregates, verdicts)
    rows = int(rows)
    for index in type_indices:
        outcomes[index] = _combine_type_verdicts(suite.expectations[index], verdicts, index)

    for index in map_indices:
        spec = suite.expectations[index]
        errors = counts[f"error_{index}"].dropna()
        if len(errors):
            outcomes[index] = outcome_from_ge(spec, False, {}, exception=str(errors.iloc[0]))
            continue
        # Rows GE considered (fewer than ``rows`` under a row_condition).
        outcomes[index] = _judge_map(spec.type, spec.kwargs,
                                     int(counts[f"elements_{index}"].sum()),
                                     int(counts[f"missing_{index}"].sum()),
                                     int(counts[f"unexpected_{index}"].sum()))
    for index in aggregate_indices:
        spec = suite.expectations[index]
        outcomes[index] = _judge_aggregate(spec.type, spec.kwargs, rows, aggregates[index])

    return build_report(table, suite, [outcomes[i] for i in range(len(suite.expectations))],
                        engine="dask")


def _missing_column(column: str) -> str:
    # GE's own wording, so a report reads the same on both engines.
    return f'Error: The column "{column}" in BatchData does not exist.'


def _validate_pandas(pdf: pd.DataFrame, suite: Suite, indices: list[int]) -> dict[int, dict]:
    """GE's pandas engine over one pandas frame, results keyed by suite index."""
    context = ge_context()
    asset = context.data_sources.add_pandas(name="lakescore").add_dataframe_asset(name="part")
    batch = asset.add_batch_definition_whole_dataframe("whole").get_batch(
        batch_parameters={"dataframe": pdf})
    return ge_results_by_index(batch.validate(ge_suite(suite, indices), result_format=RESULT_FORMAT))


def _counts_meta(indices: list[int]) -> pd.DataFrame:
    import pandas as pd

    columns = {}
    for index in indices:
        columns[f"elements_{index}"] = pd.Series([], dtype="int64")
        columns[f"missing_{index}"] = pd.Series([], dtype="int64")
        columns[f"unexpected_{index}"] = pd.Series([], dtype="int64")
        columns[f"error_{index}"] = pd.Series([], dtype="object")
    return pd.DataFrame(columns)


def _map_counts_of_partition(pdf: pd.DataFrame, suite: Suite, indices: list[int]) -> pd.DataFrame:
    """One row: per row-level expectation, this partition's considered rows, nulls and unexpected
    rows, or GE's error (runs on a worker)."""
    import pandas as pd

    results = _validate_pandas(pdf, suite, indices)
    row: dict[str, Any] = {}
    for index in indices:
        res = results[index]
        result = res["result"]
        unexpected = result.get("unexpected_count")
        considered = int(result.get("element_count") or 0)
        if unexpected is None and considered == 0:
            unexpected = 0  # nothing considered in this partition
        error = res["exception"] or (None if unexpected is not None else f"no counts from GE: {result}")
        # not_null reports no missing_count: its nulls are its unexpected rows.
        row[f"elements_{index}"] = considered
        row[f"missing_{index}"] = int(result.get("missing_count", unexpected or 0))
        row[f"unexpected_{index}"] = int(unexpected or 0)
        row[f"error_{index}"] = error
    return pd.DataFrame([row], columns=list(_counts_meta(indices).columns)).astype(
        _counts_meta(indices).dtypes.to_dict())


# Aggregate expectation → the GE metric its ``_validate`` reads (fed by ``_aggregate_metric``).
_METRIC_OF = {
    "expect_table_row_count_to_be_between": "table.row_count",
    "expect_table_row_count_to_equal": "table.row_count",
    "expect_column_mean_to_be_between": "column.mean",
    "expect_column_min_to_be_between": "column.min",
    "expect_column_max_to_be_between": "column.max",
    "expect_column_sum_to_be_between": "column.sum",
    "expect_column_proportion_of_non_null_values_to_be_between": "column.non_null_proportion",
    "expect_column_unique_value_count_to_be_between": "column.distinct_values.count",
}


def _type_meta(indices: list[int]) -> pd.DataFrame:
    import pandas as pd

    columns = {}
    for index in indices:
        columns[f"success_{index}"] = pd.Series([], dtype="bool")
        columns[f"observed_{index}"] = pd.Series([], dtype="object")
        columns[f"elements_{index}"] = pd.Series([], dtype="int64")
        columns[f"unexpected_{index}"] = pd.Series([], dtype="int64")
        columns[f"error_{index}"] = pd.Series([], dtype="object")
    return pd.DataFrame(columns)


def _type_verdicts_of_partition(pdf: pd.DataFrame, suite: Suite, indices: list[int]) -> pd.DataFrame:
    """One row: GE's verdict on each type expectation in this partition (runs on a worker).

    Dask holds string columns in pandas' ``string`` dtype, which GE's pandas engine cannot name
    (it would judge every such column a mismatch). Like Spark's ``StringType``, the dtype alone
    decides: the column matches when ``type_list`` names ``str`` (or ``string``,
    ``StringDtype``), and the observed type is ``str`` (GE's own name for that dtype)."""
    import pandas as pd

    strings = {i for i in indices
               if isinstance(pdf[suite.expectations[i].column].dtype, pd.StringDtype)}
    results = _validate_pandas(pdf, suite, [i for i in indices if i not in strings]) \
        if len(strings) < len(indices) else {}
    for index in strings:
        names = set(suite.expectations[index].kwargs.get("type_list") or ())
        results[index] = {"success": bool(names & {"str", "string", "StringDtype"}),
                          "result": {"observed_value": "str"}, "exception": None}
    row: dict[str, Any] = {}
    for index in indices:
        result = results[index]["result"]
        row[f"success_{index}"] = results[index]["success"]
        row[f"observed_{index}"] = result.get("observed_value")
        row[f"elements_{index}"] = int(result.get("element_count") or 0)
        row[f"unexpected_{index}"] = int(result.get("unexpected_count") or 0)
        row[f"error_{index}"] = results[index]["exception"]
    meta = _type_meta(indices)
    return pd.DataFrame([row], columns=list(meta.columns)).astype(meta.dtypes.to_dict())


def _combine_type_verdicts(spec: ExpectationSpec, verdicts: pd.DataFrame, index: int) -> Outcome:
    """Every partition must pass (``mostly`` is refused on Dask); value-by-value counts add up,
    a dtype verdict observes the dtype (the same in every partition)."""
    errors = verdicts[f"error_{index}"].dropna()
    if len(errors):
        return outcome_from_ge(spec, False, {}, exception=str(errors.iloc[0]))
    observed = verdicts[f"observed_{index}"].dropna()
    result: dict[str, Any] = ({"observed_value": observed.iloc[0]} if len(observed) else
                              {"element_count": int(verdicts[f"elements_{index}"].sum()),
                               "unexpected_count": int(verdicts[f"unexpected_{index}"].sum())})
    return outcome_from_ge(spec, bool(verdicts[f"success_{index}"].all()), result)


def _aggregate_metric(ddf: dd.DataFrame, spec: ExpectationSpec, row_count: Any) -> Any:
    """A lazy exact metric for an aggregate expectation (computed with everything else).

    Metrics over no non-null value (the mean, min, max and sum of an empty or all-null column)
    come out as None, as Spark's SQL aggregates give them."""
    if spec.type in ("expect_table_row_count_to_be_between", "expect_table_row_count_to_equal"):
        return row_count
    if spec.type == "expect_compound_columns_to_be_unique":
        return _compound_duplicates(ddf, list(spec.columns),
                                    spec.kwargs.get("ignore_row_if", "all_values_are_missing"))
    series = ddf[spec.column]
    if spec.type == "expect_column_values_to_be_unique":
        # Every row whose value occurs more than once is unexpected (as GE counts it).
        counts = series.dropna().value_counts()
        return {"missing": series.isna().sum(), "unexpected": counts[counts > 1].sum()}
    non_null = series.count()
    if spec.type == "expect_column_proportion_of_non_null_values_to_be_between":
        return {"non_null": non_null, "rows": row_count}
    if spec.type == "expect_column_unique_value_count_to_be_between":
        return series.nunique(dropna=True)
    if spec.type == "expect_column_mean_to_be_between":
        value = series.mean(skipna=True)
    elif spec.type == "expect_column_min_to_be_between":
        value = series.min(skipna=True)
    elif spec.type == "expect_column_max_to_be_between":
        value = series.max(skipna=True)
    elif spec.type == "expect_column_sum_to_be_between":
        value = series.sum(skipna=True)
    else:
        raise AssertionError(f"no aggregate metric for {spec.type}")
    return {"value": value, "non_null": non_null}


def _compound_duplicates(ddf: dd.DataFrame, columns: list[str], ignore_row_if: str) -> dict:
    """Rows GE considers and rows whose combination of ``columns`` occurs more than once.

    Nulls compare equal (pandas ``duplicated`` and Spark's window over a struct both group
    them); rows are ignored as GE's ``ignore_row_if`` says."""
    frame = _considered_rows(ddf[columns], ignore_row_if)
    sizes = frame.groupby(columns, dropna=False).size()
    return {"considered": frame.map_partitions(len, meta=("rows", "int64")).sum(),
            "unexpected": sizes[sizes > 1].sum()}


def _judge_map(expectation_type: str, kwargs: Mapping[str, Any], rows: int, missing: int,
               unexpected: int) -> Outcome:
    """GE's own verdict (mostly, vacuous truth) over whole-frame counts."""
    from great_expectations.expectations.registry import get_expectation_impl

    expectation = get_expectation_impl(expectation_type)(**dict(kwargs))
    metric = expectation.map_metric
    verdict = expectation._validate(  # noqa: SLF001 - GE's decision rule, fed exact metrics
        metrics={"table.row_count": rows,
                 "column_values.nonnull.unexpected_count": missing,
                 f"{metric}.unexpected_count": unexpected,
                 f"{metric}.unexpected_values": [],
                 f"{metric}.unexpected_index_list": None},
        runtime_configuration={"result_format": RESULT_FORMAT})
    return outcome_from_ge(ExpectationSpec(expectation_type, kwargs), verdict["success"],
                           verdict["result"])


def _judge_aggregate(expectation_type: str, kwargs: Mapping[str, Any], rows: int,
                     metric: Any) -> Outcome:
    from great_expectations.expectations.registry import get_expectation_impl

    if expectation_type == "expect_column_values_to_be_unique":
        return _judge_map(expectation_type, kwargs, rows, int(metric["missing"]),
                          int(metric["unexpected"]))
    if expectation_type == "expect_compound_columns_to_be_unique":
        return _judge_multicolumn(expectation_type, kwargs, rows, int(metric["considered"]),
                                  int(metric["unexpected"]))
    expectation = get_expectation_impl(expectation_type)(**dict(kwargs))
    name = _METRIC_OF[expectation_type]
    if name == "table.row_count":
        value: Any = rows
    elif name == "column.non_null_proportion":
        value = int(metric["non_null"]) / rows if rows else 0  # GE's own rule for 0 rows
    elif name == "column.distinct_values.count":
        value = int(metric)
    elif name == "column.mean":
        value = _python_float(metric["value"]) if int(metric["non_null"]) else None
    else:
        value = plain_value(metric["value"]) if int(metric["non_null"]) else None
    verdict = expectation._validate(metrics={name: value},  # noqa: SLF001 - GE's own bounds rule
                                    runtime_configuration={"result_format": RESULT_FORMAT})
    return outcome_from_ge(ExpectationSpec(expectation_type, kwargs), verdict["success"],
                           verdict["result"])


def _judge_multicolumn(expectation_type: str, kwargs: Mapping[str, Any], rows: int,
                       considered: int, unexpected: int) -> Outcome:
    """GE's multicolumn verdict (mostly over the rows not ignored) over whole-frame counts."""
    from great_expectations.expectations.registry import get_expectation_impl

    expectation = get_expectation_impl(expectation_type)(**dict(kwargs))
    metric = expectation.map_metric
    verdict = expectation._validate(  # noqa: SLF001 - GE's decision rule, fed exact metrics
        metrics={"table.row_count": rows,
                 f"{metric}.unexpected_count": unexpected,
                 f"{metric}.filtered_row_count": considered,
                 f"{metric}.unexpected_values": [],
                 f"{metric}.unexpected_index_list": None},
        runtime_configuration={"result_format": RESULT_FORMAT})
    return outcome_from_ge(ExpectationSpec(expectation_type, kwargs), verdict["success"],
                           verdict["result"])


def _python_float(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if value != value else value


def quarantine_split_dask(ddf: dd.DataFrame, rules: Sequence[RowRule],
                          constants: Mapping[str, str]) -> tuple[dd.DataFrame, dd.DataFrame]:
    """``(kept, quarantined)``: the rows no rule blames, and the others with their reasons.

    Row-by-row rules are judged inside each partition. Uniqueness rules need the whole frame:
    the duplicated keys are computed first (one distributed count; only the duplicated keys,
    the defects themselves, reach the client) and each partition then looks its rows up."""
    import dask

    duplicated = dask.compute({i: _duplicated_keys(ddf, rule) for i, rule in enumerate(rules)
                               if rule.expectation_type in _UNIQUENESS})[0]
    meta = ddf._meta  # noqa: SLF001
    quarantined_meta = meta.assign(**{QUARANTINE_REASONS: _empty_object_series(meta)},
                                   **{name: _empty_object_series(meta) for name in constants})
    kept = ddf.map_partitions(_split_partition, list(rules), duplicated, dict(constants), False,
                              meta=meta)
    quarantined = ddf.map_partitions(_split_partition, list(rules), duplicated, dict(constants),
                                     True, meta=quarantined_meta)
    return kept, quarantined


_UNIQUENESS = ("expect_column_values_to_be_unique", "expect_compound_columns_to_be_unique")


def _empty_object_series(meta: pd.DataFrame) -> pd.Series:
    import pandas as pd

    return pd.Series([], dtype="object", index=meta.index)


def _flags(comparison: Any) -> Any:
    """A comparison as a plain boolean array (pandas' nullable types give NA for nulls)."""
    return comparison.fillna(False).to_numpy(dtype=bool)


def _duplicated_keys(ddf: dd.DataFrame, rule: RowRule) -> Any:
    """Keys occurring more than once among the rows GE considers (a lazy Dask series)."""
    if rule.expectation_type == "expect_column_values_to_be_unique":
        counts = ddf[rule.column].dropna().value_counts()
        return counts[counts > 1].index.to_series()
    columns = list(rule.columns)
    frame = _considered_rows(ddf[columns], rule.kwargs.get("ignore_row_if", "all_values_are_missing"))
    sizes = frame.groupby(columns, dropna=False).size()
    return sizes[sizes > 1].reset_index()[columns]


def _considered_rows(frame: Any, ignore_row_if: str) -> Any:
    if ignore_row_if == "all_values_are_missing":
        return frame[~frame.isna().all(axis=1)]
    if ignore_row_if == "any_value_is_missing":
        return frame[~frame.isna().any(axis=1)]
    return frame


def _split_partition(pdf: pd.DataFrame, rules: list[RowRule], duplicated: dict[int, Any],
                     constants: dict[str, str], want_quarantined: bool) -> pd.DataFrame:
    """The partition's kept rows, or its quarantined rows with their reasons (on a worker)."""
    import numpy as np
    import pandas as pd

    blamed = [_blames(pdf, rule, duplicated.get(i)) for i, rule in enumerate(rules)]
    any_rule = np.logical_or.reduce(blamed) if blamed else np.zeros(len(pdf), dtype=bool)
    if not want_quarantined:
        return pdf[~any_rule]
    out = pdf[any_rule].copy()
    out[QUARANTINE_REASONS] = pd.Series(
        ["; ".join(rule.reason for rule, flags in zip(rules, blamed) if flags[row])
         for row in np.flatnonzero(any_rule)], index=out.index, dtype="object")
    for name, value in constants.items():
        out[name] = pd.Series([value] * len(out), index=out.index, dtype="object")
    return out


def _blames(pdf: pd.DataFrame, rule: RowRule, duplicated: Any) -> Any:
    """A numpy boolean array: true where ``rule`` blames the row (GE's semantics)."""
    import numpy as np
    import pandas as pd

    kwargs = rule.kwargs
    if rule.expectation_type == "expect_compound_columns_to_be_unique":
        columns = list(rule.columns)
        missing = pdf[columns].isna()
        ignore_row_if = kwargs.get("ignore_row_if", "all_values_are_missing")
        considered = (~missing.all(axis=1) if ignore_row_if == "all_values_are_missing"
                      else ~missing.any(axis=1) if ignore_row_if == "any_value_is_missing"
                      else np.ones(len(pdf), dtype=bool))
        considered = np.asarray(considered, dtype=bool)
        keys = pd.MultiIndex.from_frame(pdf[columns])
        dup = pd.MultiIndex.from_frame(duplicated[columns]) if len(duplicated) else keys[:0]
        return np.asarray(considered & keys.isin(dup), dtype=bool)
    column = pdf[rule.column]
    present = column.notna().to_numpy(dtype=bool)
    if rule.expectation_type == "expect_column_values_to_not_be_null":
        return ~present
    if rule.expectation_type == "expect_column_values_to_be_null":
        return present
    if rule.expectation_type == "expect_column_values_to_be_in_set":
        return present & ~_flags(column.isin(list(kwargs["value_set"])))
    if rule.expectation_type == "expect_column_values_to_not_be_in_set":
        return present & _flags(column.isin(list(kwargs["value_set"])))
    if rule.expectation_type == "expect_column_values_to_be_unique":
        return present & _flags(column.isin(list(duplicated)))
    if rule.expectation_type == "expect_column_values_to_be_between":
        low, high = kwargs.get("min_value"), kwargs.get("max_value")
        out = np.zeros(len(pdf), dtype=bool)
        if low is not None:
            out |= _flags(column <= low if kwargs.get("strict_min") else column < low)
        if high is not None:
            out |= _flags(column >= high if kwargs.get("strict_max") else column > high)
        return present & out
    raise AssertionError(f"no row rule for {rule.expectation_type}")


def profile_columns_dask(ddf: dd.DataFrame, kinds: Mapping[str, str],
                         max_values: int) -> tuple[int, dict[str, dict]]:
    """Row count and, per column, exact non-null count, min, max, distinct count and (at most
    ``max_values``) distinct values: one Dask computation, then one more for the value sets."""
    import dask

    from engine.validation.kinds import BOOLEAN, OTHER

    lazy: dict[str, dict[str, Any]] = {}
    for name, kind in kinds.items():
        series = ddf[name]
        lazy[name] = {"non_null": series.count(), "distinct": series.nunique(dropna=True)}
        if kind not in (BOOLEAN, OTHER):
            lazy[name].update(min=series.min(skipna=True), max=series.max(skipna=True))
    rows, stats = dask.compute(ddf.map_partitions(len, meta=("rows", "int64")).sum(), lazy)
    few = [name for name in kinds if int(stats[name]["distinct"]) <= max_values]
    values = dask.compute({name: ddf[name].dropna().unique() for name in few})[0]
    for name in kinds:
        stat = stats[name]
        empty = int(stat["non_null"]) == 0
        stat["min"] = None if empty else stat.get("min")
        stat["max"] = None if empty else stat.get("max")
        stat["values"] = list(values[name]) if name in values else None
    return int(rows), stats


def column_quantiles_dask(ddf: dd.DataFrame, columns: Sequence[str],
                          probabilities: Sequence[float]) -> dict[str, list]:
    """Exact quantiles of each column's non-null values with numpy's linear interpolation
    (Dask's own ``quantile`` is approximate): the values are sorted across partitions and only
    the order statistics needed are brought to the client."""
    import dask
    import numpy as np

    out = {}
    for column in columns:
        values = ddf[[column]].dropna().astype({column: "float64"}).sort_values(column)[column]
        lengths = [int(n) for n in values.map_partitions(len).compute()]
        total = sum(lengths)
        if total == 0:
            out[column] = [None] * len(probabilities)
            continue
        ranks = {p: p * (total - 1) for p in probabilities}
        wanted = sorted({int(np.floor(r)) for r in ranks.values()} | {int(np.ceil(r)) for r in ranks.values()})
        starts = np.cumsum([0, *lengths])
        picks: dict[int, list[int]] = {}
        for position in wanted:
            part = int(np.searchsorted(starts, position, side="right") - 1)
            picks.setdefault(part, []).append(position - int(starts[part]))
        got = dask.compute({part: dask.delayed(_take)(values.partitions[part].to_delayed()[0], offsets)
                            for part, offsets in picks.items()})[0]
        at = {int(starts[part]) + offset: value for part, offsets in picks.items()
              for offset, value in zip(offsets, got[part])}
        out[column] = [at[int(np.floor(r))] + (at[int(np.ceil(r))] - at[int(np.floor(r))]) * (r - np.floor(r))
                       for r in ranks.values()]
    return out


def _take(series: pd.Series, offsets: list[int]) -> list[float]:
    return [float(v) for v in series.iloc[offsets]]


def bin_counts_dask(ddf: dd.DataFrame, edges: Mapping[str, Sequence[float]]) -> dict[str, dict]:
    """Per column: rows, nulls, and the count of non-null values in each bin (bin ``k``: exactly
    ``k`` edges below the value), counted per partition and summed."""
    import dask

    parts = [dask.delayed(_bin_counts_of_partition)(part, dict(edges)) for part in ddf.to_delayed()]
    (per_partition,) = dask.compute(parts)
    out = {}
    for column, column_edges in edges.items():
        counts = [0] * (len(column_edges) + 1)
        rows = nulls = 0
        for result in per_partition:
            rows += result[column]["rows"]
            nulls += result[column]["nulls"]
            counts = [a + b for a, b in zip(counts, result[column]["counts"], strict=True)]
        out[column] = {"rows": rows, "nulls": nulls, "counts": counts}
    return out


def _bin_counts_of_partition(pdf: pd.DataFrame, edges: dict[str, list[float]]) -> dict[str, dict]:
    import numpy as np

    out = {}
    for column, column_edges in edges.items():
        values = pdf[column].astype("float64").to_numpy(dtype="float64", na_value=np.nan)
        present = ~np.isnan(values)
        index = np.searchsorted(np.asarray(column_edges, dtype="float64"), values[present], side="left")
        out[column] = {"rows": int(len(values)), "nulls": int((~present).sum()),
                       "counts": [int(n) for n in np.bincount(index, minlength=len(column_edges) + 1)]}
    return out


def level_counts_dask(ddf: dd.DataFrame, columns: Sequence[str]) -> dict[str, dict]:
    """Per column: rows, nulls and the count of each value as text (booleans ``true``/``false``,
    as Spark casts them), counted per partition and summed."""
    import dask

    parts = [dask.delayed(_level_counts_of_partition)(part, list(columns)) for part in ddf.to_delayed()]
    (per_partition,) = dask.compute(parts)
    out: dict[str, dict] = {c: {"rows": 0, "nulls": 0, "levels": {}} for c in columns}
    for result in per_partition:
        for column, counted in result.items():
            total = out[column]
            total["rows"] += counted["rows"]
            total["nulls"] += counted["nulls"]
            for level, n in counted["levels"].items():
                total["levels"][level] = total["levels"].get(level, 0) + n
    return out


def _level_counts_of_partition(pdf: pd.DataFrame, columns: list[str]) -> dict[str, dict]:
    import numpy as np

    def text(value: Any) -> str:
        return ("true" if value else "false") if isinstance(value, (bool, np.bool_)) else str(value)

    out = {}
    for column in columns:
        values = pdf[column]
        present = values.dropna().astype(object)
        counts = present.map(text).value_counts()
        out[column] = {"rows": int(len(values)), "nulls": int(len(values) - len(present)),
                       "levels": {str(k): int(n) for k, n in counts.items()}}
    return out


def count_all_default_dask(ddf: dd.DataFrame, defaults: Mapping[str, Any]) -> tuple[int, int]:
    """Rows, and rows where every column holds its default (null for a None default), counted
    per partition and summed."""
    import dask

    parts = [dask.delayed(_count_all_default_of_partition)(part, dict(defaults)) for part in ddf.to_delayed()]
    (counts,) = dask.compute(parts)
    return sum(c[0] for c in counts), sum(c[1] for c in counts)


def _count_all_default_of_partition(pdf: pd.DataFrame, defaults: dict[str, Any]) -> tuple[int, int]:
    import numpy as np
    import pandas as pd

    match = np.ones(len(pdf), dtype=bool)
    for column, default in defaults.items():
        values = pdf[column]
        if default is None:
            match &= values.isna().to_numpy()
        else:
            numbers = pd.to_numeric(values, errors="coerce").astype("float64").to_numpy(na_value=np.nan)
            match &= numbers == float(default)
    return len(pdf), int(match.sum())
