"""Parity suite: every kind of feature, on both engines, against an independent DuckDB reference.

The reference is written here in plain SQL straight from the contract in
``engine.features.definitions`` (one correlated subquery per feature), with its own SQL for
every filter and computed column: it shares no code with the compilers, only the meaning.
Data are adversarial: events exactly at the as-of time and at window starts, events after it,
out of order, ties on time, entities with only future events, many label times per entity,
duplicate label rows, null keys and times, NaN and null values, null categories.

Counts are compared exactly, floats within 1e-9 relative, and nulls must be in the same places.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import spark_frame
from engine.errors import DefinitionError
from engine.features import load_feature_set
from engine.features.definitions import FeatureSet, parse_duration, window_micros

T0 = pd.Timestamp("2025-03-01", tz="UTC")
EPOCH = pd.Timestamp(0, tz="UTC")
HOUR = pd.Timedelta(hours=1)
ALL = ["count", "sum", "mean", "min", "max", "stddev", "distinct_count", "last", "time_since_last"]
BUILTIN_DEFAULT = {"count": 0, "distinct_count": 0, "sum": 0.0}


@dataclass(frozen=True)
class Spec:
    """One aggregation entry: what lakescore reads (``yaml``) and, independently, what the
    reference computes (``value_sql`` over the events ``e``, ``filter_sql``)."""

    yaml: dict[str, Any]
    value_sql: str
    filter_sql: str | None = None


@dataclass(frozen=True)
class Case:
    specs: tuple[Spec, ...]
    columns: dict[str, str] = field(default_factory=dict)
    derived: dict[str, Any] = field(default_factory=dict)
    derived_sql: dict[str, str] = field(default_factory=dict)
    inclusive: bool = False
    entity: tuple[str, ...] = ("customer_id",)

    def definition(self) -> dict[str, Any]:
        entity: str | list[str] = self.entity[0] if len(self.entity) == 1 else list(self.entity)
        doc: dict[str, Any] = {"name": "parity", "entity": entity, "timestamp": "event_time",
                               "as_of": "as_of", "aggregations": [s.yaml for s in self.specs],
                               "inclusive": self.inclusive}
        if self.columns:
            doc["columns"] = self.columns
        if self.derived:
            doc["derived"] = self.derived
        return doc


KITCHEN_SINK = Case(
    specs=(
        Spec({"column": "amount", "functions": ALL, "windows": ["1h", "1d", "7d"]}, "e.amount"),
        Spec({"column": "amount", "prefix": "travel", "where": "category = 'travel'",
              "functions": ["count", "sum", "mean", "max", "last", "time_since_last"], "windows": ["7d"]},
             "e.amount", "e.category = 'travel'"),
        Spec({"column": "amount", "prefix": "busy", "functions": ["count", "sum", "stddev"],
              "where": "amount > 100 OR category IN ('food', 'fuel') AND NOT qty = 3", "windows": ["1d", "7d"]},
             "e.amount", "e.amount > 100 OR e.category IN ('food', 'fuel') AND NOT e.qty = 3"),
        Spec({"column": "category", "functions": ["distinct_count", "count"], "windows": ["1d", "7d"]},
             "e.category"),
        Spec({"column": "qty", "functions": ["distinct_count", "sum", "min"], "windows": ["7d"],
              "where": "category IS NOT NULL"}, "e.qty", "e.category IS NOT NULL"),
        Spec({"column": "log_amount", "functions": ["sum", "min", "max", "stddev", "last"], "windows": ["7d"],
              "default": -1},
             "CASE WHEN abs(e.amount) + 1 > 0 THEN ln(abs(e.amount) + 1) END"),
        Spec({"column": "size", "functions": ["count", "mean", "last"], "windows": ["1d"],
              "where": "size <> 1"},
             "CASE WHEN e.amount >= 100 THEN 3.0 WHEN e.amount >= 10 THEN 2.0 ELSE 1.0 END",
             "(CASE WHEN e.amount >= 100 THEN 3.0 WHEN e.amount >= 10 THEN 2.0 ELSE 1.0 END) <> 1.0"),
        Spec({"column": "amount", "prefix": "fresh", "functions": ["mean", "count", "max"], "windows": ["7d"],
              "ttl": "6h", "default": -5}, "e.amount"),
        Spec({"column": "weekend_amount", "functions": ["sum"], "windows": ["7d"]},
             "CASE WHEN isodow(e.event_time) >= 6 THEN e.amount ELSE 0 END"),
        Spec({"column": "hour_mod", "functions": ["max", "distinct_count"], "windows": ["7d"]},
             "CASE WHEN e.amount IS NULL THEN NULL ELSE (hour(e.event_time) + coalesce(e.qty, 0)) % 5 END"),
    ),
    columns={
        "log_amount": "log(abs(amount) + 1)",
        # 'size' is 3/2/1 by amount; a null amount falls to ELSE.
        "size": "CASE WHEN amount >= 100 THEN 3 WHEN amount >= 10 THEN 2 ELSE 1 END",
        "weekend_amount": "CASE WHEN dayofweek(event_time) >= 6 THEN amount ELSE 0 END",
        "hour_mod": "CASE WHEN amount IS NULL THEN NULL ELSE (hour(event_time) + coalesce(qty, 0)) % 5 END",
    },
    derived={"sum_ratio_1d_7d": "amount_sum_1d / amount_sum_7d",
             "range_7d": {"expr": "amount_max_7d - amount_min_7d", "default": 0},
             "travel_share": "travel_sum_7d / (abs(amount_sum_7d) + 1)"},
    derived_sql={"sum_ratio_1d_7d": "CASE WHEN amount_sum_7d <> 0 THEN amount_sum_1d / amount_sum_7d END",
                 "range_7d": "coalesce(amount_max_7d - amount_min_7d, 0)",
                 "travel_share": "travel_sum_7d / (abs(amount_sum_7d) + 1)"},
)

# The 'size' value SQL above yields 1.0 for a null amount, as our CASE does (ELSE branch).


def reference(case: Case, fs: FeatureSet, events: pd.DataFrame, spine: pd.DataFrame) -> pd.DataFrame:
    """The contract in SQL, evaluated by DuckDB: each spine row left-joined to its entity's
    events before its time, and one filtered aggregate per feature over that group."""
    upper = "<=" if case.inclusive else "<"
    selects: list[str] = []
    widest = 0
    aggregations = iter(fs.aggregations)
    for spec in case.specs:
        for function in spec.yaml["functions"]:
            for window in spec.yaml["windows"]:
                agg = next(aggregations)
                w = window_micros(parse_duration(window))

                def within(micros: int) -> str:
                    cond = f"epoch_us(e.event_time) >= epoch_us(s.as_of) - {micros}"
                    return cond + (f" AND ({spec.filter_sql})" if spec.filter_sql else "")

                v = spec.value_sql
                f = f"FILTER (WHERE {within(w)})"
                value = {
                    "count": f"count(*) {f}", "sum": f"coalesce(sum({v}) {f}, 0.0)", "mean": f"avg({v}) {f}",
                    "min": f"min({v}) {f}", "max": f"max({v}) {f}", "stddev": f"stddev_samp({v}) {f}",
                    "distinct_count": f"count(DISTINCT {v}) {f}",
                    # the latest time first, then the greatest value
                    "last": f"(max({{'t': epoch_us(e.event_time), 'v': {v}}}) "
                            f"FILTER (WHERE {within(w)} AND ({v}) IS NOT NULL)).v",
                    "time_since_last": f"(epoch_us(any_value(s.as_of)) - max(epoch_us(e.event_time)) {f}) / 1e6",
                }[function]
                default = spec.yaml.get("default", BUILTIN_DEFAULT.get(function))
                empty = f"count(*) FILTER (WHERE {within(w)}) = 0"
                widest = max(widest, w)
                if "ttl" in spec.yaml:
                    ttl = window_micros(parse_duration(spec.yaml["ttl"]))
                    widest = max(widest, ttl)
                    empty += f" OR count(*) FILTER (WHERE {within(ttl)}) = 0"
                default_sql = "NULL" if default is None else repr(float(default))
                selects.append(f"CASE WHEN {empty} THEN {default_sql} ELSE {value} END AS {agg.name}")
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    # The contract reads NaN as null; DuckDB would order NaN above every number.
    clean = events.assign(amount=events["amount"].where(~np.isnan(events["amount"].astype(float))))
    con.register("ev", clean)
    con.register("sp_raw", spine)
    con.execute("CREATE TEMP TABLE sp AS SELECT *, row_number() OVER () AS rid__ FROM sp_raw")
    columns = ", ".join(f"any_value(s.{c}) AS {c}" for c in spine.columns)
    sql = (f"SELECT {columns}, {', '.join(selects)} FROM sp s LEFT JOIN ev e "
           f"ON {' AND '.join(f'e.{k} = s.{k}' for k in case.entity)} "
           f"AND epoch_us(e.event_time) {upper} epoch_us(s.as_of) "
           f"AND epoch_us(e.event_time) >= epoch_us(s.as_of) - {widest} GROUP BY s.rid__")
    if case.derived_sql:
        sql = f"SELECT *, {', '.join(f'{e} AS {n}' for n, e in case.derived_sql.items())} FROM ({sql})"
    out = con.execute(sql).df()
    con.close()
    return out


def adversarial_inputs(seed: int, entities: int = 6, events: int = 400, spine_rows: int = 120,
                       stores: int = 0, hours: int = 24 * 20) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Events on a coarse hour grid (ties, hits on window bounds) with values on a quarter grid
    (every sum is exact in any order, so the reference is exact too), null and NaN amounts, null
    categories, null keys and times; spine rows exactly at event times, at event time + window
    length, in between, after the last event, for entities with only future events and unknown
    ones, duplicated, with null keys and times."""
    rng = np.random.default_rng(seed)
    ids = np.array([f"c{i}" for i in range(entities)], dtype=object)
    times = pd.Series(T0 + pd.to_timedelta(rng.integers(0, hours, events), unit="h"))
    amount = np.round(rng.normal(0, 200, events) * 4) / 4
    amount[rng.random(events) < 0.05] = np.nan
    ev = pd.DataFrame({
        "customer_id": pd.array(ids[rng.integers(0, entities, events)], dtype="string"),
        "event_time": times.astype("datetime64[us, UTC]"),
        "amount": amount,
        "category": pd.array(rng.choice(np.array(["travel", "food", "fuel", None], dtype=object), events),
                             dtype="string"),
        "qty": rng.integers(0, 5, events).astype("int64"),
    })
    ev.loc[rng.random(events) < 0.02, "customer_id"] = pd.NA
    ev.loc[rng.random(events) < 0.02, "event_time"] = pd.NaT
    # An entity whose events are all in the future of every spine row.
    future = pd.DataFrame({"customer_id": pd.array(["future"] * 3, dtype="string"),
                           "event_time": pd.Series([T0 + pd.Timedelta(days=400)] * 3).astype("datetime64[us, UTC]"),
                           "amount": [1.0, 2.0, 3.0], "category": pd.array(["food"] * 3, dtype="string"),
                           "qty": np.array([1, 2, 3], dtype="int64")})
    ev = pd.concat([ev, future], ignore_index=True).sample(frac=1.0, random_state=seed).reset_index(drop=True)

    known = ev["event_time"].dropna().to_numpy()
    anchors = known[rng.integers(0, len(known), spine_rows)]
    shifts = pd.to_timedelta(rng.choice([0, 0, 1, 6, 24, 24 * 7, 3, 24 * 30], spine_rows), unit="h")
    sp_ids = np.concatenate([ids, np.array(["future", "unknown"], dtype=object)])
    sp = pd.DataFrame({
        "customer_id": pd.array(sp_ids[rng.integers(0, len(sp_ids), spine_rows)], dtype="string"),
        "as_of": pd.Series(pd.DatetimeIndex(anchors) + shifts).astype("datetime64[us, UTC]"),
    })
    sp.loc[rng.random(spine_rows) < 0.03, "customer_id"] = pd.NA
    sp.loc[rng.random(spine_rows) < 0.03, "as_of"] = pd.NaT
    sp = pd.concat([sp, sp.iloc[:10]], ignore_index=True)  # duplicate label rows
    sp["label"] = np.arange(len(sp), dtype="int64") % 2
    sp["row_id"] = np.arange(len(sp), dtype="int64")
    # Non-numeric columns for ``last`` and timestamp expressions (drawn after everything above,
    # so the columns above are the same with or without them): a nullable boolean, and a
    # nullable second time on the same hour grid (ties between its values too).
    ev["paid"] = pd.array(rng.choice(np.array([True, False, None], dtype=object), len(ev)), dtype="boolean")
    seen = pd.Series(T0 + pd.to_timedelta(rng.integers(0, 24 * 20, len(ev)), unit="h"))
    ev["seen_at"] = seen.where(rng.random(len(ev)) > 0.1).astype("datetime64[us, UTC]")
    if stores:
        # A second entity key (int64, some nulls on both sides): an entity is (customer, store).
        ev["store_id"] = pd.array(rng.integers(0, stores, len(ev)), dtype="Int64")
        ev.loc[rng.random(len(ev)) < 0.03, "store_id"] = pd.NA
        sp["store_id"] = pd.array(rng.integers(0, stores + 1, len(sp)), dtype="Int64")
        sp.loc[rng.random(len(sp)) < 0.03, "store_id"] = pd.NA
        sp = sp[["customer_id", "store_id", "as_of", "label", "row_id"]]
    return ev, sp


