"""Feature definitions and the point-in-time compilers on both engines.

Every compiled result is checked against an independent reference written in DuckDB SQL (one
correlated subquery per feature, straight from the contract ``as_of - window <= event_time <
as_of``), and the two engines are checked against each other bit for bit.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta

import duckdb
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import spark_frame
from engine.errors import DefinitionError, SchemaMismatch
from engine.features import (
    FeatureSet,
    check_inputs,
    definition_hash,
    load_feature_set,
    parse_duration,
)

CUSTOMER_YAML = "conf/features/customer.yaml"
T0 = pd.Timestamp("2025-03-01", tz="UTC")
DAY = pd.Timedelta(days=1)

DEFINITION = {
    "name": "customer_activity",
    "entity": "customer_id",
    "timestamp": "event_time",
    "as_of": "as_of",
    "source": "events",
    "aggregations": [{"column": "amount", "functions": ["count", "sum", "mean"],
                      "windows": ["7d", "30d", "90d"]}],
}
SMALL = {**DEFINITION, "aggregations": [{"column": "amount", "functions": ["count", "sum", "mean"],
                                         "windows": ["1d", "7d"]}]}


# ---------------------------------------------------------------------------------------------
# helpers


def events_frame(rows: list[tuple[int, pd.Timestamp, float | None]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["customer_id", "event_time", "amount"])
    return frame.astype({"customer_id": "int64", "event_time": "datetime64[us, UTC]",
                         "amount": "float64"}).assign(category="a")


def spine_frame(rows: list[tuple[int, pd.Timestamp]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["customer_id", "as_of"])
    return frame.astype({"customer_id": "int64", "as_of": "datetime64[us, UTC]"}).assign(
        churned=np.arange(len(frame), dtype="int64") % 2, row_id=np.arange(len(frame), dtype="int64"))


def reference(fs: FeatureSet, events: pd.DataFrame, spine: pd.DataFrame) -> pd.DataFrame:
    """The contract in plain SQL, evaluated by DuckDB: one correlated subquery per feature."""
    selects = []
    for agg in fs.aggregations:
        where = (" AND ".join(f"e.{key} = s.{key}" for key in fs.entity_keys) + " "
                 f"AND epoch_us(e.{fs.timestamp}) >= epoch_us(s.{fs.as_of}) - {agg.micros} "
                 f"AND epoch_us(e.{fs.timestamp}) < epoch_us(s.{fs.as_of})")
        value = f"CASE WHEN isnan(e.{agg.column}) THEN NULL ELSE e.{agg.column} END"
        expr = {"count": "count(*)", "sum": f"coalesce(sum({value}), 0.0)", "mean": f"avg({value})"}
        selects.append(f"(SELECT {expr[agg.function]} FROM ev e WHERE {where}) AS {agg.name}")
    con = duckdb.connect()
    con.register("ev", events)
    con.register("sp", spine)
    out = con.execute(f"SELECT s.*, {', '.join(selects)} FROM sp s").df()
    con.close()
    return out


def canonical(frame: pd.DataFrame, fs: FeatureSet) -> pd.DataFrame:
    """Rows in a stable order, timestamps as UTC microseconds, features as int64/float64."""
    frame = frame.copy()
    for column in frame.columns:
        if pd.api.types.is_datetime64_any_dtype(frame[column]):
            frame[column] = pd.to_datetime(frame[column], utc=True).dt.as_unit("us")
        elif pd.api.types.is_string_dtype(frame[column]):
            frame[column] = frame[column].astype(object)
    for agg in fs.aggregations:
        frame[agg.name] = frame[agg.name].astype(agg.dtype)
    keys = [c for c in frame.columns if c not in fs.feature_names()]
    return frame.sort_values(keys, kind="stable").reset_index(drop=True)


def assert_matches_reference(result: pd.DataFrame, fs: FeatureSet, events: pd.DataFrame,
                             spine: pd.DataFrame) -> None:
    got, want = canonical(result, fs), canonical(reference(fs, events, spine), fs)
    assert list(got.columns) == list(spine.columns) + fs.feature_names()
    assert len(got) == len(spine)
    counts = [a.name for a in fs.aggregations if a.function == "count"]
    pd.testing.assert_frame_equal(got[counts], want[counts])
    pd.testing.assert_frame_equal(got.drop(columns=counts), want.drop(columns=counts),
                                  check_exact=False, rtol=1e-12, atol=0.0)


def random_inputs(seed: int, entities: int = 30, events: int = 1500, spine_rows: int = 300
                  ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Events on a coarse time grid (ties, hits on window bounds), values over six orders of
    magnitude (so summation order shows), some null amounts; spine rows at event times, at
    event time + window, and in between, for known and unknown entities."""
    rng = np.random.default_rng(seed)
    hours = rng.integers(0, 24 * 120, events)
    times = T0 + pd.to_timedelta(hours, unit="h")
    amounts = rng.lognormal(0, 3, events) * rng.choice([-1, 1], events)
    amounts[rng.random(events) < 0.05] = np.nan
    ev = events_frame(list(zip(rng.integers(0, entities, events), times, amounts)))
    anchors = ev["event_time"].to_numpy()[rng.integers(0, events, spine_rows)]
    shifts = pd.to_timedelta(rng.choice([0, 1, 7, 30, 90, 3], spine_rows), unit="D")
    sp = spine_frame(list(zip(rng.integers(0, entities + 3, spine_rows), pd.DatetimeIndex(anchors) + shifts)))
    return ev, sp


