"""Spark and Dask give the same verdicts, counts and observed values, expectation by expectation.

Two kinds of checks, both on the same pandas data handed to each engine (Dask in 3 partitions):

* every expectation type Dask supports, once with arguments it meets and once with arguments it
  does not, compared field by field between the engines (a type added to the Dask engine's
  ``SUPPORTED_EXPECTATIONS`` without a case here fails
  ``test_every_supported_type_has_a_parity_case``);
* injected defects (nulls, out-of-range values, unknown categories, duplicate keys, a shifted
  mean, a missing column, an empty batch) each caught on both engines with the exact counts
  written here, and a clean batch that passes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from engine.validation.dask import SUPPORTED_EXPECTATIONS
from engine.validation.suite import TYPE_EXPECTATIONS, ExpectationSpec, Suite, ValidationReport
from tests.test_validation import ROWS, feature_frame, run, spread

SEGMENTS = ["retail", "sme", "corporate"]


def parity_frame(rows: int = ROWS) -> pd.DataFrame:
    frame = feature_frame(rows)
    frame["segment"] = [SEGMENTS[i % 3] for i in range(rows)]
    frame.loc[spread(rows, 4), "amount_mean_30d"] = np.nan
    return frame


# type → (kwargs it meets on parity_frame, kwargs it does not meet)
CASES: dict[str, tuple[dict, dict]] = {
    "expect_column_values_to_not_be_null": (
        {"column": "customer_id"}, {"column": "amount_mean_7d"}),
    "expect_column_values_to_be_null": (
        {"column": "amount_mean_7d", "mostly": 0.0}, {"column": "amount_mean_7d"}),
    "expect_column_values_to_be_between": (
        {"column": "amount_count_7d", "min_value": 0, "max_value": 5},
        {"column": "amount_count_7d", "min_value": 1, "max_value": 4}),
    "expect_column_values_to_be_in_set": (
        {"column": "segment", "value_set": SEGMENTS},
        {"column": "segment", "value_set": ["retail", "sme"]}),
    "expect_column_values_to_not_be_in_set": (
        {"column": "segment", "value_set": ["martian"]},
        {"column": "segment", "value_set": ["sme"], "mostly": 0.7}),
    "expect_column_to_exist": ({"column": "segment"}, {"column": "region"}),
    "expect_table_columns_to_match_set": (
        {"column_set": ["customer_id", "segment"], "exact_match": False},
        {"column_set": ["customer_id", "segment"]}),
    "expect_table_columns_to_match_ordered_list": (
        {"column_list": list(parity_frame(3).columns)},
        {"column_list": list(reversed(parity_frame(3).columns))}),
    "expect_table_column_count_to_equal": (
        {"value": len(parity_frame(3).columns)}, {"value": 3}),
    "expect_table_column_count_to_be_between": ({"min_value": 5}, {"max_value": 5}),
    "expect_table_row_count_to_be_between": ({"min_value": 1}, {"max_value": ROWS - 1}),
    "expect_table_row_count_to_equal": ({"value": ROWS}, {"value": ROWS + 1}),
    "expect_column_values_to_be_unique": (
        {"column": "customer_id"}, {"column": "amount_count_7d", "mostly": 0.5}),
    "expect_compound_columns_to_be_unique": (
        {"column_list": ["customer_id", "as_of"]}, {"column_list": ["segment", "churned"]}),
    "expect_column_mean_to_be_between": (
        {"column": "amount_sum_30d", "min_value": 0}, {"column": "amount_sum_30d", "max_value": 10}),
    "expect_column_min_to_be_between": (
        {"column": "amount_count_90d", "min_value": 0}, {"column": "amount_count_90d", "min_value": 1}),
    "expect_column_max_to_be_between": (
        {"column": "amount_sum_7d", "max_value": 5000}, {"column": "amount_sum_7d", "max_value": 100}),
    "expect_column_sum_to_be_between": (
        {"column": "amount_count_30d", "min_value": 1}, {"column": "amount_count_30d", "max_value": 10}),
    "expect_column_proportion_of_non_null_values_to_be_between": (
        {"column": "amount_mean_30d", "min_value": 0.5},
        {"column": "amount_mean_30d", "min_value": 1.0}),
    "expect_column_values_to_be_in_type_list": (
        {"column": "amount_count_7d", "type_list": ["LongType", "int64"]},
        {"column": "segment", "type_list": ["LongType", "int64"]}),
    "expect_column_unique_value_count_to_be_between": (
        {"column": "segment", "min_value": 3, "max_value": 3},
        {"column": "segment", "max_value": 2}),
}


def assert_same(spark: ValidationReport, dask: ValidationReport) -> None:
    assert spark.success == dask.success
    for s, d in zip(spark.outcomes, dask.outcomes, strict=True):
        where = f"{s.expectation_type}({s.column}) {s.kwargs}"
        assert (s.expectation_type, s.column, s.success, s.unexpected_count, s.element_count) == \
            (d.expectation_type, d.column, d.success, d.unexpected_count, d.element_count), where
        assert (s.exception is None) == (d.exception is None), (where, s.exception, d.exception)
        if s.expectation_type in TYPE_EXPECTATIONS:
            continue  # each engine observes its own type names (LongType / int64)
        if isinstance(s.observed_value, float):
            assert d.observed_value == pytest.approx(s.observed_value, rel=1e-12), where
        else:
            assert d.observed_value == s.observed_value, where


def both(frame: pd.DataFrame, suite: Suite) -> ValidationReport:
    spark_report, dask_report = run("spark", frame, suite), run("dask", frame, suite)
    assert_same(spark_report, dask_report)
    return spark_report


def test_every_supported_type_has_a_parity_case():
    assert set(CASES) == set(SUPPORTED_EXPECTATIONS.types)


def test_every_supported_type_passes_and_fails_alike_on_both_engines(spark, dask_cluster_client):
    specs = []
    for expectation_type, (meets, misses) in sorted(CASES.items()):
        specs += [ExpectationSpec(expectation_type, meets), ExpectationSpec(expectation_type, misses)]
    suite = Suite("parity", "<parity>", tuple(specs))
    report = both(parity_frame(), suite)
    assert [o.success for o in report.outcomes] == [True, False] * len(CASES), report.summary_lines()


def test_every_supported_type_agrees_on_an_empty_batch(spark, dask_cluster_client):
    specs = [ExpectationSpec(t, kwargs) for t, pair in sorted(CASES.items()) for kwargs in pair]
    both(parity_frame().iloc[0:0], Suite("parity", "<parity>", tuple(specs)))


# --- injected defects -----------------------------------------------------------------------

GATE = Suite("gate", "<gate>", (
    ExpectationSpec("expect_table_row_count_to_be_between", {"min_value": 1}),
    ExpectationSpec("expect_column_to_exist", {"column": "amount_sum_90d"}),
    ExpectationSpec("expect_compound_columns_to_be_unique", {"column_list": ["customer_id", "as_of"]}),
    ExpectationSpec("expect_column_values_to_not_be_null", {"column": "amount_sum_7d"}),
    ExpectationSpec("expect_column_values_to_be_between",
                    {"column": "amount_count_30d", "min_value": 0, "max_value": 5}),
    ExpectationSpec("expect_column_values_to_be_in_set", {"column": "segment", "value_set": SEGMENTS}),
    ExpectationSpec("expect_column_mean_to_be_between",
                    {"column": "amount_sum_90d", "min_value": 0, "max_value": 2000}),
))


def nulls(frame):
    frame.loc[spread(len(frame), 9), "amount_sum_7d"] = np.nan


def out_of_range(frame):
    frame.loc[spread(len(frame), 4), "amount_count_30d"] = -1
    frame.loc[[5, 605], "amount_count_30d"] = 99


def unknown_categories(frame):
    frame.loc[spread(len(frame), 6), "segment"] = "martian"


def duplicate_keys(frame):
    # A key of the first partition repeated in the last, and one key three times.
    for column in ("customer_id", "as_of"):
        frame.loc[ROWS - 1, column] = frame.loc[0, column]
        frame.loc[[500, 900], column] = frame.loc[10, column]


def shifted_mean(frame):
    frame["amount_sum_90d"] += 10_000.0


def missing_column(frame):
    frame.drop(columns=["amount_sum_90d"], inplace=True)


DEFECTS = {
    # name → (inject, {failed expectation (type, column): unexpected count or observed value})
    "nulls": (nulls, {("expect_column_values_to_not_be_null", "amount_sum_7d"): 9}),
    "out_of_range": (out_of_range, {("expect_column_values_to_be_between", "amount_count_30d"): 6}),
    "unknown_categories": (unknown_categories,
                           {("expect_column_values_to_be_in_set", "segment"): 6}),
    "duplicate_keys": (duplicate_keys,
                       {("expect_compound_columns_to_be_unique", "customer_id,as_of"): 5}),
    "shifted_mean": (shifted_mean, {("expect_column_mean_to_be_between", "amount_sum_90d"): "observed"}),
    "missing_column": (missing_column, {("expect_column_to_exist", "amount_sum_90d"): "observed",
                                        ("expect_column_mean_to_be_between", "amount_sum_90d"): "exception"}),
    "empty_batch": (lambda frame: frame.drop(index=frame.index, inplace=True),
                    {("expect_table_row_count_to_be_between", None): "observed",
                     ("expect_column_mean_to_be_between", "amount_sum_90d"): "observed"}),
}


def test_a_clean_batch_passes_on_both_engines(spark, dask_cluster_client):
    report = both(parity_frame(), GATE)
    assert report.success, report.summary_lines()


@pytest.mark.parametrize("defect", sorted(DEFECTS))
def test_injected_defect_is_caught_with_the_same_counts_on_both_engines(defect, spark, dask_cluster_client):
    inject, expected = DEFECTS[defect]
    frame = parity_frame()
    inject(frame)
    report = both(frame, GATE)
    failed = {(o.expectation_type, o.column): o for o in report.failures()}
    assert set(failed) == set(expected), report.summary_lines()
    for key, count in expected.items():
        o = failed[key]
        if count == "exception":
            assert o.exception and "amount_sum_90d" in o.exception
        elif count == "observed":
            assert o.exception is None and o.unexpected_count is None
        else:
            assert (o.unexpected_count, o.element_count) == (count, len(frame)), o.describe()
    if defect == "shifted_mean":
        observed = failed[("expect_column_mean_to_be_between", "amount_sum_90d")].observed_value
        assert observed == pytest.approx(frame["amount_sum_90d"].mean(), rel=1e-12)
    if defect == "empty_batch":
        assert failed[("expect_table_row_count_to_be_between", None)].observed_value == 0
