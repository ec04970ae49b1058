"""Great Expectations suites on Spark and Dask: same verdicts, same counts, clear failures.

Each behaviour is written once and run on both engines (``engine_name``); the numbers asserted are
exact, so passing on both means both engines agree. Dask frames have 3 partitions, and injected
problems are spread over them.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine.backend import backend_class, require_suite
from engine.errors import DefinitionError, NotSupportedByBackend, ValidationFailed
from engine.validation.dask import SUPPORTED_EXPECTATIONS
from engine.validation.suite import (
    ExpectationSpec,
    Outcome,
    Suite,
    ValidationReport,
    enforce,
    load_suite,
    write_report,
)

REPO = Path(__file__).resolve().parents[1]
FEATURES_SUITE = REPO / "expectations" / "customer_features.json"
LABELS_SUITE = REPO / "expectations" / "training_labels.json"
ROWS = 1200
WINDOWS = ("7d", "30d", "90d")


def feature_frame(rows: int = ROWS, seed: int = 7) -> pd.DataFrame:
    """A clean training-set-like frame; some customers have no events in a window (mean null)."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "customer_id": np.arange(rows, dtype="int64"),
        "as_of": pd.Timestamp("2025-09-01", tz="UTC") + pd.to_timedelta(
            rng.integers(0, 60, rows), unit="D"),
    })
    frame["as_of"] = frame["as_of"].astype("datetime64[us, UTC]")
    for window in WINDOWS:
        count = rng.integers(0, 6, rows).astype("int64")
        total = np.round(count * rng.uniform(1, 500, rows), 2)
        frame[f"amount_count_{window}"] = count
        frame[f"amount_sum_{window}"] = total
        frame[f"amount_mean_{window}"] = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    frame["churned"] = rng.integers(0, 2, rows).astype("int64")
    return frame


def spread(rows: int, n: int) -> list[int]:
    """``n`` row positions spread evenly over the frame (so over all 3 Dask partitions)."""
    return [int(i) for i in np.linspace(0, rows - 1, n).round()]


def run(engine_name: str, frame: pd.DataFrame, suite: Suite, table: str = "features") -> ValidationReport:
    if engine_name == "spark":
        import pyarrow as pa
        from pyspark.sql import SparkSession
        from pyspark.sql.pandas.types import from_arrow_schema

        from engine.validation.spark import validate_spark

        spark = SparkSession.getActiveSession()
        schema = from_arrow_schema(pa.Schema.from_pandas(frame, preserve_index=False))
        return validate_spark(spark.createDataFrame(frame, schema=schema), suite, table)
    import dask.dataframe as dd

    from engine.validation.dask import validate_dask

    return validate_dask(dd.from_pandas(frame, npartitions=3), suite, table)


def make_suite(*expectations: tuple[str, dict], name: str = "adhoc") -> Suite:
    return Suite(name=name, path=f"<{name}>",
                 expectations=tuple(ExpectationSpec(t, k) for t, k in expectations))


def outcome(report: ValidationReport, expectation_type: str, column: str | None = None) -> Outcome:
    found = [o for o in report.outcomes if o.expectation_type == expectation_type and o.column == column]
    assert len(found) == 1, report.summary_lines()
    return found[0]


@pytest.fixture(scope="module")
def features_suite() -> Suite:
    return load_suite(FEATURES_SUITE)


@pytest.fixture(scope="module")
def labels_suite() -> Suite:
    return load_suite(LABELS_SUITE)


# --- the demo suites --------------------------------------------------------------------------

def test_clean_feature_batch_passes_both_suites(engine_name, features_suite, labels_suite):
    frame = feature_frame()
    for suite in (features_suite, labels_suite):
        report = run(engine_name, frame, suite)
        assert report.success, report.summary_lines()
        assert report.engine == engine_name
        assert len(report.outcomes) == len(suite.expectations)
    assert outcome(report, "expect_column_values_to_be_in_set", "churned").element_count == ROWS


def test_null_mean_when_a_window_has_no_events_is_accepted(engine_name, features_suite):
    frame = feature_frame()
    assert frame["amount_mean_7d"].isna().sum() > 0
    report = run(engine_name, frame, features_suite)
    mean_check = outcome(report, "expect_column_values_to_be_between", "amount_mean_7d")
    assert mean_check.success and mean_check.unexpected_count == 0


