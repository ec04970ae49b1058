"""Session-wide real engines: one SparkSession, one Dask cluster, one H2O for the whole run.

``engine_name`` parametrises a test over both engines, so a behaviour is written once and
checked on Spark and on Dask.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.conf import DaskConf, H2OConf, SparkConf
from engine.session import dask_client, h2o_connection, prepare_process_env, spark_session

prepare_process_env()

# The venv these tests run in is the one every job they start runs with: spark-submit.sh, the
# clusters' env (scripts/cluster_env.sh) and the Airflow DAG's local runner read LAKESCORE_VENV,
# so the suite run from build/venv-spark40 tests Spark 4.0 end to end, clusters included.
os.environ.setdefault("LAKESCORE_VENV", sys.prefix)


def separate_h2o_ports_per_worker() -> None:
    """`make test` runs the suite in two pytest-xdist processes (one module per process). Each
    has its own session H2O and starts jobs with their own H2O, so each gets its own port range:
    ``h2o.init`` on a port where another process's H2O answers would join that cluster, and the
    first to shut it down would break the other. Tests derive every H2O port from these two
    variables (the jobs' port, and +20 for the S3 pipeline's)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw"):
        return
    offset = 200 * int(worker[2:])
    for name, default in (("LAKESCORE_TEST_H2O_PORT", 54321), ("LAKESCORE_TEST_JOB_H2O_PORT", 54371)):
        os.environ[name] = str(int(os.environ.get(name, default)) + offset)


separate_h2o_ports_per_worker()

# JIT flags for the tests' JVMs (Spark drivers and executors, H2O, the Dask workers' JPype JVM,
# the test clusters' masters and workers): every one lives seconds to a few minutes on test-size
# data, where HotSpot's C2 compiler costs more CPU than it saves. Measured on 2 cores: a Spark
# features job 46 → 28 CPU seconds, an H2O training job 39 → 26, a Spark score job 68 → 38, the
# same results. Set here, before any JVM starts, so every job a test runs inherits it; the
# product's own JVMs (make demo, bench, deploy/) keep the JVM's defaults.
TEST_JVM_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
if TEST_JVM_OPTIONS not in os.environ.get("JAVA_TOOL_OPTIONS", ""):
    os.environ["JAVA_TOOL_OPTIONS"] = f"{os.environ.get('JAVA_TOOL_OPTIONS', '')} {TEST_JVM_OPTIONS}".strip()

# The modules that take longest (measured with --durations, 2 cores), longest first. xdist hands
# whole modules (--dist loadfile) to whichever process is free, in collection order; starting
# with the longest keeps one process from running a 10-minute module alone at the end.
LONGEST_MODULES = ("test_pipeline_e2e", "test_reproducible", "test_clusters", "test_chaos",
                   "test_ops_airflow", "test_concurrency", "test_training", "test_bad_inputs",
                   "test_storage_modes", "test_training_pipeline", "test_features_parity",
                   "test_scoring", "test_environment", "test_maintenance", "test_pipeline_s3")

# Modules that share a session fixture's lakehouse: xdist gives them to one process, as one
# unit, in LONGEST_MODULES' order (tests/demo_lakehouse.py says why and in which order).
SHARED_UNITS = {"test_pipeline_e2e": "the demo lakehouse", "test_reproducible": "the demo lakehouse"}


def pytest_collection_modifyitems(config, items):
    """Longest modules first (a stable sort: the order within a module is kept)."""
    rank = {name: k for k, name in enumerate(LONGEST_MODULES)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))


