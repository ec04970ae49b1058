"""Scoring at scale: the real score stage scores 50M rows on each engine within bounded memory.

Run by hand or with ``make scale`` (not a test; about 10–15 minutes on 2 cores)::

    .venv/bin/python bench/scale_scoring.py                     # 50,000,000 rows, spark and dask
    .venv/bin/python bench/scale_scoring.py --rows 2000000      # quick check

What it does, each step in its own child process (so one engine's memory never hides another's):

1. *generate* (parent): a synthetic training set (200k rows) and a scoring set of ``--rows`` rows
   with the demo feature definition's columns (``conf/features/customer.yaml``: counts, sums and
   means over 7/30/90 days, means null where the count is 0), spread over ``--dates`` score
   dates, written as Delta tables with deltalake in 5M-row batches (one commit each table).
2. *train*: ``engine.pipeline.train_model`` trains the conf's H2O GBM on it and registers
   ``churn/1`` in the run's MLflow registry, as the train job does.
3. *score-<engine>*: ``engine.pipeline.score_rows`` — the score job's stage, unchanged — reads
   the scoring set, scores every row with the MOJO (Spark: the Java scorer in the executors;
   Dask: JPype per worker) and writes the scores table partitioned by (score_date, model_id) in
   one commit; then runs the stage again, which must be skipped (idempotent). Peak memory is
   read from the OS (``VmHWM`` in ``/proc/<pid>/status``) of the Spark JVM, each Dask worker and
   the Python driver. Spark: ``local[2]``, driver memory 4g; Dask: 2 workers x 1 thread,
   4 GiB each (the engines' default conf).
4. *check* (parent, DuckDB over the tables' Arrow datasets): each scores table has exactly
   ``--rows`` rows, one per (key, model), in ``--dates`` partitions; Spark's and Dask's scores
   of every row agree within 1e-9.

It prints one table and writes it with the machine's facts to
``bench/results/scale-scoring-<rows>-<UTC time>.md`` and ``.json``; each step's log is under
``bench/results/logs-<UTC time>/``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import (RESULTS_DIR, begin, engine_peaks_mib, load_average, peak_rss_mib, report,  # noqa: E402
                           run_child, write_results)

BATCH_ROWS = 5_000_000
WINDOWS = (7, 30, 90)
H2O_PORT = 54691
STEP_TIMEOUT = 3 * 3600


def conf_overrides(workdir: Path, engine: str) -> list[str]:
    """The default conf, pointed at the bench lakehouse; the engine's own scores table."""
    return [f"lakehouse={workdir / 'lakehouse'}", "drift.enabled=false",
            "spark.master=local[2]", "spark.shuffle_partitions=4", f"h2o.port={H2O_PORT}",
            "h2o.max_mem=2g", "train.params={ntrees: 20, max_depth: 5, seed: 42}",
            f"tables.scores=tables/scores_{engine}"]


# --- data -------------------------------------------------------------------------------------

def feature_batch(start: int, rows: int, as_of_days, rng):
    """Rows of the demo definition's feature columns, with the keys and as-of times given."""
    import numpy as np
    import pyarrow as pa

    columns = {"customer_id": pa.array(np.arange(start, start + rows, dtype="int64"))}
    columns["as_of"] = pa.array(as_of_days.astype("datetime64[us]"), pa.timestamp("us", tz="UTC"))
    activity = rng.gamma(2.0, 0.5, size=rows)
    for days in WINDOWS:
        count = rng.poisson(activity * days / 7)
        total = np.round(count * rng.lognormal(3.0, 0.6, size=rows), 2)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
        columns[f"amount_count_{days}d"] = pa.array(count.astype("int64"))
        columns[f"amount_sum_{days}d"] = pa.array(total)
        columns[f"amount_mean_{days}d"] = pa.array(mean, from_pandas=True)
    ordered = ["customer_id", "as_of"] + [f"amount_{f}_{d}d" for f in ("count", "sum", "mean")
                                          for d in WINDOWS]
    return pa.table({name: columns[name] for name in ordered}), activity


