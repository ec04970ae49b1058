"""The single-commit protocol over deltalake, shared by every engine.

A write is two steps that never mix: workers turn their part of a frame into Parquet files
(:func:`write_parquet_file`, side-effect free on the table: an uncommitted file is invisible),
then the driver or client makes exactly one Delta commit of all of them (:func:`commit_files`).
A writer that dies between the two leaves the table unchanged (at most an orphan file, which
``VACUUM`` removes); a task that is retried only orphans its first attempt's file.

Idempotency uses Delta's application transactions: the commit records ``(app_id, batch)``, and
a writer checks :func:`committed_batch` before writing any file (delta-rs does not skip on its
own, delta-rs #2580).

This module knows no engine: it only uses pyarrow and deltalake, so Spark executors and Dask
workers can import it.
"""

from __future__ import annotations

import json
import math
import os
import signal
import time
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

from engine.errors import CommitConflict, SchemaMismatch, TableNotFound
from engine.storage.table import CommitInfo, TableRef, WriteMode

if TYPE_CHECKING:
    import pyarrow as pa
    from deltalake import DeltaTable

HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"
COMMIT_ID_KEY = "lakescore.commit_id"
STRING_STATS_PREFIX = 32  # Delta's default: longer strings get a prefix min and no max
ROWS_PER_FILE = 1_000_000  # engines roll to a new file after this many rows of one task
ROW_GROUP_ROWS = 1_048_576  # rows per Parquet row group (pyarrow's default; bounds a task's memory)


@dataclass(frozen=True)
class WrittenFile:
    """One Parquet file written under the table root but not yet committed.

    ``path`` is relative to the table root as it lies on storage (partition directories
    percent-encoded like delta-rs and Spark write them); ``stats`` is Delta's per-file JSON.
    """

    path: str
    size: int
    rows: int
    stats: str
    partition_values: dict[str, str | None] = field(default_factory=dict, hash=False)
    modification_time: int = 0

    def add_action(self) -> Any:
        """The Delta ``add`` action (deltalake URI-encodes the path into the log itself)."""
        from deltalake.transaction import AddAction

        return AddAction(path=self.path, size=self.size,
                         partition_values=dict(self.partition_values),
                         modification_time=self.modification_time, data_change=True,
                         stats=self.stats)

    def to_row(self) -> dict[str, Any]:
        """A flat row (partition values as JSON) in :func:`file_metadata_schema`'s layout."""
        return {"path": self.path, "size": self.size,
                "partition_values": json.dumps(self.partition_values, sort_keys=True),
                "stats": self.stats, "rows": self.rows}

    @classmethod
    def from_row(cls, row: Any) -> WrittenFile:
        """From :meth:`to_row`'s dict or a Spark ``Row`` with the same fields."""
        return cls(path=row["path"], size=int(row["size"]), rows=int(row["rows"]),
                   stats=row["stats"], partition_values=json.loads(row["partition_values"]),
                   modification_time=int(time.time() * 1000))


# --- reading the log -------------------------------------------------------------------------

def table_root(table: TableRef) -> str:
    """The table's location as workers must see it: local paths made absolute, URIs as given."""
    if "://" in table.path:
        return table.path.rstrip("/")
    return os.path.abspath(table.path)


def open_table(table: TableRef, version: int | None = None) -> DeltaTable | None:
    """The table at ``version`` (default latest), or None when no Delta table is there."""
    from deltalake import DeltaTable

    from deltalake.exceptions import TableNotFoundError

    try:  # one log load: no separate is_deltatable listing
        return DeltaTable(table_root(table), version=version,
                          storage_options=table.storage_options or None)
    except TableNotFoundError:
        return None


def table_version(table: TableRef) -> int | None:
    """The latest committed version, or None when there is no table yet."""
    delta = open_table(table)
    return None if delta is None else delta.version()


def committed_batch(table: TableRef, app_id: str) -> int | None:
    """The newest batch number committed for ``app_id`` (Delta ``txn``), None if never."""
    delta = open_table(table)
    return None if delta is None else delta.transaction_version(app_id)


def table_exists(table: TableRef) -> bool:
    """Whether a Delta table (a ``_delta_log``) is at the table's location."""
    return open_table(table) is not None


def file_uris(table: TableRef, version: int | None = None) -> list[str]:
    """Absolute URIs of the live data files of ``version`` (default latest)."""
    return list(_require_table(table, version).file_uris())


def is_committed(table: TableRef, commit: CommitInfo) -> bool:
    """True when ``commit`` carries (app_id, batch) and that batch (or a newer) is committed,
    for any of its app ids (a commit of several must not land any of them twice)."""
    if commit.app_id is None or commit.batch is None:
        return False
    return any((done := committed_batch(table, app)) is not None and done >= batch
               for app, batch in commit.transactions())



def arrow_schema(table: TableRef, version: int | None = None) -> pa.Schema:
    """The table's schema as Arrow (``timestamp`` → ``timestamp[us, tz=UTC]``)."""
    delta = _require_table(table, version)
    return normalize_schema(_to_pyarrow(delta.schema()), table)


def partition_columns(table: TableRef) -> list[str]:
    """The partition columns the existing table was created with (``table.partition_by`` if new).

    Appends follow the table's layout, whatever the ``TableRef`` says."""
    delta = open_table(table)
    if delta is None:
        return list(table.partition_by)
    return list(delta.metadata().partition_columns)


