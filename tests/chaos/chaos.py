"""`make chaos`: real jobs killed at random moments, rerun, and every output table checked.

    python tests/chaos/chaos.py [--cycles 20] [--engines spark,dask] [--kinds features,score,...]
                                [--seed 7] [--only K] [--workdir DIR] [--keep]

A cycle copies a prepared lakehouse, starts one job as a process of its own (``features``,
``score``, ``compact``: maintain's compaction, or ``merge``: an upsert through the storage layer),
SIGKILLs the job's whole process group (the Python driver, Spark's JVM, the Dask cluster's
workers) at a random moment, reruns the job with the same run id to completion and then checks
every table the job writes:

- every version of the table is readable by ``deltalake`` (a commit that names a file that is
  not there, or a log entry that does not parse, is a half-visible commit), and the newest by the
  other engine too;
- each key exactly once, and the rows equal to those of a clean reference run of the same job
  on the same engine (only run ids may differ): rows lost or duplicated are counted;
- the files left in the table's folder that no version references are orphans only: a vacuum
  with zero retention removes them and leaves exactly the newest version's files, still readable.

Every draw of a cycle comes from its own generator seeded by (seed, cycle), so ``--only K`` replays
cycle K alone. The reference runs and the prepared lakehouse are made once per invocation.
Exit 0 when no cycle lost or duplicated a row or broke a check, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

CONF = "conf/test.yaml"
KEYS = ("customer_id", "as_of")


@dataclass(frozen=True)
class Output:
    """A table a job writes (a folder under ``<lakehouse>/tables``), its key, and the columns
    that legitimately differ between two runs of the same input (the run id)."""

    table: str
    keys: tuple[str, ...]
    varying: tuple[str, ...] = ()


@dataclass(frozen=True)
class Kind:
    name: str
    argv: tuple[str, ...]
    outputs: tuple[Output, ...]


KINDS = {
    "features": Kind("features", ("-m", "jobs.features"), (Output("training_set", KEYS),)),
    "score": Kind("score", ("-m", "jobs.score", "--model", "churn/1"), (
        Output("scoring_set", KEYS),
        Output("scores", (*KEYS, "model_id"), varying=("run_id",)),
        Output("drift_metrics", ("model_id", "scoring_table", "feature"), varying=("run_id",)))),
    "compact": Kind("compact", ("-m", "jobs.maintain", "--compact-only", "--table", "labels"),
                    (Output("labels", KEYS),)),
    "merge": Kind("merge", ("tests/chaos/chaos.py", "merge-step"), (Output("merge_target", KEYS),)),
}


@dataclass
class CycleResult:
    index: int
    engine: str
    kind: str
    kill_at: float
    fraction: float
    outcome: str = ""
    where: str = ""
    rerun_code: int | None = None
    rows: int = 0
    expected: int = 0
    lost: int = 0
    duplicated: int = 0
    orphans: int = 0
    versions: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.problems) and self.rerun_code == 0


# --- processes ---------------------------------------------------------------------------------

def job_env() -> dict[str, str]:
    env = dict(os.environ, SPARK_LOCAL_IP="127.0.0.1", PYSPARK_PYTHON=sys.executable,
               PYSPARK_DRIVER_PYTHON=sys.executable, PYTHONPATH=str(REPO))
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def job_argv(kind: Kind, lakehouse: Path, engine: str, run_id: str, h2o_port: int) -> list[str]:
    return [sys.executable, *kind.argv, "--conf", CONF, "--engine", engine, "--run-id", run_id,
            "--set", f"lakehouse={lakehouse}", "--set", f"h2o.port={h2o_port}",
            "--set", "spark.show_progress=false", "--set", "dask.show_progress=false"]


def run_to_end(argv: list[str], log: Path, timeout: float = 900) -> tuple[int, float]:
    start = time.perf_counter()
    with log.open("a") as out:
        proc = subprocess.run(argv, cwd=REPO, env=job_env(), stdout=out, stderr=subprocess.STDOUT,
                              timeout=timeout, start_new_session=True)
    return proc.returncode, time.perf_counter() - start


def run_and_kill(argv: list[str], log: Path, kill_at: float) -> tuple[str, str]:
    """Start the job in a new process group and SIGKILL the whole group after ``kill_at``
    seconds; returns the outcome and the job's last log line before the kill."""
    with log.open("a") as out:
        proc = subprocess.Popen(argv, cwd=REPO, env=job_env(), stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = proc.wait(timeout=kill_at)
            outcome = f"finished first (exit {code})"
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            outcome = "killed"
    # Every process of the group must be gone before the rerun starts (Spark's JVM, Dask workers).
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _group_alive(proc.pid):
        time.sleep(0.2)
    lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    return outcome, (lines[-1][:120] if lines else "")


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


# --- the prepared lakehouse ------------------------------------------------------------------

def prepare_base(base: Path, log: Path, h2o_port: int) -> None:
    """Demo tables at test size, a training set and a model (churn/1), then four small appends
    to ``labels`` (new work for ``features``, small files for ``compact``) and a keyed table
    ``merge_target`` with the batch ``merge_batch`` to upsert into it."""
    import pyarrow as pa
    import pyarrow.compute as pc
    from deltalake import DeltaTable, write_deltalake

    steps = [(KINDS["features"], "spark"), (Kind("train", ("-m", "jobs.train"), ()), "spark")]
    code, _ = run_to_end([sys.executable, "-m", "jobs.generate", "--conf", CONF,
                          "--set", f"lakehouse={base}"], log)
    if code:
        raise SystemExit(f"chaos: preparing the lakehouse failed at generate; see {log}")
    for kind, engine in steps:
        code, _ = run_to_end(job_argv(kind, base, engine, f"base-{kind.name}", h2o_port), log)
        if code:
            raise SystemExit(f"chaos: preparing the lakehouse failed at {kind.name}; see {log}")
    tables = base / "tables"
    labels = DeltaTable(str(tables / "labels")).to_pyarrow_table()
    ids = labels["customer_id"]
    for part in range(4):
        chosen = labels.filter(pc.equal(pc.remainder(ids, 40), part * 10))
        shifted = chosen.set_column(chosen.schema.get_field_index("as_of"), "as_of",
                                    pc.add(chosen["as_of"], pa.scalar(86_400_000_000, pa.duration("us"))))
        write_deltalake(str(tables / "labels"), shifted, mode="append")
    training = DeltaTable(str(tables / "training_set")).to_pyarrow_table()
    for part in range(3):  # three files, so the merge touches some and not others
        write_deltalake(str(tables / "merge_target"),
                        training.filter(pc.equal(pc.remainder(training["customer_id"], 3), part)),
                        mode="append")
    changed = training.filter(pc.equal(pc.remainder(training["customer_id"], 4), 0))
    changed = changed.set_column(changed.schema.get_field_index("amount_sum_30d"), "amount_sum_30d",
                                 pc.add(pc.fill_null(changed["amount_sum_30d"], 0.0), 1.0))
    new = training.filter(pc.equal(pc.remainder(training["customer_id"], 8), 1))
    new = new.set_column(new.schema.get_field_index("as_of"), "as_of",
                         pc.add(new["as_of"], pa.scalar(3_600_000_000, pa.duration("us"))))
    write_deltalake(str(tables / "merge_batch"), pa.concat_tables([changed, new]), mode="overwrite")


def merge_step(argv: list[str]) -> int:
    """The ``merge`` kind's job: upsert ``merge_batch`` into ``merge_target`` on (customer_id,
    as_of) through the engine's write path, as one idempotent commit of this run id."""
    from engine.cli import job_parser, run_job
    from engine.storage.table import CommitInfo, TableRef, WriteMode
    from jobs._backend import backend_for

    def body(conf, ctx, args) -> None:
        root = Path(conf.resolve(conf.lakehouse)) / "tables"
        target = TableRef(name="merge_target", path=str(root / "merge_target"), keys=KEYS)
        with backend_for(conf) as backend, ctx.summary.stage("merge", backend.name) as record:
            batch = backend.read(TableRef(name="merge_batch", path=str(root / "merge_batch")))
            commit = CommitInfo(job="merge", run_id=ctx.run_id, engine=backend.name,
                                app_id=f"chaos:merge:{ctx.run_id}", batch=0)
            result = backend.write(batch.frame, target, WriteMode.MERGE, commit)
            record.rows_out = result.rows
            record.written[target.name] = result.version

    return run_job("merge", job_parser("chaos merge step"), body, argv)


# --- checks ----------------------------------------------------------------------------------

def read_version(path: Path, version: int):
    from deltalake import DeltaTable

    return DeltaTable(str(path), version=version).to_pyarrow_table().to_pandas()


def canonical(frame, output: Output):
    """Rows sorted by key, run-dependent columns dropped, and each column in one representation
    whichever reader made it: numbers as they are, timestamps as UTC instants, anything else
    (dates, strings, partition values) as text, so that deltalake's, Spark's and Dask's readings
    of the same rows compare equal."""
    import pandas as pd

    frame = frame.drop(columns=[c for c in output.varying if c in frame.columns])
    frame = frame[sorted(frame.columns)].copy()
    for column in frame.columns:
        values = frame[column]
        if pd.api.types.is_datetime64_any_dtype(values):
            frame[column] = pd.to_datetime(values, utc=True).astype("datetime64[us, UTC]")
        elif not (pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values)):
            frame[column] = values.map(lambda v: None if v is None or v is pd.NA or v != v else str(v))
    return frame.sort_values(list(output.keys)).reset_index(drop=True)


