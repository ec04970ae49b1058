"""Rows/s of MOJO scoring, 1M rows, a 20-tree depth-5 H2O GBM: Spark Java UDF vs Dask + JPype.

Not a test: run by hand (`.venv/bin/python bench/scoring_quick.py [rows]`); it starts its own
H2O (port 54391), SparkSession (local[2]) and Dask cluster (2 workers x 1 thread), one at a time.
Reports the best of a few warm runs; the machine is shared, so expect noise.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from engine.conf import DaskConf, H2OConf, SparkConf
from engine.session import dask_client, h2o_connection, prepare_process_env, spark_session

prepare_process_env()


def make_frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "row_id": np.arange(n, dtype="int64"),
        "x1": rng.normal(size=n), "x2": rng.exponential(size=n) * 100,
        "x3": rng.integers(0, 50, size=n).astype("float64"),
        "segment": rng.choice(["a", "b", "c", "d"], size=n).astype(object),
    })
    frame.loc[rng.random(n) < 0.05, "x1"] = np.nan
    logit = 0.8 * frame["x1"].fillna(0) - 0.01 * frame["x2"] + (frame["segment"] == "b") * 1.2
    frame["y"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return frame


def best_of(runs: int, fn) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main(rows: int) -> None:
    directory = Path(tempfile.mkdtemp(prefix="lakescore-bench-"))
    import h2o
    from h2o.estimators import H2OGradientBoostingEstimator

    h2o_connection(H2OConf(max_mem="2g", nthreads=2, port=54391))
    make_frame(100_000, 1).to_parquet(directory / "train.parquet")
    train = h2o.import_file(str(directory / "train.parquet"))
    train["y"] = train["y"].asfactor()
    model = H2OGradientBoostingEstimator(ntrees=20, max_depth=5, seed=1)
    model.train(x=["x1", "x2", "x3", "segment"], y="y", training_frame=train)
    mojo = model.download_mojo(str(directory / "gbm.zip"))
    h2o.cluster().shutdown()
    make_frame(rows, 2).to_parquet(directory / "score.parquet", row_group_size=rows // 8)

    from engine.scoring.spark import score_mojo_spark

    spark = spark_session(SparkConf(master="local[2]", shuffle_partitions=4, driver_memory="2g",
                                    show_progress=False))
    frame = spark.read.parquet(str(directory / "score.parquet")).repartition(4).cache()
    frame.count()
    baseline = best_of(3, lambda: frame.select("row_id", "x1").write.format("noop").mode("overwrite").save())
    udf = best_of(3, lambda: score_mojo_spark(frame, mojo, ["row_id"]).write.format("noop")
                  .mode("overwrite").save())
    print(f"spark local[2] java udf: {rows / udf:,.0f} rows/s ({udf:.2f} s; no-model baseline {baseline:.2f} s)")
    frame.unpersist()
    spark.stop()

    import dask.dataframe as dd

    from engine.scoring.dask import score_mojo_dask

    client = dask_client(DaskConf(n_workers=2, threads_per_worker=1, memory_limit="3GiB", show_progress=False))
    ddf = dd.read_parquet(str(directory / "score.parquet"), split_row_groups=True).persist()
    ddf.x1.sum().compute()
    scored = best_of(3, lambda: score_mojo_dask(ddf, mojo, ["row_id"])["score"].sum().compute())
    print(f"dask 2x1 jpype: {rows / scored:,.0f} rows/s ({scored:.2f} s, {ddf.npartitions} partitions)")
    client.close()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
