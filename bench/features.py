"""The point-in-time feature join: lakescore against hand-written code and DuckDB, in one run.

Run by hand from the repository root (not a test)::

    .venv/bin/python bench/features.py                 # 10,000,000 events, 1,000,000 label rows
    .venv/bin/python bench/features.py --scale 0.05    # 500,000 events, 50,000 labels (quick)

The parent process generates events (``customer_id`` int64 over events/100 customers,
``event_time`` over 2025, log-normal ``amount``, 5 ``category`` values) and label rows (a random
customer and as-of time each, ``row_id``, ``label``) with numpy and writes them once as Parquet.
It then runs itself once per contender, each in a fresh child process:

  lakescore-spark   ``training_set_spark`` of the feature set below, written to Parquet
  pyspark-hand      the same features written by hand as window functions (union + rangeBetween)
  lakescore-dask    ``training_set_dask``, written to Parquet
  dask-hand         the same features by hand: entity shuffle + pandas groupby-rolling per partition
  duckdb            one SQL range join + FILTERed aggregates, COPY to Parquet

Feature set: count, sum, mean, max of ``amount`` over 7, 30 and 90 days (12), the sum of
``amount`` where ``category = 'travel'`` and the count of events with ``amount >= 100`` over
the same windows (6 filtered): 18 features, as of each label row (events strictly before it).

Spark: ``local[2]``, 4 shuffle partitions, driver memory 4g. Dask: 2 worker processes x 1
thread. DuckDB: 2 threads. The timed region is read + compute + write of the output Parquet;
session/cluster start and one warm-up run on a small slice are excluded (reported apart). Every
output is then compared, row by row on ``row_id``, with DuckDB's (counts exactly, floats within
1e-9 relative, nulls in the same places); a time is shown only when its output matches.

Prints one table (each contender's time and its ratio to the fastest, plus lakescore /
hand-written per engine) and writes it to ``bench/results/features-<events>-<UTC
yyyymmddTHHMMSSZ>.md`` and ``.json``. The JSON's keys: ``meta`` (scale, events, labels,
features, windows_days, cpu, cores, ram_gib, java, python, versions, lakescore_commit, date,
load_avg_start, load_avg_end, generate_s, order), ``contenders`` (per name: seconds, start_s,
warmup_s, output, check, ok, ratio_to_fastest; or error), ``fastest``, ``lakescore_vs_hand``
(``spark``/``dask`` → ratio or null), ``target`` (1.1) and ``ok`` (every contender ran and
matched DuckDB). Exit code 0 when ``ok``, else 1 (the files are written either way).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import (RESULTS_DIR, begin, header_lines, load_average, report,  # noqa: E402
                           run_child, write_results)

CATEGORIES = ("grocery", "dining", "electronics", "travel", "fashion")
CATEGORY_P = (0.40, 0.25, 0.12, 0.08, 0.15)
WINDOWS = (7, 30, 90)
US_PER_DAY = 86_400_000_000
EVENT_FILES = 8
REL_TOL = 1e-9
CONTENDERS = ("lakescore-spark", "pyspark-hand", "lakescore-dask", "dask-hand", "duckdb")

DEFINITION = {
    "name": "bench_features",
    "entity": "customer_id",
    "timestamp": "event_time",
    "as_of": "as_of",
    "aggregations": [
        {"column": "amount", "functions": ["count", "sum", "mean", "max"], "windows": ["7d", "30d", "90d"]},
        {"column": "amount", "prefix": "travel_amount", "where": "category = 'travel'",
         "functions": ["sum"], "windows": ["7d", "30d", "90d"]},
        {"column": "amount", "prefix": "big", "where": "amount >= 100", "functions": ["count"],
         "windows": ["7d", "30d", "90d"]},
    ],
}
FEATURES = ([f"amount_{f}_{w}d" for f in ("count", "sum", "mean", "max") for w in WINDOWS]
            + [f"travel_amount_sum_{w}d" for w in WINDOWS] + [f"big_count_{w}d" for w in WINDOWS])
INTEGER_FEATURES = [f for f in FEATURES if "_count_" in f]


# --- data -------------------------------------------------------------------------------------

def generate(workdir: Path, events: int, labels: int, seed: int = 11) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    customers = max(events // 100, 1)
    start = int(datetime(2025, 1, 1, tzinfo=timezone.utc).timestamp() * 1_000_000)
    (workdir / "events").mkdir(parents=True)
    per_file = -(-events // EVENT_FILES)
    for i in range(EVENT_FILES):
        n = min(per_file, events - i * per_file)
        if n <= 0:
            break
        codes = rng.choice(len(CATEGORIES), size=n, p=CATEGORY_P).astype(np.int8)
        table = pa.table({
            "customer_id": pa.array(rng.integers(0, customers, n, dtype=np.int64)),
            "event_time": pa.array(start + rng.integers(0, 365 * US_PER_DAY, n, dtype=np.int64))
            .cast(pa.timestamp("us", tz="UTC")),
            "amount": pa.array(np.round(rng.lognormal(np.log(25.0), 0.9, n), 2)),
            "category": pa.DictionaryArray.from_arrays(pa.array(codes), pa.array(CATEGORIES)).cast(pa.string()),
        })
        pq.write_table(table, workdir / "events" / f"part-{i:03d}.parquet")
    (workdir / "labels").mkdir()
    table = pa.table({
        "row_id": pa.array(np.arange(labels, dtype=np.int64)),
        "customer_id": pa.array(rng.integers(0, customers, labels, dtype=np.int64)),
        "as_of": pa.array(start + rng.integers(0, 365 * US_PER_DAY, labels, dtype=np.int64))
        .cast(pa.timestamp("us", tz="UTC")),
        "label": pa.array(rng.integers(0, 2, labels, dtype=np.int64)),
    })
    half = labels // 2
    pq.write_table(table.slice(0, half), workdir / "labels" / "part-000.parquet")
    pq.write_table(table.slice(half), workdir / "labels" / "part-001.parquet")


def sample(workdir: Path) -> Path:
    """A small slice (one events file, 2,000 labels) for the untimed warm-up run."""
    import pyarrow.parquet as pq

    small = workdir / "warmup"
    if not small.exists():
        (small / "events").mkdir(parents=True)
        (small / "labels").mkdir()
        shutil.copy(workdir / "events" / "part-000.parquet", small / "events" / "part-000.parquet")
        pq.write_table(pq.read_table(workdir / "labels" / "part-000.parquet").slice(0, 2000),
                       small / "labels" / "part-000.parquet")
    return small


# --- contenders (each runs in its own child process) ----------------------------------------------

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


def run_pyspark_hand(spark, data: Path, out: Path) -> None:
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    events = spark.read.parquet(str(data / "events"))
    labels = spark.read.parquet(str(data / "labels"))
    ev = events.where(F.col("customer_id").isNotNull() & F.col("event_time").isNotNull()).select(
        "customer_id", F.unix_micros("event_time").alias("t"), F.lit(1).alias("is_event"), "amount",
        F.when(F.col("category") == "travel", F.col("amount")).alias("travel"),
        F.when(F.col("amount") >= 100, F.lit(1)).alias("big"))
    rows = labels.withColumn("t", F.unix_micros("as_of")).unionByName(ev, allowMissingColumns=True)
    by_time = Window.partitionBy("customer_id").orderBy("t")
    features = {}
    for days in WINDOWS:
        frame = by_time.rangeBetween(-days * US_PER_DAY, -1)
        n = F.count("amount").over(frame)
        total = F.sum("amount").over(frame)
        features[f"amount_count_{days}d"] = F.count("is_event").over(frame)
        features[f"amount_sum_{days}d"] = F.coalesce(total, F.lit(0.0))
        features[f"amount_mean_{days}d"] = F.when(n > 0, total / n)
        features[f"amount_max_{days}d"] = F.max("amount").over(frame)
        features[f"travel_amount_sum_{days}d"] = F.coalesce(F.sum("travel").over(frame), F.lit(0.0))
        features[f"big_count_{days}d"] = F.count("big").over(frame)
    (rows.withColumns(features).where(F.col("is_event").isNull())
     .select(*labels.columns, *FEATURES).write.mode("overwrite").parquet(str(out)))


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


def _rolling_features(labels, events):
    """Hand-written per-partition features: pandas groupby-rolling over time windows closed on
    the left ([as_of - window, as_of)), over the union of a partition's events and labels."""
    import numpy as np
    import pandas as pd

    ev = pd.DataFrame({
        "customer_id": events["customer_id"].to_numpy(), "t": events["event_time"].to_numpy(),
        "one": 1.0, "amount": events["amount"].to_numpy(dtype="float64"),
        "travel": events["amount"].where(events["category"] == "travel").to_numpy(dtype="float64"),
        "big": np.where(events["amount"].to_numpy() >= 100, 1.0, np.nan), "is_label": False})
    lb = pd.DataFrame({"customer_id": labels["customer_id"].to_numpy(), "t": labels["as_of"].to_numpy(),
                       "one": np.nan, "amount": np.nan, "travel": np.nan, "big": np.nan, "is_label": True})
    both = pd.concat([ev, lb], ignore_index=True)
    both["t"] = pd.to_datetime(both["t"], utc=True)
    both = both.sort_values(["customer_id", "t"], kind="stable").reset_index(drop=True)
    is_label = both["is_label"].to_numpy()
    out = {}
    grouped = both.groupby("customer_id", sort=False)
    for days in WINDOWS:
        r = grouped.rolling(f"{days}D", on="t", closed="left")
        # An empty time window counts NaN (min_periods), not 0.
        count = np.nan_to_num(r["one"].count().to_numpy())
        n = np.nan_to_num(r["amount"].count().to_numpy())
        total = np.nan_to_num(r["amount"].sum().to_numpy())
        out[f"amount_count_{days}d"] = count
        out[f"amount_sum_{days}d"] = total
        with np.errstate(invalid="ignore", divide="ignore"):
            out[f"amount_mean_{days}d"] = np.where(n > 0, total / n, np.nan)
        out[f"amount_max_{days}d"] = r["amount"].max().to_numpy()
        out[f"travel_amount_sum_{days}d"] = np.nan_to_num(r["travel"].sum().to_numpy())
        out[f"big_count_{days}d"] = np.nan_to_num(r["big"].count().to_numpy())
    # groupby(sort=False).rolling keeps the rows grouped in order of first appearance, which is
    # the sorted order here, so positions line up with `both`.
    result = labels.sort_values(["customer_id", "as_of"], kind="stable").copy()
    label_rows = both.index[is_label]
    for name in FEATURES:
        values = out[name][label_rows]
        result[name] = values.astype("int64") if name in INTEGER_FEATURES else values
    return result


