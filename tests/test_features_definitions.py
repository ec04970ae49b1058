"""Expressions and the richer definitions: what is accepted, what is rejected (at load, or
from the schemas before any job runs), the definition hash, and each expression operator on
both engines against DuckDB evaluating the same SQL."""

from __future__ import annotations

import re
from datetime import datetime, timezone

import duckdb
import numpy as np
import pandas as pd
import pytest

from engine.errors import DefinitionError, SchemaMismatch
from engine.features import check_inputs, definition_hash, load_feature_set
from engine.features import expressions as X
from engine.features.dask_expressions import evaluate, pandas_input, to_pandas
from engine.features.spark_expressions import spark_input, to_spark

BASE = {
    "name": "spend",
    "entity": "customer_id",
    "timestamp": "event_time",
    "aggregations": [{"column": "amount", "functions": ["sum", "max"], "windows": ["7d"]}],
}
EVENT_KINDS = {"customer_id": "int", "event_time": "timestamp", "amount": "float", "category": "string",
               "qty": "int", "flag": "bool"}
SPINE_KINDS = {"customer_id": "int", "as_of": "timestamp"}
# The hash of conf/features/customer.yaml before filters, defaults, ttl and expressions existed:
# those options enter the hash only when used, so older tables and models stay valid.
CUSTOMER_HASH_BEFORE = "1f07479517c573d340c593c8ff6057d3712c50e33eb50812429726e275f14eb8"


def with_agg(**changes) -> dict:
    return {**BASE, "aggregations": [{**BASE["aggregations"][0], **changes}]}


# ---------------------------------------------------------------------------------------------
# parsing


@pytest.mark.parametrize("text", [
    "sqrt(amount)", "__import__('os').system('x')", "amount ** 2", "amount +", "amount; DROP TABLE x",
    "amount[0]", "CASE amount END", "'unterminated", "category IN (qty)", "exp(amount)", "lambda: 1",
    "amount.real", "log(amount, 2)", "",
])
def test_unsupported_expression_is_rejected_at_load_naming_definition_and_expression(text):
    with pytest.raises(DefinitionError, match=rf"'spend'.*expression {re.escape(repr(text))} is not supported"):
        load_feature_set(with_agg(where=text))


def test_expression_syntax_and_precedence():
    tree = X.parse_expression("a + b * 2 > 3 OR NOT c = 'x' AND d IN (1, -2.5)")
    assert X.to_sql(tree) == ("((\"a\" + (\"b\" * 2.0)) > 3.0) OR ((NOT (\"c\" = 'x')) AND "
                              "(\"d\" IN (1.0, -2.5)))").join("()")
    assert X.columns_of(tree) == ["a", "b", "c", "d"]
    same = X.parse_expression("  A+B*2>3 or not C='x' and D in (1,-2.5) ".replace("A", "a").replace("B", "b")
                              .replace("C", "c").replace("D", "d"))
    assert X.to_sql(same) == X.to_sql(tree)
    assert X.to_sql(X.parse_expression("a <> b")) == X.to_sql(X.parse_expression("a != b"))
    assert X.to_sql(X.parse_expression("ln(x)")) == X.to_sql(X.parse_expression("LOG(x)"))
    assert X.to_sql(X.parse_expression("'it''s'")) == "'it''s'"


def test_expression_types_are_checked_against_column_kinds():
    kinds = {"amount": "float", "category": "string", "t": "timestamp", "flag": "bool"}
    assert X.infer_type(X.parse_expression("amount * 2"), kinds) == "num"
    assert X.infer_type(X.parse_expression("category IN ('a')"), kinds) == "bool"
    assert X.infer_type(X.parse_expression("CASE WHEN flag THEN category END"), kinds) == "str"
    assert X.infer_type(X.parse_expression("year(t)"), kinds) == "num"
    for bad, pattern in [("category + 1", "operator \\+ needs num, but column 'category' is str"),
                         ("amount = 'x'", "mixes types num, str"),
                         ("year(amount)", "year\\(\\) needs time"),
                         ("CASE WHEN amount THEN 1 END", "CASE WHEN needs bool"),
                         ("coalesce(amount, category)", "mixes types")]:
        with pytest.raises(SchemaMismatch, match=pattern):
            X.infer_type(X.parse_expression(bad), kinds)
    with pytest.raises(DefinitionError, match="unknown column 'nope'"):
        X.infer_type(X.parse_expression("nope > 1"), kinds)


