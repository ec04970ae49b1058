"""Validate a Spark DataFrame with Great Expectations' own Spark engine.

GE's Spark datasource is handed the DataFrame's session and no ``spark_config`` (with a config it
may stop a running session and start another), and ``persist=False`` (by default it caches the
whole batch). Every metric is computed by Spark jobs; nothing is collected but the metrics.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from engine.validation.suite import (
    QUARANTINE_REASONS,
    RESULT_FORMAT,
    ExpectationSupport,
    Suite,
    ValidationReport,
    build_report,
    ge_context,
    ge_results_by_index,
    ge_suite,
    outcome_from_ge,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

SUPPORTED_EXPECTATIONS = ExpectationSupport()
"""Every type Great Expectations' own Spark engine runs (the Spark backend declares it)."""


def validate_spark(df: DataFrame, suite: Suite, table: str) -> ValidationReport:
    """Run ``suite`` over the whole of ``df``; never raises on failed expectations.

    Outcomes are in suite order. An expectation GE cannot evaluate (e.g. its column is missing)
    is a failed outcome carrying GE's message.
    """
    context = ge_context()
    datasource = context.data_sources.add_spark(name="lakescore", persist=False)
    # Pin GE to this DataFrame's session: without it GE looks a session up (or builds one).
    datasource._spark = df.sparkSession  # noqa: SLF001 - GE has no public way to hand one in
    asset = datasource.add_dataframe_asset(name=_asset_name(table))
    batch = asset.add_batch_definition_whole_dataframe("whole").get_batch(
        batch_parameters={"dataframe": df})
    result = batch.validate(ge_suite(suite), result_format=RESULT_FORMAT)
    by_index = ge_results_by_index(result)
    outcomes = [outcome_from_ge(spec, **by_index[i]) for i, spec in enumerate(suite.expectations)]
    return build_report(table, suite, outcomes, engine="spark")


def _asset_name(table: str) -> str:
    return "".join(c if c.isalnum() or c in "_-" else "_" for c in table) or "frame"


def quarantine_split_spark(df: DataFrame, rules: Sequence[RowRule],
                           constants: Mapping[str, str]) -> tuple[DataFrame, DataFrame]:
    """``(kept, quarantined)``: the rows no rule blames, and the others with their reasons.

    Both are lazy; uniqueness rules count keys with a window over the whole frame (every row
    of a duplicated key is blamed, as GE counts it). ``constants`` become string columns of the
    quarantined rows (run id, source table version)."""
    from pyspark.sql import functions as F

    blamed = [(rule.reason, F.coalesce(_blames(rule), F.lit(False))) for rule in rules]
    flags = df.withColumns({f"__rule_{i}": flag for i, (_, flag) in enumerate(blamed)})
    any_rule = F.lit(False)
    for i in range(len(blamed)):
        any_rule = any_rule | F.col(f"__rule_{i}")
    reasons = F.concat_ws("; ", *[F.when(F.col(f"__rule_{i}"), F.lit(reason))
                                  for i, (reason, _) in enumerate(blamed)])
    kept = flags.filter(~any_rule).select(*df.columns)
    quarantined = (flags.filter(any_rule)
                   .withColumn(QUARANTINE_REASONS, reasons)
                   .withColumns({name: F.lit(value) for name, value in constants.items()})
                   .select(*df.columns, QUARANTINE_REASONS, *constants))
    return kept, quarantined


