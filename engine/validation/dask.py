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

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from engine.validation.suite import (
    AGGREGATE_EXPECTATIONS,
    MAP_EXPECTATIONS,
    RESULT_FORMAT,
    ExpectationSpec,
    Outcome,
    Suite,
    ValidationReport,
    build_report,
    check_supported,
    ge_context,
    ge_results_by_index,
    ge_suite,
    outcome_from_ge,
)

if TYPE_CHECKING:
    import dask.dataframe as dd
    import pandas as pd


def validate_dask(ddf: dd.DataFrame, suite: Suite, table: str) -> ValidationReport:
    """Run ``suite`` over the whole of ``ddf`` in one Dask computation; never raises on failures.

    Raises ``NotSupportedByBackend`` (before computing anything) for an expectation type Dask
    cannot evaluate exactly. Outcomes are in suite order.
    """
    import dask

    check_supported(suite, "dask")
    columns = set(ddf.columns)
    outcomes: dict[int, Outcome] = {}
    map_indices, schema_indices, aggregate_indices = [], [], []
    for index, spec in enumerate(suite.expectations):
        if spec.column is not None and spec.type != "expect_column_to_exist" \
                and spec.column not in columns:
            outcomes[index] = outcome_from_ge(spec, False, {}, exception=_missing_column(spec.column))
        elif spec.type in MAP_EXPECTATIONS:
            map_indices.append(index)
        elif spec.type in AGGREGATE_EXPECTATIONS:
            aggregate_indices.append(index)
        else:
            schema_indices.append(index)

    if schema_indices:
        schema_results = _validate_pandas(ddf._meta, suite, schema_indices)  # noqa: SLF001
        for index in schema_indices:
            outcomes[index] = outcome_from_ge(suite.expectations[index], **schema_results[index])

    row_count = ddf.map_partitions(len, meta=("rows", "int64")).sum()
    aggregates = {index: _aggregate_metric(ddf, suite.expectations[index].type,
                                           suite.expectations[index].column)
                  for index in aggregate_indices}
    # One row of counts per partition, as a Dask frame: the whole check is one expression graph.
    counts = (ddf.map_partitions(_map_counts_of_partition, suite, map_indices,
                                 meta=_counts_meta(map_indices))
              if map_indices else None)
    counts, rows, aggregates = dask.compute(counts, row_count, aggregates)
    rows = int(rows)

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


def _aggregate_metric(ddf: dd.DataFrame, expectation_type: str, column: str | None) -> Any:
    """A lazy exact metric for an aggregate expectation (computed with everything else)."""
    if expectation_type == "expect_table_row_count_to_be_between":
        return None  # the shared row count is used
    series = ddf[column]
    if expectation_type == "expect_column_mean_to_be_between":
        return series.mean(skipna=True)
    if expectation_type == "expect_column_values_to_be_unique":
        # Every row whose value occurs more than once is unexpected (as GE counts it).
        counts = series.dropna().value_counts()
        return {"missing": series.isna().sum(), "unexpected": counts[counts > 1].sum()}
    raise AssertionError(f"no aggregate metric for {expectation_type}")


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
    expectation = get_expectation_impl(expectation_type)(**dict(kwargs))
    if expectation_type == "expect_table_row_count_to_be_between":
        metrics = {"table.row_count": rows}
    else:
        metrics = {"column.mean": None if rows == 0 else _python_float(metric)}
    verdict = expectation._validate(metrics=metrics,  # noqa: SLF001 - GE's own bounds rule
                                    runtime_configuration={"result_format": RESULT_FORMAT})
    return outcome_from_ge(ExpectationSpec(expectation_type, kwargs), verdict["success"],
                           verdict["result"])


def _python_float(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if value != value else value
