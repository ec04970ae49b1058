"""The jobs on real clusters of separate processes: a Spark standalone master with two workers
(1 core, 1 GiB each), a Dask scheduler with two workers, and H2O as its own JVM, all on
127.0.0.1 (``tests/clusters.py``). Executors and workers run in directories of their own with
``build/cluster-env``'s Python (lakescore from its wheel, no ``build/``): the scorer jars, the
MOJO and lakescore's code reach them the way they would on a real cluster.

One cluster of each kind and one lakehouse serve the whole module (the machine has 2 cores).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from deltalake import DeltaTable

from clusters import (Processes, cluster_python, dask_worker, listening_addresses, server_env,
                      start_dask_cluster, start_h2o, start_spark_cluster)

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
TOLERANCE = 1e-9
KEYS = ["customer_id", "as_of"]


@pytest.fixture(scope="module")
def procs(tmp_path_factory):
    processes = Processes(tmp_path_factory.mktemp("clusters"))
    yield processes
    processes.stop()


@pytest.fixture(scope="module")
def python():
    return cluster_python()


@pytest.fixture(scope="module")
def spark_cluster(procs, python):
    return start_spark_cluster(procs, python)


@pytest.fixture(scope="module")
def dask_cluster(procs, python):
    return start_dask_cluster(procs, python)


@pytest.fixture(scope="module")
def h2o_url(procs, python):
    from clusters import free_port

    return start_h2o(procs, python, free_port())


@pytest.fixture(scope="module")
def lakehouse(tmp_path_factory):
    path = tmp_path_factory.mktemp("cluster-lakehouse")
    result = job(["jobs.generate"], path)
    assert result.returncode == 0, result.stderr
    return path


def conf_args(lakehouse: Path, *sets: str) -> list[str]:
    args = ["--conf", "conf/test.yaml", "--set", f"lakehouse={lakehouse}"]
    for item in sets:
        args += ["--set", item]
    return args


def outputs(suffix: str) -> list[str]:
    """Overrides that keep one run's output tables apart from the others'."""
    return [f"tables.{t}=tables/{t}_{suffix}" for t in ("training_set", "scoring_set", "scores")]


def job(argv: list[str], lakehouse: Path, *sets: str, env: dict | None = None,
        timeout: int = 600) -> subprocess.CompletedProcess:
    """``python -m jobs.<job>`` as a process of its own (the client side: the checkout's venv)."""
    return subprocess.run([sys.executable, "-m", *argv, *conf_args(lakehouse, *sets)], cwd=REPO,
                          env=env or dict(os.environ), capture_output=True, text=True, timeout=timeout)


def submit_cmd(cluster, script: str, lakehouse: Path, *sets: str) -> list[str]:
    return [str(REPO / "spark-submit.sh"), *cluster.submit_args(), script,
            *conf_args(lakehouse, "spark.show_progress=false", *sets)]


def submit(cluster, script: str, lakehouse: Path, *sets: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(submit_cmd(cluster, script, lakehouse, *sets), cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


def scores(lakehouse: Path, table: str) -> pd.DataFrame:
    frame = DeltaTable(str(lakehouse / "tables" / table)).to_pandas(columns=[*KEYS, "model_id", "score", "score_date"])
    return frame.sort_values(KEYS).reset_index(drop=True)


def assert_each_key_once(frame: pd.DataFrame, expected_rows: int) -> None:
    assert len(frame) == expected_rows
    assert not frame.duplicated(KEYS + (["model_id"] if "model_id" in frame else [])).any()


@pytest.fixture(scope="module")
def cluster_run(spark_cluster, dask_cluster, h2o_url, lakehouse, spark):
    """Each job as a process of its own: through spark-submit.sh on the Spark cluster (features →
    validate → train on the H2O JVM → score), then with --scheduler on the Dask cluster
    (features → validate → train on the same H2O, as model churn_dask → score with churn/1 →
    lineage), and the score job locally for reference; the seconds of each."""
    times: dict[str, float] = {}
    listening: dict[str, set[str]] = {}
    spark_jobs = (("features", "jobs/features.py", []), ("validate", "jobs/validate.py", ["--table", "training_set"]),
                  ("train", "jobs/train.py", []), ("score", "jobs/score.py", []))
    for name, script, args in spark_jobs:
        started = time.perf_counter()
        driver = subprocess.Popen(submit_cmd(spark_cluster, script, lakehouse, f"h2o.url={h2o_url}") + args,
                                  cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  start_new_session=True)
        while driver.poll() is None:  # the driver's servers, while it runs
            for proc, addrs in listening_addresses([driver.pid]).items():
                listening.setdefault(proc, set()).update(addrs)
            time.sleep(1)
        out, err = driver.communicate()
        assert driver.returncode == 0, f"spark {name}: {out[-3000:]}{err[-5000:]}"
        times[f"spark cluster: {name}"] = time.perf_counter() - started

    dask = ["--engine", "dask", "--scheduler", dask_cluster.address]
    dask_jobs = (("features", ["jobs.features", *dask], []),
                 ("validate", ["jobs.validate", "--table", "training_set", *dask], []),
                 ("train", ["jobs.train", *dask], [f"h2o.url={h2o_url}", "registry.model_name=churn_dask"]),
                 ("score", ["jobs.score", "--model", "churn/1", *dask], []),
                 ("lineage", ["jobs.lineage", "--table", "scores"], []))
    for name, argv, sets in dask_jobs:
        started = time.perf_counter()
        result = job(argv, lakehouse, *outputs("dask"), *sets)
        assert result.returncode == 0, f"dask {name}: {result.stdout[-3000:]}{result.stderr[-5000:]}"
        times[f"dask cluster: {name}"] = time.perf_counter() - started
        if name == "lineage":
            lineage = result.stdout

    # The local run: the same scoring set scored with the same model by local Spark (the test
    # session), cheaper than a third whole job.
    from engine.backends.spark import SparkBackend
    from engine.conf import load_conf
    from engine.run_context import model_registry

    started = time.perf_counter()
    conf = load_conf(REPO / "conf" / "test.yaml", overrides=[f"lakehouse={lakehouse}"])
    model = model_registry(conf).resolve("latest")
    scoring = spark.createDataFrame(DeltaTable(str(lakehouse / "tables" / "scoring_set")).to_pandas())
    local = SparkBackend(spark).score_mojo(scoring, str(model.artifact_path), KEYS, {}).toPandas()
    times["local spark: scoring the same rows (session already up)"] = time.perf_counter() - started
    return {"times": times, "listening": listening, "lineage": lineage,
            "local": local.sort_values(KEYS).reset_index(drop=True)}


def test_every_job_runs_on_both_clusters_with_the_local_scores(cluster_run, lakehouse):
    on_spark, on_dask = (scores(lakehouse, t) for t in ("scores", "scores_dask"))
    local = cluster_run["local"]
    to_score = DeltaTable(str(lakehouse / "tables" / "to_score")).to_pandas()
    for frame in (on_spark, on_dask, local):
        assert_each_key_once(frame, len(to_score))
    for frame in (local, on_spark):
        frame["as_of"] = pd.to_datetime(frame["as_of"], utc=True)
    pd.testing.assert_frame_equal(local[KEYS], on_spark[KEYS], check_dtype=False)
    pd.testing.assert_frame_equal(on_spark[KEYS + ["score_date"]], on_dask[KEYS + ["score_date"]])
    assert np.abs(on_spark["score"] - on_dask["score"]).max() <= TOLERANCE
    assert np.abs(on_spark["score"] - local["score"]).max() <= TOLERANCE
    assert "scores_dask" in cluster_run["lineage"] and "training_set" in cluster_run["lineage"]
    from engine.conf import load_conf
    from engine.run_context import model_registry

    registry = model_registry(load_conf(REPO / "conf" / "test.yaml", overrides=[f"lakehouse={lakehouse}"]))
    on_dask_cluster = registry.resolve("churn_dask/1")  # trained by the Dask job on the H2O JVM
    assert on_dask_cluster.training_table.endswith("training_set_dask")
    assert on_dask_cluster.metrics.get("auc", 0) > 0.5, on_dask_cluster.metrics
    for stage, seconds in cluster_run["times"].items():
        print(f"{stage}: {seconds:.1f} s")


def test_executors_and_workers_run_outside_the_checkout_with_the_wheel(cluster_run, spark_cluster, dask_cluster, lakehouse):
    doctor = submit(spark_cluster, "jobs/doctor.py", lakehouse)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    executors = [line for line in doctor.stdout.splitlines() if line.startswith("executor ") and " lakescore " in line]
    assert len(executors) >= 1, doctor.stdout
    for line in executors:
        assert "0.1.0 at" in line and f"{REPO}/engine" not in line, line  # the wheel (and --py-files), not the checkout
    assert "executor 0 (JVM)" in doctor.stdout or "executor 1 (JVM)" in doctor.stdout
    result = job(["jobs.doctor", "--engine", "dask", "--scheduler", dask_cluster.address], lakehouse)
    assert result.returncode == 0, result.stdout + result.stderr
    workers = [line for line in result.stdout.splitlines() if line.startswith("worker ") and " lakescore " in line]
    assert len(workers) == 2, result.stdout
    assert all(f"{REPO}/engine" not in line and "build/cluster-env" in line for line in workers), workers
    assert "lakescore-jars" in result.stdout  # the scorer jars came from the client


def test_the_drivers_servers_listen_on_loopback_only(cluster_run):
    listening = cluster_run["listening"]
    assert listening, "no listening sockets seen while the driver ran"
    from test_environment import off_loopback

    assert not off_loopback(listening), off_loopback(listening)


def test_doctor_names_each_planted_mismatch_on_its_worker(dask_cluster, procs, python, lakehouse, tmp_path):
    """Two more workers join the scheduler: one whose JAVA_HOME names no JDK, one whose Python
    has pyarrow 25 (the client has 26) in front of the cluster env's packages. The doctor names
    each on its own line, with the expected and found values, and exits 7."""
    env = server_env(python)
    env["JAVA_HOME"] = "/opt/no-such-jdk-17"
    other_pyarrow = env_with_another_pyarrow(python, tmp_path / "pyarrow25", "25.0.1")
    planted = [dask_worker(procs, python, dask_cluster.address, "dask-worker-bad-java", env),
               dask_worker(procs, other_pyarrow, dask_cluster.address, "dask-worker-pyarrow25")]
    try:
        names = registered(dask_cluster.address, ["dask-worker-bad-java", "dask-worker-pyarrow25"])
        result = job(["jobs.doctor", "--engine", "dask", "--scheduler", dask_cluster.address], lakehouse)
    finally:
        for proc in planted:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
        deregistered(dask_cluster.address, ["dask-worker-bad-java", "dask-worker-pyarrow25"])
    assert result.returncode == 7, result.stdout + result.stderr
    failed = [line for line in result.stdout.splitlines() if line.rstrip().endswith("MISMATCH")]
    bad_java, bad_pyarrow = names["dask-worker-bad-java"], names["dask-worker-pyarrow25"]
    assert len(failed) == 2, failed
    java = next(line for line in failed if f"worker {bad_java}" in line)
    assert "java" in java and "/opt/no-such-jdk-17/bin/java" in java and "17" in java
    arrow = next(line for line in failed if f"worker {bad_pyarrow}" in line)
    assert "pyarrow" in arrow and "25.0.1" in arrow and "26." in arrow, arrow
    assert f"worker {bad_java}: java expected 17" in result.stderr
    assert f"worker {bad_pyarrow}: pyarrow" in result.stderr and "25.0.1" in result.stderr


def test_a_worker_that_cannot_write_the_jars_or_the_mojo_is_exit_7_naming_it_before_anything_is_written(
        cluster_run, dask_cluster, procs, python, lakehouse):
    """A third worker joins whose files may not exceed 64 KiB: it cannot write h2o-genmodel.jar
    (5 MB) that the client ships, nor the MOJO (~100 KB). The score job exits 7 naming that
    worker, each check and the error, before any table is written; once the worker is gone, the
    same command completes with every key once."""
    from engine.scoring.jars import GENMODEL_JAR

    env = dict(server_env(python), PYTHONDONTWRITEBYTECODE="1")
    planted = dask_worker(procs, python, dask_cluster.address, "dask-worker-small-disk", env, max_file_bytes=64 * 1024)
    command = ["jobs.score", "--model", "churn/1", "--engine", "dask", "--scheduler", dask_cluster.address]
    try:
        small = registered(dask_cluster.address, ["dask-worker-small-disk"])["dask-worker-small-disk"]
        result = job(command, lakehouse, *outputs("small_disk"))
    finally:
        os.killpg(planted.pid, signal.SIGKILL)
        planted.wait(30)
        deregistered(dask_cluster.address, ["dask-worker-small-disk"])
    assert result.returncode == 7, result.stdout[-3000:] + result.stderr[-3000:]
    message = next(line for line in result.stderr.splitlines() if "check(s) failed: " in line)
    problems = message.split("check(s) failed: ", 1)[1].split(". Give each side")[0].split("; ")
    assert len(problems) == 2 and all(p.startswith(f"worker {small}: ") for p in problems), problems
    jars = next(p for p in problems if p.startswith(f"worker {small}: scorer jars expected"))
    genmodel = f"cannot write h2o-genmodel.jar ({GENMODEL_JAR.stat().st_size} bytes)"
    assert genmodel in jars and "File too large" in jars, jars
    mojo = next(p for p in problems if p.startswith(f"worker {small}: MOJO model.mojo expected"))
    assert "cannot write" in mojo and "File too large" in mojo, mojo
    assert not any((lakehouse / "tables" / f"{t}_small_disk").exists() for t in ("scoring_set", "scores"))

    rerun = job(command, lakehouse, *outputs("small_disk"))
    assert rerun.returncode == 0, rerun.stderr[-5000:]
    assert_each_key_once(scores(lakehouse, "scores_small_disk"), len(scores(lakehouse, "scores")))


def env_with_another_pyarrow(python: str, where: Path, version: str) -> str:
    """A Python whose own site-packages holds pyarrow ``version`` ahead of the cluster env's
    packages (a .pth line): a worker installed with another pyarrow, everything else equal."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True, timeout=120)
    site = subprocess.run([str(where / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    installed = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                                "--no-deps", "--target", site, f"pyarrow=={version}"],
                               capture_output=True, text=True, timeout=600)
    assert installed.returncode == 0, installed.stderr[-3000:]
    theirs = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                            capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "cluster-env.pth").write_text(theirs + "\n")
    return str(where / "bin" / "python")


def test_an_unreachable_scheduler_or_master_exits_7_naming_it(lakehouse):
    from clusters import free_port

    port = free_port()
    result = job(["jobs.features", "--engine", "dask", "--scheduler", f"tcp://127.0.0.1:{port}"], lakehouse,
                 "dask.connect_timeout=3s", *outputs("unreachable"))
    assert result.returncode == 7, result.stderr
    assert f"tcp://127.0.0.1:{port}" in result.stderr
    assert not (lakehouse / "tables" / "training_set_unreachable").exists()
    closed = free_port()
    result = subprocess.run([str(REPO / "spark-submit.sh"), "--master", f"spark://127.0.0.1:{closed}",
                             "jobs/features.py", *conf_args(lakehouse, *outputs("unreachable"))],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 7, result.stderr[-3000:]
    # spark-submit merges its Python driver's stderr into stdout
    assert f"cannot reach the Spark master spark://127.0.0.1:{closed}" in result.stdout + result.stderr
    assert not (lakehouse / "tables" / "training_set_unreachable").exists()


def worker_names(client) -> dict[str, str]:
    """Each worker's ``--name`` and its address, as the scheduler knows them now."""
    return {w["name"]: a for a, w in client.scheduler_info(n_workers=-1)["workers"].items()}


def registered(address: str, names: list[str], timeout: float = 120) -> dict[str, str]:
    """The addresses of the workers ``names`` once every one has registered. Waiting by name, not
    for a count of workers: a worker killed by the previous test may still be counted until the
    scheduler notices it is gone (seen once in CI: the count was reached before the new worker)."""
    from distributed import Client

    with Client(address, timeout="30s") as client:
        def found():
            workers = worker_names(client)
            return {n: workers[n] for n in names} if all(n in workers for n in names) else None
        return wait_until(found, timeout, f"the workers {names} registered with {address}")


def deregistered(address: str, names: list[str], timeout: float = 60) -> None:
    """Wait until the scheduler has dropped the (killed) workers ``names``, so the next test sees
    the cluster it started with."""
    from distributed import Client

    with Client(address, timeout="30s") as client:
        wait_until(lambda: not set(names) & set(worker_names(client)), timeout, f"the workers {names} gone from {address}")


def wait_until(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except FileNotFoundError:
            # a walk over a table met a task's _temporary folder as its commit removed it: the
            # files moved on, so look again (seen once on a loaded machine)
            value = None
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the job ended (exit {proc.returncode}) before {what}")
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def python_worker_of(cluster):
    """An executor JVM that runs Python tasks right now (a pyspark daemon below it)."""
    for executor in cluster.executors():
        try:
            if any("pyspark" in " ".join(c.cmdline()) for c in executor.children(recursive=True)):
                return executor
        except Exception:  # noqa: BLE001 - the process ended meanwhile
            continue
    return None


# The table each killed job writes, by job.
KILLED_OUTPUT = {"features": "training_set", "score": "scores"}


def assert_equal_to_the_undisturbed_run(lakehouse: Path, killed: str, undisturbed: str) -> None:
    """Each key once, the same rows as the run nobody disturbed (scores within TOLERANCE)."""
    if killed.startswith("scores"):
        frame, reference = scores(lakehouse, killed), scores(lakehouse, undisturbed)
        assert_each_key_once(frame, len(reference))
        pd.testing.assert_frame_equal(frame[KEYS + ["score_date"]], reference[KEYS + ["score_date"]])
        assert np.abs(frame["score"] - reference["score"]).max() <= TOLERANCE
        return
    frame = DeltaTable(str(lakehouse / "tables" / killed)).to_pandas()
    reference = DeltaTable(str(lakehouse / "tables" / undisturbed)).to_pandas()
    assert_each_key_once(frame, len(DeltaTable(str(lakehouse / "tables" / "labels")).to_pandas()))
    pd.testing.assert_frame_equal(frame.sort_values(KEYS).reset_index(drop=True),
                                  reference.sort_values(KEYS).reset_index(drop=True), check_like=True)


@pytest.mark.parametrize("job_name", ["features", "score"])
def test_losing_a_spark_executor_mid_job_loses_and_duplicates_nothing(job_name, cluster_run, spark_cluster, lakehouse):
    """SIGKILL the executor JVM that runs the job's Python tasks once its output's first data
    file is written: Spark reschedules them and the one commit from the driver holds every row
    once, equal to the undisturbed run's."""
    table, suffix = KILLED_OUTPUT[job_name], f"kill_spark_{job_name}"
    output = lakehouse / "tables" / f"{table}_{suffix}"
    log = lakehouse.parent / f"{suffix}.log"
    with open(log, "w") as sink:
        driver = subprocess.Popen(submit_cmd(spark_cluster, f"jobs/{job_name}.py", lakehouse, *outputs(suffix)),
                                  cwd=REPO, stdout=sink, stderr=subprocess.STDOUT, text=True)
        # The write stage has begun when its tasks' first files appear (the commit comes after).
        wait_until(lambda: output.exists() and any(p.suffix == ".parquet" for p in output.rglob("*")),
                   600, f"the {job_name} job's first data file", driver)
        victim = python_worker_of(spark_cluster) or spark_cluster.executors()[0]
        victim.send_signal(signal.SIGKILL)
        driver.wait(600)
    err = log.read_text()
    assert driver.returncode == 0, err[-8000:]
    assert "Lost executor" in err or "ExecutorLostFailure" in err, err[-3000:]
    assert_equal_to_the_undisturbed_run(lakehouse, f"{table}_{suffix}", table)


@pytest.mark.parametrize("job_name", ["features", "score"])
def test_losing_a_dask_worker_mid_job_loses_and_duplicates_nothing(job_name, cluster_run, dask_cluster, lakehouse):
    """SIGKILL the worker process (its nanny restarts it) while the job's tasks run on it: Dask
    recomputes what it held, and the output equals the undisturbed run's."""
    from distributed import Client

    table, suffix = KILLED_OUTPUT[job_name], f"kill_dask_{job_name}"
    with Client(dask_cluster.address, timeout="30s") as client:
        client_proc = subprocess.Popen([sys.executable, "-m", f"jobs.{job_name}", "--engine", "dask", "--scheduler",
                                        dask_cluster.address, *conf_args(lakehouse, *outputs(suffix))],
                                       cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        busy = wait_until(lambda: next((w for w, tasks in client.processing().items() if tasks), None),
                          300, "tasks processing on a worker", client_proc)
        pid = client.run(os.getpid, workers=[busy])[busy]  # answered beside the running task
        os.kill(pid, signal.SIGKILL)
        out, err = client_proc.communicate(timeout=600)
        assert client_proc.returncode == 0, err[-5000:]
        client.wait_for_workers(2, timeout=120)  # the nanny brought it back for the next tests
    assert_equal_to_the_undisturbed_run(lakehouse, f"{table}_{suffix}", f"{table}_dask")


def test_losing_the_driver_leaves_the_table_unchanged_and_a_rerun_completes(cluster_run, spark_cluster,
                                                                          dask_cluster, lakehouse):
    """SIGKILL the spark-submit driver (and the Dask client) while its tasks run: the scores
    table is where it was (one commit or none), and the same job run again completes it once."""
    for engine, start in (
        ("spark", lambda: subprocess.Popen(submit_cmd(spark_cluster, "jobs/score.py", lakehouse, *outputs("lost_driver")),
                                           cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                           start_new_session=True)),
        ("dask", lambda: subprocess.Popen([sys.executable, "-m", "jobs.score", "--engine", "dask", "--scheduler",
                                           dask_cluster.address, *conf_args(lakehouse, *outputs("lost_client"))],
                                          cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                          start_new_session=True)),
    ):
        table = lakehouse / "tables" / ("scores_lost_driver" if engine == "spark" else "scores_lost_client")
        proc = start()
        if engine == "spark":
            wait_until(lambda: python_worker_of(spark_cluster), 300, "a Python task on an executor", proc)
        else:
            from distributed import Client

            with Client(dask_cluster.address, timeout="30s") as client:
                wait_until(lambda: any(client.processing().values()), 300, "tasks of the job", proc)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(60)
        before = DeltaTable(str(table)).version() if (table / "_delta_log").exists() else None
        rows_before = len(DeltaTable(str(table)).to_pandas()) if before is not None else 0
        assert rows_before in (0, len(scores(lakehouse, "scores")))  # nothing, or one whole commit
        if engine == "spark":
            rerun = submit(spark_cluster, "jobs/score.py", lakehouse, *outputs("lost_driver"))
        else:
            rerun = job(["jobs.score", "--engine", "dask", "--scheduler", dask_cluster.address], lakehouse,
                        *outputs("lost_client"))
        assert rerun.returncode == 0, rerun.stderr[-5000:]
        assert_each_key_once(scores(lakehouse, table.name), len(scores(lakehouse, "scores")))


def test_a_bogus_java_home_on_dask_is_exit_7_naming_it_before_anything_is_written(cluster_run, lakehouse):
    """JPype on the workers (scoring) and a local H2O (training) would start a JVM from
    JAVA_HOME: both are checked first, on every worker for scoring."""
    bogus = "/opt/no-such-jdk-17"
    env = dict(os.environ, JAVA_HOME=bogus)
    score = job(["jobs.score", "--engine", "dask"], lakehouse, *outputs("bogus_java"), "dask.n_workers=1", env=env)
    assert score.returncode == 7, score.stderr[-3000:]
    assert "worker tcp://127.0.0.1:" in score.stderr and f"no executable {bogus}/bin/java" in score.stderr
    assert not (lakehouse / "tables" / "scoring_set_bogus_java").exists()
    train = job(["jobs.train", "--engine", "dask"], lakehouse, env=env)
    assert train.returncode == 7, train.stderr[-3000:]
    assert f"cannot start a local H2O: Java 17 is needed, found no executable {bogus}/bin/java" in train.stderr
