"""Reading the Delta log: which versions a table has and what one version holds.

Every operation loads the log once (:func:`open_table`) and passes the loaded table along:
the helpers that take a loaded ``DeltaTable`` (:func:`committed_in`, :func:`schema_of`,
:func:`snapshot_of`) never open the log again. The helpers that take a ``TableRef`` are for
callers that need one answer from the log and nothing else; each is one load.

Idempotency uses Delta's application transactions: a commit records ``(app_id, batch)``, and
a writer checks :func:`committed_in` before writing any file (delta-rs does not skip on its
own, delta-rs #2580). Knows no engine: pyarrow and deltalake only.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from engine.errors import SchemaMismatch, TableNotFound
from engine.storage.layout import partition_value, table_root
from engine.storage.schema import from_delta, normalize_schema
from engine.storage.table import CommitInfo, TableRef

if TYPE_CHECKING:
    import pyarrow as pa
    from deltalake import DeltaTable


# --- loading the log -------------------------------------------------------------------------

def open_table(table: TableRef, version: int | None = None) -> DeltaTable | None:
    """The table at ``version`` (default latest), or None when no Delta table is there. Opened
    with the table's ``storage_options`` (the object store's credentials)."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    try:  # one log load: no separate is_deltatable listing
        return DeltaTable(table_root(table), version=version,
                          storage_options=table.storage_options or None)
    except TableNotFoundError:
        return None


def require_table(table: TableRef, version: int | None = None) -> DeltaTable:
    """The table at ``version`` (default: the pinned ``table.version``, else latest);
    ``TableNotFound`` when there is no table or no such version."""
    from deltalake.exceptions import DeltaError

    if version is None:
        version = table.version
    try:
        delta = open_table(table, version)
    except DeltaError as exc:
        readable_version(table, version)  # a version out of range: TableNotFound with the range
        raise SchemaMismatch(f"cannot load version {version} of table {table}: {exc}") from exc
    if delta is None:
        raise _no_table(table)
    return delta


def _no_table(table: TableRef) -> TableNotFound:
    return TableNotFound(f"no Delta table {table}: run the job that writes it first, or check "
                         "tables.* and lakehouse in conf")


# --- what a loaded table says ----------------------------------------------------------------

def committed_in(delta: DeltaTable | None, commit: CommitInfo) -> bool:
    """True when ``commit`` carries (app_id, batch) and the loaded log holds that batch (or a
    newer) for any of its app ids (a commit of several must not land any of them twice)."""
    if delta is None or commit.app_id is None or commit.batch is None:
        return False
    return any((done := delta.transaction_version(app)) is not None and done >= batch
               for app, batch in commit.transactions())


def schema_of(delta: DeltaTable, table: TableRef | None = None) -> pa.Schema:
    """A loaded table's schema as Arrow (``timestamp`` → ``timestamp[us, tz=UTC]``)."""
    return normalize_schema(from_delta(delta.schema()), table)


# --- one answer from the log (one load each) -------------------------------------------------

def table_version(table: TableRef) -> int | None:
    """The latest committed version, or None when there is no table yet."""
    delta = open_table(table)
    return None if delta is None else delta.version()


def table_exists(table: TableRef) -> bool:
    """Whether a Delta table (a ``_delta_log``) is at the table's location."""
    return open_table(table) is not None


def committed_batch(table: TableRef, app_id: str) -> int | None:
    """The newest batch number committed for ``app_id`` (Delta ``txn``), None if never."""
    delta = open_table(table)
    return None if delta is None else delta.transaction_version(app_id)


def arrow_schema(table: TableRef, version: int | None = None) -> pa.Schema:
    """The table's schema as Arrow (``timestamp`` → ``timestamp[us, tz=UTC]``)."""
    return schema_of(require_table(table, version), table)


def file_layout(table: TableRef) -> tuple[pa.Schema, list[str]]:
    """What new files of the existing table must hold: its schema and partition columns."""
    delta = require_table(table)
    return schema_of(delta, table), list(delta.metadata().partition_columns)


def partition_columns(table: TableRef) -> list[str]:
    """The partition columns the existing table was created with (``table.partition_by`` if new).

    Appends follow the table's layout, whatever the ``TableRef`` says."""
    delta = open_table(table)
    if delta is None:
        return list(table.partition_by)
    return list(delta.metadata().partition_columns)