def generate(lakehouse: Path, rows: int, dates: int, seed: int = 5) -> None:
    import numpy as np
    import pyarrow as pa
    from deltalake import write_deltalake

    rng = np.random.default_rng(seed)
    tables = lakehouse / "tables"
    # Training set: as-of times over 2025 so the conf's out-of-time split (2025-10-01) has both.
    n = 200_000
    days = np.datetime64("2025-01-01") + rng.integers(0, 365, size=n).astype("timedelta64[D]")
    train, activity = feature_batch(0, n, days, rng)
    churned = rng.random(n) < 1 / (1 + np.exp(2.5 * activity - 1.5))
    write_deltalake(str(tables / "training_set"), train.append_column("churned", pa.array(churned.astype("int64"))))

    first = np.datetime64("2026-01-01")

    def batches():
        for start in range(0, rows, BATCH_ROWS):
            size = min(BATCH_ROWS, rows - start)
            as_of = first + (np.arange(start, start + size) % dates).astype("timedelta64[D]")
            batch, _ = feature_batch(start, size, as_of, rng)
            yield from batch.to_batches()

    schema = feature_batch(0, 1, np.array([first]), rng)[0].schema
    write_deltalake(str(tables / "scoring_set"), pa.RecordBatchReader.from_batches(schema, batches()))


# --- children ---------------------------------------------------------------------------------

def child_train(workdir: Path) -> dict:
    from engine.backend import open_backend
    from engine.conf import load_conf
    from engine.pipeline import train_model
    from engine.run_context import RunContext

    conf = load_conf(None, overrides=conf_overrides(workdir, "spark"))
    ctx = RunContext.start(conf)
    started = time.perf_counter()
    backend = open_backend("dask", conf)  # H2O imports the Parquet files; the engine is unused
    try:
        model = train_model(backend, ctx)
    finally:
        backend.close()
        import h2o

        h2o.cluster().shutdown()
    return {"model_id": model.model_id, "seconds": time.perf_counter() - started,
            "metrics": {k: model.metrics[k] for k in ("auc", "train_rows") if k in model.metrics}}


def child_score(workdir: Path, engine: str) -> dict:
    from engine.backend import open_backend
    from engine.conf import load_conf
    from engine.pipeline import resolve_model, score_rows
    from engine.run_context import RunContext

    conf = load_conf(None, overrides=conf_overrides(workdir, engine))
    started = time.perf_counter()
    backend = open_backend(engine, conf)
    start_seconds = time.perf_counter() - started
    ctx = RunContext.start(conf)
    model = resolve_model(ctx, "churn/1")
    began = time.perf_counter()
    result = score_rows(backend, ctx, model)
    seconds = time.perf_counter() - began
    note = ctx.summary.stages[-1].note
    rerun = score_rows(backend, RunContext.start(conf), model)
    facts = {"engine": engine, "start_seconds": start_seconds, "seconds": seconds,
             "rows": result.rows, "files": result.files, "version": result.version,
             "rows_per_s": result.rows / seconds, "note": note,
             "rerun_skipped": rerun.skipped, "rerun_version": rerun.version,
             "python_peak_mib": peak_rss_mib(os.getpid())}
    if engine == "spark":
        facts["jvm_peak_mib"] = engine_peaks_mib("spark", backend.spark)["jvm"]
        facts["limit"] = f"driver memory {conf.spark.driver_memory}"
    else:
        facts["worker_peak_mib"] = engine_peaks_mib("dask", backend.client)["workers"]
        facts["limit"] = f"{conf.dask.n_workers} workers x {conf.dask.memory_limit}"
    print(ctx.summary.render(), flush=True)
    backend.close()
    return facts


# --- checks -----------------------------------------------------------------------------------

def check(lakehouse: Path, engines: list[str], rows: int, dates: int) -> dict:
    """Row counts, one row per key and model, partitions, and cross-engine equality (DuckDB)."""
    import duckdb
    from deltalake import DeltaTable

    con = duckdb.connect()
    con.execute("SET threads=2")
    out = {}
    datasets = {}
    for engine in engines:
        table = DeltaTable(str(lakehouse / "tables" / f"scores_{engine}"))
        datasets[engine] = table.to_pyarrow_dataset()
        con.register(f"s_{engine}", datasets[engine])
        total, keys, days = con.execute(
            f"SELECT count(*), count(DISTINCT (customer_id, as_of, model_id)), "
            f"count(DISTINCT score_date) FROM s_{engine}").fetchall()[0]
        out[engine] = {"rows": total, "distinct_keys": keys, "score_dates": days,
                       "partitions": table.metadata().partition_columns,
                       "ok": total == rows and keys == rows and days == dates}
    if len(engines) == 2:
        a, b = engines
        diff, matched = con.execute(
            f"SELECT max(abs(x.score - y.score)), count(*) FROM s_{a} x JOIN s_{b} y "
            "USING (customer_id, as_of, model_id)").fetchall()[0]
        out["cross_engine"] = {"max_abs_diff": diff, "matched_rows": matched,
                               "ok": matched == rows and diff is not None and diff <= 1e-9}
    return out