# ---------------------------------------------------------------------------------------------
# definitions


def test_functions_filters_defaults_and_ttl_are_read():
    fs = load_feature_set({**BASE, "ttl": "30d", "inclusive": True, "source_version": 3,
                           "columns": {"travel": "CASE WHEN category = 'travel' THEN amount END"},
                           "aggregations": [
                               {"column": "amount", "functions": ["min", "stddev", "last", "time_since_last"],
                                "windows": ["1h", "7d"], "where": "qty > 0", "prefix": "paid", "default": 0},
                               {"column": "category", "functions": ["distinct_count"], "windows": ["7d"],
                                "ttl": "2d"},
                               {"column": "travel", "functions": ["sum", "count"], "windows": ["30d"]}],
                           "derived": {"share": "travel_sum_30d / paid_min_7d"}})
    assert fs.inclusive and fs.source_version == 3
    assert fs.feature_names()[:3] == ["paid_min_1h", "paid_min_7d", "paid_stddev_1h"]
    assert fs.feature_names()[-1] == "share"
    paid = fs.aggregations[0]
    assert paid.where is not None and paid.where.text == "qty > 0"
    assert paid.default == 0.0 and paid.ttl == pd.Timedelta(days=30)
    assert fs.aggregations[8].ttl == pd.Timedelta(days=2)
    assert fs.event_columns() == ["customer_id", "event_time", "amount", "qty", "category"]
    assert fs.dtypes()["category_distinct_count_7d"] == "int64" and fs.dtypes()["share"] == "float64"
    check_inputs(fs, EVENT_KINDS, SPINE_KINDS)


@pytest.mark.parametrize("changes, pattern", [
    ({"functions": ["median"]}, "unsupported function 'median'; choose from count, sum, mean, min, max"),
    ({"ttl": "a week"}, "aggregations\\[0\\].ttl of column 'amount'.*'a week'"),
    ({"windows": ["7 days"]}, "windows of column 'amount'.*'7 days'"),
    ({"functions": ["count"], "default": None}, "default must be a whole number"),
    ({"functions": ["count"], "default": 1.5}, "default must be a whole number"),
    ({"default": "zero"}, "default must be null or a finite number"),
    ({"prefix": "has space"}, "prefix must be a name"),
])
def test_bad_aggregation_is_rejected_at_load_naming_definition(changes, pattern):
    with pytest.raises(DefinitionError, match=rf"'spend'.*{pattern}"):
        load_feature_set(with_agg(**changes))


def test_same_column_with_two_filters_needs_a_prefix():
    twice = {**BASE, "aggregations": [{"column": "amount", "functions": ["sum"], "windows": ["7d"]},
                                      {"column": "amount", "functions": ["sum"], "windows": ["7d"],
                                       "where": "category = 'travel'"}]}
    with pytest.raises(DefinitionError, match="'amount_sum_7d' is declared twice.*'prefix'"):
        load_feature_set(twice)


@pytest.mark.parametrize("derived, pattern", [
    ({"r": "amount_sum_7d / nope_7d"}, "derived feature 'r'.*unknown column 'nope_7d'"),
    ({"r": "amount_sum_7d > 1"}, "derived feature 'r'.*is bool, expected a number"),
    ({"r": "sqrt(amount_sum_7d)"}, "derived feature 'r' expression 'sqrt\\(amount_sum_7d\\)' is not supported"),
    ({"r": "s2", "s2": "amount_sum_7d"}, "derived feature 'r'.*unknown column 's2'"),
    ({"amount_max_7d": "amount_sum_7d * 2"}, "'amount_max_7d' is declared twice"),
])
def test_bad_derived_feature_is_rejected_at_load(derived, pattern):
    with pytest.raises(DefinitionError, match=rf"'spend'.*{pattern}"):
        load_feature_set({**BASE, "derived": derived})


def test_computed_columns_read_source_columns_only():
    bad = {**BASE, "columns": {"a": "amount * 2", "b": "a + 1"}}
    with pytest.raises(DefinitionError, match="computed column 'b'.*reads the computed column 'a'"):
        load_feature_set(bad)


