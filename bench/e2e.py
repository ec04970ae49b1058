"""End to end: Delta events + rows to score → windowed features → point-in-time join → MOJO → Delta.

What a batch-scoring job costs a user from ``python job.py`` to the committed table: lakescore on
Spark and on Dask (its real code path: ``Backend.read``, ``training_set``, ``score_mojo``,
``write``) against the same job hand-written in DuckDB (one SQL range join with filtered
aggregates, the MOJO scored through JPype's ``MojoScorer.scoreColumns`` on the result's Arrow
columns, ``deltalake.write_deltalake``). Wall time is measured by the parent around each child
process (interpreter, imports, engine start, work); the child also times its own work (read →
write) and its start-up.

Run: ``.venv/bin/python bench/e2e.py --events 2000000`` (``bench/run.py`` runs it with the rest).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.features import DEFINITION, FEATURES, duckdb_features_sql  # noqa: E402
from bench.harness import (begin, RESULTS_DIR, close, delta_files, exact_sum, fmt,  # noqa: E402
                           load_average, markdown_table, report, run_child, timed, write_results)

CORES = 2
H2O_PORT = 54622
TRAIN_SPINE_ROWS = 20_000
TOLERANCE = 1e-6  # relative, on the exact sum of the scores
KEEP = ["row_id", "customer_id", "as_of"]
CONSTANTS = {"model_id": "bench-e2e", "run_id": "bench"}
YEAR_US = 365 * 86_400 * 1_000_000
START_US = int(datetime(2025, 1, 1, tzinfo=timezone.utc).timestamp() * 1_000_000)


# --- data -------------------------------------------------------------------------------------

def events_table(n: int, customers: int, seed: int):
    """Events over 2025; amounts are whole cents, so every engine's sums are exact whatever
    their order, and the features (hence the scores) can be compared across engines."""
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    activity = rng.pareto(2.0, size=customers) + 0.2  # some customers buy far more than others
    customer = rng.choice(customers, size=n, p=activity / activity.sum()).astype("int64")
    times = START_US + rng.integers(0, YEAR_US, size=n)
    amount = np.round(rng.lognormal(8.0, 1.0, size=n))
    order = np.lexsort((times, customer))
    return pa.table({"customer_id": customer[order],
                     "event_time": pa.array(times[order], pa.timestamp("us", tz="UTC")),
                     "amount": amount[order]})


def spine_table(n: int, customers: int, seed: int, first_row: int = 0):
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    return pa.table({"row_id": np.arange(first_row, first_row + n, dtype="int64"),
                     "customer_id": rng.integers(0, customers, size=n).astype("int64"),
                     "as_of": pa.array(START_US + 30 * 86_400_000_000 + rng.integers(0, YEAR_US - 30 * 86_400_000_000, size=n),
                                       pa.timestamp("us", tz="UTC"))})


def write_delta(path: Path, table, files: int) -> None:
    from deltalake import write_deltalake

    per_file = -(-table.num_rows // files)
    for i, first in enumerate(range(0, table.num_rows, per_file)):
        write_deltalake(str(path), table.slice(first, per_file), mode="overwrite" if i == 0 else "append")


# --- the hand-written DuckDB job (its features: features.duckdb_features_sql) --------------------------------------------------------------

def score_arrow(table, mojo: str, batch_rows: int = 1_000_000):
    """Scores of an Arrow table's feature columns through ``MojoScorer.scoreColumns`` (one JVM
    thread, nulls as NaN), batch by batch so no Java array exceeds ``batch_rows``."""
    import jpype
    import numpy as np

    from engine.scoring.jars import scorer_jars

    if not jpype.isJVMStarted():
        jpype.startJVM(classpath=[str(j) for j in scorer_jars()], convertStrings=False)
    scorer = jpype.JClass("ai.lakescore.MojoScorer")
    names = jpype.JArray(jpype.JString)(FEATURES)
    out = []
    for first in range(0, table.num_rows, batch_rows):
        part = table.slice(first, batch_rows)
        columns = jpype.JArray(jpype.JObject)([
            jpype.JArray(jpype.JDouble)(np.ascontiguousarray(
                part.column(name).cast("float64").to_numpy(zero_copy_only=False), dtype="float64"))
            for name in FEATURES])
        out.append(np.asarray(scorer.scoreColumns(mojo, names, columns), dtype="float64"))
    return np.concatenate(out) if out else np.array([], dtype="float64")


# --- children ---------------------------------------------------------------------------------

def child_model(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The GBM the contenders score with (20 trees x depth 5 on the 9 features), trained on
    DuckDB's features of a separate spine with a label that depends on recent activity."""
    import duckdb
    import h2o
    import numpy as np
    import pyarrow as pa
    from h2o.estimators import H2OGradientBoostingEstimator

    from engine.conf import H2OConf
    from engine.session import h2o_connection

    spine = spine_table(TRAIN_SPINE_ROWS, args.customers, seed=77, first_row=10**9)
    train_spine = work / "train_spine.parquet"
    import pyarrow.parquet as pq

    pq.write_table(spine, train_spine)
    con = duckdb.connect()
    con.execute(f"SET threads={CORES}; SET TimeZone='UTC'")
    features = con.sql(duckdb_features_sql(delta_files(work / "events"), [str(train_spine)])).to_arrow_table()
    rng = np.random.default_rng(5)
    recent = features.column("amount_count_30d").to_numpy().astype("float64")
    before = features.column("amount_count_90d").to_numpy().astype("float64")
    z = 1.0 - 0.6 * recent + 0.1 * before + rng.normal(size=len(recent))
    labelled = features.select(FEATURES).append_column("y", pa.array((z > 0).astype("int64")))
    pq.write_table(labelled, work / "train.parquet")
    started, _ = timed(lambda: h2o_connection(H2OConf(max_mem="2g", nthreads=CORES, port=H2O_PORT)))
    try:
        frame = h2o.import_file(str(work / "train.parquet"))
        frame["y"] = frame["y"].asfactor()
        model = H2OGradientBoostingEstimator(ntrees=20, max_depth=5, seed=1)
        trained, _ = timed(lambda: model.train(x=FEATURES, y="y", training_frame=frame))
        mojo = model.download_mojo(str(work / "gbm.zip"))
    finally:
        h2o.cluster().shutdown()
    return {"mojo": mojo, "start_s": started, "train_s": trained}