def referenced_files(path: Path) -> tuple[set[str], set[str], int]:
    """(files of any version, files of the newest version, newest version), as paths relative
    to the table root."""
    from deltalake import DeltaTable

    latest = DeltaTable(str(path))
    newest = latest.version()
    every: set[str] = set()
    current: set[str] = set()
    for version in range(newest + 1):
        try:
            # As the log spells them: a partition value's escapes (churn%2F1) are on disk too.
            files = set(DeltaTable(str(path), version=version).file_uris())
        except Exception:  # noqa: BLE001 - a version before a checkpoint's cleanup
            continue
        rel = {str(Path(f).relative_to(path)) if f.startswith("/") else f for f in files}
        every |= rel
        if version == newest:
            current = rel
    return every, current, newest


def data_files(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*.parquet")
            if "_delta_log" not in p.parts}


def check_log(path: Path) -> list[str]:
    """Every commit file in the log parses, line by line (a torn commit would not)."""
    problems = []
    for entry in sorted((path / "_delta_log").glob("*.json")):
        for number, line in enumerate(entry.read_text().splitlines(), 1):
            try:
                json.loads(line)
            except ValueError:
                problems.append(f"{path.name}: {entry.name} line {number} does not parse")
    return problems


def check_output(path: Path, output: Output, reference, other_read, result: CycleResult) -> None:
    import pandas as pd

    result.problems.extend(check_log(path))
    every, current, newest = referenced_files(path)
    result.versions += newest + 1
    frame = None
    for version in range(newest + 1):
        try:
            frame = read_version(path, version)
        except Exception as exc:  # noqa: BLE001 - reported, not raised: the table is broken
            frame = None
            result.problems.append(f"{path.name} v{version} unreadable by deltalake: "
                                   f"{str(exc).splitlines()[0]}")
    if frame is None:  # the newest version cannot be read: nothing more to compare
        return
    keys = list(output.keys)
    counts = frame.groupby(keys, dropna=False).size()
    expected = reference.groupby(keys, dropna=False).size()
    both = pd.concat([counts.rename("got"), expected.rename("want")], axis=1).fillna(0)
    result.rows += len(frame)
    result.expected += len(reference)
    result.lost += int((both["want"] - both["got"]).clip(lower=0).sum())
    result.duplicated += int((both["got"] - both["want"]).clip(lower=0).sum())
    if not result.lost and not result.duplicated:
        got, want = canonical(frame, output), canonical(reference, output)
        try:
            pd.testing.assert_frame_equal(got, want, check_exact=True, check_dtype=False)
        except AssertionError as exc:
            result.problems.append(f"{path.name}: values differ from the reference run: "
                                   f"{str(exc).splitlines()[0]}")
        try:
            other = canonical(other_read(path), output)
            pd.testing.assert_frame_equal(other, want, check_exact=True, check_dtype=False)
        except Exception as exc:  # noqa: BLE001
            result.problems.append(f"{path.name}: the other engine reads it differently: "
                                   f"{str(exc).splitlines()[0]}")
    on_disk = data_files(path)
    missing = current - on_disk
    if missing:
        result.problems.append(f"{path.name}: newest version names {len(missing)} missing files")
    result.orphans += len(on_disk - every)
    vacuum_and_check(path, current, result)


