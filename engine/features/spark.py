"""Spark compiler of a ``FeatureSet``: a point-in-time join as window functions.

The spine and the events are unioned into one frame, hash-partitioned by entity and sorted by
(entity, time, values); each feature is a window aggregate over a range frame
``[as_of - window, as_of - 1µs]`` of the time in microseconds. No Python UDF, no collect, no
cross or range join: the work is one shuffle, one sort and one pass per partition.

Why the explicit sort: Spark recomputes a sliding frame's sum from its buffer, in the buffer's
order, which is the sorted input order. Sorting ties on time by the values themselves makes
that order (hence every floating-point sum) deterministic and equal to the Dask compiler's,
which adds the same values in the same order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.errors import SchemaMismatch
from engine.features.definitions import FeatureSet, check_inputs

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame
    from pyspark.sql.types import DataType, StructType

_PREFIX = "__lakescore_"
_TIME = _PREFIX + "time_us"
_IS_EVENT = _PREFIX + "is_event"


def _value(i: int) -> str:
    return f"{_PREFIX}value_{i}"


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


def training_set_spark(fs: FeatureSet, events: DataFrame, spine: DataFrame) -> DataFrame:
    """Every row of ``spine`` exactly once, with one column per feature of ``fs``.

    A feature of a spine row is computed over the events of the same entity with
    ``as_of - window <= event_time < as_of`` (see ``engine.features.definitions`` for nulls and
    defaults). The spine's columns and types are kept; features are ``long`` (count) or
    ``double`` (sum, mean). Lazy: nothing runs until the result is used. Raises
    ``DefinitionError`` / ``SchemaMismatch`` (from the schemas only) before any job runs.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    check_inputs(fs, spark_column_kinds(events.schema), spark_column_kinds(spine.schema))
    internal = [c for c in spine.columns if c.startswith(_PREFIX)]
    if internal:
        raise SchemaMismatch(f"feature definition {fs.name!r}: spine column {internal[0]!r} uses the "
                             f"prefix {_PREFIX!r} reserved for lakescore's internal columns; rename it")
    entity = fs.entity
    summed = fs.summed_columns()
    value_of = {column: _value(i) for i, column in enumerate(summed)}

    def as_double(column: str) -> Column:
        value = F.col(column).cast("double")
        return F.when(F.isnan(value), F.lit(None).cast("double")).otherwise(value)

    event_rows = events.where(F.col(entity).isNotNull() & F.col(fs.timestamp).isNotNull()).select(
        F.col(entity),
        _micros(fs.timestamp).alias(_TIME),
        F.lit(1).alias(_IS_EVENT),
        *(as_double(column).alias(value_of[column]) for column in summed),
    )
    spine_rows = spine.withColumn(_TIME, _micros(fs.as_of))
    rows = spine_rows.unionByName(event_rows, allowMissingColumns=True)
    ordered = rows.repartition(entity).sortWithinPartitions(
        F.col(entity), F.col(_TIME), *(F.col(value_of[c]).asc_nulls_last() for c in summed))

    by_time = Window.partitionBy(entity).orderBy(_TIME)
    # Each (column, window) aggregate once, however many features read it.
    windowed: dict[str, Column] = {}
    for agg in fs.aggregations:
        frame = by_time.rangeBetween(-agg.micros, -1)
        windowed[f"{_PREFIX}events_{agg.micros}"] = F.count(_IS_EVENT).over(frame)
        if agg.function != "count":
            value = value_of[agg.column]
            windowed[f"{value}_sum_{agg.micros}"] = F.sum(value).over(frame)
            windowed[f"{value}_n_{agg.micros}"] = F.count(value).over(frame)
    features: dict[str, Column] = {}
    for agg in fs.aggregations:
        if agg.function == "count":
            features[agg.name] = F.col(f"{_PREFIX}events_{agg.micros}")
            continue
        total = F.col(f"{value_of[agg.column]}_sum_{agg.micros}")
        present = F.col(f"{value_of[agg.column]}_n_{agg.micros}")
        features[agg.name] = (F.coalesce(total, F.lit(0.0)) if agg.function == "sum"
                              else F.when(present > 0, total / present))
    entity_type = spine.schema[entity].dataType
    return (ordered.withColumns(windowed)
            .where(F.col(_IS_EVENT).isNull())
            .select(*(F.col(c).cast(entity_type).alias(c) if c == entity else F.col(c)
                      for c in spine.columns),
                    *(column.alias(name) for name, column in features.items())))