@dataclass(frozen=True)
class TableFile:
    """One live data file of a table version: where it is, its typed partition values and the
    min/max statistics of its columns (empty where the log has none)."""

    uri: str
    rows: int | None
    partition_values: dict[str, Any] = field(default_factory=dict, hash=False)
    log_path: str = ""
    """The path relative to the root, decoded: what an add action was given and what a remove
    action must be given (deltalake URI-encodes both into the log; ``get_add_actions`` returns
    the encoded form, and passing that on would encode it twice, so the remove would name no
    file and the old file would stay live)."""
    size: int | None = None
    mins: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    maxs: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def remove_action(self, data_change: bool = True) -> Any:
        """The Delta ``remove`` action that takes this file out of the next version."""
        from deltalake.transaction import RemoveAction

        return RemoveAction(path=self.log_path, data_change=data_change,
                            deletion_timestamp=int(time.time() * 1000), size=self.size,
                            partition_values={k: partition_value(v)
                                              for k, v in self.partition_values.items()})


@dataclass(frozen=True)
class TableSnapshot:
    """What a reader needs from one table version: its schema, partition columns and files."""

    version: int
    schema: Any  # pa.Schema (Any keeps pyarrow out of the dataclass's import)
    partition_by: tuple[str, ...]
    files: tuple[TableFile, ...]


PartitionFilter = Mapping[str, Collection[Any]]


def snapshot(table: TableRef, version: int | datetime | None = None,
             partitions: PartitionFilter | None = None) -> TableSnapshot:
    """The live files of ``version`` (default latest; a datetime means the version current at
    that instant) with their partition values and statistics.

    ``partitions`` keeps only files whose partition values are among the given ones, per
    column (partition pruning: the other files are never opened). Filtering on a column
    that is not a partition column is refused, naming it.
    """
    import pyarrow as pa

    if version is None:
        version = table.version
    if isinstance(version, datetime):
        version = version_at(table, version)
    delta = _require_table(table, version)
    schema = normalize_schema(_to_pyarrow(delta.schema()), table)
    parts = tuple(delta.metadata().partition_columns)
    wanted = _partition_wanted(table, parts, partitions)
    actions = pa.table(delta.get_add_actions(flatten=True))
    root = table_root(table)
    files = []
    for row in actions.to_pylist():
        values = {c: row.get(f"partition.{c}") for c in parts}
        if any(partition_value(values[c]) not in allowed for c, allowed in wanted.items()):
            continue
        mins = {k[4:]: v for k, v in row.items() if k.startswith("min.") and v is not None}
        maxs = {k[4:]: v for k, v in row.items() if k.startswith("max.") and v is not None}
        path = unquote(row["path"])
        files.append(TableFile(uri=f"{root}/{path}", rows=row.get("num_records"),
                               partition_values=values, log_path=path,
                               size=row.get("size_bytes"), mins=mins, maxs=maxs))
    return TableSnapshot(version=delta.version(), schema=schema, partition_by=parts,
                         files=tuple(files))


def _partition_wanted(table: TableRef, parts: Sequence[str],
                      partitions: PartitionFilter | None) -> dict[str, set[str | None]]:
    if not partitions:
        return {}
    unknown = [c for c in partitions if c not in parts]
    if unknown:
        raise SchemaMismatch(f"cannot prune table {table} by {unknown}: its partition columns "
                             f"are {list(parts) or 'none'}")
    return {c: {partition_value(v) for v in values} for c, values in partitions.items()}


def version_at(table: TableRef, when: datetime) -> int:
    """The version that was current at ``when`` (the newest committed at or before it)."""
    delta = open_table(table)
    if delta is None:
        readable_version(table)  # raises TableNotFound
    if when.tzinfo is None:
        raise SchemaMismatch(f"time travel on table {table} needs a time-zone-aware instant, "
                             f"got {when.isoformat()} (add +00:00 for UTC)")
    limit = when.timestamp() * 1000
    history = delta.history()
    found = [int(e["version"]) for e in history if e.get("timestamp", 0) <= limit]
    if not found:
        first = min(history, key=lambda e: int(e["version"]))
        since = datetime.fromtimestamp(first["timestamp"] / 1000, timezone.utc).isoformat()
        raise TableNotFound(f"table {table} did not exist at {when.isoformat()}: its first "
                            f"version was committed at {since}")
    return max(found)


def readable_version(table: TableRef, version: int | datetime | None = None) -> int:
    """``version`` (a number, or the version current at a datetime), or the latest one;
    ``TableNotFound`` when there is no table to read or no such version. A table pinned to a
    version (``TableRef.version``) reads that version when none is asked."""
    if version is None:
        version = table.version
    latest = table_version(table)
    if latest is None:
        raise TableNotFound(f"no Delta table {table}: run the job that writes it first, or check "
                            "tables.* and lakehouse in conf")
    if isinstance(version, datetime):
        return version_at(table, version)
    if version is not None and not 0 <= version <= latest:
        raise TableNotFound(f"table {table} has no version {version}: its versions are "
                            f"0..{latest}")
    return latest if version is None else version


def row_count(table: TableRef, version: int | None = None) -> int:
    """Rows of a table version from the Delta log's file stats, without reading any data."""
    return sum(f.rows or 0 for f in snapshot(table, version).files)