def test_injected_nulls_are_counted_over_all_rows(engine_name, features_suite):
    frame = feature_frame()
    frame.loc[spread(ROWS, 3), "amount_sum_7d"] = np.nan
    report = run(engine_name, frame, features_suite)
    nulls = outcome(report, "expect_column_values_to_not_be_null", "amount_sum_7d")
    assert (nulls.success, nulls.unexpected_count, nulls.element_count) == (False, 3, ROWS)
    assert [o.column for o in report.failures()] == ["amount_sum_7d"]


def test_out_of_range_values_are_counted(engine_name, features_suite):
    frame = feature_frame()
    frame.loc[spread(ROWS, 4), "amount_count_30d"] = -1
    frame.loc[spread(ROWS, 2), "amount_mean_90d"] = 250_000.0
    report = run(engine_name, frame, features_suite)
    counts = outcome(report, "expect_column_values_to_be_between", "amount_count_30d")
    means = outcome(report, "expect_column_values_to_be_between", "amount_mean_90d")
    assert (counts.success, counts.unexpected_count, counts.element_count) == (False, 4, ROWS)
    assert (means.success, means.unexpected_count) == (False, 2)


def test_unknown_label_values_are_counted(engine_name, labels_suite):
    frame = feature_frame()
    frame.loc[spread(ROWS, 5), "churned"] = 2
    report = run(engine_name, frame, labels_suite)
    labels = outcome(report, "expect_column_values_to_be_in_set", "churned")
    assert (labels.success, labels.unexpected_count, labels.element_count) == (False, 5, ROWS)
    assert outcome(report, "expect_column_values_to_not_be_null", "churned").success


def test_unknown_categories_in_a_string_column_are_counted(engine_name):
    frame = pd.DataFrame({"segment": (["retail", "sme", "corporate"] * 400)})
    frame.loc[spread(len(frame), 6), "segment"] = "martian"
    frame.loc[[1, 700], "segment"] = None
    suite = make_suite(("expect_column_values_to_be_in_set",
                        {"column": "segment", "value_set": ["retail", "sme", "corporate"]}))
    report = run(engine_name, frame, suite)
    check = report.outcomes[0]
    assert (check.success, check.unexpected_count, check.element_count) == (False, 6, 1200)