def run_dask_hand(client, data: Path, out: Path) -> None:
    import dask.dataframe as dd

    events = dd.read_parquet(str(data / "events"))
    labels = dd.read_parquet(str(data / "labels"))
    n = max(events.npartitions, labels.npartitions)
    events = events.shuffle(on="customer_id", npartitions=n)
    labels = labels.shuffle(on="customer_id", npartitions=n)
    meta = _rolling_features(labels._meta, events._meta)
    dd.map_partitions(_rolling_features, labels, events, meta=meta, align_dataframes=False,
                      enforce_metadata=False).to_parquet(str(out), write_index=False)


def duckdb_sql(data: Path, out: Path) -> str:
    features = []
    for days in WINDOWS:
        within = f"e.event_time >= l.as_of - INTERVAL {days} DAY"
        features += [
            f"count(e.event_time) FILTER (WHERE {within}) AS amount_count_{days}d",
            f"coalesce(sum(e.amount) FILTER (WHERE {within}), 0.0) AS amount_sum_{days}d",
            f"avg(e.amount) FILTER (WHERE {within}) AS amount_mean_{days}d",
            f"max(e.amount) FILTER (WHERE {within}) AS amount_max_{days}d",
            f"coalesce(sum(e.amount) FILTER (WHERE {within} AND e.category = 'travel'), 0.0) "
            f"AS travel_amount_sum_{days}d",
            f"count(*) FILTER (WHERE {within} AND e.amount >= 100) AS big_count_{days}d",
        ]
    return (f"COPY (SELECT l.row_id, any_value(l.customer_id) AS customer_id, any_value(l.as_of) AS as_of, "
            f"any_value(l.label) AS label, {', '.join(features)} "
            f"FROM read_parquet('{data}/labels/*.parquet') l LEFT JOIN read_parquet('{data}/events/*.parquet') e "
            f"ON e.customer_id = l.customer_id AND e.event_time < l.as_of "
            f"AND e.event_time >= l.as_of - INTERVAL {max(WINDOWS)} DAY GROUP BY l.row_id) "
            f"TO '{out}' (FORMAT parquet)")


