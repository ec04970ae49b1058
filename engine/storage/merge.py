"""Upserts without a MERGE engine: copy-on-write of only the files a batch can touch.

A merge on keys K replaces the target rows whose key is in the batch and inserts the rest:
``new files = (rows of the touched files whose key is not in the batch) ∪ batch``, committed
as one transaction that removes the touched files and adds the new ones. Each engine does the
anti-join and the write in parallel; this module decides which files are touched, from the
Delta log alone: files in other partitions (when the table is partitioned by key columns) and
files whose key statistics cannot hold any batch key are never read.

Batch rows with a null key never match (SQL equality), so they are inserted; a batch with the
same key twice is refused, as Delta's MERGE refuses it, before anything is written.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.errors import SchemaMismatch, ValidationFailed
from engine.storage.snapshots import TableFile, TableSnapshot, prune
from engine.storage.table import TableRef


@dataclass(frozen=True)
class KeySummary:
    """What the engine computed about the batch's keys (one small aggregation)."""

    rows: int
    duplicate_keys: int
    mins: dict[str, Any] = field(default_factory=dict)
    maxs: dict[str, Any] = field(default_factory=dict)
    partitions: dict[str, list[Any]] | None = None  # values of key columns that partition


@dataclass(frozen=True)
class MergePlan:
    """The files the merge rewrites and the partition scope that must not change meanwhile."""

    touched: tuple[TableFile, ...]
    scope: dict[str, list[Any]] | None


def merge_keys(table: TableRef, columns: Sequence[str]) -> list[str]:
    """The table's merge keys, checked against the batch's columns."""
    if not table.keys:
        raise SchemaMismatch(f"mode=merge on table {table} needs key columns: set keys on the "
                             "table (TableRef.keys / the table's conf)")
    missing = [k for k in table.keys if k not in columns]
    if missing:
        raise SchemaMismatch(f"merge batch for table {table} lacks key column(s) {missing}")
    return list(table.keys)


def key_partition_columns(table: TableRef, partition_by: Sequence[str]) -> list[str]:
    """Partition columns that are also keys: the batch's values of them prune the target."""
    return [c for c in partition_by if c in table.keys]


def check_unique(table: TableRef, summary: KeySummary) -> None:
    if summary.duplicate_keys:
        raise ValidationFailed(
            f"merge batch for table {table} has {summary.duplicate_keys} key value(s) of "
            f"{list(table.keys)} on more than one row; a merge needs one row per key. "
            "Deduplicate the batch; nothing was written")


def plan(table: TableRef, snap: TableSnapshot, summary: KeySummary) -> MergePlan:
    """The files of ``snap`` (the version the batch is merged into) that may hold a batch key."""
    scope = summary.partitions or None
    files = prune(table, snap, scope).files
    touched = tuple(f for f in files if _may_hold(f, summary))
    return MergePlan(touched=touched, scope=scope)


def _may_hold(file: TableFile, summary: KeySummary) -> bool:
    if summary.rows == 0:
        return False
    for key, low in summary.mins.items():
        high = summary.maxs.get(key)
        file_low, file_high = file.mins.get(key), file.maxs.get(key)
        if low is None or high is None or file_low is None or file_high is None:
            continue  # no statistics: the file may hold it
        try:
            if file_high < low or file_low > high:
                return False
        except TypeError:
            continue
    return True


def summary_from_rows(rows: int, duplicates: int, bounds: Mapping[str, tuple[Any, Any]],
                      partitions: Mapping[str, list[Any]] | None) -> KeySummary:
    return KeySummary(rows=rows, duplicate_keys=duplicates,
                      mins={k: v[0] for k, v in bounds.items()},
                      maxs={k: v[1] for k, v in bounds.items()},
                      partitions=dict(partitions) if partitions else None)