# ---------------------------------------------------------------------------------------------
# definitions


def test_customer_yaml_declares_the_nine_demo_features():
    fs = load_feature_set(CUSTOMER_YAML)
    assert fs.name == "customer_activity"
    assert fs.event_columns() == ["customer_id", "event_time", "amount"]
    assert fs.feature_names() == [f"amount_{f}_{w}" for f in ("count", "sum", "mean")
                                  for w in ("7d", "30d", "90d")]
    assert fs == load_feature_set(DEFINITION)


@pytest.mark.parametrize("text, expected", [("90s", timedelta(seconds=90)), ("15m", timedelta(minutes=15)),
                                            ("1h", timedelta(hours=1)), ("7d", timedelta(days=7)),
                                            ("2w", timedelta(weeks=2))])
def test_parse_duration_reads_each_unit(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["7", "d", "0d", "-1d", "1.5h", "7 days", "1y", "7D", ""])
def test_parse_duration_rejects_and_names_bad_text(text):
    with pytest.raises(DefinitionError, match=re.escape(repr(text))):
        parse_duration(text)


def test_hash_is_independent_of_key_order_and_yaml_formatting(tmp_path):
    reordered = {key: DEFINITION[key] for key in reversed(list(DEFINITION))}
    reordered["aggregations"] = [{"windows": ["7d", "30d", "90d"], "column": "amount",
                                  "functions": ["count", "sum", "mean"]}]
    path = tmp_path / "f.yaml"
    path.write_text("aggregations:\n- {windows: [7d, 30d, 90d],   column: amount,\n"
                    "   functions: [count, sum, mean]}\nsource: events\nas_of: as_of\n"
                    "timestamp: event_time   # comment\nentity: customer_id\nname: customer_activity\n")
    expected = definition_hash(load_feature_set(CUSTOMER_YAML))
    assert definition_hash(load_feature_set(reordered)) == expected
    assert definition_hash(load_feature_set(path)) == expected
    assert len(expected) == 64 and int(expected, 16) >= 0


@pytest.mark.parametrize("change", [
    {"windows": ["7d", "30d", "91d"]}, {"functions": ["count", "sum"]}, {"column": "value"},
])
def test_hash_changes_when_a_feature_changes(change):
    changed = {**DEFINITION, "aggregations": [{**DEFINITION["aggregations"][0], **change}]}
    assert definition_hash(load_feature_set(changed)) != definition_hash(load_feature_set(DEFINITION))


def test_hash_changes_with_entity_or_name():
    base = definition_hash(load_feature_set(DEFINITION))
    assert definition_hash(load_feature_set({**DEFINITION, "entity": "account_id"})) != base
    assert definition_hash(load_feature_set({**DEFINITION, "name": "other"})) != base