def child(contender: str, workdir: Path) -> dict:
    """Start the engine, warm it up on a slice, then time one full run. Returns JSON facts."""
    started = time.perf_counter()
    facts: dict = {"contender": contender}
    if contender.endswith("spark") or contender == "pyspark-hand":
        engine = spark_session()
        run = {"lakescore-spark": run_lakescore_spark, "pyspark-hand": run_pyspark_hand}[contender]
    elif contender in ("lakescore-dask", "dask-hand"):
        engine = dask_client()
        run = {"lakescore-dask": run_lakescore_dask, "dask-hand": run_dask_hand}[contender]
    else:
        import duckdb

        engine = duckdb.connect()
        engine.execute("SET threads = 2")
        engine.execute("SET TimeZone = 'UTC'")

        def run(con, data: Path, out: Path) -> None:
            con.execute(duckdb_sql(data, out))
    facts["start_s"] = time.perf_counter() - started
    warm = workdir / f"out-warmup-{contender}"
    t = time.perf_counter()
    run(engine, sample(workdir), warm if contender != "duckdb" else warm.with_suffix(".parquet"))
    facts["warmup_s"] = time.perf_counter() - t
    out = workdir / f"out-{contender}"
    target = out.with_suffix(".parquet") if contender == "duckdb" else out
    t = time.perf_counter()
    run(engine, workdir, target)
    facts["seconds"] = time.perf_counter() - t
    facts["output"] = str(target)
    return facts


