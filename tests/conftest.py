"""Session-wide real engines: one SparkSession, one Dask cluster, one H2O for the whole run.

``engine_name`` parametrises a test over both engines, so a behaviour is written once and
checked on Spark and on Dask.
"""

from __future__ import annotations

import os

import pytest

from engine.conf import DaskConf, H2OConf, SparkConf
from engine.session import dask_client, h2o_connection, prepare_process_env, spark_session

prepare_process_env()


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


@pytest.fixture(params=["spark", "dask"])
def engine_name(request):
    """Parametrise a test over both engines; the matching fixture is started lazily."""
    if request.param == "spark":
        request.getfixturevalue("spark")
    else:
        request.getfixturevalue("dask_cluster_client")
    return request.param
