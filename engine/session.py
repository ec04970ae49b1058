"""The one place that starts a SparkSession, a Dask client and an H2O connection from conf.

Everything that runs a JVM or a cluster is started here, so tests and jobs get the same
settings: UTC session time zone, loopback binding, the venv's Python on Spark's workers and the
MOJO scoring jar on Spark's classpath when it has been built.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TYPE_CHECKING

from engine.conf import DaskConf, H2OConf, SparkConf
from engine.errors import EnvironmentProblem

if TYPE_CHECKING:
    from dask.distributed import Client
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"
DELTA_CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"
DELTA_JARS_ENV = "LAKESCORE_DELTA_JARS"


def prepare_process_env() -> None:
    """Make Spark's Python workers use this interpreter and bind everything to loopback."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")


def spark_session(conf: SparkConf) -> SparkSession:
    """Return the process's SparkSession, creating it from ``conf`` if none is running.

    Under ``spark-submit`` the master and jars come from the command line; options already set
    there win over conf. Delta's SQL extension is enabled only when its classes are on the
    classpath (``LAKESCORE_DELTA_JARS`` or ``--jars``); otherwise storage uses deltalake.
    """
    prepare_process_env()
    from pyspark.sql import SparkSession

    from engine.scoring.jars import scorer_jars

    active = SparkSession.getActiveSession()
    if active is not None:
        return attach(active)
    if not under_spark_submit():
        from engine.environment import require_java

        require_java("Spark's driver JVM")
        master = conf.master
    else:
        from pyspark import SparkConf as JvmConf
        from pyspark import SparkContext

        SparkContext._ensure_initialized()  # connects to spark-submit's JVM: its conf is readable
        master = JvmConf().get("spark.master", conf.master)  # spark-submit's --master
    require_reachable_master(master)
    jars = [str(p) for p in scorer_jars(required=False)]
    delta_jars = [j for j in os.environ.get(DELTA_JARS_ENV, "").split(",") if j]
    jars += delta_jars
    builder = (
        SparkSession.builder.appName(conf.app_name)
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", str(conf.shuffle_partitions))
        # Spark's progress bar only on a terminal: in a log file it is one line of \r-joined bars
        .config("spark.ui.showConsoleProgress", str(conf.show_progress and sys.stderr.isatty()).lower())
        .config("spark.ui.enabled", "false")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
    )
    if not under_spark_submit():
        # Under spark-submit the driver JVM already runs: master, memory and jars come from
        # its command line (spark-submit.sh passes the scoring jars with --jars).
        builder = builder.master(conf.master).config("spark.driver.memory", conf.driver_memory)
        if jars:
            builder = builder.config("spark.jars", ",".join(jars))
    if delta_jars:
        builder = builder.config("spark.sql.extensions", DELTA_EXTENSION).config(
            "spark.sql.catalog.spark_catalog", DELTA_CATALOG)
    for key, value in conf.options.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


def require_reachable_master(master: str, timeout: float = 5.0) -> None:
    """For a standalone master (``spark://h1:p1,h2:p2``): one of them accepts a connection, else
    ``EnvironmentProblem`` naming them, instead of Spark's minute of retries and a stopped
    context. Other masters (local, yarn, k8s://) are left to Spark."""
    import socket

    if not master.startswith("spark://"):
        return
    tried = []
    for address in master.removeprefix("spark://").split(","):
        host, _, port = address.rpartition(":")
        try:
            with socket.create_connection((host, int(port)), timeout=timeout):
                return
        except (OSError, ValueError) as exc:
            tried.append(f"{address}: {exc}")
    raise EnvironmentProblem(f"cannot reach the Spark master {master} ({'; '.join(tried)}); check "
                             "--master (spark-submit) or spark.master in conf")


def attach(spark: SparkSession) -> SparkSession:
    """A session for lakescore's queries on the SparkContext of ``spark`` (a user's, e.g. a
    notebook's): ``spark`` itself when its session time zone is UTC, else a new session of the
    same context (``newSession``: its own SQL conf, same executors, jars and cache) with UTC,
    because dates (``score_date``, windows over calendar days, ``TIMESTAMP '…'`` literals) are
    UTC in lakescore. The user's session is never stopped or reconfigured. The scorer jar
    cannot be added to a running driver: scoring refuses with a message naming ``spark.jars``
    (``engine.scoring.spark.scorer_class``)."""
    zone = spark.conf.get("spark.sql.session.timeZone", "UTC")
    if zone in ("UTC", "Etc/UTC", "+00:00", "Z"):
        return spark
    own = spark.newSession()
    own.conf.set("spark.sql.session.timeZone", "UTC")
    own.conf.set("spark.sql.execution.arrow.pyspark.enabled", "true")
    log.info("the SparkSession handed over runs in time zone %s; lakescore's queries use a new "
             "session of the same SparkContext in UTC (yours is unchanged)", zone)
    return own


