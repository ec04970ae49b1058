"""Files that an engine's own Parquet writer put under a table, turned into Delta ``add`` actions.

Spark's native Parquet writer is the fastest way out of its JVM (no Arrow hand-over to Python),
and its commit protocol already makes each task's output appear exactly once. lakescore lets it
write a batch into a fresh directory under the table root (``<root>/<batch dir>/[col=v/]part-*``),
then lists that one directory, reads each file's footer for Delta's statistics and commits the
files in one Delta transaction. Until that commit the files are invisible to every Delta reader;
a writer that dies leaves only an unreferenced directory, which ``VACUUM`` removes after its
retention period (the directory is not hidden, so vacuum sees it).

Partition values are read back from the directory names, so only partition columns whose
values are spelled the same way by Spark and by Delta are accepted here (strings, integers,
booleans, dates); others keep the Arrow path.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from engine.storage import layout
from engine.storage.data_files import WrittenFile
from engine.storage.layout import HIVE_NULL
from engine.storage.stats import stats_json
from engine.storage.table import TableRef

if TYPE_CHECKING:
    import pyarrow as pa

BATCH_DIR_PREFIX = "batch-"
_FOOTER_THREADS = 16


def new_batch_dir() -> str:
    """A directory name that no other writer uses and that sorts by time."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"{BATCH_DIR_PREFIX}{stamp}-{uuid.uuid4().hex[:12]}"


def partition_kinds_supported(schema: pa.Schema, partition_by: Sequence[str]) -> bool:
    """Whether every partition column's directory spelling equals Delta's partition value."""
    import pyarrow as pa

    def plain(kind: pa.DataType) -> bool:
        return (pa.types.is_string(kind) or pa.types.is_integer(kind)
                or pa.types.is_boolean(kind) or pa.types.is_date32(kind))

    return all(plain(schema.field(c).type) for c in partition_by)


def collect_written(table: TableRef, batch_dir: str, schema: pa.Schema,
                    partition_by: Sequence[str]) -> list[WrittenFile]:
    """The Parquet files under ``<root>/<batch_dir>`` as uncommitted Delta files with stats.

    Side files of the writer (``_SUCCESS``, Hadoop's ``.crc`` checksums) are deleted; files
    with no rows (Spark writes one for an empty frame) are deleted and not returned.
    """
    from pyarrow import fs as pafs

    filesystem, root = layout.filesystem(table)
    base = f"{root}/{batch_dir}"
    try:
        infos = filesystem.get_file_info(pafs.FileSelector(base, recursive=True))
    except FileNotFoundError:
        return []
    data, junk = [], []
    for info in infos:
        if info.type != pafs.FileType.File:
            continue
        name = info.base_name
        (data if name.endswith(".parquet") and not name.startswith((".", "_")) else junk).append(info)
    for info in junk:
        filesystem.delete_file(info.path)
    with ThreadPoolExecutor(_FOOTER_THREADS) as pool:
        files = list(pool.map(
            lambda info: _written_file(filesystem, root, info, schema, list(partition_by)), data))
    empty = [f for f in files if f.rows == 0]
    for f in empty:
        filesystem.delete_file(f"{root}/{f.path}")
    return [f for f in files if f.rows > 0]


def _written_file(filesystem: Any, root: str, info: Any, schema: pa.Schema,
                  partition_by: list[str]) -> WrittenFile:
    import pyarrow.parquet as pq

    relative = info.path[len(root) + 1:]
    values = _partition_values(relative, partition_by)
    with filesystem.open_input_file(info.path) as handle:
        metadata = pq.ParquetFile(handle).metadata
    # The path as it lies on storage (Spark's escaping of partition directories); deltalake
    # URI-encodes it once more in the log, and every reader decodes it back to this.
    return WrittenFile(path=relative, size=info.size, rows=metadata.num_rows,
                                 stats=footer_stats(metadata, schema), partition_values=values,
                                 modification_time=int(time.time() * 1000))


def _partition_values(relative: str, partition_by: list[str]) -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for part in relative.split("/")[:-1]:
        if "=" in part:
            column, value = part.split("=", 1)
            value = unquote(value)
            found[unquote(column)] = None if value == HIVE_NULL else value
    return {c: found.get(c) for c in partition_by}


def footer_stats(metadata: Any, schema: pa.Schema) -> str:
    """Delta's per-file stats JSON from a Parquet footer, without reading any data.

    Bounds are kept only where they are safe for data skipping: integer, decimal-free,
    date, timestamp and string columns whose every row group has min/max. Float columns get
    no bounds (a footer cannot say whether the column holds NaN, which engines order above
    every number).
    """
    import pyarrow as pa

    kinds = {f.name: f.type for f in schema}
    mins: dict[str, Any] = {}
    maxs: dict[str, Any] = {}
    nulls: dict[str, int] = {}
    unbounded: set[str] = set()
    for group in range(metadata.num_row_groups):
        row_group = metadata.row_group(group)
        for i in range(row_group.num_columns):
            chunk = row_group.column(i)
            name = chunk.path_in_schema
            kind = kinds.get(name)
            if kind is None:
                continue  # nested leaves and partition columns
            stats = chunk.statistics
            if stats is None or not stats.has_null_count:
                unbounded.add(name)
                nulls[name] = nulls.get(name, 0)
                continue
            nulls[name] = nulls.get(name, 0) + stats.null_count
            bounded = (pa.types.is_integer(kind) or pa.types.is_date(kind)
                       or pa.types.is_timestamp(kind) or pa.types.is_string(kind))
            if not bounded or not stats.has_min_max:
                if stats.num_values > 0:
                    unbounded.add(name)
                continue
            low, high = _typed(stats.min, kind), _typed(stats.max, kind)
            mins[name] = low if name not in mins else min(mins[name], low)
            maxs[name] = high if name not in maxs else max(maxs[name], high)
    for name in unbounded:
        mins.pop(name, None)
        maxs.pop(name, None)
    return stats_json(metadata.num_rows, mins, maxs, nulls)


def _typed(value: Any, kind: pa.DataType) -> Any:
    """Footer statistics as Python values of the column's logical type (UTC timestamps)."""
    import pyarrow as pa

    if pa.types.is_timestamp(kind) and isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    if pa.types.is_string(kind) and isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value
