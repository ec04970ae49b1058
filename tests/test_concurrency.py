"""Racing writers on both engines: exactly one lands per conflict, the other fails with
CommitConflict (exit 5) naming the table and the version, nothing is lost, and a rerun of the
loser completes.

The races are deterministic: ``LAKESCORE_TEST_COMMIT_GATE`` holds a writer just before its commit
(after it computed its batch from a version and wrote its files) until the test opens the gate,
which it does only once the rival has committed. In-process writers are threads of this process
(the session's SparkSession and Dask cluster); the merge job that loses to a compaction runs as a
real job process per engine, and while it is held at the gate the test also lists the sockets its
process tree listens on (every one must bind 127.0.0.1) and, after it, greps every output of the
job for the fake secrets it was given (none may appear).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from deltalake import DeltaTable, write_deltalake

from clusters import listening_addresses
from engine.errors import CommitConflict
from engine.storage import maintenance
from engine.storage.commit_hooks import COMMIT_GATE_ENV
from engine.storage.table import CommitInfo, TableRef, WriteMode

REPO = Path(__file__).resolve().parents[1]
KEYS = ("customer_id", "as_of")


# --- the gate ----------------------------------------------------------------------------------

def wait_for(path: Path, what: str, timeout: float = 300, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: the process ended (exit {proc.returncode}) before it")
        assert time.monotonic() < deadline, f"{what}: {path} did not appear in {timeout} s"
        time.sleep(0.05)


def race(gate: Path, winner: Callable[[], object], loser: Callable[[], object]) -> dict:
    """Run both writers as threads held at the commit gate; let ``winner`` commit first, then
    ``loser``. Returns each one's result or exception."""
    outcome: dict[str, object] = {}

    def run(name: str, work: Callable[[], object]) -> None:
        try:
            outcome[name] = work()
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            outcome[name] = exc

    threads = {name: threading.Thread(target=run, args=(name, work), name=name)
               for name, work in (("winner", winner), ("loser", loser))}
    for thread in threads.values():
        thread.start()
    pid = os.getpid()
    for name in threads:  # both computed their batch and wrote their files: neither committed
        wait_for(gate / f"ready-{pid}-{name}", f"{name} at the gate")
    (gate / f"go-{pid}-winner").touch()
    threads["winner"].join(300)
    (gate / f"go-{pid}-loser").touch()
    threads["loser"].join(300)
    assert not any(t.is_alive() for t in threads.values())
    return outcome


@pytest.fixture
def gate(tmp_path, monkeypatch) -> Callable[[str], Path]:
    def hold(table: str) -> Path:
        folder = tmp_path / f"gate-{table}"
        folder.mkdir()
        monkeypatch.setenv(COMMIT_GATE_ENV, f"{table}:{folder}")
        return folder
    return hold


# --- frames on either engine -------------------------------------------------------------------

def rows(ids, value: float = 0.0, **constant) -> pd.DataFrame:
    ids = list(ids)
    frame = pd.DataFrame({
        "customer_id": pd.Series(ids, dtype="int64"),
        "as_of": pd.Series([pd.Timestamp("2026-11-01", tz="UTC")] * len(ids)).astype("datetime64[us, UTC]"),
        "value": [float(i) + value for i in ids],
    })
    for column, item in constant.items():
        frame[column] = item
    return frame


def backend_of(engine_name, request):
    from engine.backends.dask import DaskBackend
    from engine.backends.spark import SparkBackend

    if engine_name == "spark":
        return SparkBackend(request.getfixturevalue("spark"))
    return DaskBackend(request.getfixturevalue("dask_cluster_client"), show_progress=False)


def frame_of(engine_name, pdf: pd.DataFrame, request):
    if engine_name == "spark":
        return request.getfixturevalue("spark").createDataFrame(pdf)
    import dask.dataframe as dd

    return dd.from_pandas(pdf, npartitions=2)


def on_disk(path: Path) -> pd.DataFrame:
    return DeltaTable(str(path)).to_pandas().sort_values(list(KEYS)).reset_index(drop=True)


def assert_conflict(error: object, table: str, version: int) -> None:
    assert isinstance(error, CommitConflict), repr(error)
    assert CommitConflict.exit_code == 5
    message = str(error)
    assert table in message and f"version {version}" in message, message


# --- two score jobs for the same model and date ----------------------------------------------

