"""Spark: storage through mapInArrow + one deltalake commit (or native delta-spark), features as
window functions, Great Expectations' Spark engine, MOJOs in the executors' JVMs, MLlib natively."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engine.backend import CanConcat, CanMeasureDrift, CanProfile, CanQuarantine, CanTrainMllib
from engine.conf import Conf
from engine.session import spark_session

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


def _with_constants(frame: DataFrame, constants: Mapping[str, str]) -> DataFrame:
    from pyspark.sql import functions as F

    return frame.withColumns({name: F.lit(value) for name, value in constants.items()})


@dataclass
class SparkBackend(CanTrainMllib, CanConcat, CanQuarantine, CanProfile, CanMeasureDrift):
    spark: SparkSession
    name: str = "spark"

    @classmethod
    def from_conf(cls, conf: Conf) -> SparkBackend:
        return cls(spark_session(conf.spark))

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

    def quarantine_split(self, frame, rules, constants):
        from engine.validation.spark import quarantine_split_spark

        return quarantine_split_spark(frame, rules, constants)

    def score_mojo(self, frame: Any, mojo_path: str, keep: Sequence[str],
                   constants: Mapping[str, str], missing_columns: str = "na") -> Any:
        from engine.scoring.spark import score_mojo_spark

        return _with_constants(score_mojo_spark(frame, mojo_path, keep, missing_columns=missing_columns),
                               constants)

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

    def train_mllib(self, frame, **kwargs):
        from engine.training.mllib_trainer import train_mllib_gbt

        return train_mllib_gbt(frame, **kwargs)

    def score_mllib(self, frame, model_path, keep, constants):
        from engine.training.mllib_trainer import score_mllib

        return _with_constants(score_mllib(frame, model_path, keep), constants)

    def rewrite_files(self, table, files, files_out):
        from engine.storage.spark import rewrite_spark

        return rewrite_spark(self.spark, table, files, files_out)

    def concat(self, frames):
        from functools import reduce

        return reduce(lambda a, b: a.unionByName(b), frames)

    def close(self) -> None:
        """The session is shared by the process (and by tests); it stops at exit."""