def pytest_xdist_make_scheduler(config, log):
    """``--dist loadfile``, except that the modules of one SHARED_UNITS entry are one unit."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class SharedUnitScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = super()._split_scope(nodeid)
            return SHARED_UNITS.get(Path(module).stem, module)

    return SharedUnitScheduling(config, log)


@pytest.fixture(scope="session")
def gateway():
    """A real Prometheus pushgateway (the shared demo run and test_pipeline_e2e push to it)."""
    from ops_helpers import pushgateway

    with pushgateway() as address:
        yield address


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory, gateway):
    """The shared demo run (tests/demo_lakehouse.py): its lakehouse and its finished process."""
    from demo_lakehouse import run_demo

    lakehouse = tmp_path_factory.mktemp("demo-lakehouse")
    return lakehouse, run_demo(lakehouse, gateway)


@pytest.fixture(scope="session")
def spark():
    # local[2,2]: two cores and task retries on, as pyspark's own tests do.
    session = spark_session(SparkConf(master="local[2,2]", shuffle_partitions=4,
                                      driver_memory="3g", show_progress=False))
    yield session
    session.stop()


@pytest.fixture(scope="session")
def dask_cluster_client():
    client = dask_client(DaskConf(n_workers=2, threads_per_worker=1, memory_limit="3GiB",
                                  show_progress=False))
    yield client
    cluster = client.cluster
    client.close()
    if cluster is not None:
        cluster.close()


@pytest.fixture(scope="session")
def h2o_cluster():
    import h2o

    h2o_connection(H2OConf(max_mem="2g", nthreads=2, port=int(os.environ.get("LAKESCORE_TEST_H2O_PORT", "54321"))))
    yield h2o
    h2o.cluster().shutdown()


@pytest.fixture(scope="session")
def s3_options():
    """A local moto S3 server (its own process, 127.0.0.1, a free port) with bucket ``lake``;
    the storage_options that reach it."""
    pytest.importorskip("moto")
    import boto3

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Its own process: delta-rs holds the GIL while it waits on the network.
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="test",
                          aws_secret_access_key="test", region_name="us-east-1")
    for _ in range(100):
        try:
            client.create_bucket(Bucket="lake")
            break
        except Exception:  # noqa: BLE001 - the server is still starting
            time.sleep(0.1)
    yield {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": endpoint, "AWS_ALLOW_HTTP": "true",
           "AWS_S3_ALLOW_UNSAFE_RENAME": "true"}
    server.terminate()
    server.wait(10)


@pytest.fixture(params=["spark", "dask"])
def engine_name(request):
    """Parametrise a test over both engines; the matching fixture is started lazily."""
    if request.param == "spark":
        request.getfixturevalue("spark")
    else:
        request.getfixturevalue("dask_cluster_client")
    return request.param


def spark_frame(spark, frame):
    """A pandas frame as a Spark DataFrame with an explicit schema (so empty frames and all-null
    columns work too): datetimes → timestamp, integers → bigint, floats → double, booleans →
    boolean, anything else → string; pandas' NA/NaT become nulls."""
    import numpy as np
    import pandas as pd

    def ddl(dtype) -> str:
        if pd.api.types.is_datetime64_any_dtype(dtype):
            return "timestamp"
        if pd.api.types.is_bool_dtype(dtype):
            return "boolean"
        if pd.api.types.is_integer_dtype(dtype):
            return "bigint"
        return "double" if pd.api.types.is_float_dtype(dtype) else "string"

    def plain(value):
        if value is None or value is pd.NA or value is pd.NaT:
            return None
        if isinstance(value, np.generic):
            return value.item()
        return value.to_pydatetime() if isinstance(value, pd.Timestamp) else value

    schema = ", ".join(f"`{name}` {ddl(dtype)}" for name, dtype in frame.dtypes.items())
    columns = [[plain(v) for v in frame[c].astype(object)] for c in frame.columns]
    return spark.createDataFrame(list(zip(*columns)), schema=schema)


@pytest.fixture
def compute(engine_name, request):
    """Run the engine under test's training-set compiler on pandas inputs (events in 3 Dask
    partitions, the spine in 2); the result comes back as pandas."""

    def run(fs, events, spine):
        if engine_name == "spark":
            from engine.features.spark import training_set_spark

            spark = request.getfixturevalue("spark")
            return training_set_spark(fs, spark_frame(spark, events), spark_frame(spark, spine)).toPandas()
        import dask.dataframe as dd

        from engine.features.dask import training_set_dask

        return training_set_dask(fs, dd.from_pandas(events, npartitions=3),
                                 dd.from_pandas(spine, npartitions=2)).compute()

    return run