def test_bad_window_error_names_definition_column_and_value():
    bad = {**DEFINITION, "aggregations": [{"column": "amount", "functions": ["sum"], "windows": ["7days"]}]}
    with pytest.raises(DefinitionError, match=r"customer_activity.*windows of column 'amount'.*'7days'"):
        load_feature_set(bad)


def test_unknown_function_error_names_definition_column_and_function():
    bad = {**DEFINITION, "aggregations": [{"column": "amount", "functions": ["median"], "windows": ["7d"]}]}
    with pytest.raises(DefinitionError, match=r"customer_activity.*'amount'.*'median'.*count, sum, mean"):
        load_feature_set(bad)


@pytest.mark.parametrize("where, key", [("top", "windows"), ("aggregation", "window")])
def test_unknown_key_is_rejected_with_its_name_and_value(where, key):
    if where == "top":
        bad = {**DEFINITION, key: ["7d"]}
    else:
        bad = {**DEFINITION, "aggregations": [{**DEFINITION["aggregations"][0], key: "7d"}]}
    with pytest.raises(DefinitionError, match=rf"customer_activity.*unknown key .*'{key}'.*7d"):
        load_feature_set(bad)


def test_missing_required_key_and_duplicate_feature_are_rejected():
    with pytest.raises(DefinitionError, match="customer_activity.*missing required key 'entity'"):
        load_feature_set({k: v for k, v in DEFINITION.items() if k != "entity"})
    twice = {**DEFINITION, "aggregations": DEFINITION["aggregations"] * 2}
    with pytest.raises(DefinitionError, match="'amount_count_7d' is declared twice"):
        load_feature_set(twice)


def test_missing_definition_file_names_the_path(tmp_path):
    with pytest.raises(DefinitionError, match="nope.yaml"):
        load_feature_set(tmp_path / "nope.yaml")


EVENT_KINDS = {"customer_id": "int", "event_time": "timestamp", "amount": "float", "category": "string"}
SPINE_KINDS = {"customer_id": "int", "as_of": "timestamp", "churned": "int"}


def test_check_inputs_accepts_the_demo_tables():
    check_inputs(load_feature_set(DEFINITION), EVENT_KINDS, SPINE_KINDS)


@pytest.mark.parametrize("table, kinds, column", [
    ("events", {**EVENT_KINDS, "amount": None}, "amount"),
    ("events", {**EVENT_KINDS, "event_time": None}, "event_time"),
    ("spine", {**SPINE_KINDS, "as_of": None}, "as_of"),
    ("spine", {**SPINE_KINDS, "customer_id": None}, "customer_id"),
])
def test_missing_column_error_names_definition_table_and_column(table, kinds, column):
    kinds = {k: v for k, v in kinds.items() if v is not None}
    events, spine = (kinds, SPINE_KINDS) if table == "events" else (EVENT_KINDS, kinds)
    with pytest.raises(DefinitionError, match=rf"customer_activity.*{table} table has no .*'{column}'"):
        check_inputs(load_feature_set(DEFINITION), events, spine)


@pytest.mark.parametrize("table, column, kind", [
    ("events", "amount", "string"), ("events", "event_time", "date"), ("events", "customer_id", "float"),
    ("spine", "as_of", "string"),
])
def test_wrong_column_kind_error_names_definition_table_and_column(table, column, kind):
    events = {**EVENT_KINDS, column: kind} if table == "events" else EVENT_KINDS
    spine = {**SPINE_KINDS, column: kind} if table == "spine" else SPINE_KINDS
    message = rf"customer_activity.*'{column}' of the {table} table is {kind}"
    with pytest.raises(SchemaMismatch, match=message):
        check_inputs(load_feature_set(DEFINITION), events, spine)


def test_entity_of_different_kinds_in_events_and_spine_is_rejected():
    message = "'customer_id' is int in the events table but string in the spine"
    with pytest.raises(SchemaMismatch, match=message):
        check_inputs(load_feature_set(DEFINITION), EVENT_KINDS, {**SPINE_KINDS, "customer_id": "string"})