def vacuum_and_check(path: Path, current: set[str], result: CycleResult) -> None:
    from engine.storage import maintenance
    from engine.storage.table import TableRef

    before = read_version(path, referenced_files(path)[2])
    maintenance.vacuum(TableRef(name=path.name, path=str(path)), 0, enforce_retention=False)
    left = data_files(path)
    if left != current:
        result.problems.append(f"{path.name}: after vacuum {len(left - current)} unreferenced files "
                               f"remain, {len(current - left)} referenced files are gone")
    after = read_version(path, referenced_files(path)[2])
    if len(after) != len(before):
        result.problems.append(f"{path.name}: vacuum changed the newest version's rows")


# --- the run ---------------------------------------------------------------------------------

class OtherEngine:
    """Reads a table's newest version with the engine that did not write it (one session each,
    started on first use)."""

    def __init__(self) -> None:
        self._backends = {}

    def reader(self, engine: str):
        other = "dask" if engine == "spark" else "spark"
        return lambda path: self.read(other, path)

    def read(self, engine: str, path: Path):
        from engine.backend import open_backend
        from engine.conf import load_conf
        from engine.storage.table import TableRef

        if engine not in self._backends:
            conf = load_conf(str(REPO / CONF), overrides=[
                "spark.show_progress=false", "dask.show_progress=false", "spark.master=local[1]",
                "dask.n_workers=1"])
            self._backends[engine] = open_backend(engine, conf)
        frame = self._backends[engine].read(TableRef(name=path.name, path=str(path))).frame
        return frame.toPandas() if hasattr(frame, "toPandas") else frame.compute()

    def close(self) -> None:
        for backend in self._backends.values():
            backend.close()


