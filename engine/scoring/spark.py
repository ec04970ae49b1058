"""MOJO scoring inside Spark's executor JVMs (``ai.lakescore.SparkMojoScorer``).

Rows never leave the JVM: no Arrow conversion, no Python worker, and no conversion to external
``Row`` objects either; the Java side reads the frame's own Catalyst rows by ordinal (see its
class comment). The MOJO is shipped to executors with ``SparkContext.addFile`` under a
content-hashed name, so two different models with the same file name never shadow each other.

The input's plan is turned into an RDD when this is called (as ``DataFrame.rdd`` does): with
adaptive execution, shuffles upstream of the scorer run at that point, not at the action.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from engine.errors import EnvironmentProblem
from engine.scoring.mojo import (
    ColumnKind,
    MissingColumns,
    check_scorable,
    content_named_copy,
    output_columns,
    read_mojo_info,
)

SCORER_CLASS = "ai.lakescore.SparkMojoScorer"


def column_kind(data_type: T.DataType) -> ColumnKind:
    """How the scorer reads a Spark type: numbers and booleans as doubles, strings as levels,
    and an all-null column (``NullType``) as missing values of either kind."""
    if isinstance(data_type, T.NullType):
        return "null"
    if isinstance(data_type, T.StringType):
        return "string"
    if isinstance(data_type, (T.NumericType, T.BooleanType)):
        return "numeric"
    return "other"


def scorer_class(spark: SparkSession, class_name: str = SCORER_CLASS):
    """A Java class of the scoring jar (the MOJO scorer, or the feature kernel of
    ``engine.features.spark``) in the session's driver JVM.

    Raises ``EnvironmentProblem`` when it is not on the classpath (the jar was not built, or the
    session was started without it).
    """
    try:
        loader = spark._jvm.java.lang.Thread.currentThread().getContextClassLoader()
        spark._jvm.java.lang.Class.forName(class_name, True, loader)
    except Exception as exc:  # noqa: BLE001 - py4j surfaces ClassNotFoundException as a generic error
        raise EnvironmentProblem(
            f"the lakescore Java class {class_name} is not on Spark's classpath; run `make setup` to "
            "build build/jars/lakescore-scorer.jar, then start Spark through "
            "engine.session.spark_session or ./spark-submit.sh so the jar is passed; a session "
            "started elsewhere (a notebook's) needs both jars of engine.scoring.jars.scorer_jars() "
            "in spark.jars when it starts (a running driver cannot load them) "
            f"(cause: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from exc
    java_class = spark._jvm
    for part in class_name.split("."):
        java_class = getattr(java_class, part)
    return java_class


def _string_array(spark: SparkSession, values: Sequence[str]):
    array = spark.sparkContext._gateway.new_array(spark._jvm.java.lang.String, len(values))
    for i, value in enumerate(values):
        array[i] = value
    return array


def ship_mojo(spark: SparkSession, mojo_path: str) -> str:
    """The MOJO's content-named copy, added to the executors' files once per session."""
    shipped = content_named_copy(mojo_path)
    if not any(added.endswith("/" + shipped.name) for added in spark.sparkContext.listFiles):
        spark.sparkContext.addFile(str(shipped))
    return str(shipped)


def ask_executors(spark: SparkSession, method: str, *args: str) -> list[dict[str, str] | None]:
    """``SparkMojoScorer.<method>(*args)`` on every executor JVM that runs one of a few tiny
    tasks (one per core, twice over), through Spark SQL's ``try_reflect``; each distinct answer
    (``key=value;…``) as a dict, or None from a JVM without the scorer class on its classpath.
    The answers are this class's own, so ``;`` separates fields and the last may hold anything."""
    slots = max(spark.sparkContext.defaultParallelism, 2) * 2
    call = F.call_function("try_reflect", F.lit(SCORER_CLASS), F.lit(method), *[F.lit(a) for a in args])
    rows = spark.range(0, slots, 1, slots).select(call.alias("answer")).distinct().collect()
    return [None if row["answer"] is None else _fields(row["answer"]) for row in rows]


def _fields(answer: str) -> dict[str, str]:
    out: dict[str, str] = {}
    rest = answer
    while rest:
        key, _, rest = rest.partition("=")
        if key == "found":  # always last: an exception's text may hold ';' and '='
            out[key] = rest
            break
        value, _, rest = rest.partition(";")
        out[key] = value
    return out


def scorer_class_missing():
    """The finding for an executor JVM without the scorer class (``ask_executors``' None)."""
    from engine.environment import Finding

    return Finding("an executor", "scorer jar", f"{SCORER_CLASS} on the classpath",
                   "class not found (pass build/jars/*.jar with --jars or spark.jars)", False)


def probe_mojos(spark: SparkSession, mojo_paths: Sequence[str]) -> None:
    """Before anything is computed: every executor that runs one of a few tiny tasks (one per
    core, twice over) reads each MOJO with genmodel (``SparkMojoScorer.probe``); one that cannot,
    or that lacks the scorer class, is ``EnvironmentProblem`` naming the executor and what it found."""
    from engine.environment import SCORER_ADVICE, Finding, raise_on_problems

    findings = []
    for path in mojo_paths:
        for answer in ask_executors(spark, "probe", ship_mojo(spark, path)):
            if answer is None:
                findings.append(scorer_class_missing())
                continue
            findings.append(Finding(f"executor {answer['executor']} (JVM)", f"MOJO {Path(path).name}",
                                    "read by genmodel in the executor's JVM", answer["found"],
                                    answer["found"] == "loaded"))
    raise_on_problems(findings, "MOJO scoring on the Spark executors", SCORER_ADVICE)


def score_mojo_spark(df: DataFrame, mojo_path: str, keep: Sequence[str], output: str = "score",
                     missing_columns: MissingColumns = "na") -> DataFrame:
    """``keep`` columns plus the model's ``output_columns``: ``output`` (double; P(second class)
    for binomial, the predicted class's probability for multinomial, the value for regression),
    then for classifiers ``prediction`` (string label, as H2O's ``predict``) and for multinomial
    one ``p_<level>`` per class.

    Checks the frame against the MOJO (``ModelMismatch``) and the classpath
    (``EnvironmentProblem``) before any Spark job runs. Nulls in feature columns score as
    missing values, as in H2O's ``predict``; so does a level the model never saw, and a feature
    column the frame lacks (logged as a warning; ``missing_columns="error"`` refuses the frame).
    Streams partition by partition; nothing is collected.
    """
    info = read_mojo_info(mojo_path)
    keep = list(keep)
    missing = check_scorable(info, {f.name: column_kind(f.dataType) for f in df.schema.fields}, keep,
                             output, missing_columns=missing_columns)
    outputs = [column.name for column in output_columns(info, output)]
    spark = df.sparkSession
    scorer = scorer_class(spark)
    shipped = ship_mojo(spark, mojo_path)
    # Only the columns the scorer reads, so the scan reads no others.
    needed = list(dict.fromkeys(keep + [n for n in info.feature_names if n not in missing]))
    projected = df.select(*[F.col(f"`{name}`") for name in needed])
    scored = scorer.score(projected._jdf, shipped, _string_array(spark, keep),
                          _string_array(spark, outputs))
    return DataFrame(scored, spark)
