"""MOJO scoring inside Spark's executor JVMs through our Java UDF (``ai.lakescore.MojoUdf``).

Rows never leave the JVM: no Arrow conversion, no Python worker. The MOJO is shipped to
executors with ``SparkContext.addFile`` under a content-hashed name, so two different models
with the same file name never shadow each other.
"""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from engine.errors import EnvironmentProblem
from engine.scoring.mojo import ColumnKind, check_scorable, content_named_copy, read_mojo_info

UDF_NAME = "lakescore_mojo_score"
UDF_CLASS = "ai.lakescore.MojoUdf"
_REGISTERED_FLAG = "lakescore.mojo_udf_registered"


def column_kind(data_type: T.DataType) -> ColumnKind:
    """How the UDF reads a Spark type: numbers and booleans as doubles, strings as levels, and
    an all-null column (``NullType``) as missing values of either kind."""
    if isinstance(data_type, T.NullType):
        return "null"
    if isinstance(data_type, T.StringType):
        return "string"
    if isinstance(data_type, (T.NumericType, T.BooleanType)):
        return "numeric"
    return "other"


def register_mojo_udf(spark: SparkSession, udf_class: str = UDF_CLASS) -> None:
    """Register the Java UDF once per session.

    Raises ``EnvironmentProblem`` when the class is not on the session's classpath (the jar was
    not built, or the session was started without it).
    """
    if spark.conf.get(_REGISTERED_FLAG, "") == udf_class:
        return
    try:
        spark.udf.registerJavaFunction(UDF_NAME, udf_class, T.DoubleType())
    except Exception as exc:  # noqa: BLE001 - py4j surfaces ClassNotFoundException as a generic error
        raise EnvironmentProblem(
            f"the MOJO scoring class {udf_class} is not on Spark's classpath; run `make setup` to "
            "build build/jars/lakescore-scorer.jar, then start Spark through "
            "engine.session.spark_session or ./spark-submit.sh so the jar is passed "
            f"(cause: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from exc
    spark.conf.set(_REGISTERED_FLAG, udf_class)


def score_mojo_spark(df: DataFrame, mojo_path: str, keep: Sequence[str],
                     output: str = "score") -> DataFrame:
    """``keep`` columns plus ``output`` (double): P(second class) for binomial models, the
    predicted value for regression.

    Checks the frame against the MOJO (``ModelMismatch``) and the classpath
    (``EnvironmentProblem``) before any Spark job runs. Nulls in feature columns score as
    missing values, as in H2O's ``predict``; a level the model never saw scores as missing too.
    """
    info = read_mojo_info(mojo_path)
    check_scorable(info, {f.name: column_kind(f.dataType) for f in df.schema.fields}, keep, output)
    spark = df.sparkSession
    register_mojo_udf(spark)
    shipped = content_named_copy(mojo_path)
    if not any(added.endswith("/" + shipped.name) for added in spark.sparkContext.listFiles):
        spark.sparkContext.addFile(str(shipped))
    features = F.struct(*[F.col(f"`{name}`") for name in info.feature_names])
    return df.select(*[F.col(f"`{k}`") for k in keep],
                     F.call_udf(UDF_NAME, F.lit(str(shipped)), features).alias(output))
