"""New Parquet data files under a table's root, written but not yet committed.

Workers turn their part of a frame into files here (:class:`ParquetSink`); the files are
invisible to readers until the driver or client commits them (``engine.storage.commit``), so a
writer that dies, or a task that is retried, leaves at most orphan files that ``VACUUM``
removes. Only pyarrow is used, so Spark executors and Dask workers can import it.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from engine.errors import SchemaMismatch
from engine.storage.layout import filesystem, partition_dir, partition_value
from engine.storage.schema import conform, normalize_schema, schema_without
from engine.storage.stats import ColumnStats
from engine.storage.table import TableRef

if TYPE_CHECKING:
    import pyarrow as pa

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


FILE_METADATA_SCHEMA_FIELDS = (("path", "string"), ("size", "int64"),
                               ("partition_values", "string"), ("stats", "string"),
                               ("rows", "int64"))


def file_metadata_schema() -> pa.Schema:
    """The Arrow schema of :meth:`WrittenFile.to_row` (what Spark's ``mapInArrow`` yields)."""
    import pyarrow as pa

    return pa.schema([(name, getattr(pa, kind)()) for name, kind in FILE_METADATA_SCHEMA_FIELDS])


class _OpenFile:
    """One Parquet file being streamed to, with its running stats."""

    def __init__(self, filesystem: Any, root: str, subdir: str, schema: pa.Schema,
                 values: dict[str, str | None]) -> None:
        import pyarrow.parquet as pq

        self.path = f"{subdir}part-{uuid.uuid4().hex}-c000.snappy.parquet"
        self.target = f"{root}/{self.path}"
        self.filesystem = filesystem
        self.values = values
        self.stats = ColumnStats()
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
        self.file_schema = schema_without(self.schema, self.partition_by)
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