@pytest.mark.parametrize("definition, events, error, pattern", [
    (with_agg(where="region = 'eu'"), EVENT_KINDS, DefinitionError,
     "'spend': filter of 'amount_sum_7d': expression \"region = 'eu'\".*unknown column 'region'"),
    (with_agg(where="amount * 2"), EVENT_KINDS, SchemaMismatch,
     "'spend': filter of 'amount_sum_7d': expression 'amount \\* 2' is num, expected a condition"),
    (with_agg(where="category > 1"), EVENT_KINDS, SchemaMismatch,
     "'spend': filter of 'amount_sum_7d'.*mixes types num, str"),
    ({**BASE, "columns": {"x": "category * 2"}, "aggregations": [
        {"column": "x", "functions": ["sum"], "windows": ["7d"]}]}, EVENT_KINDS, SchemaMismatch,
     "'spend': computed column 'x': expression 'category \\* 2'.*column 'category' is str"),
    ({**BASE, "columns": {"qty": "amount * 2"}}, EVENT_KINDS, SchemaMismatch,
     "computed column 'qty' is also a column of the events table"),
    (with_agg(column="category"), EVENT_KINDS, SchemaMismatch,
     "'spend': aggregated \\(sum\\) column 'category' of the events table is string, expected numeric"),
    ({**BASE, "entity": "account_id"}, EVENT_KINDS, DefinitionError,
     "'spend': events table has no entity column 'account_id'"),
    (BASE, {**EVENT_KINDS, "event_time": "string"}, SchemaMismatch,
     "'spend': event-time column 'event_time' of the events table is string"),
])
def test_bad_inputs_are_rejected_from_the_schemas_naming_definition_and_column(definition, events, error, pattern):
    with pytest.raises(error, match=pattern):
        check_inputs(load_feature_set(definition), events, SPINE_KINDS)


def test_a_distinct_count_of_a_timestamp_is_rejected():
    fs = load_feature_set(with_agg(column="seen_at", functions=["distinct_count"]))
    with pytest.raises(SchemaMismatch, match="'seen_at' of the events table is timestamp, expected a number"):
        check_inputs(fs, {**EVENT_KINDS, "seen_at": "timestamp"}, SPINE_KINDS)


def test_hash_of_the_demo_definition_did_not_change(monkeypatch):
    import engine.features.definitions as definitions

    fs = load_feature_set("conf/features/customer.yaml")
    # Semantics 2 (exact sums) changes every hash, so tables built under 1 are not reused ...
    assert definitions.SEMANTICS_VERSION == 2 and definition_hash(fs) != CUSTOMER_HASH_BEFORE
    # ... and under semantics 1 the hash is still the one from before the options existed.
    monkeypatch.setattr(definitions, "SEMANTICS_VERSION", 1)
    assert definition_hash(fs) == CUSTOMER_HASH_BEFORE


def test_hash_ignores_mapping_order_spacing_and_keyword_case():
    one = {**BASE, "columns": {"a": "amount*2", "b": "CASE WHEN qty>1 THEN 1 ELSE 0 END"},
           "aggregations": [{**BASE["aggregations"][0], "where": "category = 'x' and qty > 0"}],
           "derived": {"r": "amount_sum_7d / amount_max_7d", "d": {"expr": "amount_max_7d - 1", "default": 0}}}
    two = {"derived": {"d": {"default": 0.0, "expr": "amount_max_7d-1"}, "r": "amount_sum_7d/amount_max_7d"},
           "columns": {"b": "case when qty > 1 then 1 else 0 end", "a": "amount * 2"},
           "aggregations": [{"where": "category='x' AND qty>0", "windows": ["7d"], "functions": ["sum", "max"],
                             "column": "amount"}],
           "timestamp": "event_time", "entity": "customer_id", "name": "spend"}
    assert definition_hash(load_feature_set(one)) == definition_hash(load_feature_set(two))
    # An explicit built-in default means the same thing as none.
    assert definition_hash(load_feature_set(with_agg(functions=["sum"], default=0))) == \
        definition_hash(load_feature_set(with_agg(functions=["sum"])))


@pytest.mark.parametrize("change", [
    {"inclusive": True}, {"source_version": 4}, {"ttl": "3d"},
    {"aggregations": [{**BASE["aggregations"][0], "where": "qty > 0"}]},
    {"aggregations": [{**BASE["aggregations"][0], "where": "qty > 1"}]},
    {"aggregations": [{**BASE["aggregations"][0], "default": -1}]},
    {"aggregations": [{**BASE["aggregations"][0], "prefix": "spend"}]},
    {"derived": {"r": "amount_sum_7d / 2"}},
    {"columns": {"c": "amount * 2"}},
])
def test_hash_changes_when_a_meaning_changes(change):
    assert definition_hash(load_feature_set({**BASE, **change})) != definition_hash(load_feature_set(BASE))