def test_two_score_writes_of_one_model_and_date_one_lands_the_other_conflicts(
        engine_name, request, tmp_path, gate):
    """What the score stage does: replace the (score_date, model_id) partitions, with the app
    transaction of (model, scoring-set version), computed from the same scores version."""
    backend = backend_of(engine_name, request)
    table = TableRef("scores", str(tmp_path / "scores"), partition_by=("score_date", "model_id"))
    earlier = rows(range(5), score_date="2026-10-31", model_id="churn/1")
    backend.write(frame_of(engine_name, earlier, request), table, WriteMode.APPEND,
                  CommitInfo("score", "r0", engine_name))
    today = dict(score_date="2026-11-01", model_id="churn/1")

    def score(run: str, value: float):
        commit = CommitInfo("score", run, engine_name, app_id="lakescore:score:scores:churn/1@3",
                            batch=0)
        frame = frame_of(engine_name, rows(range(100, 110), value, **today), request)
        return lambda: backend.write(frame, table, WriteMode.REPLACE_PARTITIONS, commit)

    outcome = race(gate("scores"), score("A", 0.5), score("B", 0.25))
    assert outcome["winner"].version == 1
    assert_conflict(outcome["loser"], "scores", 1)
    result = on_disk(tmp_path / "scores")
    assert len(result) == 15 and result["customer_id"].is_unique
    assert (result.loc[result["score_date"] == "2026-11-01", "value"] % 1 == 0.5).all()  # A's rows
    # the loser's rerun completes: its (model, input) batch is already in the table, so it is skipped
    os.environ.pop(COMMIT_GATE_ENV)
    again = score("B", 0.25)()
    assert again.skipped and DeltaTable(table.path).version() == 1


# --- two feature jobs writing the same table ---------------------------------------------------

def test_two_feature_writes_of_one_table_one_lands_the_other_conflicts(
        engine_name, request, tmp_path, gate):
    """What build_features does: overwrite the feature table, app transaction per run."""
    backend = backend_of(engine_name, request)
    table = TableRef("training_set", str(tmp_path / "training_set"))
    backend.write(frame_of(engine_name, rows(range(20)), request), table, WriteMode.OVERWRITE,
                  CommitInfo("features", "r0", engine_name, app_id="lakescore:features:r0", batch=0))

    def features(run: str, value: float):
        commit = CommitInfo("features", run, engine_name, app_id=f"lakescore:features:{run}",
                            batch=0)
        frame = frame_of(engine_name, rows(range(30), value), request)
        return lambda: backend.write(frame, table, WriteMode.OVERWRITE, commit)

    outcome = race(gate("training_set"), features("A", 0.5), features("B", 0.25))
    assert outcome["winner"].version == 1
    assert_conflict(outcome["loser"], "training_set", 0)  # "changed since version 0"
    assert "changed since version 0" in str(outcome["loser"])
    assert (on_disk(tmp_path / "training_set")["value"] % 1 == 0.5).all()
    os.environ.pop(COMMIT_GATE_ENV)
    again = features("B", 0.25)()  # the rerun recomputes from version 1 and lands
    assert again.version == 2
    result = on_disk(tmp_path / "training_set")
    assert len(result) == 30 and (result["value"] % 1 == 0.25).all()


# --- a compaction racing a merge -----------------------------------------------------------------

def small_files_table(path: Path) -> TableRef:
    """A keyed table of 60 rows in three small files (so compaction has work)."""
    for part in range(3):
        write_deltalake(str(path), rows(range(part * 20, part * 20 + 20)), mode="append")
    return TableRef("merge_target", str(path), keys=KEYS)


def compact(backend, table: TableRef, run: str):
    return maintenance.compact(table, backend.rewrite_files,
                               CommitInfo("maintain", run, backend.name),
                               target_bytes=64 * 1024 * 1024, min_files=2)


def upsert_batch() -> pd.DataFrame:
    """Keys 10..29 changed (value + 0.5), keys 60..64 new."""
    return pd.concat([rows(range(10, 30), 0.5), rows(range(60, 65), 0.5)], ignore_index=True)


def assert_merged(path: Path) -> None:
    result = on_disk(path)
    assert result["customer_id"].tolist() == list(range(65))  # nothing lost, nothing twice
    changed = result["customer_id"].between(10, 29) | (result["customer_id"] >= 60)
    assert (result.loc[changed, "value"] % 1 == 0.5).all()
    assert (result.loc[~changed, "value"] % 1 == 0).all()


def test_a_merge_committed_first_makes_a_racing_compaction_conflict(
        engine_name, request, tmp_path, gate):
    backend = backend_of(engine_name, request)
    table = small_files_table(tmp_path / "merge_target")
    batch = frame_of(engine_name, upsert_batch(), request)
    commit = CommitInfo("merge", "m1", engine_name, app_id="merge:m1", batch=0)
    outcome = race(gate("merge_target"),
                   lambda: backend.write(batch, table, WriteMode.MERGE, commit),
                   lambda: compact(backend, table, "c1"))
    assert outcome["winner"].version == 3
    assert_conflict(outcome["loser"], "merge_target", 2)  # "between version 2 and 3"
    assert_merged(tmp_path / "merge_target")
    os.environ.pop(COMMIT_GATE_ENV)
    again = compact(backend, table, "c1")  # the rerun compacts what the merge left
    assert again.version == 4 and again.rows == 65
    assert_merged(tmp_path / "merge_target")


# --- a compaction racing a merge job: the job exits 5, its rerun completes --------------------
# While the merge job is held at its commit, its servers are up: the sockets are listed then.

TOKEN = "tok-planted-9f3a51c7e2"
STORAGE_SECRET = "sek-planted-4b2d88e0aa"