class Phases:
    """Driver wall time of the job's phases, on the epoch clock (the one Spark's stage times and
    Dask's task stream use), so that each task can be placed in the phase it ran in."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, float, float]] = []

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.time()
        try:
            yield
        finally:
            self.spans.append((name, start, time.time()))

    def timing(self, module: Any, function: str, name: str) -> None:
        """Time every call of ``module.function`` as phase ``name`` (e.g. the commit inside the
        write): the real function runs; only a clock is put around it."""
        real = getattr(module, function)

        def timed_call(*args: Any, **kwargs: Any) -> Any:
            with self.phase(name):
                return real(*args, **kwargs)

        setattr(module, function, timed_call)


def union_seconds(intervals: list[tuple[float, float]]) -> float:
    """Seconds covered by at least one of the (start, stop) intervals."""
    total, reach = 0.0, float("-inf")
    for start, stop in sorted(intervals):
        if stop > reach:
            total += stop - max(start, reach)
            reach = stop
    return total


def breakdown(spans: list[tuple[str, float, float]], tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per phase: the driver's wall time, the time some task was running (the union of the
    tasks' spans that end in the phase), the rest (driver-only: planning, listing, footers,
    commit), and the task time summed per kind of task. A nested phase (the commit inside the
    write) is reported on its own and subtracted from its parent."""
    rows = []
    for name, start, stop in spans:
        inner = [(s, e) for n, s, e in spans if n != name and start <= s and e <= stop]
        inside = [t for t in tasks if start <= t["stop"] <= stop
                  and not any(s <= t["stop"] <= e for s, e in inner)]
        kinds: dict[str, float] = {}
        for t in inside:
            kinds[t["kind"]] = kinds.get(t["kind"], 0.0) + t["seconds"]
        wall = (stop - start) - sum(e - s for s, e in inner)
        busy = min(wall, union_seconds([(max(t["start"], start), t["stop"]) for t in inside]))
        rows.append({"phase": name, "wall_s": wall, "tasks_s": busy, "driver_only_s": wall - busy,
                     "task_kinds_s": dict(sorted(kinds.items(), key=lambda kv: -kv[1])), "start": start})
    return sorted(rows, key=lambda row: row["start"])


