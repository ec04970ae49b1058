"""Delta tables from Dask through deltalake: one partition per data file on read; on write each
partition streams into its own Parquet files on a worker and the client commits them once.

Committing only from the client matters: a worker that died just after committing inside a task
would be re-run by Dask and its rows would land twice.
"""

from __future__ import annotations

import sys

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from engine.errors import SchemaMismatch
from engine.storage import batch, merge
from engine.storage.data_files import ROW_GROUP_ROWS, ParquetSink, WrittenFile
from engine.storage.layout import file_path
from engine.storage.schema import normalize_schema
from engine.storage.snapshots import (PartitionFilter, TableFile, TableSnapshot, file_layout,
                                      snapshot)
from engine.storage.table import CommitInfo, ReadResult, TableRef, WriteMode, WriteResult


READ_PART_ROWS = ROW_GROUP_ROWS
"""A file with more rows than this is read as several partitions, split at row groups."""


def file_pieces(files: Sequence[TableFile]) -> list[tuple[TableFile, int, int]]:
    """``(file, piece, pieces)`` per partition to read: one per file of up to ``READ_PART_ROWS``
    rows (lakescore's own files), else one per ~``READ_PART_ROWS`` rows, so that a table written
    elsewhere with large files (delta-rs, Spark: hundreds of MB) still reads in partitions a
    worker holds comfortably."""
    return [(f, k, n) for f in files
            for n in [max(1, -(-(f.rows or 0) // READ_PART_ROWS))] for k in range(n)]


def _read_file(piece: tuple[TableFile, int, int], table: TableRef, schema: pa.Schema,
               columns: list[str]) -> pd.DataFrame:
    """One piece of a data file (its share of the row groups, in order) as pandas with the
    table's types, partition columns restored as constants."""
    file, k, pieces = piece
    data_columns = [c for c in columns if c not in file.partition_values]
    filesystem, path = file_path(table, file.uri)
    parquet = pq.ParquetFile(path, filesystem=filesystem)
    present = set(parquet.schema_arrow.names)
    read = [c for c in data_columns if c in present]
    if pieces == 1:
        data = parquet.read(columns=read)
    else:
        groups = parquet.metadata.num_row_groups
        mine = list(range(groups * k // pieces, groups * (k + 1) // pieces))  # contiguous, in order
        data = (parquet.read_row_groups(mine, columns=read) if mine
                else parquet.schema_arrow.empty_table().select(read))
    for name in data_columns:
        if name not in present:  # a column added to the table after this file was written
            data = data.append_column(name, pa.nulls(data.num_rows, schema.field(name).type))
    for name, value in file.partition_values.items():
        if name in columns:
            data = data.append_column(name, pa.array([value] * data.num_rows,
                                                     schema.field(name).type))
    wanted = pa.schema([schema.field(c) for c in columns])
    return data.select(columns).cast(wanted).to_pandas(coerce_temporal_nanoseconds=False)


def read_dask(table: TableRef, version: int | datetime | None = None,
              columns: Sequence[str] | None = None,
              partitions: PartitionFilter | None = None) -> ReadResult:
    """The table at ``version`` (default latest; a datetime travels to the version current
    then) as a lazy Dask frame, one partition per file (per ~1M rows of a larger file).

    Only that version's live files are read (never a directory listing, which would include
    removed and uncommitted files), and of those only the ones in ``partitions`` when given.
    Dtypes follow the Delta schema: ``timestamp`` is ``datetime64[us, UTC]``, ``long`` is
    ``int64``; an empty table gives an empty frame.
    """
    snap = snapshot(table, version, partitions)
    frame = _frame_of_files(table, snap.schema, list(snap.files), columns)
    return ReadResult(frame=frame, version=snap.version, table=table)


def _frame_of_files(table: TableRef, schema: pa.Schema, files: list[TableFile],
                    columns: Sequence[str] | None = None):
    import dask.dataframe as dd

    wanted = list(columns) if columns is not None else schema.names
    missing = [c for c in wanted if c not in schema.names]
    if missing:
        raise SchemaMismatch(f"table {table} has no column(s) {missing}; it has {schema.names}")
    meta = (pa.schema([schema.field(c) for c in wanted]).empty_table()
            .to_pandas(coerce_temporal_nanoseconds=False))
    if not files:
        return dd.from_pandas(meta, npartitions=1)
    return dd.from_map(_read_file, file_pieces(files), table=table, schema=schema, columns=wanted,
                       meta=meta, label=f"read-{table.name}", enforce_metadata=False)


def arrow_schema_of(meta: pd.DataFrame) -> pa.Schema:
    """The Arrow schema a Dask frame's partitions are written with. ``meta`` is empty, so an
    object column's type cannot be inferred from values: it is taken to hold strings."""
    inferred = pa.Schema.from_pandas(meta, preserve_index=False)
    fields = [pa.field(f.name, pa.string()) if meta[f.name].dtype == object else f for f in inferred]
    return normalize_schema(pa.schema(fields))


def _write_partition(part: pd.DataFrame, table: TableRef, schema: pa.Schema,
                     partition_by: list[str]) -> list[dict[str, Any]]:
    """Runs on a worker: this partition's rows into new Parquet files; returns their metadata."""
    sink = ParquetSink(table, schema, partition_by)
    if len(part):
        try:
            data = pa.Table.from_pandas(part, schema=schema, preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise SchemaMismatch(f"a partition of the batch for table {table} does not fit "
                                 f"{schema}: {exc}") from exc
        sink.write(data)
    return [f.to_row() for f in sink.close()]


def write_dask(ddf, table: TableRef, mode: WriteMode, commit: CommitInfo,
               progress: bool = False) -> WriteResult:
    """Write ``ddf`` as one Delta commit (see ``engine.storage.batch.write_batch``)."""
    return batch.write_batch(_DaskFrames(progress), ddf, table, mode, commit)


class _DaskFrames:
    """``batch.FrameWriter`` for Dask DataFrames: each partition writes its files on a worker."""

    def __init__(self, progress: bool) -> None:
        self.progress = progress

    def schema_of(self, frame) -> pa.Schema:
        return arrow_schema_of(frame._meta)

    def merged(self, frame, table: TableRef, snap: TableSnapshot, partition_by: list[str]):
        return _merged(frame, table, snap, partition_by, self.schema_of(frame))

    def write_files(self, frame, table: TableRef, schema: pa.Schema,
                    partition_by: list[str]) -> list[WrittenFile]:
        import dask

        tasks = [dask.delayed(_write_partition)(part, table, schema, partition_by)
                 for part in frame.to_delayed()]
        return [WrittenFile.from_row(row)
                for rows in _compute(tasks, self.progress) for row in rows]


def _merged(source, table: TableRef, snap: TableSnapshot, partition_by: list[str],
            schema: pa.Schema):
    """See ``engine.storage.spark._merged``: the touched files' rows whose key is not in the
    batch, and the batch, as one lazy frame with the batch's columns."""
    import dask

    keys = merge.merge_keys(table, list(source.columns))
    by_partition = merge.key_partition_columns(table, partition_by)
    keyed = source[keys].dropna()
    rows, duplicates, bounds, parts = dask.compute(
        source.shape[0], (keyed.groupby(keys).size() > 1).sum(),
        {k: (source[k].min(), source[k].max()) for k in keys},
        {c: source[c].drop_duplicates() for c in by_partition})
    summary = merge.summary_from_rows(
        int(rows), int(duplicates),
        {k: (_plain(lo), _plain(hi)) for k, (lo, hi) in bounds.items()},
        {c: [_plain(v) for v in values] for c, values in parts.items()} or None)
    merge.check_unique(table, summary)
    plan = merge.plan(table, snap, summary)
    target = _frame_of_files(table, snap.schema, list(plan.touched))
    marked = target.merge(keyed.drop_duplicates().assign(__in_batch=True), on=keys, how="left")
    kept = marked[marked["__in_batch"].isna()].drop(columns="__in_batch")
    for column in schema.names:
        if column not in kept.columns:  # new nullable columns (allow_new_columns)
            kept[column] = pd.Series(dtype=source._meta[column].dtype)
    import dask.dataframe as dd

    return dd.concat([kept[schema.names], source[schema.names]]), plan


def _plain(value: Any) -> Any:
    """A pandas/numpy scalar as a Python value comparable with Delta's statistics."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    return value.item() if hasattr(value, "item") else value


def _compute(tasks: list, progress: bool) -> list:
    """Compute on the active distributed client (with its progress bar) or the local scheduler."""
    import dask

    try:
        from distributed import get_client, progress as show_progress

        client = get_client()
    except (ImportError, ValueError):
        return list(dask.compute(*tasks))
    futures = client.compute(tasks)
    if progress and sys.stdout.isatty():  # a bar only on a terminal, never in a log file
        show_progress(futures)
        print()
    return client.gather(futures)


def rewrite_dask(table: TableRef, files: Sequence[TableFile],
                 files_out: int) -> list[WrittenFile]:
    """The rows of ``files`` (one partition's) as ``files_out`` new uncommitted files."""
    schema, partition_by = file_layout(table)
    frame = _frame_of_files(table, schema, list(files)).repartition(npartitions=files_out)
    return _DaskFrames(progress=False).write_files(frame, table, schema, partition_by)