def plain_values(values: pd.Series, kind: str) -> list:
    """Non-numeric feature values as plain Python values (None for null): strings, booleans, or
    times as UTC microseconds, whatever each engine's pandas dtype for them."""
    if kind == "time":
        times = pd.to_datetime(values, utc=True).dt.as_unit("us")
        return [None if pd.isna(t) else (t - EPOCH) // pd.Timedelta(microseconds=1) for t in times]
    out = []
    for v in values.astype(object):
        out.append(None if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v))
                   else bool(v) if kind == "bool" else str(v))
    return out


def assert_same_features(got: pd.DataFrame, want: pd.DataFrame, fs: FeatureSet, rtol: float = 1e-9,
                         non_numeric: dict[str, str] | None = None) -> None:
    """Row for row (by ``row_id``): integer features equal, float features within ``rtol``
    relative, nulls in the same places; ``non_numeric`` features (name → ``str``, ``bool`` or
    ``time``) equal as plain values."""
    got = got.sort_values("row_id").reset_index(drop=True)
    want = want.sort_values("row_id").reset_index(drop=True)
    assert got["row_id"].tolist() == want["row_id"].tolist()
    non_numeric = non_numeric or {}
    for name, dtype in fs.dtypes().items():
        if name in non_numeric:
            g, w = plain_values(got[name], non_numeric[name]), plain_values(want[name], non_numeric[name])
            bad = [i for i, (a, b) in enumerate(zip(g, w)) if a != b]
            assert not bad, (f"{name}: rows {got['row_id'][bad].tolist()[:5]} got {[g[i] for i in bad[:5]]} "
                             f"want {[w[i] for i in bad[:5]]}")
            continue
        g = pd.to_numeric(got[name]).astype("float64").to_numpy()
        w = pd.to_numeric(want[name]).astype("float64").to_numpy()
        assert str(got[name].dtype) == dtype, (name, got[name].dtype)
        nulls = np.isnan(g) != np.isnan(w)
        assert not nulls.any(), f"{name}: null in different rows {got['row_id'][nulls].tolist()[:5]}"
        if dtype == "int64":
            np.testing.assert_array_equal(g, w, err_msg=name)
        else:
            ok = np.isnan(w) | (np.abs(g - w) <= rtol * np.abs(w))
            assert ok.all(), (f"{name}: rows {got['row_id'][~ok].tolist()[:5]} got {g[~ok][:5]} "
                              f"want {w[~ok][:5]}")