def hadoop_options(lakehouse: str, storage_options: dict[str, str]) -> dict[str, str]:
    """Hadoop settings Spark needs to read and write an ``s3://``/``s3a://`` lakehouse with
    the same credentials and endpoint deltalake gets from ``storage_options`` (AWS_*): the
    S3A file system for both schemes, keys, region, and for a custom endpoint (MinIO, moto)
    path-style access and plain HTTP when the endpoint says so. The cluster needs hadoop-aws
    and its AWS SDK jars on the classpath (docs/deploy.md). Empty for other lakehouses."""
    if not lakehouse.startswith(("s3://", "s3a://")):
        return {}
    opts = {k.upper(): str(v) for k, v in storage_options.items()}
    out = {"fs.s3.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
           "fs.s3a.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem"}
    pairs = {"AWS_ACCESS_KEY_ID": "fs.s3a.access.key", "AWS_SECRET_ACCESS_KEY": "fs.s3a.secret.key",
             "AWS_SESSION_TOKEN": "fs.s3a.session.token", "AWS_REGION": "fs.s3a.endpoint.region"}
    out.update({hadoop: opts[aws] for aws, hadoop in pairs.items() if opts.get(aws)})
    if opts.get("AWS_SESSION_TOKEN"):
        out["fs.s3a.aws.credentials.provider"] = "org.apache.hadoop.fs.s3a.TemporaryAWSCredentialsProvider"
    endpoint = opts.get("AWS_ENDPOINT_URL") or opts.get("AWS_ENDPOINT")
    if endpoint:
        out["fs.s3a.endpoint"] = endpoint
        out["fs.s3a.path.style.access"] = "true"
        out["fs.s3a.connection.ssl.enabled"] = str(endpoint.startswith("https://")).lower()
    return out


def apply_hadoop_options(spark: SparkSession, options: dict[str, str]) -> None:
    """Set ``options`` on the context's Hadoop configuration, keeping any value already set
    there (by ``spark.hadoop.*`` on the command line or the user's session)."""
    hadoop = spark.sparkContext._jsc.hadoopConfiguration()  # type: ignore[union-attr]
    for key, value in options.items():
        if hadoop.get(key) is None:
            hadoop.set(key, value)


def under_spark_submit() -> bool:
    """True when spark-submit launched this Python driver (it hands over its JVM gateway)."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def delta_enabled(spark: SparkSession) -> bool:
    """Whether Delta's Spark extension is loaded, i.e. ``format("delta")`` can be used."""
    extensions = spark.conf.get("spark.sql.extensions", "") or ""
    if DELTA_EXTENSION not in extensions:
        return False
    try:
        spark._jvm.java.lang.Class.forName(DELTA_EXTENSION)  # type: ignore[union-attr]
    except Exception:  # noqa: BLE001 - py4j wraps ClassNotFoundException
        return False
    return True


# glibc's allocator in each Dask worker lakescore starts: freed blocks up to 32 MiB (glibc's
# largest mmap threshold) stay in the heap for reuse, and the heap is trimmed above 64 MiB.
# Dask's nanny sets MALLOC_TRIM_THRESHOLD_=65536, and any explicit malloc setting also pins the
# mmap threshold at 128 KiB: every NumPy temporary above that is then a fresh mapping whose
# pages fault in again, and returned at once. Measured at 10M events (bench/README.md, issue
# 17's third stop): lakescore's feature join a quarter faster on Dask, for about 350 MiB more
# resident per worker after the job. Variables set in the environment win; as for Dask's own
# value, the nanny leaves them in this process's environment, for what it starts later.
WORKER_MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": 32 * 2**20, "MALLOC_TRIM_THRESHOLD_": 64 * 2**20}


def dask_client(conf: DaskConf) -> Client:
    """A client to ``conf.scheduler`` or, when none is given, to a new local cluster.

    Workers are processes (not threads) so that each one can host its own JVM for MOJO scoring
    and a worker that dies does not take the client with it; their allocator keeps NumPy's
    temporaries for reuse (``WORKER_MALLOC_ENV``; a cluster's own workers get it from their
    deployment, as in ``deploy/k8s``).
    """
    prepare_process_env()
    import dask
    from dask.distributed import Client, LocalCluster

    if conf.scheduler:
        try:
            return Client(conf.scheduler, timeout=conf.connect_timeout)
        except OSError as exc:
            raise EnvironmentProblem(
                f"cannot reach the Dask scheduler at {conf.scheduler} within "
                f"{conf.connect_timeout} (dask.connect_timeout): {exc}; check dask.scheduler in "
                "conf or --scheduler") from exc
    # The nanny reads its workers' start environment from this config when it is created.
    with dask.config.set({f"distributed.nanny.pre-spawn-environ.{name}": value
                          for name, value in WORKER_MALLOC_ENV.items()}):
        cluster = LocalCluster(n_workers=conf.n_workers, threads_per_worker=conf.threads_per_worker,
                               processes=True, memory_limit=conf.memory_limit,
                               host="127.0.0.1", dashboard_address=conf.dashboard_address)
    return Client(cluster)


def h2o_connection(conf: H2OConf) -> None:
    """Connect the ``h2o`` module to ``conf.url``, or start a local H2O bound to 127.0.0.1."""
    import h2o

    if h2o.connection() is not None and h2o.cluster() is not None:
        try:
            if h2o.cluster().is_running():
                return
        except Exception:  # noqa: BLE001 - a stale connection is replaced below
            pass
    if conf.url:
        h2o.connect(url=conf.url, verbose=False)
        return
    from engine.environment import require_java

    require_java("a local H2O")
    h2o.init(ip="127.0.0.1", port=conf.port, max_mem_size=conf.max_mem, nthreads=conf.nthreads,
             bind_to_localhost=True, verbose=False)
    h2o.no_progress()