# ---------------------------------------------------------------------------------------------
# each operator on both engines vs DuckDB

OPERATORS = [
    ("a + b * 2 - c / 4", "a + b * 2 - c / 4"),
    ("a / b", "CASE WHEN b <> 0 THEN a / b END"),
    ("a % b", "CASE WHEN b <> 0 THEN a % b END"),  # sign of the dividend, as C fmod
    ("-a + abs(c)", "-a + abs(c)"),
    ("log(a)", "CASE WHEN a > 0 THEN ln(a) END"),
    ("coalesce(a, b, 0)", "coalesce(a, b, 0)"),
    ("a > b", "a > b"),
    ("a >= 1 AND s = 'x'", "a >= 1 AND s = 'x'"),
    ("a < 0 OR s IN ('x', 'y')", "a < 0 OR s IN ('x', 'y')"),
    ("NOT (a = b) OR flag", "NOT (a = b) OR flag"),
    ("s NOT IN ('x')", "s NOT IN ('x')"),
    ("s IS NULL", "s IS NULL"),
    ("a IS NOT NULL AND flag = TRUE", "a IS NOT NULL AND flag = TRUE"),
    ("CASE WHEN a > 0 THEN 'pos' WHEN a < 0 THEN 'neg' END", "CASE WHEN a > 0 THEN 'pos' WHEN a < 0 THEN 'neg' END"),
    ("CASE WHEN flag THEN a ELSE b END", "CASE WHEN flag THEN a ELSE b END"),
    ("year(t) * 100 + month(t) + day(t) / 100", "year(t) * 100 + month(t) + day(t) / 100"),
    ("hour(t) * 60 + minute(t)", "hour(t) * 60 + minute(t)"),
    ("dayofweek(t)", "isodow(t)"),
    ("s = 'x' AND a IN (1, 2.5, -3)", "s = 'x' AND a IN (1, 2.5, -3)"),
    # timestamps: literals (UTC unless an offset is given), comparisons, differences in seconds
    ("t >= TIMESTAMP '2025-06-01 00:00:00'", "t >= TIMESTAMPTZ '2025-06-01 00:00:00+00'"),
    ("t < TIMESTAMP '2025-06-01T12:30:00.000001+02:00' AND t != TIMESTAMP '2025-02-01'",
     "t < TIMESTAMPTZ '2025-06-01 10:30:00.000001+00' AND t <> TIMESTAMPTZ '2025-02-01 00:00:00+00'"),
    ("t - TIMESTAMP '2025-01-01'", "(epoch_us(t) - epoch_us(TIMESTAMPTZ '2025-01-01 00:00:00+00')) / 1e6"),
    ("(TIMESTAMP '2026-01-01 00:00Z' - t) / 86400 > 200", "(epoch_us(TIMESTAMPTZ '2026-01-01 00:00:00+00') - epoch_us(t)) / 1e6 / 86400 > 200"),
    ("t - t2", "(epoch_us(t) - epoch_us(t2)) / 1e6"),
    ("CASE WHEN t > t2 THEN t ELSE t2 END = t", "CASE WHEN t > t2 THEN t ELSE t2 END = t"),
    ("coalesce(t, t2) <= TIMESTAMP '2025-08-01'", "coalesce(t, t2) <= TIMESTAMPTZ '2025-08-01 00:00:00+00'"),
]


