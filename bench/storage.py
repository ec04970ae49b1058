"""Cost of lakescore's Delta storage layer against plain Parquet, per engine, in one run.

Run by hand from the repository root (not a test)::

    .venv/bin/python bench/storage.py              # 10,000,000 rows (default)
    .venv/bin/python bench/storage.py --rows 1000000

The parent process generates the events-like data with numpy, writes it once as a Parquet
dataset (several files) and computes the reference checksum. It then runs itself once per
engine (``--engine spark`` and ``--engine dask``), each in a fresh child process, and
collects the child's JSON. For each engine, 3 repetitions of:

  write   lakescore ``write_spark``/``write_dask`` (new Delta table, overwrite, one commit)
          vs plain ``df.write.parquet`` / ``ddf.to_parquet`` of the same frame (read lazily
          from the input Parquet, so both include the read of the input);
  read    lakescore ``read_spark``/``read_dask`` + checksum aggregation (count, sum(amount),
          sum(customer_id)) vs ``spark.read.parquet`` / ``dd.read_parquet`` of that Delta
          table's own files + the same aggregation.

Every write goes to a fresh directory. A time counts only when its checksum matches the
reference (1e-9 relative on the float sum, exact on count and the integer sum); written
outputs are checksummed with pyarrow outside the timed region. Min and median of the
repetitions; the order lakescore/plain alternates between repetitions. Session/cluster start
and a first warm-up job (on one input file) are reported apart as fixed costs.

Prints a header (CPU, cores, RAM, load, Java, Python, library versions) and the table, writes
them as Markdown and JSON under ``bench/results/`` (git-ignored), and ends with the rows as one
``RESULT`` line (what ``bench/run.py`` reads). Each child's log is under
``bench/results/logs-<UTC time>/``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import (RESULTS_DIR, begin, delta_files, fmt, header_lines,  # noqa: E402
                           load_average, peak_rss_mib, report, run_child, spread, timed,
                           write_results)

CATEGORIES = ("grocery", "dining", "electronics", "travel", "fashion")
CATEGORY_P = (0.40, 0.25, 0.12, 0.08, 0.15)
INPUT_FILES = 8
REL_TOL = 1e-9
TARGET = 1.1
CHILD_TIMEOUT = 3600


# --- data -------------------------------------------------------------------------------------

def make_events(rows: int, seed: int = 7):
    """Events like the demo's: int64 customer ids, UTC µs timestamps, cents, 5 categories;
    sorted by (customer_id, event_time) as the demo's events are."""
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    customers = max(rows // 100, 1)
    customer_id = rng.integers(0, customers, size=rows, dtype=np.int64)
    start = int(datetime(2025, 1, 1, tzinfo=timezone.utc).timestamp() * 1_000_000)
    event_time = start + rng.integers(0, 365 * 86_400_000_000, size=rows, dtype=np.int64)
    order = np.lexsort((event_time, customer_id))
    customer_id, event_time = customer_id[order], event_time[order]
    amount = np.round(rng.lognormal(np.log(25.0), 0.9, size=rows), 2)
    codes = rng.choice(len(CATEGORIES), size=rows, p=CATEGORY_P).astype(np.int8)
    category = pa.DictionaryArray.from_arrays(pa.array(codes), pa.array(CATEGORIES)).cast(pa.string())
    return pa.table({
        "customer_id": pa.array(customer_id, pa.int64()),
        "event_time": pa.array(event_time, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
        "amount": pa.array(amount, pa.float64()),
        "category": category,
    })


def write_input(table, directory: Path, files: int = INPUT_FILES) -> list[str]:
    import pyarrow.parquet as pq

    directory.mkdir(parents=True, exist_ok=True)
    step = -(-table.num_rows // files)
    paths = []
    for i in range(files):
        part = table.slice(i * step, step)
        if part.num_rows:
            path = directory / f"part-{i:03d}.parquet"
            pq.write_table(part, path, compression="snappy")
            paths.append(str(path))
    return paths


def arrow_checksum(table) -> dict:
    import pyarrow.compute as pc

    return {"rows": table.num_rows,
            "sum_amount": float(pc.sum(table["amount"]).as_py()),
            "sum_customer_id": int(pc.sum(table["customer_id"]).as_py())}


def files_checksum(paths: list[str]) -> dict:
    """Checksum of Parquet files read with pyarrow (the neutral reader for written outputs)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = [pq.read_table(p, columns=["customer_id", "amount"]) for p in paths]
    return arrow_checksum(pa.concat_tables(tables)) if tables else None


def parquet_files(directory: str) -> list[str]:
    """Data files of a plain Parquet output (skipping _SUCCESS, .crc, _metadata, _delta_log)."""
    out = []
    for root, dirs, names in os.walk(directory):
        dirs[:] = [d for d in dirs if not d.startswith(("_", "."))]
        out += [os.path.join(root, n) for n in names
                if n.endswith(".parquet") and not n.startswith(("_", "."))]
    return sorted(out)


def same(a: dict | None, b: dict) -> bool:
    if a is None:
        return False
    return (int(a["rows"]) == b["rows"] and int(a["sum_customer_id"]) == b["sum_customer_id"]
            and abs(float(a["sum_amount"]) - b["sum_amount"]) <= REL_TOL * abs(b["sum_amount"]))


# --- the child: one engine ---------------------------------------------------------------------

class Recorder:
    """Times of one engine's operations, checked against the reference checksum."""

    def __init__(self, reference: dict) -> None:
        self.reference = reference
        self.times: dict[str, dict[str, list]] = {}
        self.bad: list[str] = []

    def add(self, op: str, variant: str, seconds: float, checksum: dict | None) -> None:
        ok = same(checksum, self.reference)
        slot = self.times.setdefault(op, {}).setdefault(variant, [])
        slot.append({"s": round(seconds, 4), "ok": ok, "checksum": checksum})
        if not ok:
            self.bad.append(f"{op}/{variant}: {checksum} != {self.reference}")


def run_spark(args, reference: dict, work: Path) -> dict:
    from engine.conf import SparkConf
    from engine.session import delta_enabled, spark_session
    from engine.storage.spark import read_spark, write_spark
    from engine.storage.table import CommitInfo, TableRef, WriteMode
    from pyspark.sql import functions as F

    out: dict = {"fixed": {}}
    conf = SparkConf(master="local[2]", app_name="bench-storage", shuffle_partitions=4,
                     show_progress=False, driver_memory="4g")
    out["fixed"]["session_start_s"], spark = timed(lambda: spark_session(conf))
    out["delta_native"] = delta_enabled(spark)
    out["spark_conf"] = {k: spark.conf.get(k) for k in
                         ("spark.master", "spark.sql.shuffle.partitions",
                          "spark.sql.execution.arrow.maxRecordsPerBatch",
                          "spark.sql.parquet.outputTimestampType", "spark.driver.memory")}

    def agg(frame) -> dict:
        row = frame.agg(F.count(F.lit(1)).alias("rows"), F.sum("amount").alias("sum_amount"),
                        F.sum("customer_id").alias("sum_customer_id")).collect()[0]
        return {"rows": int(row["rows"]), "sum_amount": float(row["sum_amount"]),
                "sum_customer_id": int(row["sum_customer_id"])}

    commit = CommitInfo(job="bench-storage", run_id="bench", engine="spark")

    def lake_write(src: str, dest: str):
        df = spark.read.parquet(src)
        return write_spark(df, TableRef(name="bench", path=dest), WriteMode.OVERWRITE, commit)

    def plain_write(src: str, dest: str):
        spark.read.parquet(src).write.mode("overwrite").parquet(dest)

    def lake_read(path: str) -> dict:
        return agg(read_spark(spark, TableRef(name="bench", path=path)).frame)

    def plain_read(path: str) -> dict:
        return agg(spark.read.parquet(*delta_files(path)))

    out["fixed"]["warmup_one_file_s"] = _warm_up(args, work, lake_write, plain_write, lake_read, plain_read)

    out.update(_repetitions(args, reference, work, lake_write, plain_write, lake_read, plain_read))
    pid = int(spark._jvm.java.lang.ProcessHandle.current().pid())
    out["jvm_peak_rss_mb"] = round(peak_rss_mib(pid) or 0)
    out["partitions_of_input"] = spark.read.parquet(args.input).rdd.getNumPartitions()
    spark.stop()
    return out


def run_dask(args, reference: dict, work: Path) -> dict:
    import dask
    import dask.dataframe as dd
    import pandas as pd

    from engine.conf import DaskConf
    from engine.session import dask_client
    from engine.storage.dask import read_dask, write_dask
    from engine.storage.table import CommitInfo, TableRef, WriteMode

    out: dict = {"fixed": {}}
    conf = DaskConf(n_workers=2, threads_per_worker=1, show_progress=False)
    out["fixed"]["cluster_start_s"], client = timed(lambda: dask_client(conf))
    out["dask_config"] = {"dataframe.convert-string": dask.config.get("dataframe.convert-string"),
                          "workers": len(client.scheduler_info()["workers"])}

    def agg(frame) -> dict:
        sub = frame[["customer_id", "amount"]]
        meta = pd.DataFrame({"rows": pd.Series([], dtype="int64"),
                             "sum_amount": pd.Series([], dtype="float64"),
                             "sum_customer_id": pd.Series([], dtype="int64")})
        parts = sub.map_partitions(
            lambda d: pd.DataFrame({"rows": [len(d)], "sum_amount": [float(d["amount"].sum())],
                                    "sum_customer_id": [int(d["customer_id"].sum())]}),
            meta=meta).compute()
        return {"rows": int(parts["rows"].sum()), "sum_amount": float(parts["sum_amount"].sum()),
                "sum_customer_id": int(parts["sum_customer_id"].sum())}

    commit = CommitInfo(job="bench-storage", run_id="bench", engine="dask")

    def lake_write(src: str, dest: str):
        return write_dask(dd.read_parquet(src), TableRef(name="bench", path=dest),
                          WriteMode.OVERWRITE, commit)

    def plain_write(src: str, dest: str):
        dd.read_parquet(src).to_parquet(dest, write_index=False)

    def lake_read(path: str) -> dict:
        return agg(read_dask(TableRef(name="bench", path=path)).frame)

    def lake_read_columns(path: str) -> dict:
        return agg(read_dask(TableRef(name="bench", path=path),
                             columns=["customer_id", "amount"]).frame)

    def plain_read(path: str) -> dict:
        return agg(dd.read_parquet(path))

    out["fixed"]["warmup_one_file_s"] = _warm_up(args, work, lake_write, plain_write, lake_read, plain_read)

    out.update(_repetitions(args, reference, work, lake_write, plain_write, lake_read, plain_read,
                            extra_reads={"read + agg (columns= given)": lake_read_columns}))
    out["partitions_of_input"] = dd.read_parquet(args.input).npartitions
    workers = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    out["worker_peak_rss_mb"] = sorted(round(v / 1024) for v in workers.values())
    cluster = client.cluster
    client.close()
    cluster.close()
    return out


def _warm_up(args, work, lake_write, plain_write, lake_read, plain_read) -> float:
    """Seconds to run every operation once on one input file (JIT, worker start, first-job
    costs), so that the timed repetitions measure steady state."""
    first = sorted(parquet_files(args.input))[0]
    start = time.perf_counter()
    lake_write(first, str(work / "warm-delta"))
    plain_write(first, str(work / "warm-plain"))
    lake_read(str(work / "warm-delta"))
    plain_read(str(work / "warm-delta"))
    return round(time.perf_counter() - start, 3)


def _repetitions(args, reference, work, lake_write, plain_write, lake_read, plain_read,
                 extra_reads=None) -> dict:
    rec = Recorder(reference)
    written: dict = {}
    read_table = None
    for rep in range(args.reps):
        order = [("lakescore", lake_write), ("plain", plain_write)]
        if rep % 2:
            order.reverse()
        for variant, fn in order:
            dest = str(work / f"write-{variant}-{rep}")
            seconds, result = timed(lambda: fn(args.input, dest))
            files = delta_files(dest) if variant == "lakescore" else parquet_files(dest)
            checksum = files_checksum(files)
            if variant == "lakescore" and result is not None and result.rows != checksum["rows"]:
                checksum = {**checksum, "note": f"WriteResult.rows={result.rows}"}
            rec.add("write", variant, seconds, checksum)
            written.setdefault(variant, []).append({"files": len(files),
                                                   "bytes": sum(os.path.getsize(f) for f in files)})
            if variant == "lakescore" and read_table is None:
                read_table = dest  # the Delta table that every read below reads
            elif not args.keep:
                shutil.rmtree(dest, ignore_errors=True)
    reads = [("lakescore", lake_read), ("plain", plain_read)]
    for rep in range(args.reps):
        order = reads[::-1] if rep % 2 else reads
        for variant, fn in order:
            seconds, checksum = timed(lambda: fn(read_table))
            rec.add("read + agg", variant, seconds, checksum)
        for label, fn in (extra_reads or {}).items():
            seconds, checksum = timed(lambda: fn(read_table))
            rec.add(label, "lakescore", seconds, checksum)
    return {"times": rec.times, "checksum_failures": rec.bad, "written": written,
            "read_table_files": len(delta_files(read_table))}


def child(args) -> None:
    """One engine's repetitions, reported to the parent (``harness.report``)."""
    reference = json.loads(Path(args.reference).read_text())
    work = Path(tempfile.mkdtemp(prefix=f"bench-storage-{args.engine}-", dir=args.workdir))
    start = time.perf_counter()
    result = run_spark(args, reference, work) if args.engine == "spark" \
        else run_dask(args, reference, work)
    result["engine"] = args.engine
    result["child_wall_s"] = round(time.perf_counter() - start, 1)
    result["child_peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    result["reaped_children_peak_rss_mb"] = round(
        resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    report(result)


# --- the parent: data, children, report ---------------------------------------------------------

def summarize(times: list[dict]) -> dict:
    """Min and median of the repetitions whose checksum matched; ``ok`` when all did."""
    good = [t["s"] for t in times if t["ok"]]
    figures = spread(good) if good else {"min": None, "median": None}
    return {**figures, "all": [t["s"] for t in times], "ok": len(good) == len(times) and bool(times)}


def build_rows(results: list[dict]) -> list[dict]:
    rows = []
    for res in results:
        for op, variants in res["times"].items():
            lake = summarize(variants.get("lakescore", []))
            plain = summarize(variants["plain"]) if "plain" in variants else None
            if plain is None:  # a diagnostic variant: compare with the plain read
                plain = summarize(res["times"]["read + agg"]["plain"])
            ratio = (lake["median"] / plain["median"]
                     if lake["median"] and plain["median"] else None)
            ratio_min = lake["min"] / plain["min"] if lake["min"] and plain["min"] else None
            rows.append({"engine": res["engine"], "operation": op, "lakescore": lake,
                         "plain": plain, "ratio_median": ratio, "ratio_min": ratio_min,
                         "meets_target": ratio is not None and ratio <= TARGET,
                         "checksum_ok": lake["ok"] and plain["ok"]})
    return rows


def markdown(meta: dict, rows: list[dict], results: list[dict]) -> str:
    lines = [
        f"# lakescore storage benchmark — {meta['rows']:,} rows",
        "",
        *[f"- {line}" for line in header_lines(meta["machine"])],
        f"- load average at end: {meta['load_average_end']}",
        f"- input: {meta['input_files']} Parquet files, {meta['input_mb']:.0f} MB; "
        f"{meta['reps']} repetitions; times in seconds; ratio = lakescore / plain "
        f"(median; min in brackets), target ≤ {TARGET}",
        "",
        "| engine | operation | lakescore s (min / median) | plain s (min / median) "
        "| ratio | ≤ 1.1 | checksum ok |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['engine']} | {r['operation']} | {fmt(r['lakescore']['min'])} / "
            f"{fmt(r['lakescore']['median'])} | {fmt(r['plain']['min'])} / "
            f"{fmt(r['plain']['median'])} | {fmt(r['ratio_median'])} ({fmt(r['ratio_min'])}) "
            f"| {'yes' if r['meets_target'] else 'NO'} | {'yes' if r['checksum_ok'] else 'NO'} |")
    lines += ["", "| engine | fixed costs (s) | child peak RSS (MB) | other processes peak RSS "
              "(MB) | child wall (s) |", "|---|---|---|---|---|"]
    for res in results:
        fixed = ", ".join(f"{k} {val:.2f}" for k, val in res["fixed"].items())
        other = (f"JVM {res.get('jvm_peak_rss_mb')}" if res["engine"] == "spark"
                 else f"workers {res.get('worker_peak_rss_mb')}")
        lines.append(f"| {res['engine']} | {fixed} | {res['child_peak_rss_mb']} | {other} "
                     f"| {res['child_wall_s']} |")
    lines += [""]
    for res in results:
        w = res["written"]
        lines.append(f"- {res['engine']}: input partitions {res['partitions_of_input']}; written "
                     + "; ".join(f"{k} {x[0]['files']} files {x[0]['bytes'] / 1e6:.0f} MB"
                                 for k, x in w.items())
                     + (f"; Delta native: {res['delta_native']}" if "delta_native" in res else ""))
        for bad in res["checksum_failures"]:
            lines.append(f"  - checksum FAILED: {bad}")
    return "\n".join(lines) + "\n"


def parent(args) -> None:
    """Data and reference checksum, one child per engine, the table; the whole result is also
    this process's last ``RESULT`` line (what ``bench/run.py`` reads)."""
    workdir, facts, stamp = begin(Path(tempfile.mkdtemp(prefix="bench-storage-", dir=args.workdir)), "")
    meta = {"machine": facts, "rows": args.rows, "reps": args.reps}
    logs = RESULTS_DIR / f"logs-{stamp}"
    try:
        seconds, events = timed(lambda: make_events(args.rows))
        reference = arrow_checksum(events)
        paths = write_input(events, workdir / "input")
        del events
        meta["generate_s"] = round(seconds, 2)
        meta["input_files"] = len(paths)
        meta["input_mb"] = sum(os.path.getsize(p) for p in paths) / 1e6
        meta["reference_checksum"] = reference
        (workdir / "reference.json").write_text(json.dumps(reference))
        print(f"data: {args.rows:,} rows in {len(paths)} files, {meta['input_mb']:.0f} MB "
              f"(generated in {seconds:.1f} s); reference {reference}", flush=True)
        results = []
        for engine in args.engines:
            argv = [__file__, "--engine", engine, "--input", str(workdir / "input"),
                    "--reference", str(workdir / "reference.json"), "--reps", str(args.reps),
                    "--workdir", str(workdir)] + (["--keep"] if args.keep else [])
            print(f"running {engine} ...", flush=True)
            result = run_child(argv, logs / f"storage-{engine}.log", CHILD_TIMEOUT)
            if not result["ok"]:
                raise SystemExit(f"{engine} child failed: {result['error']}")
            results.append(result)
        meta["load_average_end"] = load_average()
        rows = build_rows(results)
        text = markdown(meta, rows, results)
        print()
        print(text)
        write_results(f"storage-{args.rows}", stamp, text, facts, {"meta": meta, "rows": rows, "engines": results})
        report({"rows": rows, "markdown": text})
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--engines", nargs="+", default=["spark", "dask"],
                        choices=["spark", "dask"])
    parser.add_argument("--workdir", default=None, help="where temporary tables go (default TMPDIR)")
    parser.add_argument("--keep", action="store_true", help="keep the written tables")
    # internal: the per-engine child
    parser.add_argument("--engine", choices=["spark", "dask"], help=argparse.SUPPRESS)
    parser.add_argument("--input", help=argparse.SUPPRESS)
    parser.add_argument("--reference", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.engine:
        child(args)
    else:
        parent(args)


if __name__ == "__main__":
    main()