def test_duplicate_keys_in_different_partitions_are_found(engine_name):
    frame = feature_frame()
    # Row 0 is in the first Dask partition, the last row in the third: no partition sees both.
    frame.loc[ROWS - 1, "customer_id"] = frame.loc[0, "customer_id"]
    frame.loc[ROWS // 2, "customer_id"] = frame.loc[1, "customer_id"]
    frame.loc[ROWS - 2, "customer_id"] = frame.loc[1, "customer_id"]
    suite = make_suite(("expect_column_values_to_be_unique", {"column": "customer_id"}))
    check = run(engine_name, frame, suite).outcomes[0]
    # GE counts every row of a duplicated value: 2 rows of one id + 3 of another.
    assert (check.success, check.unexpected_count, check.element_count) == (False, 5, ROWS)


def test_uniqueness_ignores_nulls_and_respects_mostly(engine_name):
    frame = pd.DataFrame({"key": [float(i) for i in range(300)]})
    frame.loc[[0, 299], "key"] = 5.0  # value 5 now three times
    frame.loc[[100, 200], "key"] = np.nan
    strict = make_suite(("expect_column_values_to_be_unique", {"column": "key"}))
    lenient = make_suite(("expect_column_values_to_be_unique", {"column": "key", "mostly": 0.98}))
    check = run(engine_name, frame, strict).outcomes[0]
    assert (check.success, check.unexpected_count, check.element_count) == (False, 3, 300)
    assert run(engine_name, frame, lenient).outcomes[0].success


def test_shifted_mean_fails_with_the_observed_mean(engine_name):
    frame = feature_frame()
    suite = make_suite(("expect_column_mean_to_be_between",
                        {"column": "amount_sum_30d", "min_value": 0, "max_value": 1000}))
    clean = run(engine_name, frame, suite).outcomes[0]
    assert clean.success and clean.observed_value == pytest.approx(frame["amount_sum_30d"].mean(), rel=1e-12)
    frame["amount_sum_30d"] += 5000.0
    shifted = run(engine_name, frame, suite).outcomes[0]
    assert not shifted.success
    assert shifted.observed_value == pytest.approx(frame["amount_sum_30d"].mean(), rel=1e-12)


def test_mean_skips_nulls(engine_name):
    frame = pd.DataFrame({"x": [1.0, np.nan, 3.0, np.nan, 5.0, 7.0]})
    suite = make_suite(("expect_column_mean_to_be_between", {"column": "x", "min_value": 4,
                                                             "strict_min": True}))
    check = run(engine_name, frame, suite).outcomes[0]
    assert (check.success, check.observed_value) == (False, 4.0)


def test_missing_column_fails_the_checks_that_need_it(engine_name, features_suite):
    frame = feature_frame().drop(columns=["amount_sum_90d"])
    report = run(engine_name, frame, features_suite)
    failed = report.failures()
    assert {(o.expectation_type, o.column) for o in failed} == {
        ("expect_column_values_to_not_be_null", "amount_sum_90d"),
        ("expect_column_values_to_be_between", "amount_sum_90d")}
    assert all("amount_sum_90d" in o.exception for o in failed)


def test_schema_expectations_report_the_missing_and_unexpected_columns(engine_name):
    frame = feature_frame().drop(columns=["amount_sum_90d"])
    expected_columns = [c for c in feature_frame().columns if c != "churned"]
    suite = make_suite(("expect_column_to_exist", {"column": "amount_sum_90d"}),
                       ("expect_column_to_exist", {"column": "customer_id"}),
                       ("expect_table_columns_to_match_set", {"column_set": expected_columns}))
    report = run(engine_name, frame, suite)
    assert [o.success for o in report.outcomes] == [False, True, False]
    assert report.outcomes[2].observed_value == sorted(frame.columns)


def test_empty_batch_fails_only_the_row_count(engine_name, features_suite):
    frame = feature_frame().iloc[0:0]
    report = run(engine_name, frame, features_suite)
    row_count = outcome(report, "expect_table_row_count_to_be_between")
    assert (row_count.success, row_count.observed_value) == (False, 0)
    assert report.failures() == (row_count,)
    nulls = outcome(report, "expect_column_values_to_not_be_null", "customer_id")
    assert (nulls.success, nulls.unexpected_count, nulls.element_count) == (True, 0, 0)


def test_all_null_column_passes_row_checks_vacuously(engine_name):
    frame = pd.DataFrame({"x": pd.Series([np.nan] * 30, dtype="float64"), "k": range(30)})
    suite = make_suite(("expect_column_values_to_be_between", {"column": "x", "min_value": 0}),
                       ("expect_column_values_to_be_in_set", {"column": "x", "value_set": [1.0]}),
                       ("expect_column_values_to_be_unique", {"column": "x"}),
                       ("expect_column_values_to_not_be_null", {"column": "x", "mostly": 0.5}))
    report = run(engine_name, frame, suite)
    assert [(o.success, o.unexpected_count, o.element_count) for o in report.outcomes] == [
        (True, 0, 30), (True, 0, 30), (True, 0, 30), (False, 30, 30)]


def test_mean_of_an_empty_batch_is_not_observed_and_fails(engine_name):
    frame = pd.DataFrame({"x": pd.Series([], dtype="float64")})
    suite = make_suite(("expect_column_mean_to_be_between", {"column": "x", "min_value": 0}))
    check = run(engine_name, frame, suite).outcomes[0]
    assert (check.success, check.observed_value) == (False, None)


def test_mostly_tolerates_a_share_of_bad_rows(engine_name):
    frame = pd.DataFrame({"x": np.arange(1000, dtype="float64")})
    frame.loc[spread(1000, 50), "x"] = np.nan  # 5 % nulls
    loose = make_suite(("expect_column_values_to_not_be_null", {"column": "x", "mostly": 0.95}))
    tight = make_suite(("expect_column_values_to_not_be_null", {"column": "x", "mostly": 0.96}))
    assert run(engine_name, frame, loose).outcomes[0].success
    tight_check = run(engine_name, frame, tight).outcomes[0]
    assert (tight_check.success, tight_check.unexpected_count) == (False, 50)


def test_between_mostly_is_judged_over_non_null_rows(engine_name):
    frame = pd.DataFrame({"x": [float(v) for v in range(100)]})
    frame.loc[range(0, 50), "x"] = np.nan  # 50 nulls; values 50..99 remain
    suite = make_suite(("expect_column_values_to_be_between",
                        {"column": "x", "min_value": 55, "mostly": 0.9}))
    check = run(engine_name, frame, suite).outcomes[0]
    # 5 of 50 non-null values are below 55: exactly 90 % pass.
    assert (check.success, check.unexpected_count, check.element_count) == (True, 5, 100)


def test_strict_bounds_exclude_the_bound_itself(engine_name):
    frame = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0] * 50})
    suite = make_suite(("expect_column_values_to_be_between",
                        {"column": "x", "min_value": 0, "max_value": 5,
                         "strict_min": True, "strict_max": True}))
    check = run(engine_name, frame, suite).outcomes[0]
    assert (check.success, check.unexpected_count) == (False, 100)