# --- comparison -------------------------------------------------------------------------------

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
    checksum = con.execute(
        f"SELECT count(*), {', '.join(f'sum({n})' for n in FEATURES)} FROM {source(output)}").fetchone()
    con.close()
    bad = {name: int(v) for name, v in zip(FEATURES, row[2:]) if v}
    return {"rows": int(row[0]), "unmatched": int(row[1]), "mismatched": bad,
            "checksum": [float(v) if v is not None else None for v in checksum]}


TARGET = 1.1
CHILD_TIMEOUT = 3600
PAIRS = {"spark": ("lakescore-spark", "pyspark-hand"), "dask": ("lakescore-dask", "dask-hand")}


def summarize(results: dict, labels: int) -> dict:
    """Checks every output against DuckDB's, then times, ratios to the fastest checked
    contender, and lakescore / hand-written per engine (None where either side is missing or
    wrong)."""
    reference = results.get("duckdb", {}).get("output")
    for name, facts in results.items():
        if "output" not in facts:
            facts["ok"] = False
            continue
        if reference is None:
            facts["ok"], facts["check"] = False, {"error": "no DuckDB reference to compare with"}
            continue
        check = compare(reference, facts["output"])
        facts["check"] = check
        facts["ok"] = check["rows"] == labels and not check["unmatched"] and not check["mismatched"]
    good = {name: f["seconds"] for name, f in results.items() if f["ok"]}
    fastest = min(good, key=good.get) if good else None
    for name, facts in results.items():
        facts["ratio_to_fastest"] = good[name] / good[fastest] if name in good else None
    ratios = {engine: (good[ours] / good[hand] if ours in good and hand in good else None)
              for engine, (ours, hand) in PAIRS.items()}
    return {"fastest": fastest, "lakescore_vs_hand": ratios}