def operator_frame() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    n = 60
    a = rng.choice([-3.0, -1.5, 0.0, 1.0, 2.5, 7.0, np.nan], n)
    b = rng.choice([0.0, 2.0, -4.0, 2.5, np.nan], n)
    times = pd.Series(pd.Timestamp("2025-01-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 60 * 24 * 400, n), unit="m"))
    times[rng.random(n) < 0.1] = pd.NaT
    return pd.DataFrame({
        "a": a, "b": b, "c": rng.normal(0, 10, n),
        "s": pd.array(rng.choice(np.array(["x", "y", "z", None], dtype=object), n), dtype="string"),
        "flag": pd.array(rng.choice(np.array([True, False, None], dtype=object), n), dtype="boolean"),
        "t": times.astype("datetime64[us, UTC]"),
        # a second time, sometimes equal to t, sometimes null, microseconds apart
        "t2": pd.Series(np.where(rng.random(n) < 0.3, times,
                                 times - pd.to_timedelta(rng.integers(-10**12, 10**12, n), unit="us")))
        .where(rng.random(n) > 0.1).astype("datetime64[us, UTC]"),
    })


KINDS = {"a": "float", "b": "float", "c": "float", "s": "string", "flag": "bool", "t": "timestamp",
         "t2": "timestamp"}


def _comparable(values: pd.Series) -> list:
    out = []
    for v in values.astype(object):
        if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)):
            out.append(None)
        elif isinstance(v, (bool, np.bool_)):
            out.append(bool(v))
        elif isinstance(v, (int, float, np.integer, np.floating)):
            out.append(round(float(v), 12))
        elif isinstance(v, (pd.Timestamp, datetime)):
            stamp = pd.Timestamp(v)
            out.append(stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC"))
        else:
            out.append(v)
    return out


@pytest.mark.parametrize("ours, sql", OPERATORS)
def test_expression_operators_match_duckdb(engine_name, request, ours, sql):
    frame = operator_frame()
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register("f", frame.assign(a=frame["a"].where(frame["a"].notna()), b=frame["b"].where(frame["b"].notna())))
    want = con.execute(f"SELECT {sql} AS v FROM f").df()["v"]
    con.close()
    tree = X.parse_expression(ours)
    X.infer_type(tree, KINDS)
    if engine_name == "spark":
        spark = request.getfixturevalue("spark")
        rows = [[None if pd.isna(v) else (v.to_pydatetime() if isinstance(v, pd.Timestamp) else
                                          v.item() if isinstance(v, np.generic) else v)
                 for v in frame[c].astype(object)] for c in frame.columns]
        sdf = spark.createDataFrame(list(zip(*rows)), "a double, b double, c double, s string, flag boolean, "
                                                      "t timestamp, t2 timestamp")
        got = sdf.select(to_spark(tree, lambda name: spark_input(name, KINDS[name]), KINDS).alias("v")
                         ).toPandas()["v"]
    else:
        inputs = {name: pandas_input(frame[name], kind) for name, kind in KINDS.items()}
        got = to_pandas(evaluate(tree, inputs, len(frame)))
    assert _comparable(got) == _comparable(want)


def test_the_rich_example_definition_fits_the_demo_events():
    from engine.demo_data import EVENTS_SCHEMA, LABELS_SCHEMA

    def kinds(schema) -> dict[str, str]:
        import pyarrow as pa

        return {f.name: ("int" if pa.types.is_integer(f.type) else "float" if pa.types.is_floating(f.type)
                         else "timestamp" if pa.types.is_timestamp(f.type) else "string") for f in schema}

    fs = load_feature_set("conf/features/customer_rich.yaml")
    check_inputs(fs, kinds(EVENTS_SCHEMA), kinds(LABELS_SCHEMA))
    assert len(fs.feature_names()) == 36
    assert fs.event_columns() == ["customer_id", "event_time", "amount", "category"]


# ---------------------------------------------------------------------------------------------
# timestamps in expressions


def test_timestamp_literals_are_read_as_utc_and_written_canonically():
    tree = X.parse_expression("event_time >= TIMESTAMP '2025-06-01'")
    assert tree.right == X.Lit(datetime(2025, 6, 1, tzinfo=timezone.utc))
    same = ["timestamp '2025-06-01 00:00:00'", "TIMESTAMP '2025-06-01T00:00:00Z'",
            "TIMESTAMP '2025-06-01 02:00:00+02:00'", "TIMESTAMP '2025-06-01 00:00:00.000000'"]
    for text in same:
        assert X.to_sql(X.parse_expression(f"event_time >= {text}")) == X.to_sql(tree)
    assert X.to_sql(tree.right) == "TIMESTAMP '2025-06-01 00:00:00.000000'"
    assert X.time_micros(X.parse_expression("TIMESTAMP '1970-01-01 00:00:00.000001'").value) == 1
    # 'timestamp' alone is still a column name
    assert X.parse_expression("timestamp IS NULL") == X.IsNull(X.Col("timestamp"), False)


@pytest.mark.parametrize("text", ["TIMESTAMP '2025-13-01'", "TIMESTAMP 'yesterday'", "TIMESTAMP '2025-06-01 25:00'",
                                  "TIMESTAMP 20250601", "TIMESTAMP ''"])
def test_a_bad_timestamp_literal_is_rejected_at_load_naming_the_expression(text):
    where = f"event_time > {text}"
    with pytest.raises(DefinitionError, match=rf"'spend'.*expression {re.escape(repr(where))} is not supported"):
        load_feature_set(with_agg(where=where))


@pytest.mark.parametrize("text, pattern", [
    ("event_time + 1", "operator \\+ needs num, but column 'event_time' is time"),
    ("event_time - 60", "timestamp difference needs time, but operand 60.0 is num"),
    ("amount - event_time", "timestamp difference needs time, but column 'amount' is num"),
    ("event_time > '2025-06-01'", "mixes types str, time"),
    ("event_time > 5", "mixes types num, time"),
    ("event_time * 2", "operator \\* needs num"),
    ("event_time IN (1, 2)", "IN needs num or str"),
])
def test_unsupported_timestamp_arithmetic_is_rejected_naming_the_expression(text, pattern):
    fs = load_feature_set({**BASE, "columns": {"x": text}, "aggregations": [
        {"column": "x", "functions": ["count"], "windows": ["7d"]}]})
    with pytest.raises(SchemaMismatch, match=rf"'spend': computed column 'x': expression {re.escape(repr(text))}.*{pattern}"):
        check_inputs(fs, EVENT_KINDS, SPINE_KINDS)


def test_timestamp_differences_and_comparisons_are_typed():
    kinds = {"a": "timestamp", "b": "timestamp", "n": "float"}
    assert X.infer_type(X.parse_expression("a - b"), kinds) == "num"
    assert X.infer_type(X.parse_expression("(a - TIMESTAMP '2025-01-01') / 86400"), kinds) == "num"
    assert X.infer_type(X.parse_expression("a >= TIMESTAMP '2025-01-01' AND a < b"), kinds) == "bool"
    assert X.infer_type(X.parse_expression("CASE WHEN n > 0 THEN a ELSE TIMESTAMP '2025-01-01' END"), kinds) == "time"


# ---------------------------------------------------------------------------------------------
# entity keys


def test_entity_may_be_one_name_or_a_list_of_keys():
    assert load_feature_set(BASE).entity_keys == ("customer_id",)
    assert load_feature_set({**BASE, "entity": ["customer_id"]}).entity_keys == ("customer_id",)
    two = load_feature_set({**BASE, "entity": ["customer_id", "store_id"]})
    assert two.entity_keys == ("customer_id", "store_id")
    assert two.event_columns()[:3] == ["customer_id", "store_id", "event_time"]


@pytest.mark.parametrize("entity, pattern", [
    ([], "key 'entity' must be a column name or a non-empty list"),
    (["customer_id", ""], "key 'entity' must be a column name or a non-empty list"),
    (["customer_id", 3], "key 'entity' must be a column name or a non-empty list"),
    ({"customer_id": 1}, "key 'entity' must be a column name or a non-empty list"),
    (["customer_id", "customer_id"], "entity key 'customer_id' is listed twice"),
    (["customer_id", "as_of"], "the as-of or event-time column is also an entity key"),
])
def test_bad_entity_keys_are_rejected_at_load(entity, pattern):
    with pytest.raises(DefinitionError, match=rf"'spend'.*{pattern}"):
        load_feature_set({**BASE, "entity": entity})


def test_an_entity_key_cannot_be_aggregated_or_replaced():
    with pytest.raises(DefinitionError, match="'spend'.*'store_id' is an entity key .*cannot be aggregated"):
        load_feature_set({**BASE, "entity": ["customer_id", "store_id"],
                          "aggregations": [{"column": "store_id", "functions": ["sum"], "windows": ["7d"]}]})
    with pytest.raises(DefinitionError, match="computed column 'store_id' would replace"):
        load_feature_set({**BASE, "entity": ["customer_id", "store_id"], "columns": {"store_id": "amount"}})


def test_hash_of_one_key_is_unchanged_and_keys_enter_the_hash_in_order(tmp_path):
    base = definition_hash(load_feature_set(BASE))
    assert definition_hash(load_feature_set({**BASE, "entity": ["customer_id"]})) == base
    two = definition_hash(load_feature_set({**BASE, "entity": ["customer_id", "store_id"]}))
    assert two != base
    assert definition_hash(load_feature_set({**BASE, "entity": ["store_id", "customer_id"]})) not in (two, base)
    assert definition_hash(load_feature_set({**BASE, "entity": ["customer_id", "region"]})) != two
    block = tmp_path / "block.yaml"
    block.write_text("name: spend\nentity:\n  - customer_id   # who\n  - store_id\ntimestamp: event_time\n"
                     "aggregations:\n  - {column: amount, functions: [sum, max], windows: [7d]}\n")
    flow = tmp_path / "flow.yaml"
    flow.write_text("aggregations: [{windows: [7d], functions: [sum, max], column: amount}]\n"
                    "timestamp: event_time\nentity: [customer_id,store_id]\nname: spend\n")
    assert definition_hash(load_feature_set(block)) == definition_hash(load_feature_set(flow)) == two


@pytest.mark.parametrize("table, events, spine, error, pattern", [
    ("events", EVENT_KINDS, {**SPINE_KINDS, "store_id": "int"}, DefinitionError,
     "'spend': events table has no entity column 'store_id'"),
    ("spine", {**EVENT_KINDS, "store_id": "string"}, SPINE_KINDS, DefinitionError,
     "'spend': spine table has no entity column 'store_id'"),
    ("both", {**EVENT_KINDS, "store_id": "string"}, {**SPINE_KINDS, "store_id": "int"}, SchemaMismatch,
     "entity column 'store_id' is string in the events table but int in the spine"),
    ("both", {**EVENT_KINDS, "store_id": "float"}, {**SPINE_KINDS, "store_id": "float"}, SchemaMismatch,
     "entity column 'store_id' of the events table is float, expected integer or string"),
])
def test_every_entity_key_is_checked_in_both_tables(table, events, spine, error, pattern):
    fs = load_feature_set({**BASE, "entity": ["customer_id", "store_id"]})
    with pytest.raises(error, match=pattern):
        check_inputs(fs, events, spine)
    check_inputs(fs, {**EVENT_KINDS, "store_id": "string"}, {**SPINE_KINDS, "store_id": "string"})


# ---------------------------------------------------------------------------------------------
# last of non-numeric columns


def test_last_of_strings_booleans_and_timestamps_is_typed_by_the_column():
    fs = load_feature_set({**BASE, "columns": {"late": "event_time > TIMESTAMP '2025-06-01'"}, "aggregations": [
        {"column": c, "functions": ["last"], "windows": ["7d"]} for c in ("category", "flag", "late", "amount")]})
    check_inputs(fs, EVENT_KINDS, SPINE_KINDS)
    assert fs.dtypes({**EVENT_KINDS, "late": "bool"}) == {
        "category_last_7d": "string", "flag_last_7d": "boolean", "late_last_7d": "boolean",
        "amount_last_7d": "float64"}


def test_last_of_a_timestamp_column_is_a_timestamp():
    fs = load_feature_set(with_agg(column="seen_at", functions=["last"]))
    kinds = {**EVENT_KINDS, "seen_at": "timestamp"}
    check_inputs(fs, kinds, SPINE_KINDS)
    assert fs.dtypes(kinds) == {"seen_at_last_7d": "datetime64[us, UTC]"}
    assert fs.dtypes() == {"seen_at_last_7d": "float64"}  # without kinds: taken as numeric


@pytest.mark.parametrize("definition, pattern", [
    (with_agg(column="category", functions=["last"], default=0),
     "'category_last_7d' is the last value of the string column 'category', so its default can only be null"),
    ({**with_agg(column="category", functions=["last"]), "derived": {"d": "category_last_7d * 2"}},
     "derived feature 'd' reads 'category_last_7d', the last value of a string column"),
    (with_agg(column="d", functions=["last"]),
     "aggregated \\(last\\) column 'd' of the events table is date, expected a number, string, boolean or timestamp"),
])
def test_unsupported_uses_of_non_numeric_last_are_rejected_from_the_schemas(definition, pattern):
    with pytest.raises(SchemaMismatch, match=rf"'spend'.*{pattern}"):
        check_inputs(load_feature_set(definition), {**EVENT_KINDS, "d": "date"}, SPINE_KINDS)