def test_spine_column_a_feature_would_overwrite_is_rejected():
    with pytest.raises(SchemaMismatch, match="spine table already has column 'amount_sum_7d'"):
        check_inputs(load_feature_set(DEFINITION), EVENT_KINDS, {**SPINE_KINDS, "amount_sum_7d": "float"})


def test_count_of_a_non_numeric_column_is_allowed_but_sum_is_not():
    counting = {**DEFINITION, "aggregations": [{"column": "category", "functions": ["count"],
                                                "windows": ["7d"]}]}
    check_inputs(load_feature_set(counting), EVENT_KINDS, SPINE_KINDS)
    summing = {**DEFINITION, "aggregations": [{"column": "category", "functions": ["sum"],
                                               "windows": ["7d"]}]}
    with pytest.raises(SchemaMismatch, match="'category' of the events table is string, expected numeric"):
        check_inputs(load_feature_set(summing), EVENT_KINDS, SPINE_KINDS)


def test_importing_features_does_not_import_an_engine():
    import subprocess
    import sys

    code = ("import sys, engine.features, engine.features.definitions; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pyspark', 'dask', 'h2o')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------------------------------------
# column kinds from each engine's schema


def test_pandas_column_kinds_map_dask_dtypes():
    from engine.features.dask import pandas_column_kinds

    frame = events_frame([(1, T0, 1.0)]).assign(flag=True, n=pd.array([1], dtype="Int32"),
                                                s=pd.array(["x"], dtype="string"), o=[object()])
    assert pandas_column_kinds(frame.dtypes) == {
        "customer_id": "int", "event_time": "timestamp", "amount": "float", "category": "object",
        "flag": "bool", "n": "int", "s": "string", "o": "object"}


def test_spark_column_kinds_map_spark_types(spark):
    from engine.features.spark import spark_column_kinds

    frame = spark.sql("SELECT 1 AS i, CAST(1 AS BIGINT) AS l, 1.5D AS d, CAST(1 AS DECIMAL(10,2)) AS m, "
                      "'x' AS s, current_timestamp() AS t, current_date() AS dt, true AS b")
    assert spark_column_kinds(frame.schema) == {"i": "int", "l": "int", "d": "float", "m": "decimal",
                                                "s": "string", "t": "timestamp", "dt": "date", "b": "bool"}


# ---------------------------------------------------------------------------------------------
# point-in-time semantics, on both engines


def test_event_at_as_of_time_is_excluded(compute):
    fs = load_feature_set(SMALL)
    ev = events_frame([(1, T0 - pd.Timedelta(hours=1), 2.0), (1, T0, 100.0)])
    sp = spine_frame([(1, T0)])
    got = compute(fs, ev, sp)
    assert got["amount_count_1d"].tolist() == [1]
    assert got["amount_sum_7d"].tolist() == [2.0]
    assert_matches_reference(got, fs, ev, sp)


def test_event_one_microsecond_before_as_of_is_included(compute):
    fs = load_feature_set(SMALL)
    ev = events_frame([(1, T0 - pd.Timedelta(microseconds=1), 2.0)])
    got = compute(fs, ev, spine_frame([(1, T0)]))
    assert got["amount_count_1d"].tolist() == [1]


def test_events_after_as_of_are_ignored(compute):
    fs = load_feature_set(SMALL)
    ev = events_frame([(1, T0 - DAY / 2, 1.0), (1, T0 + pd.Timedelta(seconds=1), 50.0),
                       (1, T0 + 3 * DAY, 7.0)])
    got = compute(fs, ev, spine_frame([(1, T0)]))
    assert got["amount_sum_7d"].tolist() == [1.0]
    assert got["amount_count_7d"].tolist() == [1]


def test_event_exactly_at_window_start_is_included(compute):
    fs = load_feature_set(SMALL)
    ev = events_frame([(1, T0 - 7 * DAY, 3.0), (1, T0 - 7 * DAY - pd.Timedelta(microseconds=1), 100.0),
                       (1, T0 - DAY, 4.0), (1, T0 - DAY - pd.Timedelta(microseconds=1), 1000.0)])
    sp = spine_frame([(1, T0)])
    got = compute(fs, ev, sp)
    assert got["amount_count_7d"].tolist() == [3]
    assert got["amount_sum_7d"].tolist() == [1007.0]
    assert got["amount_count_1d"].tolist() == [1]
    assert got["amount_sum_1d"].tolist() == [4.0]
    assert_matches_reference(got, fs, ev, sp)


def test_a_skewed_entity_matches_the_reference(compute):
    """One entity with most of the events and labels (the per-entity buffers and the
    partition's arrays grow while its rows are read) next to a few quiet ones."""
    rng = np.random.default_rng(17)
    hot, quiet = 3000, 300
    entity = np.concatenate([np.zeros(hot, dtype="int64"), rng.integers(1, 40, quiet)])
    hours = rng.integers(0, 24 * 30, hot + quiet)
    amounts = np.round(rng.lognormal(3, 2, hot + quiet), 2)
    amounts[rng.random(hot + quiet) < 0.05] = np.nan
    ev = events_frame(list(zip(entity, T0 + pd.to_timedelta(hours, unit="h"), amounts)))
    at = T0 + pd.to_timedelta(rng.integers(0, 24 * 31, 2000), unit="h")
    sp = spine_frame(list(zip(np.where(rng.random(2000) < 0.9, 0, rng.integers(1, 40, 2000)), at)))
    fs = load_feature_set(SMALL)
    assert_matches_reference(compute(fs, ev, sp), fs, ev, sp)


@pytest.mark.parametrize("first_year, entities, id_step", [(1950, 30, 1), (1700, 3000, 1), (1700, 40, 20)])
def test_times_before_1970_or_centuries_apart_match_the_reference(compute, first_year, entities, id_step):
    """Times before the epoch (negative microseconds), and events five centuries apart, for
    thousands of entities or for a few with ids spread apart: their (entity, time) keys no
    longer fit one int64 as offsets (the Dask kernel then numbers the entities densely, and
    packs time ranks if that is not enough)."""
    rng = np.random.default_rng(19)
    start = pd.Timestamp(f"{first_year}-01-01", tz="UTC")
    spans = [start + pd.to_timedelta(rng.integers(0, 24 * 60, 1500), unit="h"),
             pd.Timestamp("2200-01-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 24 * 60, 1500), unit="h")]
    times = pd.DatetimeIndex(np.concatenate([span.to_numpy() for span in spans]))
    amounts = np.round(rng.lognormal(3, 2, len(times)), 2)
    ev = events_frame(list(zip(rng.integers(0, entities, len(times)) * id_step, times, amounts)))
    at = times[rng.integers(0, len(times), 300)] + pd.to_timedelta(rng.integers(0, 24 * 3, 300), unit="h")
    sp = spine_frame(list(zip(rng.integers(0, entities, 300) * id_step, at)))
    fs = load_feature_set(SMALL)
    assert_matches_reference(compute(fs, ev, sp), fs, ev, sp)


def test_ties_at_the_same_timestamp_are_all_counted(compute):
    fs = load_feature_set(SMALL)
    at = T0 - pd.Timedelta(hours=5)
    ev = events_frame([(1, at, 0.1), (1, at, 1e16), (1, at, -1e16), (1, at, 0.2), (1, at, None)])
    sp = spine_frame([(1, T0), (1, at)])
    got = canonical(compute(fs, ev, sp), fs).set_index("row_id").sort_index()
    assert got["amount_count_1d"].tolist() == [5, 0]
    assert np.isnan(got["amount_mean_1d"].iloc[1])  # nothing strictly before `at`
    # The exact sum, correctly rounded, whatever the order (issue 17): not 0.2 as adding in
    # time order gives, nor 0.0 as the value order (-1e16, 0.1, 0.2, 1e16) did.
    assert got["amount_sum_1d"].iloc[0] == math.fsum([0.1, 1e16, -1e16, 0.2]) == 0.30000000000000004


def test_duplicate_spine_rows_are_kept_as_duplicates(compute):
    fs = load_feature_set(SMALL)
    ev = events_frame([(1, T0 - DAY / 2, 1.5)])
    sp = spine_frame([(1, T0), (1, T0), (1, T0)]).assign(row_id=0, churned=0)
    got = compute(fs, ev, sp)
    assert len(got) == 3
    assert got["amount_sum_1d"].tolist() == [1.5, 1.5, 1.5]
    assert_matches_reference(got, fs, ev, sp)


def test_entity_with_only_future_events_gets_defaults(compute):
    fs = load_feature_set(SMALL)
    ev = events_frame([(2, T0 + DAY, 5.0), (2, T0, 5.0)])
    got = compute(fs, ev, spine_frame([(2, T0)]))
    assert got["amount_count_7d"].tolist() == [0]
    assert got["amount_sum_7d"].tolist() == [0.0]
    assert got["amount_mean_7d"].isna().all()


def test_entity_absent_from_events_gets_defaults(compute):
    fs = load_feature_set(SMALL)
    ev = events_frame([(1, T0 - DAY / 2, 5.0)])
    sp = spine_frame([(1, T0), (99, T0)])
    got = canonical(compute(fs, ev, sp), fs)
    assert got["amount_count_1d"].tolist() == [1, 0]
    assert got["amount_sum_1d"].tolist() == [5.0, 0.0]
    assert got["amount_mean_1d"].isna().tolist() == [False, True]
    assert_matches_reference(got, fs, ev, sp)


def test_many_as_of_times_per_entity_each_see_their_own_window(compute):
    fs = load_feature_set(SMALL)
    ev = events_frame([(1, T0 + i * DAY, float(i + 1)) for i in range(10)])
    sp = spine_frame([(1, T0 + i * DAY) for i in range(11)])
    got = canonical(compute(fs, ev, sp), fs)
    assert got["amount_count_1d"].tolist() == [0] + [1] * 10
    assert got["amount_count_7d"].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 7, 7, 7]
    assert got["amount_sum_7d"].tolist()[-1] == sum(range(4, 11))
    assert_matches_reference(got, fs, ev, sp)


def test_out_of_order_events_give_the_same_result_as_sorted_ones(compute):
    fs = load_feature_set(SMALL)
    ev, sp = random_inputs(seed=3, entities=5, events=200, spine_rows=40)
    shuffled = ev.sample(frac=1.0, random_state=1).reset_index(drop=True)
    got = canonical(compute(fs, shuffled, sp), fs)
    pd.testing.assert_frame_equal(got, canonical(compute(fs, ev.sort_values("event_time"), sp), fs))
    assert_matches_reference(got, fs, shuffled, sp)


def test_count_counts_events_while_sum_and_mean_ignore_null_amounts(compute):
    fs = load_feature_set(SMALL)
    ev = events_frame([(1, T0 - DAY / 2, None), (1, T0 - DAY / 3, 4.0), (1, T0 - DAY / 4, np.nan),
                       (2, T0 - DAY / 2, None)])
    sp = spine_frame([(1, T0), (2, T0)])
    got = canonical(compute(fs, ev, sp), fs)
    assert got["amount_count_1d"].tolist() == [3, 1]
    assert got["amount_sum_1d"].tolist() == [4.0, 0.0]
    assert got["amount_mean_1d"].tolist()[0] == 4.0
    assert np.isnan(got["amount_mean_1d"].tolist()[1])
    assert_matches_reference(got, fs, ev, sp)


def test_spine_columns_and_types_are_kept_and_features_appended(compute):
    fs = load_feature_set(SMALL)
    ev, sp = random_inputs(seed=5, entities=4, events=50, spine_rows=10)
    got = compute(fs, ev, sp)
    assert list(got.columns) == list(sp.columns) + fs.feature_names()
    assert all(got[a.name].dtype == a.dtype for a in fs.aggregations if a.function != "mean")
    assert got["customer_id"].dtype == "int64"


def test_random_inputs_match_the_duckdb_reference(compute):
    fs = load_feature_set(DEFINITION)
    ev, sp = random_inputs(seed=11)
    assert_matches_reference(compute(fs, ev, sp), fs, ev, sp)


def test_string_entities_match_the_reference(compute):
    fs = load_feature_set(SMALL)
    ev, sp = random_inputs(seed=13, entities=8, events=300, spine_rows=60)
    ev = ev.assign(customer_id=("c" + ev["customer_id"].astype(str)).astype("string"))
    sp = sp.assign(customer_id=("c" + sp["customer_id"].astype(str)).astype("string"))
    assert_matches_reference(compute(fs, ev, sp), fs, ev, sp)


def test_several_columns_and_odd_windows_match_the_reference(compute):
    fs = load_feature_set({**SMALL, "aggregations": [
        {"column": "amount", "functions": ["sum", "mean"], "windows": ["90s", "36h"]},
        {"column": "qty", "functions": ["count", "sum"], "windows": ["2w", "15m"]}]})
    ev, sp = random_inputs(seed=17, entities=6, events=400, spine_rows=80)
    ev = ev.assign(qty=np.arange(len(ev), dtype="int64") % 5)
    assert_matches_reference(compute(fs, ev, sp), fs, ev, sp)


def test_bad_inputs_fail_before_any_job_runs(compute):
    fs = load_feature_set(SMALL)
    ev = events_frame([(1, T0, 1.0)]).drop(columns=["amount"])
    with pytest.raises(DefinitionError, match="customer_activity.*events table has no .*'amount'"):
        compute(fs, ev, spine_frame([(1, T0)]))


# ---------------------------------------------------------------------------------------------
# parity between the engines, bit for bit


def test_spark_and_dask_give_identical_features(spark, dask_cluster_client):
    import dask.dataframe as dd

    from engine.features.dask import training_set_dask
    from engine.features.spark import training_set_spark

    fs = load_feature_set(DEFINITION)
    ev, sp = random_inputs(seed=23, entities=40, events=3000, spine_rows=600)
    on_spark = training_set_spark(fs, spark_frame(spark, ev), spark_frame(spark, sp)).toPandas()
    on_dask = training_set_dask(fs, dd.from_pandas(ev, npartitions=3),
                                dd.from_pandas(sp, npartitions=2)).compute()
    pd.testing.assert_frame_equal(canonical(on_spark, fs), canonical(on_dask, fs), check_exact=True)


def test_dask_shuffle_methods_give_identical_features(dask_cluster_client):
    import dask.dataframe as dd

    from engine.features.dask import training_set_dask

    fs = load_feature_set(DEFINITION)
    ev, sp = random_inputs(seed=29, entities=40, events=3000, spine_rows=600)
    by_method = [training_set_dask(fs, dd.from_pandas(ev, npartitions=3), dd.from_pandas(sp, npartitions=2),
                                   shuffle_method=method).compute() for method in ("tasks", "p2p")]
    pd.testing.assert_frame_equal(*(canonical(frame, fs) for frame in by_method), check_exact=True)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_property_any_small_input_matches_the_reference(compute, data):
    fs = load_feature_set(SMALL)
    hour = st.integers(min_value=0, max_value=24 * 10)
    amount = st.one_of(st.none(), st.floats(min_value=-1e6, max_value=1e6, allow_nan=False))
    events = data.draw(st.lists(st.tuples(st.integers(0, 3), hour, amount), min_size=0, max_size=40))
    spine = data.draw(st.lists(st.tuples(st.integers(0, 4), hour), min_size=1, max_size=15))
    ev = events_frame([(e, T0 + pd.Timedelta(hours=h), a) for e, h, a in events])
    sp = spine_frame([(e, T0 + pd.Timedelta(hours=h)) for e, h in spine])
    got = compute(fs, ev, sp)
    counts = [a.name for a in fs.aggregations if a.function == "count"]
    got, want = canonical(got, fs), canonical(reference(fs, ev, sp), fs)
    pd.testing.assert_frame_equal(got[counts], want[counts])
    pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=1e-9, atol=1e-6)