def check_data_files(table: TableRef, version: int | None = None,
                     columns: Sequence[str] | None = None) -> int:
    """Read the Parquet footer of every live file of ``version`` (only the footers: a few KB
    each) and refuse a damaged or mistyped table before any engine reads it, so both engines
    fail the same way, naming the table, the file and the column:

    * a file the log lists that is missing, truncated or not Parquet → ``UnreadableFile``;
    * a file whose row count differs from the log's → ``UnreadableFile`` (replaced or cut);
    * a file whose column (of ``columns``, default all) has another kind of type than the
      table's (e.g. ``amount`` stored as string in a double table) → ``SchemaMismatch``.
      Engines would otherwise disagree: Dask casts the strings silently, Spark fails mid-job.

    A column a file lacks is read as null (Delta's schema evolution: files written before the
    column was added). That is accepted for the table's other columns, but not for ``columns``
    a job names because it computes from them (the events columns the features aggregate):
    files lacking one → ``SchemaMismatch`` naming the column, the count and a file, since
    their rows would silently count as missing values. Returns the number of files checked.
    Object-store errors raise ``StorageUnavailable``."""
    from concurrent.futures import ThreadPoolExecutor

    snap = snapshot(table, version)
    wanted = [f for f in snap.schema if columns is None or f.name in set(columns)]
    expected = {f.name: _type_kind(f.type) for f in wanted if f.name not in snap.partition_by}

    def check(file: TableFile) -> list[str]:
        return _check_data_file(table, snap.version, file, expected)

    with ThreadPoolExecutor(max_workers=min(8, max(1, len(snap.files)))) as pool:
        lacking = [(f, found) for f, found in zip(snap.files, pool.map(check, snap.files)) if found]
    if columns is not None:
        _refuse_files_lacking(table, snap.version, lacking, len(snap.files))
    return len(snap.files)


def _refuse_files_lacking(table: TableRef, version: int,
                          lacking: Sequence[tuple[TableFile, list[str]]], total: int) -> None:
    if not lacking:
        return
    columns = sorted({c for _, found in lacking for c in found})
    example, missing = lacking[0]
    raise SchemaMismatch(
        f"table {table} version {version}: {len(lacking)} of {total} data files lack column(s) "
        f"{columns} that this job reads (e.g. data file {example.log_path}, which lacks "
        f"{missing}); their rows would be read as null. Rewrite the table with the column "
        "filled (or drop those rows) before computing from it")


