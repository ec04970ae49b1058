"""The one write protocol every engine follows, written once.

An engine supplies three small operations over its own frames (:class:`FrameWriter`); this
module orders them so that the guarantees hold the same way on each: skip a committed batch
before any file is written, check the schema against the table, note the version the batch is
computed from (the conflict guard), plan a merge from the log, write files, commit once. The
log is loaded once for all of that; the commit then loads the latest log once more.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from engine.storage.commit import commit_files
from engine.storage.data_files import WrittenFile
from engine.storage.merge import MergePlan
from engine.storage.schema import check_schema
from engine.storage.snapshots import (TableFile, TableSnapshot, committed_in, open_table,
                                      schema_of, snapshot_of)
from engine.storage.table import CommitInfo, TableRef, WriteMode, WriteResult

if TYPE_CHECKING:
    import pyarrow as pa


class FrameWriter(Protocol):
    """What an engine does to a frame for a write (Spark DataFrame or Dask DataFrame)."""

    def schema_of(self, frame: Any) -> pa.Schema:
        """The frame's Arrow schema, normalized for Delta."""

    def merged(self, frame: Any, table: TableRef, snap: TableSnapshot,
               partition_by: list[str]) -> tuple[Any, MergePlan]:
        """The rows an upsert of ``snap`` (the version read) writes: the touched files' rows
        not in the batch, plus the batch."""

    def write_files(self, frame: Any, table: TableRef, schema: pa.Schema,
                    partition_by: list[str]) -> list[WrittenFile]:
        """Write the frame as new, uncommitted Parquet files under the table."""


def write_batch(engine: FrameWriter, frame: Any, table: TableRef, mode: WriteMode,
                commit: CommitInfo) -> WriteResult:
    """Write ``frame`` as one Delta commit; skipped, untouched, when the commit's (app id,
    batch) is already in the table; a schema that differs from the table's fails before any
    file is written."""
    delta = open_table(table)
    if committed_in(delta, commit):
        return WriteResult(table=table, version=delta.version(), rows=0, files=0, skipped=True)
    read_version = None if delta is None else delta.version()
    schema = engine.schema_of(frame)
    partition_by = list(table.partition_by)
    removes: Sequence[TableFile] = ()
    scope = None
    if delta is not None and mode is not WriteMode.OVERWRITE:
        check_schema(table, schema, schema_of(delta), read_version)
        partition_by = list(delta.metadata().partition_columns)
        if mode is WriteMode.MERGE:
            frame, plan = engine.merged(frame, table, snapshot_of(table, delta),
                                        partition_by)  # same schema
            removes, scope = plan.touched, plan.scope
    files = engine.write_files(frame, table, schema, partition_by)
    version = commit_files(table, files, schema, mode, commit, partition_by,
                           read_version=read_version, removes=removes, scope=scope)
    return WriteResult(table=table, version=version, rows=sum(f.rows for f in files),
                       files=len(files), partitions=written_partitions(files, partition_by))


def written_partitions(files: Sequence[WrittenFile],
                       partition_by: Sequence[str]) -> dict[str, list[str | None]]:
    """Per partition column, the sorted distinct values the files were written to."""
    return {c: sorted({f.partition_values.get(c) for f in files}, key=lambda v: (v is None, v or ""))
            for c in partition_by}
