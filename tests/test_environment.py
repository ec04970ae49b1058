"""Environment checks before any work (``engine.environment``, ``jobs.doctor``), a handed-over
SparkSession in another time zone, the Hadoop options of an S3 lakehouse, Java problems as exit 7
on both engines, and every server lakescore starts listening on 127.0.0.1 only."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from engine.environment import Finding, check_java, compare, local_facts, probe_lakehouse, render

REPO = Path(__file__).resolve().parent.parent
BOGUS_JAVA_HOME = "/opt/no-such-jdk-17"


def job_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    return env


def run_job(args: list[str], env: dict[str, str], timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_java_from_a_bogus_java_home_is_named_with_where_it_came_from(monkeypatch):
    monkeypatch.setenv("JAVA_HOME", BOGUS_JAVA_HOME)
    finding = check_java("driver")
    assert not finding.ok
    assert f"{BOGUS_JAVA_HOME}/bin/java" in finding.found and "JAVA_HOME=" in finding.found
    monkeypatch.delenv("JAVA_HOME")
    assert check_java("driver").ok, check_java("driver").found  # the java on PATH is a 17


def test_a_worker_with_another_pyarrow_major_is_a_mismatch_naming_host_and_versions():
    reference = local_facts()
    worker = dict(reference, pyarrow="9.0.0", numpy=reference["numpy"])
    findings = compare(reference, worker, "worker tcp://127.0.0.1:1", java=False)
    failed = [f for f in findings if not f.ok]
    assert [f.check for f in failed] == ["pyarrow"]
    assert failed[0].host == "worker tcp://127.0.0.1:1" and failed[0].found == "9.0.0"
    assert reference["pyarrow"] in failed[0].expected
    assert "MISMATCH" in render(findings)


def test_lakehouse_probe_writes_reads_and_removes_its_file(tmp_path):
    ok = probe_lakehouse(str(tmp_path), {}, "driver")
    assert ok.ok and ok.found == "read and written"
    assert list((tmp_path / "_lakescore_doctor").iterdir()) == []
    (tmp_path / "ro").mkdir()
    os.chmod(tmp_path / "ro", 0o500)
    try:
        denied = probe_lakehouse(str(tmp_path / "ro" / "lake"), {}, "driver")
    finally:
        os.chmod(tmp_path / "ro", 0o700)
    if os.geteuid() != 0:  # root writes anyway
        assert not denied.ok


def test_doctor_on_spark_prints_every_side_and_passes(spark, tmp_path, capsys):
    """In-process, on the test session (the doctor uses a running session as a job would)."""
    from jobs import doctor

    code = doctor.main(["--engine", "spark", "--conf", "conf/test.yaml", "--set", f"lakehouse={tmp_path}"])
    out = capsys.readouterr().out
    assert code == 0, out
    for check in ("java", "pyarrow", "scorer jars", "lakehouse", "spark", "scorer jar + genmodel"):
        assert check in out
    assert "executor (in the driver's JVM)" in out and "MISMATCH" not in out


@pytest.mark.parametrize("job", [["jobs.features", "--engine", "spark"], ["jobs.doctor", "--engine", "spark"]])
def test_spark_with_a_bogus_java_home_exits_7_naming_it_before_any_work(tmp_path, job):
    result = run_job([*job, "--conf", "conf/test.yaml", "--set", f"lakehouse={tmp_path}"],
                     job_env(JAVA_HOME=BOGUS_JAVA_HOME))
    assert result.returncode == 7, result.stdout + result.stderr
    assert f"{BOGUS_JAVA_HOME}/bin/java" in result.stdout + result.stderr
    assert "JAVA_GATEWAY_EXITED" not in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "tables").exists()


def test_spark_submit_honours_the_callers_java_home_and_refuses_a_bogus_one(tmp_path):
    real = Path(os.environ.get("JAVA_HOME") or Path(subprocess.run(
        ["bash", "-c", "source build/env.sh && echo $JAVA_HOME"], cwd=REPO, capture_output=True,
        text=True).stdout.strip()))
    mine = tmp_path / "my-jdk"
    mine.symlink_to(real)
    ok = subprocess.run([str(REPO / "spark-submit.sh"), "--version"], env=job_env(JAVA_HOME=str(mine)),
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert f"at {mine} (from your JAVA_HOME)" in ok.stderr
    bad = subprocess.run([str(REPO / "spark-submit.sh"), "jobs/features.py"],
                         env=job_env(JAVA_HOME=BOGUS_JAVA_HOME), capture_output=True, text=True, timeout=60)
    assert bad.returncode == 7
    assert f"no executable {BOGUS_JAVA_HOME}/bin/java" in bad.stderr and "your JAVA_HOME" in bad.stderr


def test_an_attached_session_in_another_time_zone_gives_the_same_features_and_score_date(spark, tmp_path):
    """A notebook's session in Los Angeles time: lakescore's queries run in UTC on a session of
    the same context, and the user's session keeps its zone. Without that, ``dayofweek`` in a
    feature's row expression and the score date would follow the user's zone."""
    from deltalake import write_deltalake

    from engine.backends.spark import SparkBackend
    from engine.conf import DemoConf
    from engine.demo_data import generate_demo
    from engine.features.definitions import load_feature_set
    from engine.storage.table import TableRef

    data = generate_demo(DemoConf(customers=40, mean_events_per_customer=30, days=120))
    for name in ("events", "labels"):
        write_deltalake(str(tmp_path / name), getattr(data, name))
    fs = load_feature_set(str(REPO / "conf/features/customer_rich.yaml"))
    users = spark.newSession()
    users.conf.set("spark.sql.session.timeZone", "America/Los_Angeles")

    def features(backend):
        events = backend.read(TableRef("events", str(tmp_path / "events"))).frame
        labels = backend.read(TableRef("labels", str(tmp_path / "labels"))).frame
        frame = backend.with_utc_date(backend.training_set(fs, events, labels), "as_of", "score_date")
        out = frame.toPandas().sort_values(["customer_id", "as_of"]).reset_index(drop=True)
        return out

    expected = features(SparkBackend(spark))
    attached = SparkBackend.attach(users)
    got = features(attached)
    assert users.conf.get("spark.sql.session.timeZone") == "America/Los_Angeles"
    assert attached.spark.sparkContext is users.sparkContext
    pd.testing.assert_frame_equal(got, expected)
    # The check can fail: used as it is, the user's zone moves weekends and dates.
    naive = features(SparkBackend(users))
    assert not naive["weekend_mean_90d"].equals(expected["weekend_mean_90d"]) or \
        not naive["score_date"].equals(expected["score_date"])


def test_hadoop_options_of_an_s3_lakehouse_carry_storage_options_to_s3a(spark):
    from engine.session import apply_hadoop_options, hadoop_options

    options = {"AWS_ACCESS_KEY_ID": "AK", "AWS_SECRET_ACCESS_KEY": "SK", "AWS_REGION": "eu-west-1",
               "AWS_ENDPOINT_URL": "http://127.0.0.1:9000"}
    expected = {"fs.s3.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
                "fs.s3a.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
                "fs.s3a.access.key": "AK", "fs.s3a.secret.key": "SK", "fs.s3a.endpoint.region": "eu-west-1",
                "fs.s3a.endpoint": "http://127.0.0.1:9000", "fs.s3a.path.style.access": "true",
                "fs.s3a.connection.ssl.enabled": "false"}
    assert hadoop_options("s3://lake/root", options) == expected
    assert hadoop_options("/data/lake", options) == {}
    assert "fs.s3a.path.style.access" not in hadoop_options("s3://lake", {"AWS_REGION": "us-east-1"})
    hadoop = spark.sparkContext._jsc.hadoopConfiguration()
    hadoop.set("fs.s3a.endpoint.region", "set-by-the-user")
    apply_hadoop_options(spark, expected)
    assert hadoop.get("fs.s3a.access.key") == "AK" and hadoop.get("fs.s3a.endpoint") == "http://127.0.0.1:9000"
    assert hadoop.get("fs.s3a.endpoint.region") == "set-by-the-user"  # never overridden
    for key in expected:
        hadoop.unset(key)


def test_lakescores_dask_workers_reuse_freed_numpy_temporaries(dask_cluster_client, monkeypatch):
    """Workers of Dask's own local cluster map every NumPy temporary above 128 KiB afresh and
    fault its pages in each time (their nanny's MALLOC_TRIM_THRESHOLD_ pins glibc's mmap
    threshold); lakescore's keep freed blocks for reuse (``engine.session.WORKER_MALLOC_ENV``):
    making the same 3 MiB array again costs them next to no page faults."""
    from dask.distributed import Client, LocalCluster

    from engine.session import WORKER_MALLOC_ENV

    def faults_of_a_reused_temporary() -> int:
        # 3 MiB stays below NumPy's 4 MiB threshold for huge pages: 768 faults of 4 KiB if fresh.
        import resource

        import numpy as np

        np.ones(3 * 2**20 // 8).sum()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        np.ones(3 * 2**20 // 8).sum()
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    ours = dask_cluster_client.run(faults_of_a_reused_temporary)
    assert all(faults < 100 for faults in ours.values()), ours
    # A nanny copies its workers' start environment into its own process's for good (and takes
    # it from there next time): without lakescore's values, Dask's defaults apply again.
    for name in WORKER_MALLOC_ENV:
        monkeypatch.delenv(name, raising=False)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as plain, Client(plain) as client:
        theirs = client.run(faults_of_a_reused_temporary)
    assert all(faults > 700 for faults in theirs.values()), theirs


SERVERS = """
import sys, time
from engine.conf import DaskConf, H2OConf, SparkConf
from engine.session import dask_client, h2o_connection, spark_session
spark = spark_session(SparkConf(master="local[1]", options={"spark.ui.enabled": "true", "spark.ui.port": "0"}))
client = dask_client(DaskConf(n_workers=1, memory_limit="1GiB"))
h2o_connection(H2OConf(max_mem="512m", nthreads=1, port=int(sys.argv[1])))
import h2o
print("ready", h2o.connection().base_url.rsplit(":", 1)[1].strip("/"), flush=True)
time.sleep(600)
"""


def test_every_server_lakescore_starts_listens_on_loopback_only():
    """Spark's driver (RPC, block manager, UI), the Dask scheduler, dashboard, nanny and worker
    and H2O, as lakescore's session code starts them (with the Spark UI on)."""
    from clusters import free_port, listening_addresses

    proc = subprocess.Popen([sys.executable, "-c", SERVERS, str(free_port())], cwd=REPO, env=job_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            start_new_session=True)
    try:
        for line in proc.stdout:  # h2o prints its own notices first
            if line.startswith("ready "):
                port = line.split()[1]  # the REST port H2O answers on
                break
        else:
            raise AssertionError(f"the servers did not start (exit {proc.wait()})")
        time.sleep(1)
        listening = listening_addresses([proc.pid])
    finally:
        stop_tree(proc)
    assert sum(name.startswith("java") for name in listening) == 2, listening  # Spark's and H2O's JVMs
    assert len(listening) >= 3, listening  # and Dask's scheduler (in the job's process) and worker
    assert not off_loopback(listening), off_loopback(listening)
    ports = {a.rsplit(":", 1)[1] for addrs in listening.values() for a in addrs}
    assert port in ports  # H2O's REST port


def stop_tree(proc: subprocess.Popen) -> None:
    """SIGKILL ``proc`` and every process below it, by pid: h2o.init starts H2O's JVM in a
    session of its own, which a kill of the process group would miss."""
    import psutil

    family = psutil.Process(proc.pid).children(recursive=True)
    for child in family:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
    os.killpg(proc.pid, 9)
    proc.wait(30)


def off_loopback(listening: dict[str, set[str]]) -> dict[str, list[str]]:
    """The addresses of ``listening`` that are not loopback (IPv4, IPv4-mapped IPv6 or ::1)."""
    loopback = ("127.0.0.1:", "::ffff:127.0.0.1:", "::1:")
    outside = {name: sorted(a for a in addrs if not a.startswith(loopback)) for name, addrs in listening.items()}
    return {name: addrs for name, addrs in outside.items() if addrs}


def test_findings_render_as_a_table():
    table = render([Finding("worker w1", "java", "17", "11.0.2 at /x", False)])
    assert "worker w1" in table.splitlines()[1] and table.splitlines()[1].rstrip().endswith("MISMATCH")
