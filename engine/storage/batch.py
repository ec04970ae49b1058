"""The one write protocol every engine follows, written once.

An engine supplies three small operations over its own frames (:class:`FrameWriter`); this
module orders them so that the guarantees hold the same way on each: skip a committed batch
before any file is written, check the schema against the table, note the version the batch is
computed from (the conflict guard), plan a merge from the log, write files, commit once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from engine.storage import delta_log
from engine.storage.merge import MergePlan
from engine.storage.table import CommitInfo, TableRef, WriteMode, WriteResult

if TYPE_CHECKING:
    import pyarrow as pa


class FrameWriter(Protocol):
    """What an engine does to a frame for a write (Spark DataFrame or Dask DataFrame)."""

    def schema_of(self, frame: Any) -> pa.Schema:
        """The frame's Arrow schema, normalized for Delta."""

    def merged(self, frame: Any, table: TableRef, version: int,
               partition_by: list[str]) -> tuple[Any, MergePlan]:
        """The rows an upsert writes (touched files' rows not in the batch, plus the batch)."""

    def write_files(self, frame: Any, table: TableRef, schema: pa.Schema,
                    partition_by: list[str]) -> list[delta_log.WrittenFile]:
        """Write the frame as new, uncommitted Parquet files under the table."""


def write_batch(engine: FrameWriter, frame: Any, table: TableRef, mode: WriteMode,
                commit: CommitInfo) -> WriteResult:
    """Write ``frame`` as one Delta commit; skipped, untouched, when the commit's (app id,
    batch) is already in the table; a schema that differs from the table's fails before any
    file is written."""
    if delta_log.is_committed(table, commit):
        return WriteResult(table=table, version=delta_log.table_version(table) or 0, rows=0,
                           files=0, skipped=True)
    read_version = delta_log.table_version(table)
    schema = engine.schema_of(frame)
    partition_by = list(table.partition_by)
    removes: Sequence[delta_log.TableFile] = ()
    scope = None
    if read_version is not None and mode is not WriteMode.OVERWRITE:
        delta_log.check_schema(table, schema)
        partition_by = delta_log.partition_columns(table)
        if mode is WriteMode.MERGE:
            frame, plan = engine.merged(frame, table, read_version, partition_by)  # same schema
            removes, scope = plan.touched, plan.scope
    files = engine.write_files(frame, table, schema, partition_by)
    version = delta_log.commit_files(table, files, schema, mode, commit, partition_by,
                                     read_version=read_version, removes=removes, scope=scope)
    return WriteResult(table=table, version=version, rows=sum(f.rows for f in files),
                       files=len(files), partitions=written_partitions(files, partition_by))


def written_partitions(files: Sequence[delta_log.WrittenFile],
                       partition_by: Sequence[str]) -> dict[str, list[str | None]]:
    """Per partition column, the sorted distinct values the files were written to."""
    return {c: sorted({f.partition_values.get(c) for f in files}, key=lambda v: (v is None, v or ""))
            for c in partition_by}
