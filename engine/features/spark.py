"""Spark compiler of a ``FeatureSet``: the point-in-time join as one pass per partition in the
executors' JVMs (``ai.lakescore.FeatureWindows``, built into the scoring jar).

Event rows, reduced to keys, time in microseconds and the plan's prepared inputs
(``engine.features.plan``), and label (spine) rows are each hash-partitioned by the entity keys
into as many partitions: two shuffles, no collect, no join. When every event column is
integral, boolean, date, timestamp or floating (the usual case), the events travel by the
kernel's columnar exchange (``ai.lakescore.EventBlocks``: a few hundred blocks of encoded
columns rather than millions of rows; at 10M events a quarter less CPU for the whole join),
sent to the partition Spark's hash partitioning gives the labels of the same keys; otherwise by
``repartition``. The kernel zips them
partition by partition, groups each partition by entity, sorts each entity's events by time,
and walks its labels in time order with two pointers per window, so every event enters and
leaves each window once; each feature is then a Spark expression over the statistics'
columns, as on Dask.

Why the JVM and not Spark's window functions: a sliding ``rangeBetween`` frame re-folds its
buffer, quadratic on a skewed entity; and Spark's ``sortWithinPartitions`` alone cost more than
the kernel's grouping and sorting of primitive arrays. Why not a UDF or ``applyInArrow``: rows
would leave the JVM (Arrow, a Python worker) or become boxed ``Row`` objects; the kernel reads
Catalyst's rows by ordinal, as MOJO scoring does. The cost is that a partition is held in
memory (primitive arrays, copies of the label rows) while it is grouped.

Sums are exact: the real sum of the window's values correctly rounded once (as ``math.fsum``),
so they depend neither on the order events arrive in nor on the engine. Only ``std`` folds
values in order (Welford's update, as ``stddev_samp``): events at equal times are ordered by
value (``Plan.sort_inputs``). The parity tests hold Spark, Dask and DuckDB to the same values.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.errors import SchemaMismatch
from engine.features.definitions import FeatureSet, check_inputs, event_kinds
from engine.features.plan import AS_OF_MICROS, PREFIX, Input, Plan
from engine.features.spark_expressions import spark_input, to_spark

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame
    from pyspark.sql.types import DataType, StructType

_PREFIX = PREFIX
_TIME = AS_OF_MICROS
_PARTITION = PREFIX + "partition"


def spark_kind(data_type: DataType) -> str:
    """The simple column kind ``check_inputs`` understands for a Spark type."""
    from pyspark.sql import types as T

    if isinstance(data_type, (T.ByteType, T.ShortType, T.IntegerType, T.LongType)):
        return "int"
    if isinstance(data_type, (T.FloatType, T.DoubleType)):
        return "float"
    if isinstance(data_type, T.DecimalType):
        return "decimal"
    if isinstance(data_type, (T.StringType, T.VarcharType, T.CharType)):
        return "string"
    if isinstance(data_type, (T.TimestampType, T.TimestampNTZType)):
        return "timestamp"
    if isinstance(data_type, T.DateType):
        return "date"
    if isinstance(data_type, T.BooleanType):
        return "bool"
    return data_type.simpleString()


def spark_column_kinds(schema: StructType) -> dict[str, str]:
    """Column name → kind for a Spark schema (see ``check_inputs``)."""
    return {f.name: spark_kind(f.dataType) for f in schema.fields}


def _micros(column: str) -> Column:
    from pyspark.sql import functions as F

    # TimestampNTZ is read as UTC wall time (the session time zone is UTC).
    return F.unix_micros(F.col(column).cast("timestamp"))


KERNEL_CLASS = "ai.lakescore.FeatureWindows"


def _every_event(item: Input) -> bool:
    """The plain event indicator: 1 for every event, so the kernel needs no column for it."""
    return item.column is None and item.where is None


def kernel_config(plan: Plan, keys: list[str], spine_columns: list[str], partition: str | None = None) -> str:
    """The JSON ``FeatureWindows.compute`` reads: which columns are keys, time and inputs,
    which statistics to compute, in which order events at equal times come, whether a label's
    own time is in its windows, which spine columns to output, and the events' partition
    column (None when the events come partitioned already)."""
    import json

    return json.dumps({
        "keys": keys, "time": _TIME, "spine": spine_columns, "partition": partition,
        "inclusive": plan.fs.inclusive, "order": plan.sort_inputs,
        "inputs": [{"name": None if _every_event(item) else item.name(i), "numeric": item.numeric}
                   for i, item in enumerate(plan.inputs)],
        "stats": [{"name": s.name, "kind": s.kind, "input": s.input, "micros": s.micros} for s in plan.stats],
    })


def training_set_spark(fs: FeatureSet, events: DataFrame, spine: DataFrame) -> DataFrame:
    """Every row of ``spine`` exactly once, with one column per feature of ``fs``.

    A feature of a spine row is computed over the events of the same entity with
    ``as_of - window <= event_time < as_of`` (see ``engine.features.definitions`` for filters,
    nulls, defaults and ttl). The spine's columns and types are kept; features are ``long``
    (count, distinct_count) or ``double``. Lazy: nothing runs until the result is used, but
    the spine rows' shuffle feeding the kernel (and the events' when they take ``repartition``)
    runs when this is called, as for ``DataFrame.rdd``; the events' columnar exchange runs with
    the result.
    Raises ``DefinitionError`` / ``SchemaMismatch`` (from the schemas only) before any job runs,
    and ``EnvironmentProblem`` when the kernel's jar is not on the session's classpath.
    """
    from pyspark.sql import DataFrame as SparkFrame
    from pyspark.sql import functions as F

    from engine.scoring.spark import scorer_class

    source_kinds = spark_column_kinds(events.schema)
    check_inputs(fs, source_kinds, spark_column_kinds(spine.schema))
    internal = [c for c in spine.columns if c.startswith(_PREFIX)]
    if internal:
        raise SchemaMismatch(f"feature definition {fs.name!r}: spine column {internal[0]!r} uses the "
                             f"prefix {_PREFIX!r} reserved for lakescore's internal columns; rename it")
    spark = spine.sparkSession
    kernel = scorer_class(spark, KERNEL_CLASS)
    keys = list(fs.entity_keys)
    kinds = event_kinds(fs, source_kinds)
    plan = Plan(fs, kinds)
    computed = fs.computed()

    def source(name: str) -> Column:
        return spark_input(name, source_kinds[name])

    def event_value(name: str, numeric: bool) -> Column:
        if name in computed:
            value = to_spark(computed[name].tree, source, source_kinds)
        else:
            value = source(name)
        return value.cast("double") if numeric else value

    def event_column(name: str) -> Column:
        return event_value(name, False)

    prepared = []
    for i, item in enumerate(plan.inputs):
        if _every_event(item):
            continue
        value = F.lit(1) if item.column is None else event_value(item.column, item.numeric)
        if item.where is not None:
            value = F.when(to_spark(item.where.tree, event_column, kinds), value)
        prepared.append(value.alias(item.name(i)))

    present = F.col(fs.timestamp).isNotNull()
    for key in keys:
        present = present & F.col(key).isNotNull()
    # Both sides' keys in one type (as a union would widen them), so equal keys hash alike.
    common = spine.select(*keys).unionByName(events.select(*keys)).schema
    key_column = {key: F.col(key).cast(common[key].dataType).alias(key) for key in keys}
    event_rows = events.where(present).select(
        *key_column.values(), _micros(fs.timestamp).alias(_TIME), *prepared)
    label_rows = spine.select(*(key_column.get(c, F.col(c)) for c in spine.columns),
                              _micros(fs.as_of).alias(_TIME))
    # Two co-partitioned shuffles of narrow rows, zipped by the kernel. An explicit count:
    # adaptive execution would coalesce a small shuffle into fewer partitions than cores (3
    # tasks on 2 cores take two rounds), and both sides must have the same count.
    partitions = int(spark.conf.get("spark.sql.shuffle.partitions"))
    # Events of primitive columns only (the usual case) take the kernel's columnar exchange:
    # each row's partition is computed as Spark's hash partitioning of the labels computes it.
    with_partition = event_rows.withColumn(_PARTITION, F.pmod(F.hash(*keys), F.lit(partitions)))
    if kernel.packable(with_partition._jdf, _PARTITION):
        events_in, partition = with_partition, _PARTITION
    else:
        events_in, partition = event_rows.repartition(partitions, *keys), None
    windowed = SparkFrame(kernel.compute(
        events_in._jdf, label_rows.repartition(partitions, *keys)._jdf,
        kernel_config(plan, keys, [*spine.columns, _TIME], partition)), spark)

    raw = plan.raw_last_kinds()

    def stat_or_time(name: str) -> Column:
        # Last values of strings, booleans and timestamps keep their type.
        return F.col(name) if name in raw else F.col(name).cast("double")

    features: dict[str, Column] = {}
    spark_types = {"int64": "bigint", "float64": "double", "string": "string", "boolean": "boolean",
                   "datetime64[us, UTC]": "timestamp"}
    for name, dtype in fs.dtypes(kinds).items():
        features[name] = to_spark(plan.features[name], lambda c: features[c] if c in features
                                  else stat_or_time(c)).cast(spark_types[dtype])
    key_types = {key: spine.schema[key].dataType for key in keys}
    return windowed.select(*(F.col(c).cast(key_types[c]).alias(c) if c in key_types else F.col(c)
                             for c in spine.columns),
                           *(column.alias(name) for name, column in features.items()))


def scoring_set_spark(fs: FeatureSet, events: DataFrame, as_of: object,
                      entities: DataFrame | None = None) -> DataFrame:
    """The features of ``fs`` as of one time for every entity: the same point-in-time join as
    ``training_set_spark`` over a spine of ``(keys..., as_of)`` rows.

    The entities are those of ``entities`` (its entity key columns, deduplicated) or, by
    default, every entity (combination of keys, none null) with an event the window contract can
    see at ``as_of`` (before it, or at it when inclusive); an entity whose events are all older
    than every window gets the defaults. Distinct entities come from a shuffle (no collect).
    """
    from pyspark.sql import functions as F

    from engine.features.definitions import scoring_time

    at = scoring_time(as_of)
    keys = list(fs.entity_keys)
    source_kinds = spark_column_kinds(events.schema)
    if entities is None:
        check_inputs(fs, source_kinds, {**{k: source_kinds.get(k, "?") for k in keys}, fs.as_of: "timestamp"})
        seen = F.col(fs.timestamp) <= F.lit(at.to_pydatetime()) if fs.inclusive else \
            F.col(fs.timestamp) < F.lit(at.to_pydatetime())
        for key in keys:
            seen = seen & F.col(key).isNotNull()
        entities = events.where(seen)
    else:
        given = spark_column_kinds(entities.schema)
        check_inputs(fs, source_kinds, {**{k: given[k] for k in keys if k in given}, fs.as_of: "timestamp"})
    spine = entities.select(*keys).distinct().withColumn(
        fs.as_of, F.lit(at.to_pydatetime()).cast("timestamp"))
    return training_set_spark(fs, events, spine)