# --- driver -----------------------------------------------------------------------------------

def run_step(step: str, workdir: Path, logs: Path, engine: str | None = None) -> dict:
    """One step in its own process, its output echoed; stops the run if it fails."""
    argv = [__file__, "--child", step, "--workdir", str(workdir)] + (["--engine", engine] if engine else [])
    result = run_child(argv, logs / f"scale-{step}{'-' + engine if engine else ''}.log", STEP_TIMEOUT, echo="")
    if not result["ok"]:
        raise SystemExit(f"step {step} {engine or ''} failed: {result['error']}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000_000)
    parser.add_argument("--dates", type=int, default=5)
    parser.add_argument("--engines", nargs="+", default=["spark", "dask"], choices=["spark", "dask"])
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--engine", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        from engine.session import prepare_process_env

        prepare_process_env()
        facts = child_train(args.workdir) if args.child == "train" else child_score(args.workdir, args.engine)
        report(facts)
        return

    workdir, machine, stamp = begin(args.workdir, "lakescore-scale-")
    logs = RESULTS_DIR / f"logs-{stamp}"
    lakehouse = workdir / "lakehouse"
    print(f"# lakescore scale scoring: {args.rows:,} rows over {args.dates} score dates, "
          f"engines {args.engines}; workdir {workdir}", flush=True)
    started = time.perf_counter()
    generate(lakehouse, args.rows, args.dates)
    generated = time.perf_counter() - started
    print(f"# generated in {generated:.0f} s", flush=True)
    results = {"rows": args.rows, "dates": args.dates, "generate_seconds": generated,
               "train": run_step("train", workdir, logs)}
    for engine in args.engines:
        results[engine] = run_step("score", workdir, logs, engine)
    results["checks"] = check(lakehouse, args.engines, args.rows, args.dates)
    results["load_average_end"] = load_average()

    lines = ["| engine | rows | stage s | rows/s | rerun skipped | peak memory MiB | limit | checks |",
             "|---|---|---|---|---|---|---|---|"]
    for engine in args.engines:
        r, c = results[engine], results["checks"][engine]
        peak = (f"JVM {r['jvm_peak_mib']:.0f}, Python {r['python_peak_mib']:.0f}" if engine == "spark"
                else f"workers {', '.join(f'{p:.0f}' for p in r['worker_peak_mib'])}, "
                     f"Python {r['python_peak_mib']:.0f}")
        lines.append(f"| {engine} | {r['rows']:,} | {r['seconds']:.0f} | {r['rows_per_s']:,.0f} | "
                     f"{r['rerun_skipped']} | {peak} | {r['limit']} | "
                     f"{'ok' if c['ok'] else 'FAILED'} ({c['rows']:,} rows, {c['distinct_keys']:,} keys, "
                     f"{c['score_dates']} dates) |")
    if "cross_engine" in results["checks"]:
        x = results["checks"]["cross_engine"]
        lines.append(f"\nspark vs dask: {x['matched_rows']:,} rows matched, max abs difference "
              f"{x['max_abs_diff']} ({'ok' if x['ok'] else 'FAILED'})")
    lines += [f"{engine}: {results[engine]['note']}" for engine in args.engines]
    text = "\n".join(lines)
    print("\n" + text)
    write_results(f"scale-scoring-{args.rows}", stamp, text, machine, results)
    print(f"{time.perf_counter() - started:.0f} s total")
    if not args.keep and args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    failed = [k for k, v in results["checks"].items() if not v["ok"]]
    failed += [e for e in args.engines if not results[e]["rerun_skipped"]]
    if failed:
        raise SystemExit(f"checks failed: {failed}")


if __name__ == "__main__":
    main()
