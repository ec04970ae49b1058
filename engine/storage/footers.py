"""An input table's data files checked by their Parquet footers before any engine reads them.

Only footers are read (a few KB each), so both engines refuse a damaged or mistyped table the
same way, naming the table, the file and the column, instead of failing differently mid-job.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from engine.errors import SchemaMismatch
from engine.storage.layout import file_path
from engine.storage.schema import type_kind
from engine.storage.snapshots import TableFile, snapshot
from engine.storage.table import TableRef


def check_data_files(table: TableRef, version: int | None = None,
                     columns: Sequence[str] | None = None) -> int:
    """Read the Parquet footer of every live file of ``version`` and refuse:

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
    expected = {f.name: type_kind(f.type) for f in wanted if f.name not in snap.partition_by}

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
        found = type_kind(field_.type)
        if want is not None and found != want:
            raise SchemaMismatch(
                f"{where}: column {field_.name!r} is {field_.type} ({found}) in this file but "
                f"{want} in the table's schema; rewrite the file with the table's types")
    return [name for name in expected if name not in schema.names]