def markdown(meta: dict, results: dict, summary: dict) -> str:
    lines = [
        f"## features bench, {meta['date']}",
        "",
        f"{meta['events']:,} events, {meta['labels']:,} label rows, {meta['features']} features over "
        f"{len(WINDOWS)} windows (6 filtered); scale {meta['scale']}.",
        *header_lines(meta["machine"]),
        f"Load average at the end: {meta['load_average_end']}. Order run: {', '.join(meta['order'])}.",
        "",
        "| contender | time (s) | x fastest | start (s) | warm-up (s) | output check |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for name in CONTENDERS:
        if name not in results:
            continue
        f = results[name]
        if "output" not in f:
            lines.append(f"| {name} | - | - | - | - | FAILED: {f.get('error', '?')[:80]} |")
            continue
        check = ("reference" if name == "duckdb" and f["ok"] else "= duckdb" if f["ok"] else
                 f"MISMATCH {f.get('check')}")
        seconds = f"{f['seconds']:.1f}" if f["ok"] else "-"
        ratio = f"{f['ratio_to_fastest']:.2f}" if f["ok"] else "-"
        lines.append(f"| {name} | {seconds} | {ratio} | {f['start_s']:.1f} | {f['warmup_s']:.1f} | {check} |")
    lines.append("")
    for engine, ratio in summary["lakescore_vs_hand"].items():
        ours, hand = PAIRS[engine]
        if ours in results or hand in results:
            shown = "-" if ratio is None else f"**{ratio:.2f}**"
            lines.append(f"- lakescore / hand-written on {engine.capitalize()}: {shown} (target <= {TARGET})")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="1.0 = 10M events, 1M label rows")
    parser.add_argument("--contenders", nargs="+", default=list(CONTENDERS), choices=CONTENDERS)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the generated data and outputs")
    parser.add_argument("--child", choices=CONTENDERS, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        report(child(args.child, args.workdir))
        return

    events, labels = int(10_000_000 * args.scale), int(1_000_000 * args.scale)
    workdir, facts, stamp = begin(args.workdir, "lakescore-bench-features-")
    meta = {"benchmark": "features", "scale": args.scale, "events": events, "labels": labels,
            "features": len(FEATURES), "windows_days": list(WINDOWS), "machine": facts,
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    print(f"# features bench: {events:,} events, {labels:,} label rows, {len(FEATURES)} features "
          f"over {len(WINDOWS)} windows (6 filtered)", flush=True)
    t = time.perf_counter()
    if not (workdir / "events").exists():
        generate(workdir, events, labels)
    meta["generate_s"] = round(time.perf_counter() - t, 2)
    print(f"# data generated in {meta['generate_s']:.1f} s under {workdir}", flush=True)
    # DuckDB first: it is the reference every other output is checked against.
    meta["order"] = ["duckdb", *[c for c in args.contenders if c != "duckdb"]]
    results: dict = {}
    for contender in meta["order"]:
        results[contender] = run_child([__file__, "--child", contender, "--workdir", str(workdir)],
                                       RESULTS_DIR / f"logs-{stamp}" / f"features-{contender}.log", CHILD_TIMEOUT)
        if not results[contender]["ok"]:
            print(f"# {contender} failed: {results[contender]['error']}", flush=True)
            continue
        print(f"# {contender}: {results[contender]['seconds']:.1f} s", flush=True)
    summary = summarize(results, labels)
    meta["load_average_end"] = load_average()
    text = markdown(meta, results, summary)
    print()
    print(text)
    ok = bool(results) and all(f["ok"] for f in results.values())
    document = {"meta": meta, "contenders": {name: results[name] for name in CONTENDERS if name in results},
                **summary, "target": TARGET, "ok": ok}
    write_results(f"features-{events}", stamp, text, facts, document)
    if not args.keep and args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    report({**document, "markdown": text})
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