def _lakescore(backend, work: Path, phases: Phases) -> tuple[dict[str, Any], Any]:
    """The job twice in this process: cold (what a job pays: the engine's first queries, the
    workers' imports and JVMs) and warm (the same job again), each with its phases."""
    from engine.features.definitions import load_feature_set
    from engine.storage import batch
    from engine.storage.table import CommitInfo, TableRef, WriteMode

    definition = load_feature_set(DEFINITION)
    if sorted(definition.feature_names()) != sorted(FEATURES):
        raise SystemExit(f"the definition's features {definition.feature_names()} are not {FEATURES}")
    phases.timing(batch, "commit_files", "commit")

    def job(out: TableRef):
        with phases.phase("read"):
            events = backend.read(TableRef(name="events", path=str(work / "events"))).frame
            spine = backend.read(TableRef(name="to_score", path=str(work / "to_score"))).frame
        with phases.phase("features"):
            features = backend.training_set(definition, events, spine)
        with phases.phase("score"):
            scored = backend.score_mojo(features, str(work / "gbm.zip"), KEEP, CONSTANTS)
        with phases.phase("write"):
            return backend.write(scored, out, WriteMode.OVERWRITE,
                                 CommitInfo(job="bench-e2e", run_id="bench", engine=backend.name))

    runs: dict[str, Any] = {}
    outputs = {}
    for run in ("cold", "warm"):
        out = TableRef(name=f"scores_{backend.name}_{run}", path=str(work / f"scores_{backend.name}_{run}"))
        shutil.rmtree(out.path, ignore_errors=True)
        seconds, _ = timed(lambda: job(out))
        runs[run] = {"seconds": seconds, "spans": list(phases.spans)}
        outputs[run] = out.path
        phases.spans.clear()
    return runs, outputs["cold"]


def spark_tasks(spark) -> list[dict[str, Any]]:
    """Every completed stage of the session from Spark's status store, as a "task" span: its
    submission to completion, its name, and its executors' summed run time."""
    sc = spark.sparkContext
    jvm = sc._jvm
    stages = sc._jsc.sc().statusStore().stageList(
        jvm.java.util.ArrayList(), False, False, sc._gateway.new_array(jvm.double, 0), jvm.java.util.ArrayList())
    out = []
    for i in range(stages.size()):
        stage = stages.apply(i)
        if not (stage.submissionTime().isDefined() and stage.completionTime().isDefined()):
            continue
        name = stage.name()
        if name.startswith("$anonfun$withThreadLocalCaptured"):  # a query stage adaptive execution ran
            name = "adaptive query stage"
        out.append({"kind": f"stage {stage.stageId()}: {name}, {stage.numTasks()} tasks",
                    "seconds": stage.executorRunTime() / 1000,
                    "start": stage.submissionTime().get().getTime() / 1000,
                    "stop": stage.completionTime().get().getTime() / 1000})
    return out


