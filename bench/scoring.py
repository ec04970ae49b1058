"""Batch scoring rows/s: lakescore on Spark and Dask against its bounds and the usual alternatives.

Why bounds: a scoring job cannot be faster than the model alone (the MOJO scoring preloaded
arrays, one JVM thread, times the cores) nor than the same job without a model (read the input
table, write the output table). lakescore's rows are reported as a fraction of the smaller of the
two (target >= 0.70), and against what a user would otherwise write: a pandas UDF calling
``h2o.mojo_predict_pandas`` and H2O's own in-cluster ``predict``.

Run: ``.venv/bin/python bench/scoring.py --rows 1000000`` (``bench/run.py`` runs it with the rest).
Children (``--child NAME``): ``h2o`` trains the GBM (20 trees x depth 5, 20 numeric features,
binomial), exports the MOJO and times import + predict + export; ``model-only``; ``spark`` (MOJO,
MLlib GBT of the same size, I/O-only, pandas UDF); ``dask`` (MOJO, I/O-only).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import (begin, RESULTS_DIR, close, delta_files, exact_sum, fmt,  # noqa: E402
                           load_average, markdown_table, report, run_child, spread, timed,
                           write_results)

FEATURES = [f"x{i:02d}" for i in range(20)]
TRAIN_ROWS = 50_000
MLLIB_TRAIN_ROWS = 20_000  # the size of the trees, not of the training set, sets the scoring cost
WARMUP_ROWS = 50_000
H2O_PORT = 54621
CORES = 2
TARGET = 0.70
SCORE_TOLERANCE = 1e-9  # relative, on the exact sum of the scores (same MOJO, same rows)
CSV_TOLERANCE = 1e-6  # relative, for alternatives whose scores pass through CSV text
CONSTANTS = {"model_id": "bench-gbm", "run_id": "bench"}


# --- data -------------------------------------------------------------------------------------

def feature_block(n: int, seed: int):
    """``n`` rows of the 20 features: normal, skewed and discrete columns, 1 % missing in five."""
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 20))
    x[:, 5:10] = rng.exponential(size=(n, 5)) * 100.0
    x[:, 10:15] = rng.integers(0, 40, size=(n, 5))
    x[:, :5][rng.random((n, 5)) < 0.01] = np.nan
    return x


def label_of(x) -> Any:
    import numpy as np

    rng = np.random.default_rng(7)
    z = np.nan_to_num(x[:, 0]) - 0.8 * np.nan_to_num(x[:, 1]) * x[:, 2] + 0.01 * x[:, 5] - \
        0.05 * x[:, 10] + np.sin(x[:, 3]) + 0.5 * (x[:, 16] > 0.5)
    return (rng.random(len(x)) < 1 / (1 + np.exp(-z))).astype("int64")


def arrow_rows(first: int, n: int, seed: int):
    import numpy as np
    import pyarrow as pa

    x = feature_block(n, seed)
    columns = {"row_id": pa.array(np.arange(first, first + n, dtype="int64"))}
    columns.update({name: pa.array(x[:, j]) for j, name in enumerate(FEATURES)})
    return pa.table(columns), x


def write_input(path: Path, rows: int, rows_per_file: int, seed: int) -> list[int]:
    """The table to score as a Delta table, one commit (one file) per ``rows_per_file`` rows,
    ``row_id`` ascending through the files; returns each file's row count."""
    from deltalake import write_deltalake

    sizes = []
    for first in range(0, rows, rows_per_file):
        n = min(rows_per_file, rows - first)
        table, _ = arrow_rows(first, n, seed + first // rows_per_file)
        write_deltalake(str(path), table, mode="overwrite" if first == 0 else "append")
        sizes.append(n)
    return sizes


def write_training(path: Path) -> None:
    """50k labelled rows with a time column (MLlib's trainer splits out of time)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    table, x = arrow_rows(0, TRAIN_ROWS, seed=12345)
    start = np.datetime64("2025-01-01T00:00:00", "us")
    seconds = np.random.default_rng(3).integers(0, 365 * 86400, size=TRAIN_ROWS)
    times = start + seconds.astype("timedelta64[s]")  # uniform over 2025: both sides of the split
    table = table.append_column("y", pa.array(label_of(x)))
    table = table.append_column("t", pa.array(times.astype("datetime64[us]"), pa.timestamp("us", tz="UTC")))
    pq.write_table(table, path)


def h2o_slice(files: list, wanted: int) -> tuple[list[str], int]:
    """The first input files holding at least ``wanted`` rows (H2O imports whole files)."""
    names, rows = [], 0
    for name, n in files:
        if rows >= wanted:
            break
        names.append(name)
        rows += n
    return names, rows


def output_checksum(path: str, row_limit: int | None = None) -> dict[str, Any]:
    """Row count, sum of ``row_id`` and exact sum of ``score`` of a written Delta table."""
    from deltalake import DeltaTable

    data = DeltaTable(path).to_pyarrow_table(columns=["row_id", "score"])
    ids = data.column("row_id").to_numpy()
    scores = data.column("score").to_numpy(zero_copy_only=False)
    return {"rows": len(ids), "row_id_sum": int(ids.sum()), "score_sum": exact_sum(scores),
            "score_nulls": int(data.column("score").null_count)}


# --- children ---------------------------------------------------------------------------------

def child_h2o(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Train the GBM and export its MOJO (fixed costs), then time H2O's own batch scoring:
    import the input's Parquet files, predict, export the scores as CSV."""
    import h2o
    import pyarrow.csv as pcsv
    from h2o.estimators import H2OGradientBoostingEstimator

    from engine.conf import H2OConf
    from engine.session import h2o_connection

    started, _ = timed(lambda: h2o_connection(H2OConf(max_mem="4g", nthreads=CORES, port=H2O_PORT)))
    try:
        def train():
            frame = h2o.import_file(str(work / "train.parquet"))
            frame["y"] = frame["y"].asfactor()
            model = H2OGradientBoostingEstimator(ntrees=20, max_depth=5, seed=1)
            model.train(x=FEATURES, y="y", training_frame=frame)
            return model

        trained, model = timed(train)
        (work / "model").mkdir(exist_ok=True)
        mojo = model.download_mojo(str(work / "model" / "gbm.zip"))
        names, rows = h2o_slice(json.loads((work / "input_files.json").read_text()), args.h2o_rows)
        chosen = [str(work / "input" / name) for name in names]
        out_dir = work / "h2o_scores"

        def import_predict_export():
            shutil.rmtree(out_dir, ignore_errors=True)
            frame = h2o.import_file(chosen if len(chosen) > 1 else chosen[0])
            scores = frame["row_id"].cbind(model.predict(frame)["p1"])
            h2o.export_file(scores, str(out_dir), force=True, parts=-1)
            h2o.remove([frame, scores])

        seconds, _ = timed(import_predict_export)
        parts = sorted(p for p in out_dir.iterdir() if not p.name.startswith((".", "_"))) \
            if out_dir.is_dir() else [out_dir]
        import pyarrow as pa

        types = pcsv.ConvertOptions(column_types={"row_id": pa.int64(), "p1": pa.float64()})
        data = pa.concat_tables(pcsv.read_csv(p, convert_options=types) for p in parts)
        check = {"rows": data.num_rows, "row_id_sum": int(data.column("row_id").to_numpy().sum()),
                 "score_sum": exact_sum(data.column("p1").to_numpy())}
    finally:
        h2o.cluster().shutdown()
    return {"mojo": mojo, "start_s": started, "train_s": trained, "rows": rows,
            "predict": {"seconds": spread([seconds]), "check": check}}


def child_model_only(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The model-only bound: ``MojoScorer.scoreColumns`` on Java arrays already in the JVM, one
    thread, and the reference checksums of the whole table and of the slices the alternatives
    score (the input's ``row_id`` runs 0..rows-1 through its files)."""
    import jpype
    import numpy as np
    import pyarrow.parquet as pq

    from engine.scoring.jars import scorer_jars

    mojo = str(work / "model" / "gbm.zip")
    started, _ = timed(lambda: jpype.startJVM(classpath=[str(j) for j in scorer_jars()],
                                             convertStrings=False))
    scorer = jpype.JClass("ai.lakescore.MojoScorer")
    names = jpype.JArray(jpype.JString)(FEATURES)

    def java_columns(table) -> Any:
        return jpype.JArray(jpype.JObject)([
            jpype.JArray(jpype.JDouble)(np.ascontiguousarray(
                table.column(name).to_numpy(zero_copy_only=False), dtype="float64"))
            for name in FEATURES])

    files = json.loads((work / "input_files.json").read_text())
    ids, scores, full_s = [], [], 0.0
    batch = None
    for name, _ in files:
        table = pq.read_table(work / "input" / name)
        columns = java_columns(table)
        if batch is None:  # JIT warm-up on the first file, outside every timing
            scorer.scoreColumns(mojo, names, columns)
            batch = (table.num_rows, columns)
        seconds, out = timed(lambda: scorer.scoreColumns(mojo, names, columns))
        full_s += seconds
        ids.append(table.column("row_id").to_numpy())
        scores.append(np.asarray(out, dtype="float64"))
    rows, columns = batch
    reps = [timed(lambda: scorer.scoreColumns(mojo, names, columns))[0] for _ in range(args.reps)]
    ids, scores = np.concatenate(ids), np.concatenate(scores)
    order = np.argsort(ids, kind="stable")
    ids, scores = ids[order], scores[order]
    sizes = {len(ids), min(args.udf_rows, len(ids)), h2o_slice(files, args.h2o_rows)[1]}
    slices = {str(k): {"rows": k, "row_id_sum": int(ids[:k].sum()), "score_sum": exact_sum(scores[:k])}
              for k in sizes}
    return {"start_s": started, "batch_rows": rows, "seconds": spread(reps),
            "full_pass_s": full_s, "checks": slices}


def _spark_pipelines(backend, inp, out_root: Path, mojo: str, mllib: str | None):
    """Each contender as read → score → write through lakescore's backend, one Delta commit."""
    from pyspark.sql import functions as F

    from engine.storage.table import CommitInfo, TableRef, WriteMode

    def write(frame, name: str):
        ref = TableRef(name=name, path=str(out_root / f"{name}-{uuid.uuid4().hex[:8]}"))
        result = backend.write(frame, ref, WriteMode.OVERWRITE,
                               CommitInfo(job="bench", run_id="bench", engine=backend.name))
        return ref.path, result.rows

    def mojo_run():
        frame = backend.read(inp).frame
        return write(backend.score_mojo(frame, mojo, ["row_id"], CONSTANTS), "spark-mojo")

    def io_run():
        # The MOJO job's output columns (a label too), computed natively from every feature.
        frame = backend.read(inp).frame
        total = sum((F.col(c) for c in FEATURES[1:]), F.col(FEATURES[0])).cast("double")
        return write(frame.select("row_id", total.alias("score"),
                                  F.when(total >= 0, "1").otherwise("0").alias("prediction"))
                     .withColumns({k: F.lit(v) for k, v in CONSTANTS.items()}), "spark-io")

    def mllib_run():
        frame = backend.read(inp).frame
        return write(backend.score_mllib(frame, mllib, ["row_id"], CONSTANTS), "spark-mllib")

    runs = {"mojo": mojo_run, "io": io_run}
    if mllib:
        runs["mllib"] = mllib_run
    return runs


def _rotations(names: list[str], reps: int):
    """Each repetition's order of the contenders, rotated so none always runs first (or always
    after another's garbage)."""
    for rep in range(reps):
        k = rep % len(names)
        yield names[k:] + names[:k]


def _repeat(runs: dict, reps: int) -> dict[str, Any]:
    """``reps`` rounds over every contender, the order rotated each round (so none always runs
    first, after another's garbage), each output checked after its time is taken."""
    names = list(runs)
    results: dict[str, Any] = {n: {"times": [], "checks": []} for n in names}
    for order in _rotations(names, reps):
        for name in order:
            seconds, (path, rows) = timed(runs[name])
            results[name]["times"].append(seconds)
            results[name]["checks"].append(output_checksum(path))
            shutil.rmtree(path, ignore_errors=True)
    for name in names:
        results[name]["seconds"] = spread(results[name]["times"])
    return results


def child_spark(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    from engine.backends.spark import SparkBackend
    from engine.conf import SparkConf
    from engine.session import spark_session
    from engine.storage.table import TableRef

    conf = SparkConf(master=f"local[{CORES}]", shuffle_partitions=4, driver_memory="4g",
                     show_progress=False)
    started, spark = timed(lambda: spark_session(conf))
    backend = SparkBackend(spark)
    mojo = str(work / "model" / "gbm.zip")
    mllib_dir, trained = None, None
    if not args.no_mllib:
        from engine.training import TrainingData, TrainSpec, trainer_for
        from engine.training.split import OutOfTimeSplit

        def train():
            frame = spark.read.parquet(str(work / "train.parquet")).where(f"row_id < {MLLIB_TRAIN_ROWS}")
            spec = TrainSpec(features=tuple(FEATURES), label="y", time_column="t",
                             split=OutOfTimeSplit(datetime(2025, 10, 1, tzinfo=timezone.utc)),
                             params={"ntrees": 20, "max_depth": 5, "seed": 1})
            return trainer_for("mllib_gbt").train(TrainingData((), frame), spec, work / "mllib")

        trained, model = timed(train)
        mllib_dir = str(model.artifact)
    out_root = work / "out-spark"
    warm = _spark_pipelines(backend, TableRef("warmup", str(work / "warmup")), out_root, mojo, mllib_dir)
    warmed, _ = timed(lambda: _repeat(warm, 1))
    runs = _spark_pipelines(backend, TableRef("input", str(work / "input")), out_root, mojo, mllib_dir)
    results = _repeat(runs, args.reps)
    results["pandas_udf"] = _pandas_udf(backend, work, args.udf_rows, mojo, out_root)
    results["pyfunc_udf"] = _pyfunc_udf(backend, work, args.udf_rows, mojo, out_root)
    in_memory = _in_memory(backend, TableRef("input", str(work / "input")), mojo, mllib_dir, args.reps)
    return {"start_s": started, "mllib_train_s": trained, "warmup_s": warmed,
            "partitions": backend.read(TableRef("input", str(work / "input"))).frame.rdd.getNumPartitions(),
            "contenders": results, "in_memory": in_memory}


def _in_memory(backend, inp, mojo: str, mllib: str | None, reps: int) -> dict[str, Any]:
    """Scoring inside Spark without its I/O: the input cached in Spark's memory, the output to
    Spark's ``noop`` sink (every row computed, nothing written). ``base`` is the same pass
    without a model (the cached columns read and projected), so ``mojo - base`` is what the
    model adds. This is where the issue's reference rates (a plain tree walk, MLlib's
    transform) are comparable; the whole jobs above add Parquet and Delta."""
    frame = backend.read(inp).frame.cache()
    frame.count()

    def noop(df) -> None:
        df.write.format("noop").mode("overwrite").save()

    runs = {"base": lambda: noop(frame.select("row_id", *FEATURES)),
            "mojo": lambda: noop(backend.score_mojo(frame, mojo, ["row_id"], CONSTANTS))}
    if mllib:
        runs["mllib"] = lambda: noop(backend.score_mllib(frame, mllib, ["row_id"], CONSTANTS))
    for run in runs.values():  # warm-up
        run()
    names = list(runs)
    times: dict[str, list[float]] = {n: [] for n in names}
    for order in _rotations(names, reps):
        for name in order:
            times[name].append(timed(runs[name])[0])
    frame.unpersist()
    return {name: spread(t) for name, t in times.items()}


def _udf_run(backend, work: Path, rows: int, udf, name: str, out_root: Path, warm_up: bool) -> dict[str, Any]:
    """One timed run of ``udf`` over the 20 features of the rows with ``row_id < rows``, read and
    written through lakescore's storage layer; its output checked and removed."""
    from pyspark.sql import functions as F

    from engine.storage.table import CommitInfo, TableRef, WriteMode

    def run():
        frame = backend.read(TableRef("input", str(work / "input"))).frame.where(F.col("row_id") < rows)
        scored = frame.select("row_id", udf(*[F.col(c) for c in FEATURES]).alias("score"))
        ref = TableRef(name=f"spark-{name}", path=str(out_root / f"{name}-{uuid.uuid4().hex[:8]}"))
        backend.write(scored.withColumns({k: F.lit(v) for k, v in CONSTANTS.items()}), ref,
                      WriteMode.OVERWRITE, CommitInfo(job="bench", run_id="bench", engine="spark"))
        return ref.path

    if warm_up:
        shutil.rmtree(timed(run)[1], ignore_errors=True)
    seconds, path = timed(run)
    check = output_checksum(path)
    shutil.rmtree(path, ignore_errors=True)
    return {"times": [seconds], "seconds": spread([seconds]), "checks": [check], "rows": rows}


def _pandas_udf(backend, work: Path, rows: int, mojo: str, out_root: Path) -> dict[str, Any]:
    """What a user writes without lakescore's scorer: a pandas UDF calling
    ``h2o.mojo_predict_pandas`` (which writes a CSV and runs a new JVM per Arrow batch)."""
    from pyspark.sql.functions import pandas_udf

    from engine.scoring.jars import GENMODEL_JAR

    @pandas_udf("double")
    def predict(*columns):
        import h2o
        import pandas as pd

        frame = pd.concat(columns, axis=1)
        frame.columns = FEATURES
        return h2o.mojo_predict_pandas(frame, mojo, genmodel_jar_path=str(GENMODEL_JAR))["p1"].astype("float64")

    return _udf_run(backend, work, rows, predict, "udf", out_root, warm_up=False)


def _pyfunc_udf(backend, work: Path, rows: int, mojo: str, out_root: Path) -> dict[str, Any]:
    """lakescore's MLflow pyfunc flavor (engine.scoring.flavor) as ``mlflow.pyfunc.spark_udf``:
    rows go to Python workers by Arrow and through JPype to the same Java scorer. Warmed up
    once: the workers' JVMs start (JPype) on their first batch."""
    import mlflow

    from engine.scoring.flavor import mlmodel_for_mojo

    model_dir = work / "pyfunc-model"
    if not model_dir.exists():
        model_dir.mkdir()
        shutil.copy(mojo, model_dir / Path(mojo).name)
        mlmodel_for_mojo(model_dir / Path(mojo).name, model_dir)
    udf = mlflow.pyfunc.spark_udf(backend.spark, str(model_dir), result_type="double", env_manager="local")
    return _udf_run(backend, work, rows, udf, "pyfunc", out_root, warm_up=True)


def child_dask(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np

    from engine.backends.dask import DaskBackend
    from engine.conf import DaskConf
    from engine.scoring.dask import LABEL_DTYPE, labels
    from engine.session import dask_client
    from engine.storage.table import CommitInfo, TableRef, WriteMode

    conf = DaskConf(n_workers=CORES, threads_per_worker=1, memory_limit="5GiB", show_progress=False)
    started, client = timed(lambda: dask_client(conf))
    backend = DaskBackend(client, owns_client=True, show_progress=False)
    mojo = str(work / "model" / "gbm.zip")
    out_root = work / "out-dask"

    def pipelines(inp):
        def write(frame, name):
            ref = TableRef(name=name, path=str(out_root / f"{name}-{uuid.uuid4().hex[:8]}"))
            result = backend.write(frame, ref, WriteMode.OVERWRITE,
                                   CommitInfo(job="bench", run_id="bench", engine="dask"))
            return ref.path, result.rows

        def mojo_run():
            return write(backend.score_mojo(backend.read(inp).frame, mojo, ["row_id"], CONSTANTS), "dask-mojo")

        def io_run():
            # The MOJO job's output columns (a label too), computed natively from every feature.
            frame = backend.read(inp).frame
            total = frame[FEATURES].sum(axis=1)
            label = total.map_partitions(  # built as the scorer builds its labels
                lambda t: labels((t >= 0).to_numpy(dtype=np.int32), ("0", "1"), t.index),
                meta=("prediction", LABEL_DTYPE))
            return write(frame[["row_id"]].assign(score=total, prediction=label, **CONSTANTS), "dask-io")

        return {"mojo": mojo_run, "io": io_run}

    try:
        warmed, _ = timed(lambda: _repeat(pipelines(TableRef("warmup", str(work / "warmup"))), 1))
        inp = TableRef("input", str(work / "input"))
        results = _repeat(pipelines(inp), args.reps)
        partitions = backend.read(inp).frame.npartitions
    finally:
        backend.close()
    return {"start_s": started, "warmup_s": warmed, "partitions": partitions, "contenders": results}


CHILDREN = {"h2o": child_h2o, "model-only": child_model_only, "spark": child_spark, "dask": child_dask}


# --- parent -----------------------------------------------------------------------------------

def prepare(work: Path, rows: int) -> dict[str, Any]:
    files = max(2, min(16, rows // 500_000))
    per_file = -(-rows // files)
    t = time.perf_counter()
    sizes = write_input(work / "input", rows, per_file, seed=1000)
    write_input(work / "warmup", WARMUP_ROWS, WARMUP_ROWS, seed=999)
    write_training(work / "train.parquet")
    import pyarrow.parquet as pq

    # the log's file order is not row order: order the files by their first row_id
    firsts = sorted((pq.read_table(path, columns=["row_id"]).column(0)[0].as_py(), Path(path).name)
                    for path in delta_files(work / "input"))
    (work / "input_files.json").write_text(json.dumps([[name, n] for (_, name), n in zip(firsts, sizes)]))
    return {"files": files, "rows_per_file": per_file, "generate_s": time.perf_counter() - t}


def checks_agree(check: dict, reference: dict, tolerance: float) -> bool:
    return (check["rows"] == reference["rows"] and check["row_id_sum"] == reference["row_id_sum"]
            and check.get("score_nulls", 0) == 0 and close(check["score_sum"], reference["score_sum"], tolerance))


def rate(rows: int, seconds: dict | None) -> float | None:
    return rows / seconds["median"] if seconds and seconds["median"] else None


def summarize(rows: int, args: argparse.Namespace, parts: dict[str, Any]) -> dict[str, Any]:
    """Rows/s of every contender, each checked against the model-only reference first, and the
    ratios: lakescore rows over min(model-only bound, the engine's I/O-only bound) and over
    each alternative."""
    model = parts.get("model-only", {})
    refs = model.get("checks", {}) if model.get("ok") else {}
    table: list[dict[str, Any]] = []

    def add(engine: str, contender: str, facts: dict | None, n: int, kind: str, tolerance: float):
        if not facts:
            return
        ref = refs.get(str(n))
        if kind == "mllib":  # another model: only the rows can be compared
            ok = bool(ref) and all(c["rows"] == ref["rows"] and c["row_id_sum"] == ref["row_id_sum"]
                                   for c in facts["checks"])
        else:
            ok = bool(ref) and all(checks_agree(c, ref, tolerance) for c in facts["checks"])
        table.append({"engine": engine, "contender": contender, "kind": kind, "rows": n,
                      "seconds": facts["seconds"], "rows_per_s": rate(n, facts["seconds"]),
                      "check_ok": ok, "checks": facts["checks"]})

    if model.get("ok"):
        table.append({"engine": "jvm", "contender": f"model-only bound (1 thread x {CORES})",
                      "kind": "model_bound", "rows": model["batch_rows"], "seconds": model["seconds"],
                      "rows_per_s": rate(model["batch_rows"], model["seconds"]) * CORES,
                      "check_ok": True, "checks": []})
    for engine in ("spark", "dask"):
        got = parts.get(engine, {})
        if not got.get("ok"):
            continue
        c = got["contenders"]
        add(engine, f"lakescore {engine.capitalize()} + MOJO", c.get("mojo"), rows, "lakescore", SCORE_TOLERANCE)
        add(engine, "lakescore Spark + MLlib GBT", c.get("mllib"), rows, "mllib", 0)
        add(engine, f"I/O-only bound ({engine.capitalize()}, no model)", c.get("io"), rows, "io_bound", float("inf"))
        if "pandas_udf" in c:
            add(engine, "pandas UDF + h2o.mojo_predict_pandas", c["pandas_udf"],
                min(args.udf_rows, rows), "alternative", CSV_TOLERANCE)
        if "pyfunc_udf" in c:
            add(engine, "lakescore MLflow pyfunc (spark_udf + JPype)", c["pyfunc_udf"],
                min(args.udf_rows, rows), "alternative", SCORE_TOLERANCE)
    h2o = parts.get("h2o", {})
    if h2o.get("ok"):
        add("h2o", "H2O import + predict + export", h2o["predict"] | {"checks": [h2o["predict"]["check"]]},
            h2o["rows"], "alternative", CSV_TOLERANCE)
    for row in table:
        if row["kind"] == "io_bound":  # its score is a sum of features, not the model's: rows only
            row["check_ok"] = all(c["rows"] == rows and c["score_nulls"] == 0 for c in row["checks"])

    def best(kind: str, engine: str | None = None) -> float | None:
        rates = [r["rows_per_s"] for r in table if r["kind"] == kind and r["check_ok"]
                 and (engine is None or r["engine"] == engine) and r["rows_per_s"]]
        return rates[0] if rates else None

    model_bound = best("model_bound")
    in_memory = in_memory_rates(rows, parts.get("spark", {}))
    # MLlib's GBT is another model: its model-only bound is its own transform on cached rows
    # (what it adds to the pass without a model), times the cores.
    mllib_own = (in_memory.get("mllib") or {}).get("model_rows_per_s_core")
    alternatives = {r["contender"]: r["rows_per_s"] for r in table
                    if r["kind"] == "alternative" and r["check_ok"]}
    for row in table:
        if row["kind"] not in ("lakescore", "mllib"):
            continue
        io = best("io_bound", row["engine"])
        model = mllib_own * CORES if row["kind"] == "mllib" and mllib_own else model_bound
        bound = min(b for b in (model, io) if b) if (model or io) else None
        ok = row["check_ok"] and row["rows_per_s"]
        row["bound_rows_per_s"] = bound
        row["vs_bound"] = row["rows_per_s"] / bound if ok and bound else None
        row["vs_alternatives"] = {name: row["rows_per_s"] / alt for name, alt in alternatives.items()} if ok else {}
    return {"rows": rows, "table": table, "in_memory": in_memory}


def in_memory_rates(rows: int, spark: dict[str, Any]) -> dict[str, Any]:
    """Per core, rows/s of each in-memory pass (cached input -> noop sink), and of what the
    model adds to the pass without one (rows / (t - t_base))."""
    got = spark.get("in_memory") if spark.get("ok") else None
    if not got:
        return {}
    base = got["base"]["median"]
    out = {}
    for name, seconds in got.items():
        added = seconds["median"] - base
        out[name] = {"seconds": seconds, "rows_per_s_core": rows / seconds["median"] / CORES,
                     "model_rows_per_s_core": rows / added / CORES if name != "base" and added > 0 else None}
    return out


IN_MEMORY_NAMES = {"base": "no model (cached columns read, projected)", "mojo": "lakescore Spark + MOJO",
                   "mllib": "lakescore Spark + MLlib GBT"}


def in_memory_markdown(result: dict[str, Any]) -> str:
    rates = result.get("in_memory") or {}
    rows = [[IN_MEMORY_NAMES.get(name, name), fmt(r["seconds"]["min"]), fmt(r["seconds"]["median"]),
             fmt(r["rows_per_s_core"], 0), fmt(r["model_rows_per_s_core"], 0) if r["model_rows_per_s_core"] else "-"]
            for name, r in rates.items()]
    headers = ["Spark, cached input -> noop sink", "s min", "s median", "rows/s/core",
               "model's own rows/s/core (rows / (s - s no model))"]
    return markdown_table(headers, rows) if rows else ""


def scoring_markdown(result: dict[str, Any]) -> str:
    rows = []
    alt_names = [r["contender"] for r in result["table"] if r["kind"] == "alternative"]
    for r in result["table"]:
        vs_alt = r.get("vs_alternatives", {})
        rows.append([r["contender"], f"{r['rows']:,}", fmt(r["seconds"]["min"]), fmt(r["seconds"]["median"]),
                     fmt(r["rows_per_s"], 0), fmt((r["rows_per_s"] or 0) / CORES, 0) if r["kind"] != "model_bound" else "-",
                     fmt(r.get("vs_bound")), *[fmt(vs_alt.get(a)) for a in alt_names],
                     "yes" if r["check_ok"] else "NO"])
    headers = ["contender", "rows", "s min", "s median", "rows/s", "rows/s/core",
               f"x min(bounds) (target >= {TARGET})", *[f"x {a}" for a in alt_names], "check ok"]
    return markdown_table(headers, rows)


def fixed_costs(parts: dict[str, Any]) -> list[str]:
    out = []
    names = {"start_s": "start", "train_s": "H2O GBM training", "mllib_train_s": "MLlib GBT training",
             "warmup_s": "warm-up (50k rows, every contender)", "full_pass_s": "full pass (reference scores)"}
    for child, facts in parts.items():
        if facts.get("ok"):
            costs = ", ".join(f"{label} {facts[k]:.1f} s" for k, label in names.items() if facts.get(k) is not None)
            extra = f", {facts['partitions']} partitions" if "partitions" in facts else ""
            out.append(f"- {child}: {costs}{extra}; process wall {facts['wall_s']:.1f} s")
        else:
            out.append(f"- {child}: FAILED ({facts.get('error', '?')[:400]})")
    return out


def run_scoring(rows: int, reps: int, h2o_rows: int, udf_rows: int, work: Path, logs: Path,
                no_mllib: bool = False, timeout: float = 1800) -> dict[str, Any]:
    """Generate, run every child, check and summarize; the result is plain JSON."""
    work.mkdir(parents=True, exist_ok=True)
    prepared = prepare(work, rows)
    common = ["--workdir", str(work), "--rows", str(rows), "--reps", str(reps),
              "--h2o-rows", str(h2o_rows), "--udf-rows", str(udf_rows)] + (["--no-mllib"] if no_mllib else [])
    parts: dict[str, Any] = {}
    for child in CHILDREN:  # h2o first: it exports the MOJO the others score with
        print(f"# scoring: {child} ... (load {load_average()})", flush=True)
        parts[child] = run_child([__file__, "--child", child, *common], logs / f"scoring-{child}.log", timeout)
        if child == "h2o" and not parts[child]["ok"]:
            print(f"# scoring: no model, stopping: {parts[child]['error']}")
            break
    args = argparse.Namespace(rows=rows, udf_rows=udf_rows, h2o_rows=h2o_rows)
    summary = summarize(rows, args, parts)
    return {"prepared": prepared, "parts": parts, **summary, "load_average_end": load_average()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--h2o-rows", type=int, default=2_000_000,
                        help="rows H2O imports and predicts (whole input files, at least this many)")
    parser.add_argument("--udf-rows", type=int, default=200_000, help="rows the pandas UDF scores")
    parser.add_argument("--no-mllib", action="store_true")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--child", choices=CHILDREN, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        report(CHILDREN[args.child](args.workdir, args))
        return
    work, facts, stamp = begin(args.workdir, "lakescore-bench-scoring-")
    result = run_scoring(args.rows, args.reps, args.h2o_rows, args.udf_rows, work,
                         RESULTS_DIR / f"logs-{stamp}", args.no_mllib)
    text = (scoring_markdown(result) + "\n\n" + in_memory_markdown(result)
            + "\n\nFixed costs (not in the rates):\n" + "\n".join(fixed_costs(result["parts"])))
    print(text)
    write_results(f"scoring-{args.rows}", stamp, text, facts, result)
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