def merge_job(lakehouse: Path, engine_name: str, env: dict[str, str]) -> subprocess.Popen:
    argv = [sys.executable, "tests/chaos/chaos.py", "merge-step", "--conf", "conf/test.yaml",
            "--engine", engine_name, "--run-id", "merge-1", "--set", f"lakehouse={lakehouse}",
            "--set", "spark.show_progress=false", "--set", "dask.show_progress=false",
            "--set", f"storage_options.AWS_SECRET_ACCESS_KEY={STORAGE_SECRET}"]
    return subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


@pytest.fixture(scope="module", params=["spark", "dask"])
def raced_merge_job(request, tmp_path_factory):
    """A merge job (tests/chaos/chaos.py merge-step, a real job process) held at its commit while
    this process compacts the same table; then released (it must exit 5), then rerun."""
    engine_name = request.param
    backend = backend_of(engine_name, request)
    lakehouse = tmp_path_factory.mktemp(f"raced-{engine_name}")
    tables = lakehouse / "tables"
    table = small_files_table(tables / "merge_target")
    write_deltalake(str(tables / "merge_batch"), upsert_batch())
    gate = lakehouse / "gate"
    gate.mkdir()
    env = dict(os.environ, SPARK_LOCAL_IP="127.0.0.1", PYSPARK_PYTHON=sys.executable,
               PYSPARK_DRIVER_PYTHON=sys.executable, PYTHONPATH=str(REPO),
               MLFLOW_TRACKING_TOKEN=TOKEN)
    started = time.perf_counter()
    proc = merge_job(lakehouse, engine_name, {**env, COMMIT_GATE_ENV: f"merge_target:{gate}"})
    try:
        wait_for(gate / f"ready-{proc.pid}-MainThread", "the merge job at its commit", proc=proc)
        listeners = listening_addresses([proc.pid])
        compaction = compact(backend, table, "c1")  # the rival commits while the merge waits
        (gate / f"go-{proc.pid}-MainThread").touch()
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
            proc.wait()
    rerun = merge_job(lakehouse, engine_name, env)
    rerun_out, _ = rerun.communicate(timeout=600)
    return dict(engine=engine_name, lakehouse=lakehouse, listeners=listeners,
                compaction=compaction, code=proc.returncode, out=out, rerun_code=rerun.returncode,
                rerun_out=rerun_out, seconds=time.perf_counter() - started)


@pytest.mark.slow
def test_a_merge_job_that_loses_to_a_compaction_exits_5_and_its_rerun_completes(raced_merge_job):
    job = raced_merge_job
    assert job["compaction"].version == 3 and job["compaction"].rows == 60
    assert job["code"] == 5, job["out"][-3000:]
    assert "CommitConflict" in job["out"] and "merge_target" in job["out"], job["out"][-3000:]
    assert "changed since version 2" in job["out"], job["out"][-3000:]
    assert job["rerun_code"] == 0, job["rerun_out"][-3000:]
    assert_merged(job["lakehouse"] / "tables" / "merge_target")
    assert DeltaTable(str(job["lakehouse"] / "tables" / "merge_target")).version() == 4


@pytest.mark.slow
def test_every_server_a_job_starts_listens_on_loopback_only(raced_merge_job):
    """The sockets the merge job's process tree listened on while it waited at its commit
    (Spark's driver RPC and block manager; Dask's scheduler, dashboard, nannies and workers).
    tests/test_environment.py checks the same of the Spark UI and H2O as the session code starts
    them."""
    listening = raced_merge_job["listeners"]
    addresses = [a for found in listening.values() for a in found]
    if raced_merge_job["engine"] == "spark":
        assert any(name.startswith("java") for name in listening), listening
    else:
        assert len(addresses) >= 3, listening
    outside = [a for a in addresses if not a.startswith(("127.0.0.1:", "::ffff:127.0.0.1:", "::1:"))]
    assert not outside, f"servers bound beyond loopback: {listening}"


def every_output(lakehouse: Path) -> dict[str, str]:
    """Every file the jobs left in the lakehouse that is text (summaries, manifests, Delta
    logs, reports), by path."""
    found = {}
    for path in lakehouse.rglob("*"):
        if path.is_file() and path.suffix in {".json", ".yaml", ".txt", ".log", ".crc", ".html", ""}:
            found[str(path.relative_to(lakehouse))] = path.read_text(errors="replace")
    return found


@pytest.mark.slow
def test_planted_secrets_appear_in_no_output(raced_merge_job):
    job = raced_merge_job
    outputs = every_output(job["lakehouse"])
    assert any("_delta_log" in p for p in outputs) and any("summary.json" in p for p in outputs)
    assert any("manifest.json" in p for p in outputs), sorted(outputs)
    outputs["job output (failed run)"] = job["out"]
    outputs["job output (rerun)"] = job["rerun_out"]
    for secret in (TOKEN, STORAGE_SECRET):
        leaks = [path for path, text in outputs.items() if secret in text]
        assert not leaks, f"{secret} found in {leaks}"
