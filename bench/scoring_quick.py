"""Rows/s of MOJO scoring with the issue's target model: an H2O GBM of 20 trees x depth 5 on 20
numeric float64 features (binomial), on Spark local[2], on Dask (2 workers x 1 thread) and
model-only (preloaded arrays, one JVM thread).

Not a test: run by hand (`.venv/bin/python bench/scoring_quick.py [rows]`, default 2M). It
starts its own H2O (port $LAKESCORE_TEST_H2O_PORT, default 54391) to train the model once,
then a SparkSession and a Dask cluster, one at a time; the model and data are kept in
$LAKESCORE_BENCH_DIR (default /tmp/lakescore-bench-scoring) for the next run.

Every figure is the best of a few warm runs, and is given twice: rows/s per core from wall
time (rows / seconds / cores used) and rows per CPU-second (rows / the CPU time the JVMs or
workers used): on a shared machine the second is the steadier one. Spark's figures exclude
session start; "cached" scores a cached DataFrame, "parquet" reads the file in the same job.
The machine's header is printed first; the figures are written to
``bench/results/scoring-quick-<rows>-<UTC time>.md`` and ``.json``.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import begin, timed, write_results  # noqa: E402
from engine.conf import DaskConf, H2OConf, SparkConf  # noqa: E402
from engine.session import dask_client, h2o_connection, prepare_process_env, spark_session  # noqa: E402

prepare_process_env()

FEATURES = [f"f{i:02d}" for i in range(20)]
RUNS = 3
FIGURES: list[str] = []  # every line printed by figure(), in order: the results file


def make_frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, len(FEATURES)))
    x[rng.random(size=x.shape) < 0.02] = np.nan
    frame = pd.DataFrame(x, columns=FEATURES)
    frame.insert(0, "row_id", np.arange(n, dtype="int64"))
    signal = np.nan_to_num(x)
    logit = (signal[:, :5].sum(axis=1) - 0.5 * signal[:, 5:10].sum(axis=1)
             + 0.3 * signal[:, 10] * signal[:, 11])
    frame["y"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return frame


def trained_mojo(directory: Path) -> Path:
    mojo = directory / "gbm_20x5_20f.zip"
    if mojo.exists():
        return mojo
    import h2o
    from h2o.estimators import H2OGradientBoostingEstimator

    port = int(os.environ.get("LAKESCORE_TEST_H2O_PORT", "54391"))
    h2o_connection(H2OConf(max_mem="2g", nthreads=2, port=port))
    make_frame(100_000, 1).to_parquet(directory / "train.parquet")
    train = h2o.import_file(str(directory / "train.parquet"))
    train["y"] = train["y"].asfactor()
    model = H2OGradientBoostingEstimator(ntrees=20, max_depth=5, seed=1)
    model.train(x=FEATURES, y="y", training_frame=train)
    model.download_mojo(str(mojo))
    h2o.cluster().shutdown()
    return mojo


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def best(fn, cpu_seconds) -> tuple[float, float]:
    """Min wall seconds and min CPU seconds of ``RUNS`` runs of ``fn``."""
    walls, cpus = [], []
    for _ in range(RUNS):
        cpu = cpu_seconds()
        walls.append(timed(fn)[0])
        cpus.append(cpu_seconds() - cpu)
    return min(walls), min(cpus)


def figure(name: str, rows: int, cores: int, wall: float, cpu: float) -> None:
    line = (f"{name:<44} {rows / wall / cores:>12,.0f} rows/s/core {rows / cpu:>12,.0f} rows/cpu-s "
            f"({wall:.2f} s wall, {cpu:.2f} s cpu, load {os.getloadavg()[0]:.1f})")
    FIGURES.append(line)
    print(line, flush=True)


def model_only(mojo: Path, frame: pd.DataFrame) -> None:
    """MojoScorer.scoreOutputs on arrays already in the JVM, one thread (JPype in this process)."""
    import jpype

    from engine.scoring.dask import _scorer

    scorer = _scorer()
    threads = jpype.JClass("java.lang.management.ManagementFactory").getThreadMXBean()
    names = jpype.JArray(jpype.JString)(FEATURES)
    columns = jpype.JArray(jpype.JObject)([jpype.JArray(jpype.JDouble)(frame[f].to_numpy())
                                           for f in FEATURES])
    for tree_walk in (False, True):
        wall, cpu = best(lambda: scorer.scoreOutputs(str(mojo), names, columns, tree_walk),
                         lambda: threads.getCurrentThreadCpuTime() / 1e9)
        figure(f"model-only, 1 JVM thread ({'TreeWalk' if tree_walk else 'genmodel score0'})",
               len(frame), 1, wall, cpu)


def spark_figures(mojo: Path, parquet: Path, rows: int) -> None:
    from engine.scoring.spark import score_mojo_spark

    spark = spark_session(SparkConf(master="local[2]", shuffle_partitions=4, driver_memory="4g",
                                    show_progress=False))
    jvm_pid = spark._jvm.java.lang.ProcessHandle.current().pid()

    def jvm_cpu() -> float:
        return process_cpu_seconds(jvm_pid)

    def noop(frame) -> None:
        frame.write.format("noop").mode("overwrite").save()

    cached = spark.read.parquet(str(parquet)).repartition(4).cache()
    cached.count()
    figure("spark cached: no model (keep + features)", rows, 2,
           *best(lambda: noop(cached.select("row_id", *FEATURES)), jvm_cpu))
    figure("spark cached: score_mojo_spark", rows, 2,
           *best(lambda: noop(score_mojo_spark(cached, str(mojo), ["row_id"])), jvm_cpu))
    cached.unpersist()
    figure("spark parquet: no model (keep + features)", rows, 2,
           *best(lambda: noop(spark.read.parquet(str(parquet)).select("row_id", *FEATURES)), jvm_cpu))
    figure("spark parquet: score_mojo_spark", rows, 2,
           *best(lambda: noop(score_mojo_spark(spark.read.parquet(str(parquet)), str(mojo), ["row_id"])),
                 jvm_cpu))
    spark.stop()


def dask_figures(mojo: Path, parquet: Path, rows: int) -> None:
    import dask.dataframe as dd

    from engine.scoring.dask import score_mojo_dask

    client = dask_client(DaskConf(n_workers=2, threads_per_worker=1, memory_limit="4GiB",
                                  show_progress=False))

    def workers_cpu() -> float:
        return sum(client.run(time.process_time).values())

    ddf = dd.read_parquet(str(parquet), split_row_groups=True).persist()
    ddf["f00"].sum().compute()
    score_mojo_dask(ddf, str(mojo), ["row_id"])["score"].sum().compute()  # JVMs started, model loaded
    figure("dask persisted: no model (sum of features)", rows, 2,
           *best(lambda: ddf[FEATURES].sum().compute(), workers_cpu))
    figure(f"dask persisted: score_mojo_dask ({ddf.npartitions} partitions)", rows, 2,
           *best(lambda: score_mojo_dask(ddf, str(mojo), ["row_id"])["score"].sum().compute(), workers_cpu))
    client.close()


def main(rows: int) -> None:
    directory = Path(os.environ.get("LAKESCORE_BENCH_DIR", "/tmp/lakescore-bench-scoring"))
    directory.mkdir(parents=True, exist_ok=True)
    _, facts, stamp = begin(directory, "")
    mojo = trained_mojo(directory)
    parquet = directory / f"score_{rows}.parquet"
    if not parquet.exists():
        make_frame(rows, 2).drop(columns="y").to_parquet(parquet, row_group_size=max(rows // 8, 1))
    print(f"{rows:,} rows, GBM 20 trees x depth 5, 20 float64 features (2% NaN); {os.cpu_count()} cores")
    spark_figures(mojo, parquet, rows)
    dask_figures(mojo, parquet, rows)
    model_only(mojo, pd.read_parquet(parquet))
    write_results(f"scoring-quick-{rows}", stamp, "\n".join(FIGURES), facts, {"rows": rows, "figures": FIGURES})


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2_000_000)