def draw(seed: int, index: int, engines: list[str], kinds: list[str], cycles: int) -> tuple[str, str, float]:
    rng = random.Random(f"{seed}:{index}")
    engine = engines[index // cycles]
    return engine, rng.choice(kinds), rng.uniform(0.02, 1.0)


def run(args: argparse.Namespace) -> int:
    engines = args.engines.split(",")
    kinds = args.kinds.split(",")
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise SystemExit(f"chaos: unknown kind(s) {unknown}; known: {sorted(KINDS)}")
    total = args.cycles * len(engines)
    indices = [args.only] if args.only is not None else list(range(total))
    draws = {i: draw(args.seed, i, engines, kinds, args.cycles) for i in indices}
    work = Path(args.workdir or tempfile.mkdtemp(prefix="lakescore-chaos-"))
    work.mkdir(parents=True, exist_ok=True)
    logs = work / "logs"
    logs.mkdir(exist_ok=True)
    h2o_port = free_port()
    started = time.perf_counter()
    print(f"chaos: seed {args.seed}, {len(indices)} cycle(s) over {engines}, kinds {kinds}; "
          f"work in {work}", flush=True)
    base = work / "base"
    if not (base / "tables" / "merge_batch").exists():
        shutil.rmtree(base, ignore_errors=True)
        prepare_base(base, logs / "prepare.log", h2o_port)

    references: dict[tuple[str, str], tuple[float, dict]] = {}
    other = OtherEngine()
    results: list[CycleResult] = []
    try:
        for index in indices:
            engine, kind_name, fraction = draws[index]
            kind = KINDS[kind_name]
            if (engine, kind_name) not in references:
                ref = work / f"reference-{engine}-{kind_name}"
                shutil.rmtree(ref, ignore_errors=True)
                shutil.copytree(base, ref)
                code, seconds = run_to_end(job_argv(kind, ref, engine, "reference", h2o_port),
                                           logs / f"reference-{engine}-{kind_name}.log")
                if code:
                    raise SystemExit(f"chaos: the clean reference run of {kind_name} on {engine} "
                                     f"failed (exit {code}); see {logs}")
                references[(engine, kind_name)] = (seconds, {
                    o.table: read_version(ref / "tables" / o.table,
                                          referenced_files(ref / "tables" / o.table)[2])
                    for o in kind.outputs})
                shutil.rmtree(ref, ignore_errors=True)
            seconds, expected = references[(engine, kind_name)]
            result = CycleResult(index=index, engine=engine, kind=kind_name,
                                 kill_at=fraction * seconds, fraction=fraction)
            lake = work / f"cycle-{index}"
            shutil.rmtree(lake, ignore_errors=True)
            shutil.copytree(base, lake)
            log = logs / f"cycle-{index}.log"
            run_id = f"chaos-{args.seed}-{index}"
            argv = job_argv(kind, lake, engine, run_id, h2o_port)
            result.outcome, result.where = run_and_kill(argv, log, result.kill_at)
            for o in kind.outputs:  # between the kill and the rerun: whole versions only
                path = lake / "tables" / o.table
                if (path / "_delta_log").exists():
                    result.problems.extend(check_log(path))
            result.rerun_code, _ = run_to_end(argv, log)
            if result.rerun_code == 0:
                for o in kind.outputs:
                    check_output(lake / "tables" / o.table, o, expected[o.table],
                                 other.reader(engine), result)
            else:
                result.problems.append(f"the rerun exited {result.rerun_code}; see {log}")
            results.append(result)
            print(row(result), flush=True)
            if not args.keep and result.ok:
                shutil.rmtree(lake, ignore_errors=True)
    finally:
        other.close()
    print(table(results, time.perf_counter() - started))
    (work / "chaos.json").write_text(json.dumps([r.__dict__ | {"ok": r.ok} for r in results],
                                                indent=1, default=str))
    return 0 if all(r.ok for r in results) else 1


def row(r: CycleResult) -> str:
    status = "ok" if r.ok else "FAILED: " + "; ".join(r.problems)
    return (f"cycle {r.index:3d} {r.engine:5s} {r.kind:8s} kill at {r.kill_at:5.1f} s "
            f"({r.fraction:4.0%}) {r.outcome:22s} rerun exit {r.rerun_code}  rows {r.rows}/{r.expected}"
            f"  lost {r.lost} dup {r.duplicated}  versions {r.versions}  orphans {r.orphans}  {status}")


def table(results: list[CycleResult], seconds: float) -> str:
    lines = ["", "| engine | kind | cycles | killed | finished first | rows lost | rows duplicated "
                 "| orphan files (vacuumed) | failed cycles |",
             "|---|---|---|---|---|---|---|---|---|"]
    groups: dict[tuple[str, str], list[CycleResult]] = {}
    for r in results:
        groups.setdefault((r.engine, r.kind), []).append(r)
    for (engine, kind), rs in sorted(groups.items()):
        lines.append(f"| {engine} | {kind} | {len(rs)} | {sum(r.outcome == 'killed' for r in rs)} | "
                     f"{sum(r.outcome != 'killed' for r in rs)} | {sum(r.lost for r in rs)} | "
                     f"{sum(r.duplicated for r in rs)} | {sum(r.orphans for r in rs)} | "
                     f"{sum(not r.ok for r in rs)} |")
    failed = [r.index for r in results if not r.ok]
    lines.append(f"\n{len(results)} cycles in {seconds:.0f} s: "
                 + (f"FAILED cycles {failed} (replay one with --only K)" if failed
                    else "0 rows lost, 0 duplicated, every check held"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["merge-step"]:
        return merge_step(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=20, help="cycles per engine")
    parser.add_argument("--engines", default="spark,dask")
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--only", type=int, help="replay this cycle index alone")
    parser.add_argument("--workdir", help="keep the prepared lakehouse here (reused when present)")
    parser.add_argument("--keep", action="store_true", help="keep every cycle's lakehouse")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