def _check_data_file(table: TableRef, version: int, file: TableFile,
                     expected: Mapping[str, str]) -> list[str]:
    """Refuse a damaged or mistyped file; return the ``expected`` columns the file lacks."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from engine.errors import UnreadableFile
    from engine.storage.files import is_remote, storage_error

    where = f"table {table} version {version}: data file {file.log_path}"
    fs, path = file_path(table, file.uri)
    try:
        with fs.open_input_file(path) as handle:
            meta = pq.ParquetFile(handle).metadata
            schema = meta.schema.to_arrow_schema()
    except FileNotFoundError as exc:
        raise UnreadableFile(f"{where} is missing (the Delta log lists it, the storage does not "
                             "have it); restore it, or read an older version of the table") from exc
    except (pa.ArrowInvalid, OSError) as exc:
        if isinstance(exc, OSError) and not isinstance(exc, pa.ArrowInvalid) and is_remote(table.path):
            raise storage_error(file.uri, exc) from exc
        raise UnreadableFile(f"{where} cannot be read as Parquet ({str(exc).splitlines()[0]}): it is "
                             "truncated or damaged; restore it, or read an older version of the "
                             "table") from exc
    if file.rows is not None and meta.num_rows != file.rows:
        raise UnreadableFile(f"{where} holds {meta.num_rows} rows but the Delta log says "
                             f"{file.rows}: it was replaced or cut; restore it")
    for field_ in schema:
        want = expected.get(field_.name)
        found = _type_kind(field_.type)
        if want is not None and found != want:
            raise SchemaMismatch(
                f"{where}: column {field_.name!r} is {field_.type} ({found}) in this file but "
                f"{want} in the table's schema; rewrite the file with the table's types")
    return [name for name in expected if name not in schema.names]


def _type_kind(kind: pa.DataType) -> str:
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
        return _type_kind(kind.value_type)
    for test, name in ((pa.types.is_list, "list"), (pa.types.is_large_list, "list"),
                       (pa.types.is_struct, "struct"), (pa.types.is_map, "map")):
        if test(kind):
            return name
    return str(kind)


def _require_table(table: TableRef, version: int | None) -> DeltaTable:
    from deltalake.exceptions import DeltaError

    if version is None:
        version = table.version
    try:
        delta = open_table(table, version)
    except DeltaError as exc:
        readable_version(table, version)  # a version out of range: TableNotFound with the range
        raise SchemaMismatch(f"cannot load version {version} of table {table}: {exc}") from exc
    if delta is None:
        readable_version(table)  # raises TableNotFound
    return delta


# --- schemas ---------------------------------------------------------------------------------

def _to_pyarrow(delta_schema: Any) -> pa.Schema:
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


def _delta_types(schema: pa.Schema) -> dict[str, str]:
    """Column → Delta type string, so that Arrow spellings of one Delta type compare equal."""
    from deltalake import Schema as DeltaSchema

    return {f.name: str(f.type) for f in DeltaSchema.from_arrow(schema).fields}


def schema_differences(expected: pa.Schema, actual: pa.Schema) -> list[str]:
    """Human-readable differences of ``actual`` from ``expected``, compared by Delta type.

    One entry per column: ``missing column x``, ``unexpected column y``, ``z is double, the
    table has int64``. Empty when they match (column order and nullability do not matter).
    """
    want, got = _delta_types(expected), _delta_types(actual)
    problems = [f"missing column {c}" for c in want if c not in got]
    problems += [f"unexpected column {c}" for c in got if c not in want]
    problems += [f"{c} is {actual.field(c).type}, the table has {expected.field(c).type}"
                 for c in want if c in got and want[c] != got[c]]
    return problems


def check_schema(table: TableRef, schema: pa.Schema) -> None:
    """Raise :class:`SchemaMismatch` unless ``schema`` has exactly the table's columns and types.

    Column order does not matter (files are read by name). A table that does not exist yet
    accepts any schema. The message names the table and every missing, unexpected and retyped
    column. Nothing is written when this raises.
    """
    delta = open_table(table)
    if delta is None:
        return
    current = normalize_schema(_to_pyarrow(delta.schema()))
    if table.allow_new_columns:  # extra batch columns are added by the commit (schema evolution)
        schema = pa_schema_without(schema, [n for n in schema.names if n not in current.names])
    problems = schema_differences(current, normalize_schema(schema, table))
    if problems:
        raise SchemaMismatch(
            f"batch does not match table {table} (version {delta.version()}): "
            f"{'; '.join(problems)}. Select/cast the columns to the table's schema, or write "
            "with mode=overwrite to replace the table")


# --- writing files ---------------------------------------------------------------------------

FILE_METADATA_SCHEMA_FIELDS = (("path", "string"), ("size", "int64"),
                               ("partition_values", "string"), ("stats", "string"),
                               ("rows", "int64"))


def file_metadata_schema() -> pa.Schema:
    """The Arrow schema of :meth:`WrittenFile.to_row` (what Spark's ``mapInArrow`` yields)."""
    import pyarrow as pa

    return pa.schema([(name, getattr(pa, kind)()) for name, kind in FILE_METADATA_SCHEMA_FIELDS])


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


class _ColumnStats:
    """Running min/max/null count of one file's columns, merged batch by batch."""

    def __init__(self) -> None:
        self.mins: dict[str, Any] = {}
        self.maxs: dict[str, Any] = {}
        self.nulls: dict[str, int] = {}
        self.rows = 0

    def update(self, data: pa.Table) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc

        self.rows += data.num_rows
        for name in data.column_names:
            column = data.column(name)
            kind = column.type
            if pa.types.is_nested(kind):
                continue
            self.nulls[name] = self.nulls.get(name, 0) + column.null_count
            if not _has_stats(kind) or column.null_count == len(column):
                continue
            if name in self.mins and self.mins[name] is None:
                continue
            result = pc.min_max(column)
            low, high = result["min"].as_py(), result["max"].as_py()
            if pa.types.is_floating(kind) and (
                    not (math.isfinite(low) and math.isfinite(high))
                    or pc.any(pc.is_nan(column)).as_py()):
                # min_max skips NaN, but engines order NaN above everything: no safe bound.
                self.mins[name] = self.maxs[name] = None
                continue
            self.mins[name] = low if name not in self.mins else min(self.mins[name], low)
            self.maxs[name] = high if name not in self.maxs else max(self.maxs[name], high)

    def to_json(self) -> str:
        return stats_json(self.rows, self.mins, self.maxs, self.nulls)


def stats_json(rows: int, mins: dict[str, Any], maxs: dict[str, Any], nulls: dict[str, int]) -> str:
    """Delta's per-file stats JSON from Python min/max values (spelled by :func:`_stat_value`)."""
    low = {k: v for k, v in ((k, _stat_value(v, "min")) for k, v in mins.items()) if v is not None}
    high = {k: v for k, v in ((k, _stat_value(v, "max")) for k, v in maxs.items()) if v is not None}
    return json.dumps({"numRecords": rows, "minValues": low, "maxValues": high,
                       "nullCount": nulls}, separators=(",", ":"))


def _has_stats(kind: pa.DataType) -> bool:
    import pyarrow as pa

    return (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)
            or pa.types.is_date(kind) or pa.types.is_timestamp(kind) or pa.types.is_string(kind))


def _stat_value(value: Any, side: str) -> Any:
    """A min/max as Delta's stats JSON spells it.

    Timestamps are kept at millisecond precision rounded outwards (min down, max up), so data
    skipping never drops a matching file; strings longer than 32 characters get a prefix min
    and no max, as Delta does.
    """
    if value is None:
        return None
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        value = value.astimezone(timezone.utc)
        extra = value.microsecond % 1000
        if extra:
            value -= timedelta(microseconds=extra)
            if side == "max":
                value += timedelta(milliseconds=1)
        return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str) and len(value) > STRING_STATS_PREFIX:
        return value[:STRING_STATS_PREFIX] if side == "min" else None
    return value


def file_stats(data: pa.Table) -> str:
    """Delta's per-file statistics JSON (numRecords, minValues, maxValues, nullCount)."""
    stats = _ColumnStats()
    stats.update(data)
    return stats.to_json()


