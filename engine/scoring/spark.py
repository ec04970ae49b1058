"""MOJO scoring inside Spark's executor JVMs through our Java UDF (``ai.lakescore.MojoUdf``).

Rows never leave the JVM: no Arrow conversion, no Python worker. The MOJO is shipped to
executors with ``SparkContext.addFile`` under a content-hashed name.
"""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType

from engine.errors import EnvironmentProblem
from engine.scoring.mojo import content_named_copy, read_mojo_info

UDF_NAME = "lakescore_mojo_score"
UDF_CLASS = "ai.lakescore.MojoUdf"


def _register(df: DataFrame) -> None:
    spark = df.sparkSession
    if spark.conf.get("lakescore.mojo_udf_registered", "false") == "true":
        return
    try:
        spark.udf.registerJavaFunction(UDF_NAME, UDF_CLASS, DoubleType())
    except Exception as exc:  # noqa: BLE001 - py4j surfaces ClassNotFoundException as a generic error
        raise EnvironmentProblem(
            f"the MOJO scoring class {UDF_CLASS} is not on Spark's classpath ({exc.__class__.__name__}); "
            "run `make setup` to build build/jars/lakescore-scorer.jar, and start Spark through "
            "engine.session.spark_session or ./spark-submit.sh so the jar is passed") from exc
    spark.conf.set("lakescore.mojo_udf_registered", "true")


def score_mojo_spark(df: DataFrame, mojo_path: str, keep: Sequence[str],
                     output: str = "score") -> DataFrame:
    """``keep`` columns plus ``output`` (P(positive class) or the regression value)."""
    info = read_mojo_info(mojo_path)
    info.check_columns(df.columns, "the frame to score")
    _register(df)
    shipped = content_named_copy(mojo_path)
    df.sparkSession.sparkContext.addFile(str(shipped))
    features = F.struct(*[F.col(f"`{name}`") for name in info.feature_names])
    return df.select(*[F.col(f"`{k}`") for k in keep],
                     F.call_udf(UDF_NAME, F.lit(str(shipped)), features).alias(output))
