"""Arrow tables the client holds (a run's small figures, e.g. drift metrics), written with the
one write protocol (``engine.storage.batch.write_batch``): the same idempotency, schema check and
single commit as an engine's frame, without starting an engine job for a few rows."""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.storage import batch
from engine.storage.data_files import ParquetSink, WrittenFile
from engine.storage.schema import normalize_schema
from engine.storage.table import CommitInfo, TableRef, WriteMode, WriteResult

if TYPE_CHECKING:
    import pyarrow as pa

    from engine.storage.merge import MergePlan
    from engine.storage.snapshots import TableSnapshot


def write_arrow(data: pa.Table, table: TableRef, mode: WriteMode, commit: CommitInfo) -> WriteResult:
    """Write ``data`` as one Delta commit (see ``engine.storage.batch.write_batch``); append or
    overwrite only."""
    return batch.write_batch(_ArrowFrames(), data, table, mode, commit)


class _ArrowFrames:
    """``batch.FrameWriter`` for an Arrow table in this process."""

    def schema_of(self, frame: pa.Table) -> pa.Schema:
        return normalize_schema(frame.schema)

    def merged(self, frame: pa.Table, table: TableRef, snap: TableSnapshot,
               partition_by: list[str]) -> tuple[pa.Table, MergePlan]:
        raise ValueError(f"table {table}: an Arrow table is appended or overwritten, never merged")

    def write_files(self, frame: pa.Table, table: TableRef, schema: pa.Schema,
                    partition_by: list[str]) -> list[WrittenFile]:
        sink = ParquetSink(table, schema, partition_by)
        sink.write(frame)
        return sink.close()