def test_row_condition_limits_a_row_check_to_matching_rows(engine_name):
    frame = pd.DataFrame({"k": np.arange(600, dtype="int64"), "x": np.ones(600)})
    frame.loc[[5, 250, 590, 595], "x"] = np.nan  # 2 of them have k >= 300
    suite = make_suite(("expect_column_values_to_not_be_null",
                        {"column": "x", "row_condition": 'col("k")>=300',
                         "condition_parser": "great_expectations"}))
    check = run(engine_name, frame, suite).outcomes[0]
    assert (check.success, check.unexpected_count, check.element_count) == (False, 2, 300)


def test_row_count_bounds(engine_name):
    frame = feature_frame(rows=300)
    suite = make_suite(("expect_table_row_count_to_be_between", {"min_value": 1, "max_value": 299}))
    check = run(engine_name, frame, suite).outcomes[0]
    assert (check.success, check.observed_value) == (False, 300)


# --- parity: the whole report, field by field ----------------------------------------------------

def test_spark_and_dask_reports_agree_on_a_dirty_batch(spark, dask_cluster_client, features_suite):
    frame = feature_frame()
    frame.loc[spread(ROWS, 7), "amount_sum_7d"] = np.nan
    frame.loc[spread(ROWS, 3), "amount_count_90d"] = -2
    frame.loc[[0, ROWS - 1], "customer_id"] = 42
    extra = [ExpectationSpec("expect_column_values_to_be_unique", {"column": "customer_id"}),
             ExpectationSpec("expect_column_mean_to_be_between",
                             {"column": "amount_mean_30d", "min_value": 0, "max_value": 100}),
             ExpectationSpec("expect_column_values_to_be_in_set",
                             {"column": "churned", "value_set": [0], "mostly": 0.3}),
             ExpectationSpec("expect_table_columns_to_match_set",
                             {"column_set": ["customer_id"], "exact_match": False})]
    suite = Suite(features_suite.name, features_suite.path, features_suite.expectations + tuple(extra))
    spark_report, dask_report = run("spark", frame, suite), run("dask", frame, suite)
    assert not spark_report.success
    for s, d in zip(spark_report.outcomes, dask_report.outcomes, strict=True):
        assert (s.expectation_type, s.column, s.success, s.unexpected_count, s.element_count) == \
            (d.expectation_type, d.column, d.success, d.unexpected_count, d.element_count)
        if isinstance(s.observed_value, float):
            assert d.observed_value == pytest.approx(s.observed_value, rel=1e-12)
        else:
            assert d.observed_value == s.observed_value


# --- the gate, the report file ------------------------------------------------------------------

def test_validation_failed_names_table_expectation_column_and_count(engine_name, features_suite):
    frame = feature_frame()
    frame.loc[spread(ROWS, 3), "amount_sum_7d"] = np.nan
    frame.loc[spread(ROWS, 4), "amount_count_30d"] = -1
    report = run(engine_name, frame, features_suite, table="training_set@v3")
    with pytest.raises(ValidationFailed) as caught:
        enforce(report, "fail")
    message = str(caught.value)
    assert message.startswith(f"training_set@v3: 2 of {len(features_suite.expectations)} expectations failed")
    assert f"expect_column_values_to_not_be_null(amount_sum_7d): 3 unexpected of {ROWS} rows" in message
    assert f"expect_column_values_to_be_between(amount_count_30d): 4 unexpected of {ROWS} rows" in message
    assert caught.value.report is report


def test_warn_policy_logs_instead_of_raising(caplog):
    report = ValidationReport("scores", "s", False, (
        Outcome("expect_table_row_count_to_be_between", None, False, None, None, 0, {"min_value": 1}),),
        "rid", "dask")
    with caplog.at_level(logging.WARNING, logger="engine.validation.suite"):
        enforce(report, "warn")
    assert "expect_table_row_count_to_be_between: observed 0" in caplog.text
    with pytest.raises(ValidationFailed, match=r"observed 0 \(expected \{\"min_value\": 1\}\)"):
        enforce(report, "fail")


def test_a_passing_report_neither_raises_nor_warns_under_either_policy(caplog):
    passing = ValidationReport("t", "s", True, (), "rid", "spark")
    with caplog.at_level(logging.WARNING):
        for policy in ("fail", "warn"):
            assert enforce(passing, policy) is None
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    with pytest.raises(DefinitionError, match="'block'"):  # the policy is still checked
        enforce(passing, "block")