def test_every_kind_of_feature_matches_the_duckdb_reference(compute):
    fs = load_feature_set(KITCHEN_SINK.definition())
    ev, sp = adversarial_inputs(seed=1)
    got = compute(fs, ev, sp)
    assert list(got.columns) == list(sp.columns) + fs.feature_names()
    assert len(got) == len(sp)
    assert_same_features(got, reference(KITCHEN_SINK, fs, ev, sp), fs)


def test_inclusive_windows_match_the_duckdb_reference(compute):
    case = Case(specs=KITCHEN_SINK.specs[:3] + KITCHEN_SINK.specs[7:8], inclusive=True)
    fs = load_feature_set(case.definition())
    ev, sp = adversarial_inputs(seed=2)
    assert_same_features(compute(fs, ev, sp), reference(case, fs, ev, sp), fs)


def test_heavy_tailed_values_match_the_reference_within_1e_9(compute):
    """Values over many orders of magnitude with both signs: float results depend on the order
    of additions, and still agree with DuckDB within 1e-9 relative."""
    case = Case(specs=KITCHEN_SINK.specs[:2])
    fs = load_feature_set(case.definition())
    ev, sp = adversarial_inputs(seed=3, events=600)
    rng = np.random.default_rng(3)
    ev["amount"] = np.where(ev["amount"].isna(), np.nan, rng.lognormal(0, 2, len(ev)) + 1)
    assert_same_features(compute(fs, ev, sp), reference(case, fs, ev, sp), fs)


