"""Validate a Spark DataFrame with Great Expectations' own Spark engine.

GE's Spark datasource is handed the DataFrame's session and no ``spark_config`` (with a config it
may stop a running session and start another), and ``persist=False`` (by default it caches the
whole batch). Every metric is computed by Spark jobs; nothing is collected but the metrics.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.validation.suite import (
    RESULT_FORMAT,
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