def test_report_is_written_as_json_that_names_every_outcome(tmp_path, engine_name, labels_suite):
    frame = feature_frame()
    frame.loc[[3], "churned"] = 7
    report = run(engine_name, frame, labels_suite, table="training_set@v1")
    path = write_report(report, tmp_path / "validation")
    written = json.loads(path.read_text())
    assert path.parent == tmp_path / "validation" and path.suffix == ".json"
    assert written["success"] is False and written["result_id"] == report.result_id
    assert [o["expectation_type"] for o in written["outcomes"]] == [
        "expect_column_values_to_not_be_null", "expect_column_values_to_be_in_set"]
    assert written["outcomes"][1]["unexpected_count"] == 1


# --- loading suites and engine support ---------------------------------------------------------

def test_demo_suites_load_with_the_expected_checks(features_suite, labels_suite):
    assert features_suite.name == "customer_features"
    columns = {s.column for s in features_suite.expectations}
    assert "churned" not in columns
    assert {f"amount_{k}_{w}" for k in ("count", "sum", "mean") for w in WINDOWS} <= columns
    assert {(s.type, s.column) for s in labels_suite.expectations} == {
        ("expect_column_values_to_not_be_null", "churned"),
        ("expect_column_values_to_be_in_set", "churned")}
    require_suite(backend_class("dask"), features_suite)
    require_suite(backend_class("dask"), labels_suite)


def test_unknown_expectation_type_is_rejected_at_load_naming_file_and_type(tmp_path):
    path = tmp_path / "typo.json"
    path.write_text(json.dumps({"name": "typo", "expectations": [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "a"}},
        {"type": "expect_column_values_to_be_postive", "kwargs": {"column": "a"}}]}))
    with pytest.raises(DefinitionError,
                       match=r"expectation #1 .*typo\.json.*expect_column_values_to_be_postive"):
        load_suite(path)


def test_invalid_json_is_rejected_naming_the_file(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"name": "broken", "expectations": [')
    with pytest.raises(DefinitionError, match=r"broken\.json is not valid JSON"):
        load_suite(path)


def test_invalid_kwargs_are_rejected_naming_the_expectation(tmp_path):
    path = tmp_path / "nocol.json"
    path.write_text(json.dumps({"name": "nocol", "expectations": [
        {"type": "expect_column_values_to_be_between", "kwargs": {"min_value": 0}}]}))
    with pytest.raises(DefinitionError,
                       match=r"expectation #0 \(expect_column_values_to_be_between\).*nocol\.json"):
        load_suite(path)


def test_unsupported_expectation_is_rejected_for_dask_naming_it(tmp_path):
    path = tmp_path / "median.json"
    path.write_text(json.dumps({"name": "median", "expectations": [
        {"type": "expect_column_median_to_be_between", "kwargs": {"column": "a", "min_value": 0}}]}))
    suite = load_suite(path)
    require_suite(backend_class("spark"), suite)
    with pytest.raises(NotSupportedByBackend, match="expect_column_median_to_be_between") as caught:
        require_suite(backend_class("dask"), suite)
    assert caught.value.backend == "dask"
    assert "expect_column_median_to_be_between" not in SUPPORTED_EXPECTATIONS.types


def test_validate_dask_refuses_an_unsupported_expectation_before_computing(dask_cluster_client):
    suite = make_suite(("expect_column_median_to_be_between", {"column": "x", "min_value": 0}))
    with pytest.raises(NotSupportedByBackend, match="expect_column_median_to_be_between"):
        run("dask", pd.DataFrame({"x": [1.0]}), suite)


def test_spark_validation_keeps_the_session_and_caches_nothing(spark, labels_suite):
    df = spark.createDataFrame(feature_frame(rows=200))
    cached_before = spark.sparkContext._jsc.getPersistentRDDs().size()
    from engine.validation.spark import validate_spark

    assert validate_spark(df, labels_suite, "t").success
    assert spark.sparkContext._jsc is not None
    assert spark.sparkContext._jsc.getPersistentRDDs().size() == cached_before
    assert not df.is_cached
    assert spark.range(3).count() == 3


def test_unsupported_expectation_is_rejected_when_the_suite_is_loaded_for_dask(tmp_path):
    path = tmp_path / "stdev.json"
    path.write_text(json.dumps({"name": "stdev", "expectations": [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "a"}},
        {"type": "expect_column_stdev_to_be_between", "kwargs": {"column": "a", "max_value": 3}}]}))
    assert len(require_suite(backend_class("spark"), load_suite(path)).expectations) == 2
    with pytest.raises(NotSupportedByBackend,
                       match=r"expect_column_stdev_to_be_between \(suite .*stdev\.json; supported there"):
        require_suite(backend_class("dask"), load_suite(path))
