"""The point-in-time feature join: lakescore against the best hand-written code per engine, and DuckDB.

Run by hand from the repository root (not a test)::

    .venv/bin/python bench/features.py                                  # 2M events, 200k label rows
    .venv/bin/python bench/features.py --events 10000000 --labels 1000000
    .venv/bin/python bench/features.py --skew                           # one entity with 20 % of the events
    .venv/bin/python bench/features.py --contenders duckdb spark-arrow --reps 3

The workload (issue 17): count, sum and mean of ``amount`` over 7, 30 and 90 days strictly before
each label row's ``as_of`` (9 features; count 0, sum 0.0 and mean null without events), events of
``--entities`` customers (100,000) uniform over 2025, amounts in whole cents (so every sum is
exact whatever the order, and prefix-sum differences are exact). ``--skew``: one customer has 20 %
of the events and the others a Zipf activity (weight 1/rank); label rows pick customers
uniformly either way.

Contenders, each in its own child process (``harness.run_child``); the engine's start and a
warm-up on a small slice are reported apart; the timed region is read Parquet + compute + write
Parquet, ``--reps`` times (min and median):

  duckdb           one SQL range join with FILTERed aggregates (the reference), 2 threads
  lakescore-spark  ``training_set_spark``: events and labels shuffled by entity and zipped, one pass
                   per partition in the executors' JVMs (``ai.lakescore.FeatureWindows``)
  spark-window     union of labels and events, one window ``rangeBetween`` per window (the usual idiom)
  spark-arrow      both sides bucketed by an entity hash, ``cogroup().applyInArrow``: per bucket one
                   sort, NumPy prefix sums and ``searchsorted`` for each window's bounds
  lakescore-dask   ``training_set_dask``: entity shuffle, per partition one sort by a packed
                   (entity, time) key, prefix counts and exact prefix sums, binary searches
  dask-rolling     entity shuffle (p2p, Dask's default), pandas ``groupby().rolling(..., closed="left")``
                   (the usual idiom)
  dask-numpy       entity shuffle in memory (``shuffle_method="tasks"``), the same NumPy kernel as
                   spark-arrow per partition
  dask-numpy-p2p   the same with Dask's default p2p shuffle (through Arrow and the workers' disks)
  dask-asof        entity shuffle in memory, pandas ``merge_asof`` on per-entity cumulative counts and sums

Spark ``local[2]``, 4 shuffle partitions, driver 4g; Dask 2 workers x 1 thread, 5 GiB each. Every
output is compared with DuckDB's row by row on ``row_id`` (counts exactly, floats within 1e-9
relative, nulls in the same places) before its time counts. The table names the fastest checked
contender of each engine (its winner) and gives lakescore / the best hand-written one (medians
and minimums) and / DuckDB, with issue 17's targets (``targets``: <= 1.0 below 10M events; from 10M,
<= 0.5 on Spark and <= 0.8 on Dask, and within 4x / 2x of DuckDB). The results go to ``bench/results/features-<events>-<UTC time>.md`` and
``.json`` (keys ``meta``, ``contenders``, ``engines``, ``targets``, ``ok``); the last line printed is
the same as one ``RESULT`` line (``bench/run.py`` reads it). Exit 1 when a contender failed or
differed from DuckDB.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import (RESULTS_DIR, begin, engine_peaks_mib, fmt, header_lines, load_average,  # noqa: E402
                           markdown_table, report, run_child, spread, timed, tree_cpu_seconds, write_results)

WINDOWS = {"7d": 7, "30d": 30, "90d": 90}
US_PER_DAY = 86_400_000_000
START_US = int(datetime(2025, 1, 1, tzinfo=timezone.utc).timestamp() * 1_000_000)
YEAR_US = 365 * US_PER_DAY
EVENT_FILES = 8
HOT_SHARE = 0.20  # --skew: the one customer's share of the events
REL_TOL = 1e-9
LARGE_EVENTS = 10_000_000  # issue 17's targets tighten from this size on


def targets(events: int) -> dict[str, dict[str, float]]:
    """Issue 17's targets per engine: lakescore / the best hand-written contender (medians) and
    lakescore / DuckDB, at this many events."""
    if events >= LARGE_EVENTS:
        return {"spark": {"vs_hand_written": 0.5, "vs_duckdb": 4.0},
                "dask": {"vs_hand_written": 0.8, "vs_duckdb": 2.0}}
    return {engine: {"vs_hand_written": 1.0} for engine in ("spark", "dask")}


CHILD_TIMEOUT = 3600
SPARK_BUCKETS = 16  # spark-arrow's entity-hash groups: each is one Python call holding its rows
DEFINITION = {
    "name": "bench_features", "entity": "customer_id", "timestamp": "event_time", "as_of": "as_of",
    "source": "events",
    "aggregations": [{"column": "amount", "functions": ["count", "sum", "mean"], "windows": list(WINDOWS)}],
}
FEATURES = [f"amount_{f}_{w}" for f in ("count", "sum", "mean") for w in WINDOWS]
INTEGER_FEATURES = [f for f in FEATURES if "_count_" in f]


@dataclass(frozen=True)
class Contender:
    engine: str  # duckdb, spark or dask
    kind: str  # reference, lakescore or hand-written
    what: str


CONTENDERS = {
    "duckdb": Contender("duckdb", "reference", "SQL range join + FILTERed aggregates"),
    "lakescore-spark": Contender("spark", "lakescore", "training_set_spark: shuffle, one JVM pass, exact sums"),
    "spark-window": Contender("spark", "hand-written", "union + window rangeBetween (usual idiom)"),
    "spark-arrow": Contender("spark", "hand-written", "cogroup by entity hash, applyInArrow, NumPy prefix sums"),
    "lakescore-dask": Contender("dask", "lakescore", "training_set_dask: shuffle, NumPy kernel, exact sums"),
    "dask-rolling": Contender("dask", "hand-written", "shuffle, pandas groupby-rolling (usual idiom)"),
    "dask-numpy": Contender("dask", "hand-written", "task shuffle, NumPy prefix sums + searchsorted"),
    "dask-numpy-p2p": Contender("dask", "hand-written", "p2p shuffle, NumPy prefix sums + searchsorted"),
    "dask-asof": Contender("dask", "hand-written", "task shuffle, pandas merge_asof on cumulative sums"),
}


# --- data -------------------------------------------------------------------------------------

def generate(workdir: Path, events: int, labels: int, entities: int, skew: bool, seed: int = 11) -> None:
    """Events (8 files, in no particular order) and label rows (2 files) as Parquet."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    if skew:
        weights = 1.0 / np.arange(1, entities, dtype="float64")  # Zipf over the others
        others = rng.permutation(np.arange(1, entities))
        hot = rng.random(events) < HOT_SHARE
        customer = np.where(hot, 0, rng.choice(others, size=events, p=weights / weights.sum()))
    else:
        customer = rng.integers(0, entities, size=events)
    event_time = START_US + rng.integers(0, YEAR_US, size=events)
    amount = np.round(rng.lognormal(8.0, 1.0, size=events))  # whole cents
    (workdir / "events").mkdir(parents=True)
    per_file = -(-events // EVENT_FILES)
    for i, first in enumerate(range(0, events, per_file)):
        part = slice(first, first + per_file)
        pq.write_table(pa.table({
            "customer_id": pa.array(customer[part].astype("int64")),
            "event_time": pa.array(event_time[part], pa.timestamp("us", tz="UTC")),
            "amount": pa.array(amount[part])}), workdir / "events" / f"part-{i:03d}.parquet")
    table = pa.table({
        "row_id": pa.array(np.arange(labels, dtype="int64")),
        "customer_id": pa.array(rng.integers(0, entities, size=labels).astype("int64")),
        "as_of": pa.array(START_US + rng.integers(0, YEAR_US, size=labels), pa.timestamp("us", tz="UTC"))})
    (workdir / "labels").mkdir()
    half = labels // 2
    pq.write_table(table.slice(0, half), workdir / "labels" / "part-000.parquet")
    pq.write_table(table.slice(half), workdir / "labels" / "part-001.parquet")


def sample(workdir: Path) -> Path:
    """The slice for the untimed warm-up run: one events file and as large a share of the labels
    (an eighth of each), so that every part of each contender, its output write included, has
    run at size once before the timed runs. With only 2,000 labels the label side and the
    writer of every JVM contender were still compiling during the first timed run (lakescore-
    spark at 10M: 9.2 s for that run against 4.9 s for the next, with a third more CPU in the
    Parquet writer)."""
    import pyarrow.parquet as pq

    small = workdir / "warmup"
    if not small.exists():
        (small / "events").mkdir(parents=True)
        (small / "labels").mkdir()
        shutil.copy(workdir / "events" / "part-000.parquet", small / "events" / "part-000.parquet")
        labels = pq.read_table(workdir / "labels")
        pq.write_table(labels.slice(0, -(-labels.num_rows // EVENT_FILES)), small / "labels" / "part-000.parquet")
    return small


# --- the hand-written kernel (spark-arrow, dask-numpy) ------------------------------------------

def window_features(ev_entity, ev_t, ev_amount, lb_entity, lb_t) -> dict[str, Any]:
    """The 9 features of each label (entity, time in µs) from the events given, in label order.

    One int64 key (dense entity code x span + time) sorts the events once; prefix sums of the
    amounts; per window two binary searches give the events in ``[t - w, t)``, so count and sum
    are differences. A sum is exact when the amounts are whole numbers (cents), as here; with
    arbitrary floats it carries the rounding of the prefix sums.
    """
    import numpy as np

    if not len(lb_t):
        return {name: np.zeros(0, "int64" if name in INTEGER_FEATURES else "float64") for name in FEATURES}
    codes = np.unique(np.concatenate([ev_entity, lb_entity]), return_inverse=True)[1]
    ev_code, lb_code = codes[:len(ev_entity)], codes[len(ev_entity):]
    widest = max(WINDOWS.values()) * US_PER_DAY
    times = np.concatenate([ev_t, lb_t, lb_t - widest])
    low, span = int(times.min()), int(times.max() - times.min()) + 1
    if (int(codes.max()) + 1) * span >= 2**62:
        raise ValueError(f"{int(codes.max()) + 1} entities x {span} µs do not fit one int64 key")
    key = ev_code * span + (ev_t - low)
    order = np.argsort(key, kind="stable")
    key = key[order]
    prefix = np.concatenate([[0.0], np.cumsum(ev_amount[order])])
    base = lb_code * span - low
    hi = np.searchsorted(key, base + lb_t, "left")
    out = {}
    for name, days in WINDOWS.items():
        lo = np.searchsorted(key, base + lb_t - days * US_PER_DAY, "left")
        count = (hi - lo).astype("int64")
        total = prefix[hi] - prefix[lo]
        out[f"amount_count_{name}"] = count
        out[f"amount_sum_{name}"] = total
        with np.errstate(invalid="ignore", divide="ignore"):
            out[f"amount_mean_{name}"] = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return {name: out[name] for name in FEATURES}


# --- Spark contenders ---------------------------------------------------------------------------

def spark_session():
    from engine.conf import SparkConf
    from engine.session import spark_session as start

    return start(SparkConf(master="local[2]", shuffle_partitions=4, driver_memory="4g", show_progress=False))


def run_lakescore_spark(spark, data: Path, out: Path) -> None:
    from engine.features import load_feature_set
    from engine.features.spark import training_set_spark

    events = spark.read.parquet(str(data / "events"))
    labels = spark.read.parquet(str(data / "labels"))
    training_set_spark(load_feature_set(DEFINITION), events, labels).write.mode("overwrite").parquet(str(out))


def run_spark_window(spark, data: Path, out: Path) -> None:
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    labels = spark.read.parquet(str(data / "labels"))
    events = spark.read.parquet(str(data / "events")).select(
        "customer_id", F.unix_micros("event_time").alias("t"), "amount", F.lit(1).alias("is_event"))
    rows = labels.withColumn("t", F.unix_micros("as_of")).unionByName(events, allowMissingColumns=True)
    by_time = Window.partitionBy("customer_id").orderBy("t")
    features = {}
    for name, days in WINDOWS.items():
        frame = by_time.rangeBetween(-days * US_PER_DAY, -1)
        n, total = F.count("amount").over(frame), F.sum("amount").over(frame)
        features[f"amount_count_{name}"] = n
        features[f"amount_sum_{name}"] = F.coalesce(total, F.lit(0.0))
        features[f"amount_mean_{name}"] = F.when(n > 0, total / n)
    (rows.withColumns(features).where(F.col("is_event").isNull())
     .select(*labels.columns, *FEATURES).write.mode("overwrite").parquet(str(out)))


def run_spark_arrow(spark, data: Path, out: Path) -> None:
    import pyarrow as pa
    from pyspark.sql import functions as F
    from pyspark.sql.types import DoubleType, LongType, StructField, StructType

    labels = spark.read.parquet(str(data / "labels"))
    events = spark.read.parquet(str(data / "events")).select(
        "customer_id", F.unix_micros("event_time").alias("t"), "amount")
    bucket = F.pmod(F.xxhash64("customer_id"), F.lit(SPARK_BUCKETS))
    schema = StructType(labels.schema.fields + [
        StructField(name, LongType() if name in INTEGER_FEATURES else DoubleType()) for name in FEATURES])

    def features(ev: pa.Table, lb: pa.Table) -> pa.Table:
        columns = window_features(
            ev["customer_id"].to_numpy(), ev["t"].to_numpy(), ev["amount"].to_numpy(),
            lb["customer_id"].to_numpy(), lb["as_of"].cast(pa.int64()).to_numpy())
        lb = lb.drop_columns(["bucket"])
        for name, values in columns.items():
            lb = lb.append_column(name, pa.array(values, from_pandas=True))
        return lb

    (events.withColumn("bucket", bucket).groupBy("bucket")
     .cogroup(labels.withColumn("bucket", bucket).groupBy("bucket"))
     .applyInArrow(features, schema).write.mode("overwrite").parquet(str(out)))


# --- Dask contenders ----------------------------------------------------------------------------

def dask_client():
    from engine.conf import DaskConf
    from engine.session import dask_client as start

    return start(DaskConf(n_workers=2, threads_per_worker=1, memory_limit="5GiB", show_progress=False))


def run_lakescore_dask(client, data: Path, out: Path) -> None:
    import dask.dataframe as dd

    from engine.features import load_feature_set
    from engine.features.dask import training_set_dask

    events = dd.read_parquet(str(data / "events"))
    labels = dd.read_parquet(str(data / "labels"))
    training_set_dask(load_feature_set(DEFINITION), events, labels).to_parquet(str(out), write_index=False)


def micros(series) -> Any:
    return series.dt.as_unit("us").astype("int64").to_numpy()


def per_entity_partition(data: Path, out: Path, features, shuffle_method: str = "tasks") -> None:
    """Both tables shuffled on ``customer_id`` into as many partitions (the same hash puts an
    entity in the same partition number on both sides), then ``features(labels, events)`` per
    partition pair, written as Parquet. ``shuffle_method``: Dask's in-memory task shuffle (the
    faster here: p2p writes every shard through Arrow to disk) or its default, p2p."""
    import dask.dataframe as dd

    events = dd.read_parquet(str(data / "events"))
    labels = dd.read_parquet(str(data / "labels"))
    n = max(events.npartitions, labels.npartitions)
    events = events.shuffle(on="customer_id", npartitions=n, shuffle_method=shuffle_method)
    labels = labels.shuffle(on="customer_id", npartitions=n, shuffle_method=shuffle_method)
    meta = features(labels._meta, events._meta)
    dd.map_partitions(features, labels, events, meta=meta, align_dataframes=False,
                      enforce_metadata=False).to_parquet(str(out), write_index=False)


def numpy_features(labels, events):
    columns = window_features(events["customer_id"].to_numpy(), micros(events["event_time"]),
                              events["amount"].to_numpy("float64"), labels["customer_id"].to_numpy(),
                              micros(labels["as_of"]))
    return labels.assign(**columns)


def asof_features(labels, events):
    """Per entity, cumulative count and sum of the events in time order; ``merge_asof`` finds for
    each label the last event strictly before ``as_of`` and strictly before ``as_of - w``: a
    window's count and sum are the differences."""
    import numpy as np
    import pandas as pd

    ev = pd.DataFrame({"customer_id": events["customer_id"].to_numpy(), "t": micros(events["event_time"]),
                       "amount": events["amount"].to_numpy("float64")}).sort_values("t", kind="stable")
    by_entity = ev.groupby("customer_id", sort=False)
    ev["n"] = by_entity.cumcount() + 1
    ev["s"] = by_entity["amount"].cumsum()
    ev = ev[["customer_id", "t", "n", "s"]]
    t = micros(labels["as_of"])
    order = np.argsort(t, kind="stable")
    result = labels.iloc[order].reset_index(drop=True)
    t, entity = t[order], result["customer_id"].to_numpy()

    def before(times):
        found = pd.merge_asof(pd.DataFrame({"customer_id": entity, "t": times}), ev, on="t",
                              by="customer_id", allow_exact_matches=False)
        return found["n"].fillna(0).to_numpy("int64"), found["s"].fillna(0.0).to_numpy("float64")

    n_hi, s_hi = before(t)
    columns = {}
    for name, days in WINDOWS.items():
        n_lo, s_lo = before(t - days * US_PER_DAY)
        count, total = n_hi - n_lo, s_hi - s_lo
        columns[f"amount_count_{name}"] = count
        columns[f"amount_sum_{name}"] = total
        with np.errstate(invalid="ignore", divide="ignore"):
            columns[f"amount_mean_{name}"] = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return result.assign(**{name: columns[name] for name in FEATURES})


def rolling_features(labels, events):
    """pandas groupby-rolling over time windows closed on the left ([as_of - w, as_of)), over
    the union of a partition's events and labels: the usual pandas idiom."""
    import numpy as np
    import pandas as pd

    ev = pd.DataFrame({"customer_id": events["customer_id"].to_numpy(), "t": events["event_time"].to_numpy(),
                       "amount": events["amount"].to_numpy(dtype="float64"), "is_label": False})
    lb = pd.DataFrame({"customer_id": labels["customer_id"].to_numpy(), "t": labels["as_of"].to_numpy(),
                       "amount": np.nan, "is_label": True})
    both = pd.concat([ev, lb], ignore_index=True)
    both["t"] = pd.to_datetime(both["t"], utc=True)
    both = both.sort_values(["customer_id", "t"], kind="stable").reset_index(drop=True)
    out = {}
    grouped = both.groupby("customer_id", sort=False)
    for name, days in WINDOWS.items():
        r = grouped.rolling(f"{days}D", on="t", closed="left")["amount"]
        n = np.nan_to_num(r.count().to_numpy()).astype("int64")  # an empty window counts NaN
        total = np.nan_to_num(r.sum().to_numpy())
        out[f"amount_count_{name}"] = n
        out[f"amount_sum_{name}"] = total
        with np.errstate(invalid="ignore", divide="ignore"):
            out[f"amount_mean_{name}"] = np.where(n > 0, total / np.maximum(n, 1), np.nan)
    # groupby(sort=False).rolling keeps the rows grouped in order of first appearance, which is
    # the sorted order here, so positions line up with `both`.
    result = labels.sort_values(["customer_id", "as_of"], kind="stable").copy()
    label_rows = both.index[both["is_label"].to_numpy()]
    for name in FEATURES:
        result[name] = out[name][label_rows]
    return result


RUNS = {
    "lakescore-spark": run_lakescore_spark,
    "spark-window": run_spark_window,
    "spark-arrow": run_spark_arrow,
    "lakescore-dask": run_lakescore_dask,
    "dask-rolling": lambda client, data, out: per_entity_partition(data, out, rolling_features, "p2p"),
    "dask-numpy": lambda client, data, out: per_entity_partition(data, out, numpy_features),
    "dask-numpy-p2p": lambda client, data, out: per_entity_partition(data, out, numpy_features, "p2p"),
    "dask-asof": lambda client, data, out: per_entity_partition(data, out, asof_features),
}


# --- DuckDB (the reference; e2e.py's features too) ---------------------------------------------

def duckdb_features_sql(events: list[str], spine: list[str]) -> str:
    """lakescore's window contract in SQL: ``as_of - window <= event_time < as_of`` in whole
    microseconds; count 0 and sum 0.0 without events, mean null (sum / count, as lakescore)."""
    def files(paths: list[str]) -> str:
        return "[" + ", ".join(f"'{p}'" for p in paths) + "]"

    aggregates = []
    for name, days in WINDOWS.items():
        inside = f"e.t >= s.t - {days * US_PER_DAY}"
        aggregates += [f"count(e.amount) FILTER (WHERE {inside}) AS amount_count_{name}",
                       f"coalesce(sum(e.amount) FILTER (WHERE {inside}), 0.0) AS amount_sum_{name}",
                       f"sum(e.amount) FILTER (WHERE {inside}) / nullif(count(e.amount) FILTER (WHERE {inside}), 0) "
                       f"AS amount_mean_{name}"]
    widest = max(WINDOWS.values()) * US_PER_DAY
    return f"""
        WITH e AS (SELECT customer_id, epoch_us(event_time) AS t, amount FROM read_parquet({files(events)})),
             s AS (SELECT row_id, customer_id, as_of, epoch_us(as_of) AS t FROM read_parquet({files(spine)}))
        SELECT s.row_id, s.customer_id, s.as_of, {', '.join(aggregates)}
        FROM s LEFT JOIN e ON e.customer_id = s.customer_id AND e.t >= s.t - {widest} AND e.t < s.t
        GROUP BY s.row_id, s.customer_id, s.as_of"""


def duckdb_connection():
    import duckdb

    con = duckdb.connect()
    con.execute("SET threads = 2; SET TimeZone = 'UTC'")
    return con


def run_duckdb(con, data: Path, out: Path) -> None:
    sql = duckdb_features_sql([f"{data}/events/*.parquet"], [f"{data}/labels/*.parquet"])
    con.execute(f"COPY ({sql}) TO '{out}' (FORMAT parquet)")


RUNS["duckdb"] = run_duckdb
STARTS = {"duckdb": duckdb_connection, "spark": spark_session, "dask": dask_client}


def child(name: str, workdir: Path, reps: int) -> dict[str, Any]:
    """Start the engine, warm it up on a slice, then time ``reps`` full runs; the last output
    is kept for the check."""
    start_s, engine = timed(STARTS[CONTENDERS[name].engine])
    run = RUNS[name]
    warm = workdir / f"out-warmup-{name}"
    warmup_s, _ = timed(lambda: run(engine, sample(workdir), warm))
    times, cpu = [], []
    for rep in range(reps):
        out = workdir / f"out-{name}-{rep}"
        before = tree_cpu_seconds()
        times.append(timed(lambda: run(engine, workdir, out))[0])
        cpu.append(tree_cpu_seconds() - before)
        if rep:
            shutil.rmtree(workdir / f"out-{name}-{rep - 1}", ignore_errors=True)
    return {"start_s": start_s, "warmup_s": warmup_s, "seconds": spread(times), "cpu_s": spread(cpu),
            "output": str(out), "peak_mib": engine_peaks_mib(CONTENDERS[name].engine, engine)}


# --- comparison and summary --------------------------------------------------------------------

def compare(reference: str, output: str) -> dict:
    """Row-by-row comparison on row_id: rows missing or extra, and mismatching feature values."""
    import duckdb

    def source(path: str) -> str:
        return f"read_parquet('{path}/*.parquet')" if Path(path).is_dir() else f"read_parquet('{path}')"

    con = duckdb.connect()
    mismatch = []
    for name in FEATURES:
        if name in INTEGER_FEATURES:
            differs = f"a.{name} IS DISTINCT FROM b.{name}"
        else:
            differs = (f"(a.{name} IS NULL) <> (b.{name} IS NULL) OR "
                       f"abs(a.{name} - b.{name}) > {REL_TOL} * abs(b.{name})")
        mismatch.append(f"sum(CASE WHEN {differs} THEN 1 ELSE 0 END) AS {name}")
    row = con.execute(
        f"SELECT count(*) AS rows, sum(CASE WHEN a.row_id IS NULL OR b.row_id IS NULL THEN 1 ELSE 0 END) AS unmatched, "
        f"{', '.join(mismatch)} FROM {source(output)} a FULL JOIN {source(reference)} b ON a.row_id = b.row_id"
    ).fetchone()
    con.close()
    bad = {name: int(v) for name, v in zip(FEATURES, row[2:]) if v}
    return {"rows": int(row[0]), "unmatched": int(row[1]), "mismatched": bad}


def summarize(results: dict, labels: int, events: int) -> dict:
    """Checks every output against DuckDB's, then per engine: its winner (fastest checked
    contender), its best hand-written contender, lakescore / that one and lakescore / DuckDB
    (medians; None where a side is missing or wrong)."""
    reference = results.get("duckdb", {}).get("output") if results.get("duckdb", {}).get("ok") else None
    for name, facts in results.items():
        if not facts.get("ok"):
            continue
        facts["check"] = compare(reference, facts["output"]) if reference else {"error": "no DuckDB reference"}
        check = facts["check"]
        facts["ok"] = check.get("rows") == labels and not check.get("unmatched", 1) and not check.get("mismatched")
    median = {name: f["seconds"]["median"] for name, f in results.items() if f["ok"]}
    least = {name: f["seconds"]["min"] for name, f in results.items() if f["ok"]}
    cpu = {name: f["cpu_s"]["median"] for name, f in results.items() if f["ok"] and f.get("cpu_s")}

    def fastest(names):
        names = [n for n in names if n in median]
        return min(names, key=median.get) if names else None

    engines = {}
    for engine in ("spark", "dask"):
        mine = [n for n, c in CONTENDERS.items() if c.engine == engine and n in results]
        if not mine:
            continue
        ours = next((n for n in mine if CONTENDERS[n].kind == "lakescore"), None)
        best = fastest([n for n in mine if CONTENDERS[n].kind == "hand-written"])
        engines[engine] = {
            "winner": fastest(mine), "lakescore": ours, "best_hand_written": best,
            "lakescore_vs_best_hand_written": median[ours] / median[best] if ours in median and best else None,
            "lakescore_vs_best_hand_written_min": least[ours] / least[best] if ours in least and best else None,
            "lakescore_vs_best_hand_written_cpu": cpu[ours] / cpu[best] if ours in cpu and best in cpu else None,
            "lakescore_vs_duckdb": median[ours] / median["duckdb"] if ours in median and "duckdb" in median else None,
            "targets": targets(events)[engine]}
        wanted = engines[engine]["targets"]
        measured = {"vs_hand_written": engines[engine]["lakescore_vs_best_hand_written"],
                    "vs_duckdb": engines[engine]["lakescore_vs_duckdb"]}
        engines[engine]["targets_met"] = all(measured[key] is not None and measured[key] <= limit
                                             for key, limit in wanted.items())
    for name, facts in results.items():
        facts["vs_duckdb"] = median[name] / median["duckdb"] if name in median and "duckdb" in median else None
    return engines


def peaks_text(peaks: dict | None) -> str:
    """``py 310 + jvm 2100`` / ``py 250 + workers 900, 880``: each process's peak, MiB."""
    if not peaks:
        return "-"
    parts = [f"py {fmt(peaks.get('python'), 0)}"]
    if peaks.get("jvm") is not None:
        parts.append(f"jvm {fmt(peaks['jvm'], 0)}")
    if peaks.get("workers"):
        parts.append("workers " + ", ".join(fmt(w, 0) for w in peaks["workers"]))
    return " + ".join(parts)


def markdown(meta: dict, results: dict, engines: dict) -> str:
    rows = []
    for name, contender in CONTENDERS.items():
        if name not in results:
            continue
        f = results[name]
        check = ("reference" if name == "duckdb" and f["ok"] else "= duckdb" if f["ok"] else
                 f"FAILED {f.get('error', '')[:80]}" if "check" not in f else f"MISMATCH {f['check']}")
        seconds = f.get("seconds") or {}
        rows.append([name, contender.engine, contender.what, fmt(seconds.get("min")) if f["ok"] else "-",
                     fmt(seconds.get("median")) if f["ok"] else "-",
                     fmt((f.get("cpu_s") or {}).get("median")) if f["ok"] else "-", fmt(f.get("vs_duckdb")),
                     fmt(f.get("start_s"), 1), fmt(f.get("warmup_s"), 1), peaks_text(f.get("peak_mib")), check])
    lines = [
        f"## features bench, {meta['date']}", "",
        f"{meta['events']:,} events of {meta['entities']:,} customers"
        + (f" (skewed: one with {HOT_SHARE:.0%} of the events, Zipf activity)" if meta["skew"] else " (uniform)")
        + f", {meta['labels']:,} label rows; count/sum/mean over {'/'.join(WINDOWS)}; "
        f"{meta['reps']} timed run(s) each (read + compute + write).",
        *header_lines(meta["machine"]),
        f"Load average at the end: {meta['load_average_end']}. Order run: {', '.join(meta['order'])}.", "",
        markdown_table(["contender", "engine", "what", "s min", "s median", "CPU s median", "x duckdb", "start s", "warm-up s",
                        "peak MiB", "output check"], rows), ""]
    for engine, e in engines.items():
        ratio = e["lakescore_vs_best_hand_written"]
        wanted = e["targets"]
        duckdb_target = f" (target <= {wanted['vs_duckdb']})" if "vs_duckdb" in wanted else ""
        lines.append(f"- {engine.capitalize()}: winner **{e['winner'] or '-'}**; lakescore / best hand-written "
                     f"({e['best_hand_written'] or '-'}): **{fmt(ratio)}** on medians, "
                     f"{fmt(e['lakescore_vs_best_hand_written_min'])} on minimums, "
                     f"{fmt(e['lakescore_vs_best_hand_written_cpu'])} in CPU seconds (target <= "
                     f"{wanted['vs_hand_written']}); lakescore / DuckDB: {fmt(e['lakescore_vs_duckdb'])}"
                     f"{duckdb_target}; targets {'met' if e['targets_met'] else 'NOT met'}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--labels", type=int, default=200_000)
    parser.add_argument("--entities", type=int, default=100_000)
    parser.add_argument("--skew", action="store_true", help=f"one customer with {HOT_SHARE:.0%}% of the events, "
                        "Zipf activity for the others")
    parser.add_argument("--reps", type=int, default=3, help="timed runs per contender (min and median)")
    parser.add_argument("--contenders", nargs="+", default=list(CONTENDERS), choices=CONTENDERS)
    parser.add_argument("--timeout", type=float, default=CHILD_TIMEOUT,
                        help="seconds a contender's process may take before it is killed and reported failed")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the generated data and outputs")
    parser.add_argument("--child", choices=CONTENDERS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        report(child(args.child, args.workdir, args.reps))
        return

    workdir, facts, stamp = begin(args.workdir, "lakescore-bench-features-")
    meta = {"events": args.events, "labels": args.labels, "entities": args.entities, "skew": args.skew,
            "reps": args.reps, "timeout_s": args.timeout, "features": FEATURES, "machine": facts,
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    generate_s, _ = timed(lambda: generate(workdir, args.events, args.labels, args.entities, args.skew))
    meta["generate_s"] = round(generate_s, 2)
    print(f"# {args.events:,} events, {args.labels:,} labels generated in {generate_s:.1f} s under {workdir}",
          flush=True)
    # DuckDB first: it is the reference every other output is checked against.
    meta["order"] = ["duckdb", *[c for c in args.contenders if c != "duckdb"]]
    results: dict = {}
    for name in meta["order"]:
        argv = [__file__, "--child", name, "--workdir", str(workdir), "--reps", str(args.reps)]
        results[name] = run_child(argv, RESULTS_DIR / f"logs-{stamp}" / f"features-{name}.log", args.timeout)
        got = results[name]
        print(f"# {name}: " + (f"{got['seconds']['median']:.1f} s (load {load_average()})" if got["ok"]
                               else f"FAILED: {got['error']}"), flush=True)
    engines = summarize(results, args.labels, args.events)
    meta["load_average_end"] = load_average()
    text = markdown(meta, results, engines)
    print()
    print(text)
    ok = all(f["ok"] for f in results.values())
    document = {"meta": meta, "contenders": results, "engines": engines, "targets": targets(args.events), "ok": ok}
    write_results(f"features-{args.events}{'-skew' if args.skew else ''}", stamp, text, facts, document)
    if not args.keep and args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    report({**document, "markdown": text, "summary": text[text.index("\n- "):].strip()})
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
