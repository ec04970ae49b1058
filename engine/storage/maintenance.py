"""Table upkeep: compaction of small files and vacuum of files no version needs.

Compaction rewrites, per partition, the files smaller than the target size into as few files
as the target allows, with the job's engine, and commits the swap as one transaction marked
``dataChange=false``: readers of any version see the same rows, streaming readers skip it,
and the commit fails (nothing changed) if a concurrent writer removed one of those files.

Vacuum deletes data files that no version within the retention period references: files
removed by overwrites, merges and compactions, and the orphans of writers that died between
writing their files and committing (see ``engine.storage.staged``). It never touches a file
a live version needs; time travel beyond the retention period stops working, as in Delta.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from engine.errors import CommitConflict
from engine.storage.commit import commit_rewrite
from engine.storage.data_files import WrittenFile
from engine.storage.layout import partition_value, table_root
from engine.storage.snapshots import TableFile, TableSnapshot, require_table, snapshot
from engine.storage.table import CommitInfo, TableRef

Rewrite = Callable[[TableRef, Sequence[TableFile], int], list[WrittenFile]]


@dataclass(frozen=True)
class CompactionGroup:
    """Small files of one partition, rewritten into ``files_out`` files."""

    partition: tuple
    files: tuple[TableFile, ...]
    files_out: int

    @property
    def bytes(self) -> int:
        return sum(f.size or 0 for f in self.files)


@dataclass(frozen=True)
class CompactionResult:
    version: int | None  # None: nothing to compact
    files_removed: int
    files_added: int
    rows: int
    bytes_before: int


@dataclass(frozen=True)
class VacuumResult:
    files_deleted: int
    dry_run: bool
    retention_hours: float


def plan_compaction(snap: TableSnapshot, target_bytes: int,
                    min_files: int = 2) -> list[CompactionGroup]:
    """Partitions with at least ``min_files`` files under ``target_bytes``; each group is
    rewritten into ceil(total / target) files."""
    by_partition: dict[tuple, list[TableFile]] = {}
    for f in snap.files:
        if (f.size or 0) < target_bytes:
            key = tuple(partition_value(f.partition_values.get(c))
                        for c in snap.partition_by)
            by_partition.setdefault(key, []).append(f)
    groups = []
    for key in sorted(by_partition, key=lambda k: tuple("" if v is None else v for v in k)):
        files = by_partition[key]
        if len(files) >= min_files:
            total = sum(f.size or 0 for f in files)
            groups.append(CompactionGroup(partition=key, files=tuple(files),
                                          files_out=max(1, math.ceil(total / target_bytes))))
    return groups


def compact(table: TableRef, rewrite: Rewrite, commit: CommitInfo, target_bytes: int,
            min_files: int = 2) -> CompactionResult:
    """Compact ``table`` with an engine's ``rewrite`` (files → new uncommitted files)."""
    snap = snapshot(table)
    groups = plan_compaction(snap, target_bytes, min_files)
    if not groups:
        return CompactionResult(version=None, files_removed=0, files_added=0, rows=0,
                                bytes_before=0)
    removed = [f for g in groups for f in g.files]
    added = [new for g in groups for new in rewrite(table, g.files, g.files_out)]
    rows_in, rows_out = sum(f.rows or 0 for f in removed), sum(f.rows for f in added)
    if rows_in != rows_out:  # never swap files that do not hold the same rows
        raise CommitConflict(f"compaction of table {table} rewrote {rows_in} rows into {rows_out} "
                             "(a file changed while it was read?); nothing was committed, rerun "
                             "the compaction")
    version = commit_rewrite(table, added, removed, snap.schema, snap.version, commit)
    return CompactionResult(version=version, files_removed=len(removed), files_added=len(added),
                            rows=rows_out, bytes_before=sum(g.bytes for g in groups))


def vacuum(table: TableRef, retention_hours: float, dry_run: bool = False,
           enforce_retention: bool = True) -> VacuumResult:
    """Delete unreferenced data files older than the retention (orphans included)."""
    delta = require_table(table)
    deleted = delta.vacuum(retention_hours=int(retention_hours), dry_run=dry_run,
                           enforce_retention_duration=enforce_retention, full=True)
    if not dry_run:
        remove_empty_batch_dirs(table)
    return VacuumResult(files_deleted=len(deleted), dry_run=dry_run,
                        retention_hours=retention_hours)


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