def child_spark(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    from engine.backends.spark import SparkBackend
    from engine.conf import SparkConf
    from engine.session import spark_session

    conf = SparkConf(master=f"local[{CORES}]", shuffle_partitions=4, driver_memory="4g", show_progress=False)
    started, spark = timed(lambda: spark_session(conf))
    runs, path = _lakescore(SparkBackend(spark), work, Phases())
    tasks = spark_tasks(spark)
    return {"start_s": started, "seconds": runs["cold"]["seconds"], "warm_s": runs["warm"]["seconds"],
            "output": path, "breakdown": breakdown(runs["cold"]["spans"], tasks),
            "warm_breakdown": breakdown(runs["warm"]["spans"], tasks)}


def dask_tasks(stream: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The task stream's computations (transfers and spills are inside a task's span too) with
    their kind: the task key's name without its token and index."""
    from dask.utils import key_split

    out = []
    for task in stream:
        for part in task["startstops"]:
            if part["action"] == "compute":
                out.append({"kind": key_split(task["key"]), "seconds": part["stop"] - part["start"],
                            "start": part["start"], "stop": part["stop"]})
    return out


def worker_jvm_starts(client) -> dict[str, float | None]:
    """Seconds each worker spent starting its scoring JVM (None: it started none)."""
    def started() -> float | None:
        from engine.scoring import dask as scoring

        return scoring.jvm_start_seconds

    return client.run(started)


def child_dask(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    from distributed import get_task_stream

    from engine.backends.dask import DaskBackend
    from engine.conf import DaskConf
    from engine.session import dask_client

    conf = DaskConf(n_workers=CORES, threads_per_worker=1, memory_limit="5GiB", show_progress=False)
    started, client = timed(lambda: dask_client(conf))
    backend = DaskBackend(client, owns_client=True, show_progress=False)
    try:
        with get_task_stream(client) as stream:
            runs, path = _lakescore(backend, work, Phases())
        jvm = worker_jvm_starts(client)
    finally:
        backend.close()
    tasks = dask_tasks(stream.data)
    return {"start_s": started, "seconds": runs["cold"]["seconds"], "warm_s": runs["warm"]["seconds"],
            "output": path, "worker_jvm_start_s": jvm, "breakdown": breakdown(runs["cold"]["spans"], tasks),
            "warm_breakdown": breakdown(runs["warm"]["spans"], tasks)}


def child_duckdb(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    import duckdb
    import pyarrow as pa
    from deltalake import write_deltalake

    out = work / "scores_duckdb"
    shutil.rmtree(out, ignore_errors=True)

    def start():  # the scoring JVM counts as start-up, as Spark's JVM does in its session start
        import jpype

        from engine.scoring.jars import scorer_jars

        jpype.startJVM(classpath=[str(j) for j in scorer_jars()], convertStrings=False)
        con = duckdb.connect()
        con.execute(f"SET threads={CORES}; SET TimeZone='UTC'")
        return con

    started, con = timed(start)
    phases = Phases()

    def job():
        with phases.phase("features"):
            features = con.sql(duckdb_features_sql(delta_files(work / "events"),
                                                   delta_files(work / "to_score"))).to_arrow_table()
        with phases.phase("score"):
            scores = score_arrow(features, str(work / "gbm.zip"))
        with phases.phase("write"):
            table = features.select(KEEP).append_column("score", pa.array(scores))
            for name, value in CONSTANTS.items():
                table = table.append_column(name, pa.array([value] * table.num_rows, pa.string()))
            write_deltalake(str(out), table, mode="overwrite")

    seconds, _ = timed(job)
    return {"start_s": started, "seconds": seconds, "output": str(out), "breakdown": breakdown(phases.spans, [])}


CHILDREN = {"model": child_model, "lakescore-spark": child_spark, "lakescore-dask": child_dask,
            "duckdb": child_duckdb}
CONTENDERS = ["duckdb", "lakescore-spark", "lakescore-dask"]


# --- parent -----------------------------------------------------------------------------------

def output_check(path: str) -> dict[str, Any]:
    from deltalake import DeltaTable

    data = DeltaTable(path).to_pyarrow_table(columns=["row_id", "score"])
    return {"rows": data.num_rows, "row_id_sum": int(data.column("row_id").to_numpy().sum()),
            "score_sum": exact_sum(data.column("score").to_numpy(zero_copy_only=False)),
            "score_nulls": data.column("score").null_count}


def run_e2e(events: int, work: Path, logs: Path, timeout: float = 1800) -> dict[str, Any]:
    """Generate, train, run each contender in its own process, check outputs against DuckDB's."""
    work.mkdir(parents=True, exist_ok=True)
    customers = max(100, events // 100)
    rows = max(1000, events // 10)
    t = time.perf_counter()
    write_delta(work / "events", events_table(events, customers, seed=11), files=8)
    write_delta(work / "to_score", spine_table(rows, customers, seed=12), files=2)
    generated = time.perf_counter() - t
    common = ["--workdir", str(work), "--customers", str(customers)]
    parts: dict[str, Any] = {}
    for name in ["model", *CONTENDERS]:
        print(f"# e2e: {name} ... (load {load_average()})", flush=True)
        parts[name] = run_child([__file__, "--child", name, *common], logs / f"e2e-{name}.log", timeout)
        if name == "model" and not parts[name]["ok"]:
            print(f"# e2e: no model, stopping: {parts[name]['error']}")
            break
    reference = None
    for name in CONTENDERS:
        part = parts.get(name, {})
        if part.get("ok"):
            part["check"] = output_check(part["output"])
            if name == "duckdb":
                reference = part["check"]
    for name in CONTENDERS:
        part = parts.get(name, {})
        if part.get("ok"):
            c = part["check"]
            part["check_ok"] = (reference is not None and c["rows"] == rows == reference["rows"]
                                and c["row_id_sum"] == reference["row_id_sum"] and c["score_nulls"] == 0
                                and close(c["score_sum"], reference["score_sum"], TOLERANCE))
    for part in parts.values():  # the warm rerun (lakescore's children) is not part of the job's wall time
        if "wall_s" in part:
            part["job_wall_s"] = part["wall_s"] - (part.get("warm_s") or 0.0)
    fastest = min((p["job_wall_s"] for n, p in parts.items() if n in CONTENDERS and p.get("check_ok")), default=None)
    duck = parts.get("duckdb", {})
    table = []
    for name in CONTENDERS:
        p = parts.get(name, {})
        ok = bool(p.get("ok") and p.get("check_ok"))
        table.append({"contender": name, "ok": ok, "wall_s": p.get("job_wall_s"), "work_s": p.get("seconds"),
                      "warm_s": p.get("warm_s"), "start_s": p.get("start_s"),
                      "vs_duckdb_wall": p["job_wall_s"] / duck["job_wall_s"] if ok and duck.get("check_ok") else None,
                      "vs_duckdb_work": p["seconds"] / duck["seconds"] if ok and duck.get("check_ok") else None,
                      "rows_per_s_wall": rows / p["job_wall_s"] if ok else None, "error": p.get("error")})
    return {"events": events, "rows": rows, "customers": customers, "generate_s": generated,
            "parts": parts, "table": table, "fastest_wall_s": fastest, "load_average_end": load_average()}


def e2e_markdown(result: dict[str, Any]) -> str:
    rows = [[r["contender"], fmt(r["wall_s"], 1), fmt(r["start_s"], 1), fmt(r["work_s"], 1), fmt(r["warm_s"], 1),
             fmt(r["vs_duckdb_wall"]), fmt(r["vs_duckdb_work"]), fmt(r["rows_per_s_wall"], 0),
             "reference" if r["contender"] == "duckdb" and r["ok"] else ("= duckdb" if r["ok"] else "FAILED/MISMATCH")]
            for r in result["table"]]
    return "\n\n".join([
        markdown_table(["contender", "wall s (process)", "start s", "work s (read → Delta)",
                        "work s, again (warm)", "wall x duckdb", "work x duckdb", "rows/s (wall)", "check"], rows),
        "Where the time goes, in seconds. *tasks*: some task or stage was running; *driver*: only "
        "the driver was (planning, listing, footers, commit); *warm*: the same phase when the job runs "
        "a second time in the same process; the biggest kinds of task (cold run) by summed time:",
        where_markdown(result)])


def where_markdown(result: dict[str, Any]) -> str:
    """One row per contender and part of its process: interpreter and imports, engine start, each
    phase of the job (see ``breakdown``), cold and warm, and on Dask the workers' scoring JVM start."""
    rows = []
    for name in CONTENDERS:
        part = result["parts"].get(name, {})
        if not part.get("ok"):
            continue
        rows.append([name, "python, imports, exit", fmt(part["job_wall_s"] - part["start_s"] - part["seconds"], 1),
                     "", "", "", "", ""])
        rows.append([name, "engine start", fmt(part["start_s"], 1), "", "", "", "", ""])
        warm = {phase["phase"]: phase for phase in part.get("warm_breakdown", [])}
        for phase in part.get("breakdown", []):
            again = warm.get(phase["phase"], {})
            kinds = ", ".join(f"{kind} {seconds:.1f}" for kind, seconds in list(phase["task_kinds_s"].items())[:4])
            rows.append([name, phase["phase"], fmt(phase["wall_s"], 1), fmt(phase["tasks_s"], 1),
                         fmt(phase["driver_only_s"], 1), fmt(again.get("wall_s"), 1),
                         fmt(again.get("driver_only_s"), 1), kinds])
        jvm = [s for s in (part.get("worker_jvm_start_s") or {}).values() if s is not None]
        if jvm:
            rows.append([name, "scoring JVM start, per worker (in the score phase's preflight)",
                         " / ".join(f"{s:.1f}" for s in jvm), "", "", "", "", ""])
    return markdown_table(["contender", "part", "wall s", "tasks s", "driver s", "warm wall s", "warm driver s",
                           "task kinds (summed s)"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=3_000_000, help="rows to score: events / 10")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--customers", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child", choices=CHILDREN, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        report(CHILDREN[args.child](args.workdir, args))
        return
    work, facts, stamp = begin(args.workdir, "lakescore-bench-e2e-")
    result = run_e2e(args.events, work, RESULTS_DIR / f"logs-{stamp}")
    text = e2e_markdown(result)
    print(text)
    write_results(f"e2e-{args.events}", stamp, text, facts, result)
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