def test_spark_and_dask_give_bit_identical_features_of_every_kind(spark, dask_cluster_client):
    import dask.dataframe as dd

    from engine.features.dask import training_set_dask
    from engine.features.spark import training_set_spark

    fs = load_feature_set(KITCHEN_SINK.definition())
    ev, sp = adversarial_inputs(seed=4, entities=10, events=1500, spine_rows=300)
    rng = np.random.default_rng(4)
    ev["amount"] = np.where(ev["amount"].isna(), np.nan,
                            rng.lognormal(0, 3, len(ev)) * rng.choice([-1, 1], len(ev)))
    on_spark = training_set_spark(fs, spark_frame(spark, ev), spark_frame(spark, sp)).toPandas()
    on_dask = training_set_dask(fs, dd.from_pandas(ev, npartitions=3), dd.from_pandas(sp, npartitions=2)).compute()
    on_spark = on_spark.sort_values("row_id").reset_index(drop=True)
    on_dask = on_dask.sort_values("row_id").reset_index(drop=True)
    # log() comes from each engine's math library (Java's vs NumPy's), which may round the last
    # bit differently; everything else (sqrt included, correctly rounded in both) is bit-identical.
    transcendental = {n for n in fs.feature_names() if n.startswith("log_amount")}
    assert transcendental
    for name in fs.feature_names():
        pd.testing.assert_series_equal(on_spark[name], on_dask[name], obj=name,
                                       check_exact=name not in transcendental, rtol=1e-13, atol=0)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_property_any_small_input_matches_the_reference(compute, data):
    fs = load_feature_set(KITCHEN_SINK.definition())
    hour = st.integers(min_value=0, max_value=24 * 8)
    amount = st.one_of(st.none(), st.integers(-4000, 4000).map(lambda q: q / 4))
    category = st.sampled_from(["travel", "food", "fuel", None])
    rows = data.draw(st.lists(st.tuples(st.sampled_from(["a", "b", "c", None]), hour, amount, category,
                                        st.integers(0, 4)), min_size=0, max_size=40))
    labels = data.draw(st.lists(st.tuples(st.sampled_from(["a", "b", "d"]), hour), min_size=1, max_size=12))
    ev = pd.DataFrame({
        "customer_id": pd.array([r[0] for r in rows], dtype="string"),
        "event_time": pd.Series([T0 + r[1] * HOUR for r in rows], dtype="datetime64[us, UTC]"),
        "amount": pd.Series([r[2] for r in rows], dtype="float64"),
        "category": pd.array([r[3] for r in rows], dtype="string"),
        "qty": pd.Series([r[4] for r in rows], dtype="int64"),
    })
    sp = pd.DataFrame({"customer_id": pd.array([r[0] for r in labels], dtype="string"),
                       "as_of": pd.Series([T0 + r[1] * HOUR for r in labels], dtype="datetime64[us, UTC]"),
                       "row_id": np.arange(len(labels), dtype="int64")})
    assert_same_features(compute(fs, ev, sp), reference(KITCHEN_SINK, fs, ev, sp), fs)


# ---------------------------------------------------------------------------------------------
# scoring sets: the same definitions as of one time for every entity


def test_scoring_set_is_the_training_set_of_every_entity_seen_by_then(engine_name, request):
    fs = load_feature_set(KITCHEN_SINK.definition())
    ev, _ = adversarial_inputs(seed=5)
    at = T0 + pd.Timedelta(days=10, hours=3)
    seen = ev[ev["customer_id"].notna() & (ev["event_time"] < at)]["customer_id"].dropna().unique()
    spine = pd.DataFrame({"customer_id": pd.array(sorted(seen), dtype="string"),
                          "as_of": pd.Series([at] * len(seen), dtype="datetime64[us, UTC]")})
    if engine_name == "spark":
        from engine.features.spark import scoring_set_spark

        got = scoring_set_spark(fs, spark_frame(request.getfixturevalue("spark"), ev),
                                at.to_pydatetime()).toPandas()
    else:
        import dask.dataframe as dd

        from engine.features.dask import scoring_set_dask

        got = scoring_set_dask(fs, dd.from_pandas(ev, npartitions=3), at.to_pydatetime()).compute()
    assert "future" not in set(got["customer_id"]) and len(got) == len(seen)
    assert sorted(got["customer_id"]) == sorted(seen)
    assert (pd.to_datetime(got["as_of"], utc=True) == at).all()
    got = got.merge(spine.assign(row_id=np.arange(len(spine), dtype="int64"))[["customer_id", "row_id"]],
                    on="customer_id")
    want = reference(KITCHEN_SINK, fs, ev, spine.assign(row_id=np.arange(len(spine), dtype="int64")))
    assert_same_features(got, want, fs)


