"""The single-commit protocol over deltalake, shared by every engine.

A write is two steps that never mix: workers write Parquet files (``engine.storage.data_files``,
invisible until committed), then the driver or client makes exactly one Delta commit of all of
them (:func:`commit_files`). A writer that dies between the two leaves the table unchanged (at
most an orphan file, which ``VACUUM`` removes); a task that is retried only orphans its first
attempt's file.

A commit loads the latest log once and checks everything against that one load: the (app id,
batch) idempotency, the schema (evolving it first when the table allows), the partition layout,
and the conflict guard (the files the write replaces unchanged since the version the batch was
computed from). The test hooks of ``engine.storage.commit_hooks`` run just before.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from engine.errors import CommitConflict, SchemaMismatch
from engine.storage.commit_hooks import before_commit
from engine.storage.data_files import WrittenFile
from engine.storage.layout import partition_value, table_root
from engine.storage.schema import check_schema, delta_types, normalize_schema
from engine.storage.snapshots import (PartitionFilter, TableFile, TableSnapshot, committed_in,
                                      open_table, schema_of, snapshot, snapshot_of)
from engine.storage.table import CommitInfo, TableRef, WriteMode

if TYPE_CHECKING:
    import pyarrow as pa
    from deltalake import DeltaTable

COMMIT_ID_KEY = "lakescore.commit_id"


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

    before_commit(table)
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
            if committed_in(delta, commit):
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
        latest: TableSnapshot | None = None
        if read_version is not None and replaced is not None and delta.version() != read_version:
            latest = snapshot_of(table, delta)
            _check_unchanged(table, read_version, latest, replaced)
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
            removes = _replaced_files(latest or snapshot_of(table, delta), files, parts,
                                      commit.replaces)
        delta.create_write_transaction(actions + [f.remove_action() for f in removes],
                                       mode="append",
                                       schema=DeltaSchema.from_arrow(schema_of(delta, table)),
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
    from deltalake import Schema as DeltaSchema
    from deltalake.exceptions import CommitFailedError
    from deltalake.transaction import AddAction, CommitProperties

    before_commit(table)
    latest = snapshot(table)
    gone = {f.log_path for f in removed} - {f.log_path for f in latest.files}
    if gone:
        raise CommitConflict(f"{len(gone)} file(s) being rewritten in table {table} were removed "
                             f"by a concurrent commit between version {read_version} and "
                             f"{latest.version}; nothing was committed, rerun it")
    delta = open_table(table, read_version)  # delta-rs checks the commits since for conflicts
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


def _evolve_or_check_schema(table: TableRef, delta: DeltaTable, schema: pa.Schema,
                            properties: Any) -> DeltaTable:
    """Check the batch's schema against the loaded table's; with ``table.allow_new_columns``,
    first add the batch's extra columns to the table (nullable), in a commit of their own."""
    from deltalake import Field as DeltaField
    from deltalake import Schema as DeltaSchema

    current = schema_of(delta)
    check_schema(table, schema, current, delta.version())
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


def _replaced_files(latest: TableSnapshot, files: Sequence[WrittenFile], parts: list[str],
                    also: Sequence[Mapping[str, Any]] = ()) -> list[TableFile]:
    keys = _covered_keys(files, parts, also)
    return [f for f in latest.files if _in_partitions(f, parts, keys)]


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


def _check_unchanged(table: TableRef, read_version: int, latest: TableSnapshot,
                     replaced: Callable[[TableFile], bool]) -> None:
    before = {f.log_path for f in snapshot(table, read_version).files if replaced(f)}
    after = {f.log_path for f in latest.files if replaced(f)}
    if before != after:
        raise CommitConflict(
            f"table {table} changed since version {read_version}, which this batch was computed "
            f"from: by version {latest.version}, {len(before ^ after)} file(s) were added or "
            "removed among the rows this write replaces; nothing was committed. Rerun the job "
            "to recompute the batch from the current version")


def _check_layout(table: TableRef, files: Sequence[WrittenFile], parts: list[str]) -> None:
    wrong = [f.path for f in files if sorted(f.partition_values) != sorted(parts)]
    if wrong:
        raise SchemaMismatch(f"{len(wrong)} file(s) for table {table} are not partitioned by "
                             f"{parts} (e.g. {wrong[0]}); nothing was committed")


def _definition_changes(delta: DeltaTable, schema: pa.Schema, parts: list[str]) -> bool:
    """Whether an overwrite changes the table's schema or partitioning (delta-rs's plain
    overwrite would keep stale partition columns and leave an unreadable table)."""
    current = schema_of(delta)
    return (list(delta.metadata().partition_columns) != parts
            or delta_types(current) != delta_types(schema)
            or current.names != schema.names)


def _version_of(table: TableRef, commit_id: str) -> int:
    """The version whose commit carries ``commit_id`` (concurrent commits may follow ours):
    the log is read again after the commit, to find it."""
    delta = open_table(table)
    assert delta is not None
    for entry in delta.history(limit=100):
        if entry.get(COMMIT_ID_KEY) == commit_id:
            return int(entry["version"])
    return delta.version()
