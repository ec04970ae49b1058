"""The Arrow schemas lakescore stores and how a batch's schema is checked against a table's.

Pure functions over pyarrow schemas (and deltalake's type names): no log is read here; callers
pass the table's schema from the snapshot they loaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from engine.errors import SchemaMismatch
from engine.storage.table import TableRef

if TYPE_CHECKING:
    import pyarrow as pa


def from_delta(delta_schema: Any) -> pa.Schema:
    """A deltalake ``Schema`` as Arrow, as delta-rs maps it (not yet normalized)."""
    import pyarrow as pa

    return pa.schema(delta_schema.to_arrow())


def normalize_schema(schema: pa.Schema, table: TableRef | None = None) -> pa.Schema:
    """The Arrow schema lakescore stores: string not large/view, timestamps ``us`` in UTC.

    A time-zone-naive timestamp is refused: Delta would store it as ``timestamp_ntz`` (raising
    the table protocol) and its meaning would depend on the writer's clock.
    """
    import pyarrow as pa

    return pa.schema([pa.field(f.name, _normal_type(f.type, f.name, table), nullable=True)
                      for f in schema])


def _normal_type(kind: pa.DataType, column: str, table: TableRef | None) -> pa.DataType:
    import pyarrow as pa

    if pa.types.is_large_string(kind) or pa.types.is_string_view(kind):
        return pa.string()
    if pa.types.is_large_binary(kind) or pa.types.is_binary_view(kind):
        return pa.binary()
    if pa.types.is_timestamp(kind):
        if kind.tz is None:
            where = f" for table {table}" if table is not None else ""
            raise SchemaMismatch(
                f"column {column!r}{where} is a time-zone-naive timestamp; lakescore stores "
                "UTC instants: localize it to UTC first (pandas: .dt.tz_localize('UTC'), "
                "Spark: TimestampType, not TimestampNTZType)")
        return pa.timestamp("us", tz="UTC")
    if pa.types.is_dictionary(kind):
        return _normal_type(kind.value_type, column, table)
    if pa.types.is_large_list(kind) or pa.types.is_list_view(kind):
        return pa.list_(_normal_type(kind.value_type, column, table))
    if pa.types.is_list(kind):
        return pa.list_(_normal_type(kind.value_type, column, table))
    if pa.types.is_struct(kind):
        return pa.struct([pa.field(f.name, _normal_type(f.type, f"{column}.{f.name}", table))
                          for f in kind])
    if pa.types.is_null(kind):
        raise SchemaMismatch(
            f"column {column!r}{'' if table is None else f' for table {table}'} has no type "
            "(all nulls or pandas object dtype): cast it to a concrete type before writing")
    return kind


def type_kind(kind: pa.DataType) -> str:
    """The family of a type, as readers treat it: widths and time units may differ between
    files of one column (int32 and int64, timestamp ms and us), families may not."""
    import pyarrow as pa

    for test, name in ((pa.types.is_integer, "integer"), (pa.types.is_floating, "float"),
                       (pa.types.is_decimal, "decimal"), (pa.types.is_boolean, "boolean"),
                       (pa.types.is_timestamp, "timestamp"), (pa.types.is_date, "date"),
                       (lambda t: pa.types.is_string(t) or pa.types.is_large_string(t)
                        or pa.types.is_string_view(t), "string"),
                       (lambda t: pa.types.is_binary(t) or pa.types.is_large_binary(t), "binary")):
        if test(kind):
            return name
    if pa.types.is_dictionary(kind):
        return type_kind(kind.value_type)
    for test, name in ((pa.types.is_list, "list"), (pa.types.is_large_list, "list"),
                       (pa.types.is_struct, "struct"), (pa.types.is_map, "map")):
        if test(kind):
            return name
    return str(kind)


def delta_types(schema: pa.Schema) -> dict[str, str]:
    """Column → Delta type string, so that Arrow spellings of one Delta type compare equal."""
    from deltalake import Schema as DeltaSchema

    return {f.name: str(f.type) for f in DeltaSchema.from_arrow(schema).fields}


def schema_differences(expected: pa.Schema, actual: pa.Schema) -> list[str]:
    """Human-readable differences of ``actual`` from ``expected``, compared by Delta type.

    One entry per column: ``missing column x``, ``unexpected column y``, ``z is double, the
    table has int64``. Empty when they match (column order and nullability do not matter).
    """
    want, got = delta_types(expected), delta_types(actual)
    problems = [f"missing column {c}" for c in want if c not in got]
    problems += [f"unexpected column {c}" for c in got if c not in want]
    problems += [f"{c} is {actual.field(c).type}, the table has {expected.field(c).type}"
                 for c in want if c in got and want[c] != got[c]]
    return problems


def check_schema(table: TableRef, schema: pa.Schema, table_schema: pa.Schema, version: int) -> None:
    """Raise :class:`SchemaMismatch` unless ``schema`` has exactly the columns and types of
    ``table_schema`` (the table's at ``version``, normalized).

    Column order does not matter (files are read by name). With ``table.allow_new_columns``
    the batch's extra columns are accepted (the commit adds them). The message names the table
    and every missing, unexpected and retyped column. Nothing is written when this raises.
    """
    if table.allow_new_columns:  # extra batch columns are added by the commit (schema evolution)
        schema = schema_without(schema, [n for n in schema.names if n not in table_schema.names])
    problems = schema_differences(table_schema, normalize_schema(schema, table))
    if problems:
        raise SchemaMismatch(
            f"batch does not match table {table} (version {version}): "
            f"{'; '.join(problems)}. Select/cast the columns to the table's schema, or write "
            "with mode=overwrite to replace the table")


def schema_without(schema: pa.Schema, columns: Sequence[str]) -> pa.Schema:
    """``schema`` less ``columns`` (e.g. the partition columns a data file does not hold)."""
    import pyarrow as pa

    return pa.schema([f for f in schema if f.name not in columns])


def conform(data: pa.Table, schema: pa.Schema, table: TableRef) -> pa.Table:
    """``data`` with exactly ``schema``'s columns in order and types (a safe cast, never a guess).

    Raises :class:`SchemaMismatch` naming the column when it is absent or a value cannot be cast
    (e.g. a float with a fraction into an integer column).
    """
    import pyarrow as pa

    missing = [f.name for f in schema if f.name not in data.column_names]
    if missing:
        raise SchemaMismatch(f"batch for table {table} lacks columns {missing}")
    columns = []
    for f in schema:
        column = data.column(f.name)
        if column.type != f.type:
            try:
                column = column.cast(f.type, safe=True)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise SchemaMismatch(
                    f"column {f.name!r} of a batch for table {table} cannot be stored as "
                    f"{f.type}: {exc}") from exc
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=schema)
