"""Spark: storage through mapInArrow + one deltalake commit (or native delta-spark), features as
window functions, Great Expectations' Spark engine, MOJOs in the executors' JVMs, MLlib natively."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.backend import (CanConcat, CanCountDefaults, CanInspectWorkers, CanMeasureDrift,
                            CanProfile, CanQuarantine, CanScoreMllib, Capabilities)
from engine.conf import Conf
from engine.session import spark_session
from engine.validation.spark import SUPPORTED_EXPECTATIONS

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


def _with_constants(frame: DataFrame, constants: Mapping[str, str]) -> DataFrame:
    from pyspark.sql import functions as F

    return frame.withColumns({name: F.lit(value) for name, value in constants.items()})


@dataclass
class SparkBackend(CanScoreMllib, CanConcat, CanQuarantine, CanProfile, CanMeasureDrift,
                   CanCountDefaults, CanInspectWorkers):
    spark: SparkSession
    name: str = "spark"
    capabilities = Capabilities(expectations=SUPPORTED_EXPECTATIONS,
                                trainer_families=frozenset({"h2o", "mllib"}))

    @classmethod
    def from_conf(cls, conf: Conf, preflight: bool = True) -> SparkBackend:
        """The session of conf (or spark-submit's), set up for the lakehouse; on a cluster, the
        executors' Python packages are checked against the driver's before any work."""
        from engine.environment import compare, local_facts, raise_on_problems
        from engine.session import apply_hadoop_options, hadoop_options

        spark = spark_session(conf.spark)
        apply_hadoop_options(spark, hadoop_options(conf.lakehouse, dict(conf.storage_options)))
        if preflight and not spark.sparkContext.master.startswith("local"):
            reference = local_facts()
            findings = [f for label, facts, _ in executor_facts(spark)
                        for f in compare(reference, facts, label, java=False)]
            raise_on_problems(findings, f"the executors of {spark.sparkContext.master}")
        return cls(spark)

    @classmethod
    def attach(cls, spark: SparkSession) -> SparkBackend:
        """A backend on a session the caller already has (a notebook's, a job's): used as it
        is, never stopped; queries run in UTC (``engine.session.attach``)."""
        from engine.session import attach

        return cls(attach(spark))

    @classmethod
    def for_frame(cls, frame: Any) -> SparkBackend:
        return cls(frame.sparkSession)

    def read(self, table, version=None, columns=None, partitions=None):
        from engine.storage.spark import read_spark

        return read_spark(self.spark, table, version=version, columns=columns,
                          partitions=partitions)

    def write(self, frame, table, mode, commit):
        from engine.storage.spark import write_spark

        return write_spark(frame, table, mode, commit)

    def training_set(self, definition, events, spine):
        from engine.features.spark import training_set_spark

        return training_set_spark(definition, events, spine)

    def scoring_set(self, definition, events, as_of, entities=None):
        from engine.features.spark import scoring_set_spark

        return scoring_set_spark(definition, events, as_of, entities)

    def validate(self, frame, suite, table):
        from engine.validation.spark import validate_spark

        return validate_spark(frame, suite, table)

    def profile_columns(self, frame, kinds, max_values):
        from engine.validation.spark import profile_columns_spark

        return profile_columns_spark(frame, kinds, max_values)

    def column_quantiles(self, frame, columns, probabilities):
        from engine.validation.spark import column_quantiles_spark

        return column_quantiles_spark(frame, columns, probabilities)

    def bin_counts(self, frame, edges):
        from engine.validation.spark import bin_counts_spark

        return bin_counts_spark(frame, edges)

    def level_counts(self, frame, columns):
        from engine.validation.spark import level_counts_spark

        return level_counts_spark(frame, columns)

    def count_all_default(self, frame, defaults):
        from engine.validation.spark import count_all_default_spark

        return count_all_default_spark(frame, defaults)

    def quarantine_split(self, frame, rules, constants):
        from engine.validation.spark import quarantine_split_spark

        return quarantine_split_spark(frame, rules, constants)

    def score_mojo(self, frame: Any, mojo_path: str, keep: Sequence[str],
                   constants: Mapping[str, str], missing_columns: str = "na") -> Any:
        from engine.scoring.spark import score_mojo_spark

        return _with_constants(score_mojo_spark(frame, mojo_path, keep, missing_columns=missing_columns),
                               constants)

    def require_scorer(self, mojo_paths: Sequence[str] = ()) -> None:
        from engine.scoring.spark import probe_mojos, scorer_class

        scorer_class(self.spark)
        probe_mojos(self.spark, mojo_paths)

    def with_utc_date(self, frame, timestamp_column, name):
        from pyspark.sql import functions as F

        # The session time zone is UTC (engine.session), so to_date gives the UTC date.
        return frame.withColumn(name, F.to_date(F.col(f"`{timestamp_column}`")))

    def approx_quantiles(self, frame, column, probabilities, where=None):
        from pyspark.sql import functions as F

        for name, value in (where or {}).items():
            frame = frame.where(F.col(f"`{name}`") == F.lit(value))
        row = frame.select(F.percentile_approx(F.col(f"`{column}`").cast("double"),
                                               list(probabilities), 10_000).alias("q")).first()
        values = row["q"] if row is not None else None
        return [None] * len(probabilities) if values is None else [float(v) for v in values]

    def score_mllib(self, frame, model_path, keep, constants):
        from engine.training.mllib_trainer import score_mllib

        return _with_constants(score_mllib(frame, model_path, keep), constants)

    def rewrite_files(self, table, files, files_out):
        from engine.storage.spark import rewrite_spark

        return rewrite_spark(self.spark, table, files, files_out)

    def concat(self, frames):
        from functools import reduce

        return reduce(lambda a, b: a.unionByName(b), frames)

    def worker_facts(self, lakehouse=None, storage_options=None):
        return executor_facts(self.spark, lakehouse, storage_options)

    def engine_findings(self, reference, delta=False):
        return jvm_findings(self.spark, reference, delta)

    def close(self) -> None:
        """The session is shared by the process (and by tests); it stops at exit."""


def _executor_label(facts: dict) -> str:
    """An executor's name from its Python worker: standalone and YARN run each executor in its
    own directory named by its id (``…/app-…/<id>``); local mode runs in the driver's."""
    cwd = Path(facts["cwd"])
    if cwd.parent.name.startswith(("app-", "application_", "container_")) or cwd.name.startswith("container_"):
        return f"executor {cwd.name}@{facts['host']}"
    return f"executor (in the driver's JVM)@{facts['host']}"


def executor_facts(spark: SparkSession, lakehouse: str | None = None,
                   storage_options: Mapping[str, str] | None = None) -> list[tuple[str, dict, Any]]:
    """Facts of the Python workers of every executor that runs one of a few tiny tasks (one
    per core, twice over, so each executor gets some), deduplicated by executor."""
    sc = spark.sparkContext
    slots = max(sc.defaultParallelism, 2) * 2
    options = dict(storage_options or {})

    def gather(_: Any) -> Any:
        from engine.environment import local_facts, probe_lakehouse

        facts = local_facts()
        label = _executor_label(facts)
        probe = probe_lakehouse(lakehouse, options, label) if lakehouse else None
        yield label, facts, probe

    seen: dict[str, tuple[str, dict, Any]] = {}
    for label, facts, probe in sc.parallelize(range(slots), slots).mapPartitions(gather).collect():
        seen.setdefault(label, (label, facts, probe))
    return list(seen.values())


def jvm_findings(spark: SparkSession, reference: Mapping[str, str], delta: bool = False) -> list[Any]:
    """The JVM side: Spark's version against pyspark's, and on every executor JVM that runs a
    task, the scorer class (``SparkMojoScorer.environment`` through ``try_reflect``: NULL when
    the jar is not on that executor's classpath), its Java and its genmodel jar."""
    import pyspark

    from engine.environment import JAVA_MAJOR, Finding, java_major
    from engine.scoring.spark import SCORER_CLASS, ask_executors, scorer_class_missing
    from engine.session import delta_enabled

    findings = [Finding("driver", "spark", f"{pyspark.__version__} (pyspark)", spark.version,
                        spark.version.split(".")[:2] == pyspark.__version__.split(".")[:2])]
    for env in ask_executors(spark, "environment"):
        if env is None:
            findings.append(scorer_class_missing())
            continue
        host = f"executor {env['executor']} (JVM)"
        findings.append(Finding(host, "java", str(JAVA_MAJOR), f"{env['java']} at {env['java_home']}",
                                java_major(env["java"]) == JAVA_MAJOR))
        findings.append(Finding(host, "scorer jar + genmodel", f"{SCORER_CLASS} and hex.genmodel",
                                f"genmodel from {env['genmodel']}", True))
    if delta:
        findings.append(Finding("driver", "delta extension", "io.delta.sql.DeltaSparkSessionExtension loaded",
                                "loaded" if delta_enabled(spark) else "not on the classpath (LAKESCORE_DELTA_JARS)",
                                delta_enabled(spark)))
    return findings