# --- versions and time travel ----------------------------------------------------------------

def readable_version(table: TableRef, version: int | datetime | None = None) -> int:
    """``version`` (a number, or the version current at a datetime), or the latest one;
    ``TableNotFound`` when there is no table to read or no such version. A table pinned to a
    version (``TableRef.version``) reads that version when none is asked."""
    if version is None:
        version = table.version
    delta = open_table(table)
    if delta is None:
        raise _no_table(table)
    if isinstance(version, datetime):
        return _version_at(table, delta, version)
    latest = delta.version()
    if version is not None and not 0 <= version <= latest:
        raise TableNotFound(f"table {table} has no version {version}: its versions are "
                            f"0..{latest}")
    return latest if version is None else version


def version_at(table: TableRef, when: datetime) -> int:
    """The version that was current at ``when`` (the newest committed at or before it)."""
    delta = open_table(table)
    if delta is None:
        raise _no_table(table)
    return _version_at(table, delta, when)


def _version_at(table: TableRef, latest: DeltaTable, when: datetime) -> int:
    if when.tzinfo is None:
        raise SchemaMismatch(f"time travel on table {table} needs a time-zone-aware instant, "
                             f"got {when.isoformat()} (add +00:00 for UTC)")
    limit = when.timestamp() * 1000
    history = latest.history()
    found = [int(e["version"]) for e in history if e.get("timestamp", 0) <= limit]
    if not found:
        first = min(history, key=lambda e: int(e["version"]))
        since = datetime.fromtimestamp(first["timestamp"] / 1000, timezone.utc).isoformat()
        raise TableNotFound(f"table {table} did not exist at {when.isoformat()}: its first "
                            f"version was committed at {since}")
    return max(found)


# --- snapshots: the live files of a version --------------------------------------------------

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
    """The live files of ``version`` (default: the pinned ``table.version``, else latest; a
    datetime means the version current at that instant) with their partition values and
    statistics. See :func:`snapshot_of` for ``partitions``."""
    if version is None:
        version = table.version
    if isinstance(version, datetime):
        version = version_at(table, version)
    return snapshot_of(table, require_table(table, version), partitions)


def snapshot_of(table: TableRef, delta: DeltaTable,
                partitions: PartitionFilter | None = None) -> TableSnapshot:
    """The live files of the loaded table ``delta`` (the log is not read again), pruned to
    ``partitions`` (see :func:`prune`)."""
    import pyarrow as pa

    parts = tuple(delta.metadata().partition_columns)
    actions = pa.table(delta.get_add_actions(flatten=True))
    root = table_root(table)
    files = []
    for row in actions.to_pylist():
        mins = {k[4:]: v for k, v in row.items() if k.startswith("min.") and v is not None}
        maxs = {k[4:]: v for k, v in row.items() if k.startswith("max.") and v is not None}
        path = unquote(row["path"])
        files.append(TableFile(uri=f"{root}/{path}", rows=row.get("num_records"),
                               partition_values={c: row.get(f"partition.{c}") for c in parts},
                               log_path=path, size=row.get("size_bytes"), mins=mins, maxs=maxs))
    snap = TableSnapshot(version=delta.version(), schema=schema_of(delta, table),
                         partition_by=parts, files=tuple(files))
    return prune(table, snap, partitions)


def prune(table: TableRef, snap: TableSnapshot,
          partitions: PartitionFilter | None) -> TableSnapshot:
    """``snap`` with only the files whose partition values are among the given ones, per
    column (partition pruning: the other files are never opened). Pruning on a column that is
    not a partition column is refused, naming it."""
    if not partitions:
        return snap
    unknown = [c for c in partitions if c not in snap.partition_by]
    if unknown:
        raise SchemaMismatch(f"cannot prune table {table} by {unknown}: its partition columns "
                             f"are {list(snap.partition_by) or 'none'}")
    wanted = {c: {partition_value(v) for v in values} for c, values in partitions.items()}
    kept = tuple(f for f in snap.files
                 if all(partition_value(f.partition_values[c]) in allowed
                        for c, allowed in wanted.items()))
    return replace(snap, files=kept)


def row_count(table: TableRef, version: int | None = None) -> int:
    """Rows of a table version from the Delta log's file stats, without reading any data."""
    return sum(f.rows or 0 for f in snapshot(table, version).files)