def _blames(rule: RowRule):
    """A Spark boolean column: true where ``rule`` blames the row (GE's semantics)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    kwargs = rule.kwargs
    if rule.expectation_type == "expect_compound_columns_to_be_unique":
        cols = [F.col(c) for c in rule.columns]
        considered = _considered(cols, kwargs.get("ignore_row_if", "all_values_are_missing"))
        count = F.count(F.lit(1)).over(Window.partitionBy(F.struct(*cols), considered))
        return considered & (count > 1)
    column = F.col(rule.column)
    if rule.expectation_type == "expect_column_values_to_not_be_null":
        return column.isNull()
    if rule.expectation_type == "expect_column_values_to_be_null":
        return column.isNotNull()
    if rule.expectation_type == "expect_column_values_to_be_in_set":
        return column.isNotNull() & ~column.isin(list(kwargs["value_set"]))
    if rule.expectation_type == "expect_column_values_to_not_be_in_set":
        return column.isNotNull() & column.isin(list(kwargs["value_set"]))
    if rule.expectation_type == "expect_column_values_to_be_unique":
        return column.isNotNull() & (F.count(F.lit(1)).over(Window.partitionBy(column)) > 1)
    if rule.expectation_type == "expect_column_values_to_be_between":
        low, high = kwargs.get("min_value"), kwargs.get("max_value")
        out = F.lit(False)
        if low is not None:
            out = out | ((column <= F.lit(low)) if kwargs.get("strict_min") else (column < F.lit(low)))
        if high is not None:
            out = out | ((column >= F.lit(high)) if kwargs.get("strict_max") else (column > F.lit(high)))
        return column.isNotNull() & out
    raise AssertionError(f"no row rule for {rule.expectation_type}")


def _considered(cols, ignore_row_if: str):
    """Rows GE judges for a compound check (``ignore_row_if``); the others are never blamed."""
    from pyspark.sql import functions as F

    present = [c.isNotNull() for c in cols]
    if ignore_row_if == "all_values_are_missing":
        out = F.lit(False)
        for flag in present:
            out = out | flag
        return out
    if ignore_row_if == "any_value_is_missing":
        out = F.lit(True)
        for flag in present:
            out = out & flag
        return out
    return F.lit(True)


def profile_columns_spark(df: DataFrame, kinds: Mapping[str, str],
                          max_values: int) -> tuple[int, dict[str, dict]]:
    """Row count and, per column, exact non-null count, min, max, distinct count and (at most
    ``max_values``) distinct values: one aggregation, then one more for the value sets."""
    from pyspark.sql import functions as F

    from engine.validation.kinds import BOOLEAN, OTHER

    names = list(kinds)
    aggs = [F.count(F.lit(1)).alias("rows")]
    for i, name in enumerate(names):
        column = F.col(name)
        aggs += [F.count(column).alias(f"n{i}"), F.count_distinct(column).alias(f"d{i}")]
        if kinds[name] not in (BOOLEAN, OTHER):
            aggs += [F.min(column).alias(f"lo{i}"), F.max(column).alias(f"hi{i}")]
    row = df.agg(*aggs).first().asDict()
    few = [i for i, _ in enumerate(names) if row[f"d{i}"] <= max_values]
    sets = (df.agg(*[F.collect_set(F.col(names[i])).alias(f"v{i}") for i in few]).first().asDict()
            if few else {})
    stats = {name: {"non_null": row[f"n{i}"], "distinct": row[f"d{i}"],
                    "min": row.get(f"lo{i}"), "max": row.get(f"hi{i}"),
                    "values": sets.get(f"v{i}")}
             for i, name in enumerate(names)}
    return int(row["rows"]), stats


def column_quantiles_spark(df: DataFrame, columns: Sequence[str],
                           probabilities: Sequence[float]) -> dict[str, list]:
    """Exact quantiles (Spark's ``percentile``: linear interpolation) of each column's non-null
    values, in one aggregation; None for a column without values."""
    from pyspark.sql import functions as F

    row = df.agg(*[F.percentile(F.col(c).cast("double"), list(probabilities)).alias(f"q{i}")
                   for i, c in enumerate(columns)]).first()
    return {c: list(row[f"q{i}"] or [None] * len(probabilities)) for i, c in enumerate(columns)}


def bin_counts_spark(df: DataFrame, edges: Mapping[str, Sequence[float]]) -> dict[str, dict]:
    """Per column: rows, nulls, and the count of non-null values in each bin (bin ``k``: exactly
    ``k`` edges below the value), in one aggregation."""
    from pyspark.sql import functions as F

    aggs = [F.count(F.lit(1)).alias("rows")]
    for i, (c, column_edges) in enumerate(edges.items()):
        value = F.col(c).cast("double")
        below = F.lit(0)
        for edge in column_edges:
            below = below + F.when(value > F.lit(float(edge)), 1).otherwise(0)
        aggs.append(F.count(F.when(value.isNull(), 1)).alias(f"n{i}"))
        aggs += [F.count(F.when(value.isNotNull() & (below == k), 1)).alias(f"c{i}_{k}")
                 for k in range(len(column_edges) + 1)]
    row = df.agg(*aggs).first().asDict()
    return {c: {"rows": row["rows"], "nulls": row[f"n{i}"],
                "counts": [row[f"c{i}_{k}"] for k in range(len(column_edges) + 1)]}
            for i, (c, column_edges) in enumerate(edges.items())}


def level_counts_spark(df: DataFrame, columns: Sequence[str]) -> dict[str, dict]:
    """Per column: rows, nulls and the count of each value as text (booleans ``true``/``false``,
    Spark's own cast), in one aggregation over (column, value) pairs."""
    from pyspark.sql import functions as F

    pairs = F.explode(F.array(*[F.struct(F.lit(c).alias("column"), F.col(c).cast("string").alias("level"))
                                for c in columns])).alias("pair")
    counted = df.select(pairs).groupBy("pair.column", "pair.level").count().collect()
    out: dict[str, dict] = {c: {"rows": 0, "nulls": 0, "levels": {}} for c in columns}
    for row in counted:
        column = out[row["column"]]
        column["rows"] += row["count"]
        if row["level"] is None:
            column["nulls"] += row["count"]
        else:
            column["levels"][row["level"]] = row["count"]
    return out


def count_all_default_spark(df: DataFrame, defaults: Mapping[str, Any]) -> tuple[int, int]:
    """Rows, and rows where every column holds its default (null for a None default), in one
    aggregation."""
    from pyspark.sql import functions as F

    condition = F.lit(True)
    for column, default in defaults.items():
        value = F.col(column)
        condition = condition & (value.isNull() if default is None
                                 else value.cast("double") == F.lit(float(default)))
    row = df.agg(F.count(F.lit(1)).alias("rows"),
                 F.count(F.when(condition, 1)).alias("defaulted")).first()
    return int(row["rows"]), int(row["defaulted"])