def partition_value(value: Any) -> str | None:
    """A partition value as the Delta log spells it (None for null)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        value = value.astimezone(timezone.utc) if value.tzinfo else value
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def partition_dir(values: dict[str, str | None]) -> str:
    """``col=value/...`` as delta-rs lays it out (percent-encoded; Spark decodes the same)."""
    return "/".join(f"{quote(c, safe='')}={HIVE_NULL if v is None else quote(v, safe='')}"
                    for c, v in values.items())


class _OpenFile:
    """One Parquet file being streamed to, with its running stats."""

    def __init__(self, filesystem: Any, root: str, subdir: str, schema: pa.Schema,
                 values: dict[str, str | None]) -> None:
        import pyarrow.parquet as pq

        self.path = f"{subdir}part-{uuid.uuid4().hex}-c000.snappy.parquet"
        self.target = f"{root}/{self.path}"
        self.filesystem = filesystem
        self.values = values
        self.stats = _ColumnStats()
        self.buffer: list[pa.Table] = []
        self.buffered = 0
        filesystem.create_dir(self.target.rsplit("/", 1)[0], recursive=True)
        self.writer = pq.ParquetWriter(self.target, schema, filesystem=filesystem,
                                       compression="snappy")

    def write(self, data: pa.Table) -> None:
        # Engines hand over small batches (Spark: 10k rows); buffer them into row groups of
        # ROW_GROUP_ROWS so readers are not slowed by many tiny row groups.
        self.buffer.append(data)
        self.buffered += data.num_rows
        self.stats.update(data)
        if self.buffered >= ROW_GROUP_ROWS:
            self.flush()

    def flush(self) -> None:
        import pyarrow as pa

        if self.buffer:
            self.writer.write_table(pa.concat_tables(self.buffer), row_group_size=ROW_GROUP_ROWS)
        self.buffer, self.buffered = [], 0

    def finish(self) -> WrittenFile:
        self.flush()
        self.writer.close()
        size = self.filesystem.get_file_info(self.target).size
        return WrittenFile(path=self.path, size=size, rows=self.stats.rows,
                           stats=self.stats.to_json(), partition_values=self.values,
                           modification_time=int(time.time() * 1000))


class ParquetSink:
    """Streams batches into new, uncommitted Parquet files under a table's root.

    Memory stays at one batch (plus Parquet's row-group buffer) per open file: a task never
    holds its whole partition. One file per distinct partition value (hive-style directories)
    when ``partition_by`` is set, else one file; a file rolls over after ``rows_per_file``
    rows; no file is created for no rows. Names are unique (uuid4), so retried tasks and
    concurrent writers never overwrite each other. ``close`` returns what to commit.
    """

    def __init__(self, table: TableRef, schema: pa.Schema,
                 partition_by: Sequence[str] | None = None,
                 rows_per_file: int = ROWS_PER_FILE) -> None:
        self.table = table
        self.schema = normalize_schema(schema, table)
        self.partition_by = list(table.partition_by if partition_by is None else partition_by)
        unknown = [c for c in self.partition_by if c not in self.schema.names]
        if unknown:
            raise SchemaMismatch(f"partition columns {unknown} of table {table} are not in the "
                                 f"batch's columns {self.schema.names}")
        self.file_schema = pa_schema_without(self.schema, self.partition_by)
        self.rows_per_file = rows_per_file
        self._filesystem, self._root = filesystem(table)
        self._open: dict[tuple, _OpenFile] = {}
        self._done: list[WrittenFile] = []

    def write(self, data: pa.Table | pa.RecordBatch) -> None:
        import pyarrow as pa

        if isinstance(data, pa.RecordBatch):
            data = pa.Table.from_batches([data])
        if data.num_rows == 0:
            return
        data = conform(data, self.schema, self.table)
        groups = (_split_by_partition(data, self.partition_by) if self.partition_by
                  else [({}, data)])
        for values, rows in groups:
            key = tuple(values.items())
            target = self._open.get(key)
            if target is None:
                subdir = partition_dir(values) + "/" if values else ""
                target = self._open[key] = _OpenFile(self._filesystem, self._root, subdir,
                                                     self.file_schema, values)
            target.write(rows.drop_columns(self.partition_by) if self.partition_by else rows)
            if target.stats.rows >= self.rows_per_file:
                self._done.append(self._open.pop(key).finish())

    def close(self) -> list[WrittenFile]:
        self._done.extend(f.finish() for f in self._open.values())
        self._open.clear()
        return list(self._done)


def pa_schema_without(schema: pa.Schema, columns: Sequence[str]) -> pa.Schema:
    import pyarrow as pa

    return pa.schema([f for f in schema if f.name not in columns])


def _split_by_partition(data: pa.Table, parts: list[str]):
    import pyarrow.compute as pc

    keys = data.select(parts).group_by(parts, use_threads=False).aggregate([]).to_pylist()
    for key in keys:
        mask = None
        for column in parts:
            value = key[column]
            test = pc.is_null(data[column]) if value is None else pc.equal(data[column], value)
            mask = test if mask is None else pc.and_(mask, test)
        yield ({c: partition_value(key[c]) for c in parts},
               data.filter(pc.fill_null(mask, False)))


def filesystem(table: TableRef) -> tuple[Any, str]:
    """The pyarrow filesystem and root path for the table's location.

    Object stores take their credentials and endpoint from the table's ``storage_options``
    (the delta-rs keys: ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``,
    ``AWS_REGION``, ``AWS_ENDPOINT_URL``; ``AZURE_STORAGE_ACCOUNT_NAME``,
    ``AZURE_STORAGE_ACCOUNT_KEY``), so that the Parquet files and the Delta log are written
    with the same identity; without options, the environment's (instance roles, env vars).
    """
    from pyarrow import fs as pafs

    root = table_root(table)
    options = {k.upper(): v for k, v in (table.storage_options or {}).items()}
    scheme = root.split("://", 1)[0] if "://" in root else "file"
    if scheme in ("s3", "s3a") and options:
        kwargs: dict[str, Any] = {}
        for key, arg in (("AWS_ACCESS_KEY_ID", "access_key"), ("AWS_SECRET_ACCESS_KEY", "secret_key"),
                         ("AWS_SESSION_TOKEN", "session_token"), ("AWS_REGION", "region")):
            if key in options:
                kwargs[arg] = options[key]
        endpoint = options.get("AWS_ENDPOINT_URL") or options.get("AWS_ENDPOINT")
        if endpoint:
            scheme_part, _, host = endpoint.partition("://")
            kwargs["endpoint_override"] = host or endpoint
            kwargs["scheme"] = scheme_part if host else "https"
        return pafs.S3FileSystem(**kwargs), root.split("://", 1)[1]
    if scheme in ("abfss", "abfs", "az") and options:
        account = options.get("AZURE_STORAGE_ACCOUNT_NAME") or options.get("ACCOUNT_NAME")
        key = options.get("AZURE_STORAGE_ACCOUNT_KEY") or options.get("ACCOUNT_KEY")
        rest = root.split("://", 1)[1]  # container@account.dfs.core.windows.net/path
        container, _, tail = rest.partition("@")
        path = tail.split("/", 1)[1] if "/" in tail else ""
        return (pafs.AzureFileSystem(account_name=account, account_key=key),
                f"{container}/{path}".rstrip("/"))
    return pafs.FileSystem.from_uri(as_uri(root))


def file_path(table: TableRef, uri: str) -> tuple[Any, str]:
    """The filesystem and path of one of the table's files, given its URI under the root."""
    fs, root_path = filesystem(table)
    return fs, root_path + uri[len(table_root(table)):]


def as_uri(root: str) -> str:
    return root if "://" in root else f"file://{root}"


def write_parquet_file(batch_or_table: pa.Table | pa.RecordBatch, table: TableRef,
                       schema: pa.Schema | None = None) -> list[WrittenFile]:
    """Write rows as new uncommitted Parquet files under the table root; return what to commit.

    One file per distinct value of ``table.partition_by`` (hive-style ``col=value``
    directories), else one file; nothing for no rows. ``schema`` (default: the data's own,
    normalized) fixes column order and types. See :class:`ParquetSink` for the guarantees.
    """
    import pyarrow as pa

    data = batch_or_table if isinstance(batch_or_table, pa.Table) \
        else pa.Table.from_batches([batch_or_table])
    sink = ParquetSink(table, normalize_schema(data.schema, table) if schema is None else schema)
    sink.write(data)
    return sink.close()


# --- committing ------------------------------------------------------------------------------

def commit_files(table: TableRef, files: Sequence[WrittenFile], schema: pa.Schema,
                 mode: WriteMode, commit: CommitInfo,
                 partition_by: Sequence[str] | None = None, *, read_version: int | None = None,
                 removes: Sequence[TableFile] = (), scope: PartitionFilter | None = None) -> int:
    """Commit ``files`` in one Delta transaction and return the version it created.

    Creates the table (partitioned by ``partition_by``, default ``table.partition_by``) when
    absent. ``append`` adds the files to the table's layout and schema (re-checked here, so a
    concurrent schema change is caught; new nullable columns are added first when
    ``table.allow_new_columns``). ``overwrite`` replaces every row; when the schema or
    partitioning changes it replaces the table's definition too (``CREATE OR REPLACE``).
    ``replace_partitions`` removes the files of the partitions the new files cover, and of
    ``commit.replaces``.
    ``merge`` removes ``removes`` (the files the engine rewrote) and adds ``files``.

    ``read_version`` is the version the batch was computed from. For every mode but append,
    the files the commit replaces (the whole table, the covered partitions, or ``scope`` for a
    merge) must be unchanged since then, else :class:`CommitConflict` and nothing is
    committed: two jobs replacing the same partitions never both land.

    The commit carries ``commit.commit_metadata()`` and, when ``commit`` has (app_id, batch),
    the application transaction that makes reruns skip.
    """
    from deltalake import Schema as DeltaSchema
    from deltalake.exceptions import CommitFailedError, DeltaError
    from deltalake.transaction import (CommitProperties, Transaction,
                                       create_table_with_add_actions)

    schema = normalize_schema(schema, table)
    commit_id = uuid.uuid4().hex
    metadata = {**commit.commit_metadata(), COMMIT_ID_KEY: commit_id,
                "lakescore.mode": mode.value}
    txns = [Transaction(app_id=app, version=batch) for app, batch in commit.transactions()] or None
    properties = CommitProperties(custom_metadata=metadata, app_transactions=txns)
    actions = [f.add_action() for f in files]
    parts = list(table.partition_by if partition_by is None else partition_by)
    _check_layout(table, files, parts)

    def create_or_replace(save_mode: str) -> None:
        create_table_with_add_actions(
            table_root(table), DeltaSchema.from_arrow(schema), actions, mode=save_mode,
            partition_by=parts or None, name=table.name,
            storage_options=table.storage_options or None, commit_properties=properties)

    _crash_point(table)
    try:
        delta = open_table(table)
        if delta is None:
            try:
                create_or_replace("error")
                return _version_of(table, commit_id)
            except DeltaError as exc:
                delta = open_table(table)  # another writer created it meanwhile: go on
                if delta is None:
                    raise CommitConflict(f"could not create table {table}: {exc}") from exc
        if mode is not WriteMode.OVERWRITE:
            if is_committed(table, commit):
                raise CommitConflict(
                    f"batch {commit.batch} of {commit.app_id!r} was committed to table {table} "
                    f"(now at version {delta.version()}) by a concurrent writer while this one "
                    "wrote its files; nothing was added")
            delta = _evolve_or_check_schema(table, delta, schema, properties)
            if parts != list(delta.metadata().partition_columns):
                raise SchemaMismatch(
                    f"files for table {table} are partitioned by {parts} but the table by "
                    f"{delta.metadata().partition_columns}; nothing was committed")
        replaced = _guard(table, mode, files, parts, scope, commit.replaces)
        if read_version is not None and replaced is not None:
            _check_unchanged(table, read_version, delta.version(), replaced)
        if mode is WriteMode.OVERWRITE:
            if _definition_changes(delta, schema, parts):
                create_or_replace("overwrite")
                return _version_of(table, commit_id)
            delta.create_write_transaction(actions, mode="overwrite",
                                           schema=DeltaSchema.from_arrow(schema),
                                           partition_by=parts or None,
                                           commit_properties=properties)
            return _version_of(table, commit_id)
        if mode is WriteMode.REPLACE_PARTITIONS:
            removes = _replaced_files(table, delta.version(), files, parts, commit.replaces)
        table_schema = DeltaSchema.from_arrow(arrow_schema(table, delta.version()))
        delta.create_write_transaction(actions + [f.remove_action() for f in removes],
                                       mode="append", schema=table_schema,
                                       partition_by=parts or None,
                                       commit_properties=properties)
    except CommitFailedError as exc:
        raise CommitConflict(
            f"a concurrent commit to table {table} conflicts with this {mode.value} computed "
            f"from version {read_version}: {exc}; the table is unchanged by this batch, "
            "rerun it") from exc
    return _version_of(table, commit_id)


def commit_rewrite(table: TableRef, added: Sequence[WrittenFile], removed: Sequence[TableFile],
                   schema: pa.Schema, read_version: int, commit: CommitInfo) -> int:
    """Swap ``removed`` for ``added`` (the same rows, e.g. compacted) in one commit marked
    ``dataChange=false``. Refused with :class:`CommitConflict` if a removed file is no longer
    live (a concurrent overwrite, merge or compaction took it)."""
    from dataclasses import replace as dc_replace

    from deltalake import Schema as DeltaSchema
    from deltalake.exceptions import CommitFailedError
    from deltalake.transaction import AddAction, CommitProperties

    _crash_point(table)
    latest = snapshot(table)
    gone = {f.log_path for f in removed} - {f.log_path for f in latest.files}
    if gone:
        raise CommitConflict(f"{len(gone)} file(s) being rewritten in table {table} were removed "
                             f"by a concurrent commit between version {read_version} and "
                             f"{latest.version}; nothing was committed, rerun it")
    delta = open_table(table, read_version)
    adds = [AddAction(**{**vars(f.add_action()), "data_change": False}) for f in added]
    removes = [f.remove_action(data_change=False) for f in removed]
    metadata = {**commit.commit_metadata(), COMMIT_ID_KEY: uuid.uuid4().hex,
                "lakescore.mode": "compact"}
    try:
        delta.create_write_transaction(adds + removes, mode="append",
                                       schema=DeltaSchema.from_arrow(schema),
                                       partition_by=list(delta.metadata().partition_columns) or None,
                                       commit_properties=CommitProperties(custom_metadata=metadata))
    except CommitFailedError as exc:
        raise CommitConflict(f"compaction of table {table} from version {read_version} conflicts "
                             f"with a concurrent commit: {exc}; nothing was committed, rerun it"
                             ) from exc
    return _version_of(table, metadata[COMMIT_ID_KEY])


def remove_empty_batch_dirs(table: TableRef) -> int:
    """Delete the empty directories vacuum leaves behind (local tables only)."""
    root = table_root(table)
    if "://" in root:
        return 0
    removed = 0
    for current, _dirs, _files in os.walk(root, topdown=False):
        if current != root and "_delta_log" not in current and not os.listdir(current):
            try:
                os.rmdir(current)
                removed += 1
            except OSError:  # a writer created a file meanwhile
                pass
    return removed


def _evolve_or_check_schema(table: TableRef, delta: DeltaTable, schema: pa.Schema,
                            properties: Any) -> DeltaTable:
    """Check the batch's schema against the table's; with ``table.allow_new_columns``, first
    add the batch's extra columns to the table (nullable), in a commit of their own."""
    from deltalake import Field as DeltaField
    from deltalake import Schema as DeltaSchema

    check_schema(table, schema)
    current = normalize_schema(_to_pyarrow(delta.schema()))
    extra = [f for f in schema if f.name not in current.names]
    if not (table.allow_new_columns and extra):
        return delta
    import pyarrow as pa

    fields = [DeltaField(f.name, DeltaSchema.from_arrow(pa.schema([f])).fields[0].type,
                         nullable=True) for f in extra]
    delta.alter.add_columns(fields)
    return open_table(table)


def _covered_keys(files: Sequence[WrittenFile], parts: list[str],
                  also: Sequence[Mapping[str, Any]] = ()) -> set[tuple]:
    """The partitions (one tuple of log-spelled values per partition) the files cover, plus
    ``also`` (``CommitInfo.replaces``)."""
    return ({tuple(f.partition_values.get(c) for c in parts) for f in files}
            | {tuple(partition_value(p.get(c)) for c in parts) for p in also})


def _in_partitions(file: TableFile, parts: list[str], keys: set[tuple]) -> bool:
    return tuple(partition_value(file.partition_values.get(c)) for c in parts) in keys


def _replaced_files(table: TableRef, version: int, files: Sequence[WrittenFile],
                    parts: list[str], also: Sequence[Mapping[str, Any]] = ()) -> list[TableFile]:
    keys = _covered_keys(files, parts, also)
    return [f for f in snapshot(table, version).files if _in_partitions(f, parts, keys)]


def _guard(table: TableRef, mode: WriteMode, files: Sequence[WrittenFile], parts: list[str],
           scope: PartitionFilter | None,
           also: Sequence[Mapping[str, Any]] = ()) -> Callable[[TableFile], bool] | None:
    """Which existing files a write replaces and so must find unchanged; None for appends."""
    if mode is WriteMode.APPEND:
        return None
    if mode is WriteMode.REPLACE_PARTITIONS:
        if not parts:
            raise SchemaMismatch(f"replace_partitions needs a partitioned table; {table} is not "
                                 "partitioned (write with mode=overwrite, or partition it)")
        keys = _covered_keys(files, parts, also)
        return lambda f: _in_partitions(f, parts, keys)
    if mode is WriteMode.MERGE and scope:
        wanted = {c: {partition_value(v) for v in values} for c, values in scope.items()}
        return lambda f: all(partition_value(f.partition_values.get(c)) in allowed
                             for c, allowed in wanted.items())
    return lambda f: True


def _check_unchanged(table: TableRef, read_version: int, latest: int,
                     replaced: Callable[[TableFile], bool]) -> None:
    if latest == read_version:
        return
    before = {f.log_path for f in snapshot(table, read_version).files if replaced(f)}
    after = {f.log_path for f in snapshot(table, latest).files if replaced(f)}
    if before != after:
        raise CommitConflict(
            f"table {table} changed since version {read_version}, which this batch was computed "
            f"from: by version {latest}, {len(before ^ after)} file(s) were added or removed "
            "among the rows this write replaces; nothing was committed. Rerun the job to "
            "recompute the batch from the current version")


def _check_layout(table: TableRef, files: Sequence[WrittenFile], parts: list[str]) -> None:
    wrong = [f.path for f in files if sorted(f.partition_values) != sorted(parts)]
    if wrong:
        raise SchemaMismatch(f"{len(wrong)} file(s) for table {table} are not partitioned by "
                             f"{parts} (e.g. {wrong[0]}); nothing was committed")


def _definition_changes(delta: DeltaTable, schema: pa.Schema, parts: list[str]) -> bool:
    """Whether an overwrite changes the table's schema or partitioning (delta-rs's plain
    overwrite would keep stale partition columns and leave an unreadable table)."""
    current = normalize_schema(_to_pyarrow(delta.schema()))
    return (list(delta.metadata().partition_columns) != parts
            or _delta_types(current) != _delta_types(schema)
            or current.names != schema.names)


def _version_of(table: TableRef, commit_id: str) -> int:
    """The version whose commit carries ``commit_id`` (concurrent commits may follow ours)."""
    delta = open_table(table)
    assert delta is not None
    for entry in delta.history(limit=100):
        if entry.get(COMMIT_ID_KEY) == commit_id:
            return int(entry["version"])
    return delta.version()


KILL_BEFORE_COMMIT_ENV = "LAKESCORE_TEST_KILL_BEFORE_COMMIT"


COMMIT_GATE_ENV = "LAKESCORE_TEST_COMMIT_GATE"
COMMIT_GATE_TIMEOUT_S = 600


def _crash_point(table: TableRef) -> None:
    """Test hooks, just before the commit, after the files are written.

    ``LAKESCORE_TEST_KILL_BEFORE_COMMIT=<table>``: SIGKILL this process (a dead writer leaves
    the table unchanged). ``LAKESCORE_TEST_COMMIT_GATE=<table>:<dir>``: create
    ``<dir>/ready-<pid>-<thread name>`` and wait until ``<dir>/go-<pid>-<thread name>`` exists,
    so a test can hold one writer after it computed its batch from a version until a rival has
    committed: the conflict then happens every time, without sleeping and hoping."""
    if os.environ.get(KILL_BEFORE_COMMIT_ENV) == table.name:
        os.kill(os.getpid(), signal.SIGKILL)
    name, _, gate = os.environ.get(COMMIT_GATE_ENV, "").partition(":")
    if gate and name == table.name:
        _wait_at_gate(gate)


def _wait_at_gate(gate: str) -> None:
    import threading
    import time

    me = f"{os.getpid()}-{threading.current_thread().name}"
    with open(os.path.join(gate, f"ready-{me}"), "w"):
        pass
    deadline = time.monotonic() + COMMIT_GATE_TIMEOUT_S
    while not os.path.exists(os.path.join(gate, f"go-{me}")):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{COMMIT_GATE_ENV}: nobody opened the gate {gate} for {me}")
        time.sleep(0.05)