def test_scoring_set_of_given_entities_keeps_unknown_ones_with_defaults(engine_name, request):
    fs = load_feature_set(Case(specs=KITCHEN_SINK.specs[:1]).definition())
    ev, _ = adversarial_inputs(seed=6)
    who = pd.DataFrame({"customer_id": pd.array(["c1", "c1", "nobody"], dtype="string")})
    at = "2025-03-08T00:00:00"  # naive: read as UTC
    if engine_name == "spark":
        from engine.features.spark import scoring_set_spark

        spark = request.getfixturevalue("spark")
        got = scoring_set_spark(fs, spark_frame(spark, ev), at, spark_frame(spark, who)).toPandas()
    else:
        import dask.dataframe as dd

        from engine.features.dask import scoring_set_dask

        got = scoring_set_dask(fs, dd.from_pandas(ev, npartitions=2), at, dd.from_pandas(who, npartitions=1)).compute()
    got = got.sort_values("customer_id").reset_index(drop=True)
    assert got["customer_id"].tolist() == ["c1", "nobody"]
    assert got["amount_count_7d"].iloc[1] == 0 and np.isnan(got["amount_max_7d"].iloc[1])
    spine = pd.DataFrame({"customer_id": pd.array(["c1", "nobody"], dtype="string"),
                          "as_of": pd.Series([pd.Timestamp(at, tz="UTC")] * 2, dtype="datetime64[us, UTC]"),
                          "row_id": np.arange(2, dtype="int64")})
    case = Case(specs=KITCHEN_SINK.specs[:1])
    assert_same_features(got.assign(row_id=np.arange(2, dtype="int64")), reference(case, fs, ev, spine), fs)


# ---------------------------------------------------------------------------------------------
# named corners of the contract, on both engines


def corner_events(rows: list[tuple[str, pd.Timestamp, float | None, str | None]]) -> pd.DataFrame:
    return pd.DataFrame({
        "customer_id": pd.array([r[0] for r in rows], dtype="string"),
        "event_time": pd.Series([r[1] for r in rows], dtype="datetime64[us, UTC]"),
        "amount": pd.Series([r[2] for r in rows], dtype="float64"),
        "category": pd.array([r[3] for r in rows], dtype="string"),
        "qty": np.zeros(len(rows), dtype="int64"),
    })


def corner_spine(rows: list[tuple[str, pd.Timestamp]]) -> pd.DataFrame:
    return pd.DataFrame({"customer_id": pd.array([r[0] for r in rows], dtype="string"),
                         "as_of": pd.Series([r[1] for r in rows], dtype="datetime64[us, UTC]"),
                         "row_id": np.arange(len(rows), dtype="int64")})


def corner(definition_aggs: list[dict], **top) -> FeatureSet:
    return load_feature_set({"name": "corner", "entity": "customer_id", "timestamp": "event_time",
                             "aggregations": definition_aggs, **top})


def by_row(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values("row_id").reset_index(drop=True)


def test_last_value_is_the_greatest_among_ties_at_the_latest_time(compute):
    fs = corner([{"column": "amount", "functions": ["last"], "windows": ["1d"]}])
    at = T0 - HOUR
    ev = corner_events([("a", at, 5.0, None), ("a", at, 9.0, None), ("a", at, None, None),
                        ("a", at - HOUR, 100.0, None), ("b", at, None, None), ("b", at - HOUR, 3.0, None)])
    got = by_row(compute(fs, ev, corner_spine([("a", T0), ("b", T0)])))
    assert got["amount_last_1d"].tolist() == [9.0, 3.0]  # b: the latest non-null value


def test_time_since_last_is_seconds_to_the_as_of_time_and_zero_at_it_when_inclusive(compute):
    aggs = [{"column": "amount", "functions": ["time_since_last", "count"], "windows": ["1d"]}]
    ev = corner_events([("a", T0 - pd.Timedelta(seconds=90, microseconds=500), 1.0, None), ("a", T0, None, None)])
    sp = corner_spine([("a", T0), ("z", T0)])
    got = by_row(compute(corner(aggs), ev, sp))
    assert got["amount_time_since_last_1d"].iloc[0] == 90.0005
    assert np.isnan(got["amount_time_since_last_1d"].iloc[1])
    got = by_row(compute(corner(aggs, inclusive=True), ev, sp))
    assert got["amount_time_since_last_1d"].tolist()[0] == 0.0
    assert got["amount_count_1d"].tolist() == [2, 0]


def test_ttl_gives_the_default_when_the_latest_event_is_older_than_the_ttl(compute):
    fs = corner([{"column": "amount", "functions": ["sum", "max", "count"], "windows": ["30d"], "ttl": "2d",
                  "default": -1}])
    ev = corner_events([("a", T0 - 10 * 24 * HOUR, 4.0, None),                      # stale for a
                        ("b", T0 - 10 * 24 * HOUR, 4.0, None), ("b", T0 - 2 * 24 * HOUR, 6.0, None)])
    got = by_row(compute(fs, ev, corner_spine([("a", T0), ("b", T0), ("c", T0)])))
    assert got["amount_sum_30d"].tolist() == [-1.0, 10.0, -1.0]
    assert got["amount_max_30d"].tolist() == [-1.0, 6.0, -1.0]
    assert got["amount_count_30d"].tolist() == [-1, 2, -1]


def test_defaults_apply_without_history_but_not_to_a_window_of_null_values(compute):
    fs = corner([{"column": "amount", "functions": ["sum", "mean", "min"], "windows": ["1d"], "default": 7},
                 {"column": "amount", "prefix": "plain", "functions": ["sum", "mean", "distinct_count"],
                  "windows": ["1d"]}])
    ev = corner_events([("a", T0 - HOUR, None, None), ("a", T0 - HOUR, np.nan, None)])
    got = by_row(compute(fs, ev, corner_spine([("a", T0), ("new", T0)])))
    assert got["amount_sum_1d"].tolist() == [0.0, 7.0]      # events, but no values: the sum is 0
    assert np.isnan(got["amount_mean_1d"].iloc[0]) and got["amount_mean_1d"].iloc[1] == 7.0
    assert np.isnan(got["amount_min_1d"].iloc[0]) and got["amount_min_1d"].iloc[1] == 7.0
    assert got["plain_sum_1d"].tolist() == [0.0, 0.0]
    assert got["plain_mean_1d"].isna().tolist() == [True, True]
    assert got["plain_distinct_count_1d"].tolist() == [0, 0]


def test_a_null_filter_condition_drops_the_event(compute):
    fs = corner([{"column": "amount", "functions": ["count", "sum"], "windows": ["1d"], "prefix": "not_travel",
                  "where": "NOT category = 'travel'"}])
    ev = corner_events([("a", T0 - HOUR, 1.0, "travel"), ("a", T0 - HOUR, 2.0, None), ("a", T0 - HOUR, 4.0, "food")])
    got = by_row(compute(fs, ev, corner_spine([("a", T0)])))
    assert got["not_travel_count_1d"].tolist() == [1]
    assert got["not_travel_sum_1d"].tolist() == [4.0]


def test_distinct_count_and_stddev(compute):
    fs = corner([{"column": "category", "functions": ["distinct_count"], "windows": ["1d", "7d"]},
                 {"column": "amount", "functions": ["stddev"], "windows": ["1d", "7d"]}])
    ev = corner_events([("a", T0 - HOUR, 1.0, "x"), ("a", T0 - 2 * HOUR, None, "x"), ("a", T0 - 3 * HOUR, None, None),
                        ("a", T0 - 48 * HOUR, 3.0, "y"), ("a", T0 - 49 * HOUR, 5.0, "z")])
    got = by_row(compute(fs, ev, corner_spine([("a", T0)])))
    assert got["category_distinct_count_1d"].tolist() == [1]
    assert got["category_distinct_count_7d"].tolist() == [3]
    assert np.isnan(got["amount_stddev_1d"].iloc[0])  # one value: no sample deviation
    assert got["amount_stddev_7d"].iloc[0] == pytest.approx(2.0, rel=1e-15)


def test_derived_division_by_zero_is_null_unless_defaulted(compute):
    fs = corner([{"column": "amount", "functions": ["sum", "count"], "windows": ["1d"]}],
                derived={"avg": "amount_sum_1d / amount_count_1d",
                         "avg0": {"expr": "amount_sum_1d / amount_count_1d", "default": 0}})
    ev = corner_events([("a", T0 - HOUR, 3.0, None), ("a", T0 - HOUR, 5.0, None)])
    got = by_row(compute(fs, ev, corner_spine([("a", T0), ("b", T0)])))
    assert got["avg"].iloc[0] == 4.0 and np.isnan(got["avg"].iloc[1])
    assert got["avg0"].tolist() == [4.0, 0.0]


# ---------------------------------------------------------------------------------------------
# several entity keys, last values of non-numeric columns, timestamps in expressions

MULTI = Case(
    specs=(
        Spec({"column": "amount", "functions": ["count", "sum", "mean", "last", "time_since_last"],
              "windows": ["1d", "7d"]}, "e.amount"),
        Spec({"column": "category", "functions": ["last", "distinct_count"], "windows": ["1d", "7d"]},
             "e.category"),
        Spec({"column": "paid", "functions": ["last"], "windows": ["7d"], "ttl": "12h"}, "e.paid"),
        Spec({"column": "seen_at", "functions": ["last"], "windows": ["7d"]}, "e.seen_at"),
        Spec({"column": "latest", "functions": ["last"], "windows": ["7d"]},
             "CASE WHEN e.seen_at > e.event_time THEN e.seen_at ELSE e.event_time END"),
        Spec({"column": "amount", "prefix": "late", "where": "event_time >= TIMESTAMP '2025-03-10 00:00:00'",
              "functions": ["count", "sum"], "windows": ["7d"]},
             "e.amount", "epoch_us(e.event_time) >= epoch_us(TIMESTAMPTZ '2025-03-10 00:00:00+00')"),
        Spec({"column": "lag_s", "functions": ["sum", "max", "last"], "windows": ["7d"],
              "where": "seen_at <= TIMESTAMP '2025-03-12T06:00:00Z' OR category = 'food'"},
             "(epoch_us(e.event_time) - epoch_us(e.seen_at)) / 1e6",
             "epoch_us(e.seen_at) <= epoch_us(TIMESTAMPTZ '2025-03-12 06:00:00+00') OR e.category = 'food'"),
        Spec({"column": "day_no", "functions": ["max", "min"], "windows": ["7d"], "default": -1},
             "(epoch_us(e.event_time) - epoch_us(TIMESTAMPTZ '2025-03-01 00:00:00+00')) / 1e6 / 86400"),
        Spec({"column": "seen_first", "functions": ["last", "count"], "windows": ["1d"],
              "where": "seen_first IS NOT NULL"},
             "e.seen_at < e.event_time", "(e.seen_at < e.event_time) IS NOT NULL"),
    ),
    columns={"latest": "CASE WHEN seen_at > event_time THEN seen_at ELSE event_time END",
             "lag_s": "event_time - seen_at",
             "day_no": "(event_time - TIMESTAMP '2025-03-01') / 86400",
             "seen_first": "seen_at < event_time"},
    derived={"lag_days_7d": "lag_s_max_7d / 86400"},
    derived_sql={"lag_days_7d": "lag_s_max_7d / 86400"},
    entity=("customer_id", "store_id"),
)
MULTI_NON_NUMERIC = {"category_last_1d": "str", "category_last_7d": "str", "paid_last_7d": "bool",
                     "seen_at_last_7d": "time", "latest_last_7d": "time", "seen_first_last_1d": "bool"}


def test_two_keys_non_numeric_last_and_timestamp_expressions_match_the_duckdb_reference(compute):
    """Entities are (string customer, int64 store) pairs, with nulls in either key on both
    sides; every adversarial corner of the data generator applies to each pair."""
    fs = load_feature_set(MULTI.definition())
    assert fs.entity_keys == ("customer_id", "store_id")
    # 600 events of ~18 pairs over 4 days of hours: many ties at the latest time.
    ev, sp = adversarial_inputs(seed=7, events=600, spine_rows=160, stores=3, hours=96)
    latest = ev.dropna(subset=["customer_id", "store_id", "event_time"]).groupby(
        ["customer_id", "store_id", "event_time"]).size()
    assert (latest > 1).sum() > 50
    got = compute(fs, ev, sp)
    assert list(got.columns) == list(sp.columns) + fs.feature_names()
    assert len(got) == len(sp)
    want = reference(MULTI, fs, ev, sp)
    assert_same_features(got, want, fs, non_numeric=MULTI_NON_NUMERIC)
    # The data reach every corner: strings, booleans and times found, and nulls (no history).
    for name in MULTI_NON_NUMERIC:
        assert want[name].notna().any() and want[name].isna().any(), name


def test_two_keys_give_bit_identical_features_on_spark_and_dask(spark, dask_cluster_client):
    import dask.dataframe as dd

    from engine.features.dask import training_set_dask
    from engine.features.spark import training_set_spark

    fs = load_feature_set(MULTI.definition())
    ev, sp = adversarial_inputs(seed=8, entities=8, events=1200, spine_rows=300, stores=4)
    on_spark = by_row(training_set_spark(fs, spark_frame(spark, ev), spark_frame(spark, sp)).toPandas())
    on_dask = by_row(training_set_dask(fs, dd.from_pandas(ev, npartitions=3), dd.from_pandas(sp, npartitions=2)).compute())
    for name in fs.feature_names():
        if name in MULTI_NON_NUMERIC:
            kind = MULTI_NON_NUMERIC[name]
            assert plain_values(on_spark[name], kind) == plain_values(on_dask[name], kind), name
        else:
            pd.testing.assert_series_equal(on_spark[name], on_dask[name], obj=name, check_exact=True)


def test_non_numeric_last_values_keep_their_type_on_both_engines(engine_name, request):
    fs = load_feature_set(MULTI.definition())
    ev, sp = adversarial_inputs(seed=9, stores=2)
    if engine_name == "spark":
        from engine.features.spark import training_set_spark

        spark = request.getfixturevalue("spark")
        schema = training_set_spark(fs, spark_frame(spark, ev), spark_frame(spark, sp)).schema
        types = {f.name: f.dataType.simpleString() for f in schema.fields}
        want = {"str": "string", "bool": "boolean", "time": "timestamp"}
    else:
        import dask.dataframe as dd

        from engine.features.dask import training_set_dask

        frame = training_set_dask(fs, dd.from_pandas(ev, npartitions=2), dd.from_pandas(sp, npartitions=2))
        types = {name: str(dtype) for name, dtype in frame.dtypes.items()}
        want = {"str": "string", "bool": "boolean", "time": "datetime64[us, UTC]"}
        assert {n: str(t) for n, t in frame.compute().dtypes.items()} == types
    assert {n: types[n] for n in MULTI_NON_NUMERIC} == {n: want[k] for n, k in MULTI_NON_NUMERIC.items()}
    assert types["amount_last_7d"] in ("double", "float64") and types["lag_s_last_7d"] in ("double", "float64")


def test_scoring_set_with_two_keys_is_the_training_set_of_every_pair_seen_by_then(engine_name, request):
    fs = load_feature_set(MULTI.definition())
    ev, _ = adversarial_inputs(seed=10, stores=3)
    at = T0 + pd.Timedelta(days=9, hours=5)
    seen = (ev[ev["customer_id"].notna() & ev["store_id"].notna() & (ev["event_time"] < at)]
            [["customer_id", "store_id"]].drop_duplicates().reset_index(drop=True))
    assert len(seen) > 5
    if engine_name == "spark":
        from engine.features.spark import scoring_set_spark

        got = scoring_set_spark(fs, spark_frame(request.getfixturevalue("spark"), ev), at.to_pydatetime()).toPandas()
    else:
        import dask.dataframe as dd

        from engine.features.dask import scoring_set_dask

        got = scoring_set_dask(fs, dd.from_pandas(ev, npartitions=3), at.to_pydatetime()).compute()
    assert list(got.columns[:3]) == ["customer_id", "store_id", "as_of"]
    got = got.astype({"customer_id": object, "store_id": "int64"})
    spine = seen.astype({"customer_id": object, "store_id": "int64"}).assign(row_id=np.arange(len(seen), dtype="int64"))
    got = got.merge(spine, on=["customer_id", "store_id"], how="outer", indicator=True)
    assert (got["_merge"] == "both").all() and len(got) == len(seen)  # the same pairs, once each
    want = reference(MULTI, fs, ev, seen.assign(as_of=pd.Series([at] * len(seen), dtype="datetime64[us, UTC]"),
                                                row_id=np.arange(len(seen), dtype="int64")))
    assert_same_features(got.drop(columns="_merge"), want, fs, non_numeric=MULTI_NON_NUMERIC)


@pytest.mark.parametrize("table", ["events", "spine"])
def test_an_entity_key_missing_from_a_table_is_named_before_any_job_runs(engine_name, request, table):
    fs = load_feature_set(MULTI.definition())
    ev, sp = adversarial_inputs(seed=11, stores=2)
    ev, sp = (ev.drop(columns="store_id"), sp) if table == "events" else (ev, sp.drop(columns="store_id"))
    if engine_name == "spark":
        from engine.features.spark import training_set_spark

        spark = request.getfixturevalue("spark")
        ev_frame, sp_frame = spark_frame(spark, ev), spark_frame(spark, sp)
        jobs_before = len(spark.sparkContext.statusTracker().getJobIdsForGroup())
        with pytest.raises(DefinitionError, match=rf"'parity': {table} table has no entity column 'store_id'"):
            training_set_spark(fs, ev_frame, sp_frame)
        assert len(spark.sparkContext.statusTracker().getJobIdsForGroup()) == jobs_before
    else:
        import dask.dataframe as dd

        from engine.features.dask import training_set_dask

        with pytest.raises(DefinitionError, match=rf"'parity': {table} table has no entity column 'store_id'"):
            training_set_dask(fs, dd.from_pandas(ev, npartitions=2), dd.from_pandas(sp, npartitions=2))


def test_scoring_entities_without_every_key_are_rejected_naming_the_key(engine_name, request):
    fs = load_feature_set(MULTI.definition())
    ev, _ = adversarial_inputs(seed=12, stores=2)
    who = pd.DataFrame({"customer_id": pd.array(["c1"], dtype="string")})
    with pytest.raises(DefinitionError, match="'parity': spine table has no entity column 'store_id'"):
        if engine_name == "spark":
            from engine.features.spark import scoring_set_spark

            spark = request.getfixturevalue("spark")
            scoring_set_spark(fs, spark_frame(spark, ev), "2025-03-08", spark_frame(spark, who))
        else:
            import dask.dataframe as dd

            from engine.features.dask import scoring_set_dask

            scoring_set_dask(fs, dd.from_pandas(ev, npartitions=2), "2025-03-08", dd.from_pandas(who, npartitions=1))


def test_last_of_strings_booleans_and_times_breaks_ties_by_the_greatest_value(compute):
    """At the same latest time: the greatest string by code point ('b' > 'ab' > 'B'), true over
    false, the latest time; nulls never win."""
    fs = corner([{"column": c, "functions": ["last"], "windows": ["1d"]} for c in ("category", "paid", "seen_at")])
    at = T0 - HOUR
    ev = corner_events([("a", at, 1.0, "ab"), ("a", at, 1.0, "b"), ("a", at, 1.0, "B"), ("a", at, 1.0, None),
                        ("a", at - HOUR, 1.0, "zzz"),
                        ("b", at, 1.0, "é"), ("b", at, 1.0, "z"), ("b", at - HOUR, 1.0, "~")])
    ev["paid"] = pd.array([False, True, False, None, False, None, None, True], dtype="boolean")
    ev["seen_at"] = pd.Series([T0, T0 + HOUR, None, T0 + 2 * HOUR, T0 + 5 * HOUR, None, None, T0],
                              dtype="datetime64[us, UTC]")
    got = by_row(compute(fs, ev, corner_spine([("a", T0), ("b", T0), ("c", T0)])))
    assert plain_values(got["category_last_1d"], "str") == ["b", "é", None]  # 'é' (U+00E9) > 'z'
    assert plain_values(got["paid_last_1d"], "bool") == [True, True, None]    # b: the latest non-null
    micros = [(t - EPOCH) // pd.Timedelta(microseconds=1) for t in (T0 + 2 * HOUR, T0)]
    assert plain_values(got["seen_at_last_1d"], "time") == [*micros, None]


def test_a_null_in_any_key_matches_nothing(compute):
    fs = load_feature_set({"name": "keys", "entity": ["customer_id", "store_id"], "timestamp": "event_time",
                           "aggregations": [{"column": "amount", "functions": ["count", "sum"], "windows": ["1d"]}]})
    ev = corner_events([("a", T0 - HOUR, 1.0, None), ("a", T0 - HOUR, 2.0, None), ("a", T0 - HOUR, 4.0, None),
                        (None, T0 - HOUR, 8.0, None)])
    ev["store_id"] = pd.array([1, None, 2, 1], dtype="Int64")
    sp = corner_spine([("a", T0), ("a", T0), ("a", T0), (None, T0)])
    sp["store_id"] = pd.array([1, None, 3, 1], dtype="Int64")
    got = by_row(compute(fs, ev, sp))
    assert got["amount_count_1d"].tolist() == [1, 0, 0, 0]
    assert got["amount_sum_1d"].tolist() == [1.0, 0.0, 0.0, 0.0]
