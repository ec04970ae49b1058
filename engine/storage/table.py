"""Plain types that describe a Delta table and one write to it, shared by every engine."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class WriteMode(str, Enum):
    """How a batch meets the rows already in the table.

    ``replace_partitions`` replaces exactly the partitions the batch has rows for and keeps
    every other partition (a rerun of one score date replaces that date only). ``merge``
    upserts on the table's ``keys``: target rows whose key is in the batch are replaced by the
    batch's row, batch rows with new keys are inserted, all other rows stay.
    """

    APPEND = "append"
    OVERWRITE = "overwrite"
    REPLACE_PARTITIONS = "replace_partitions"
    MERGE = "merge"


@dataclass(frozen=True)
class TableRef:
    """A Delta table by location. ``name`` is the logical name used in messages and lineage."""

    name: str
    path: str
    # credentials live here: never in repr, logs or commit metadata
    storage_options: dict[str, str] = field(default_factory=dict, hash=False, compare=False,
                                            repr=False)
    partition_by: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()  # the columns ``WriteMode.MERGE`` matches rows on
    allow_new_columns: bool = False  # appends may add nullable columns (schema evolution)
    # a pinned version (Delta time travel): what a read without an explicit version returns, so a
    # replay reads exactly the inputs a run read; writes ignore it
    version: int | None = None

    @classmethod
    def at(cls, path: str, storage_options: Mapping[str, str] | None = None) -> TableRef:
        """A table known only by its location (lineage, replay, run files): named after its
        last path segment."""
        return cls(name=os.path.basename(path.rstrip("/")) or path, path=path,
                   storage_options=dict(storage_options or {}))

    def __str__(self) -> str:
        pinned = "" if self.version is None else f"@v{self.version}"
        return f"{self.name}{pinned} ({self.path})"


@dataclass(frozen=True)
class CommitInfo:
    """Who writes a batch and why; goes into the Delta commit's metadata.

    ``app_id`` and ``batch`` form Delta's application transaction (``txn``): a batch whose
    number is not newer than the one already committed for ``app_id`` is skipped, so that a
    rerun of the same run never writes the same rows twice.
    """

    job: str
    run_id: str
    engine: str
    app_id: str | None = None
    batch: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    # more application ids committed with the same batch number in the same commit (e.g. one
    # per model when two models' scores land together), each then skipped on its own later
    also: tuple[str, ...] = ()
    # partitions (column → value) a replace_partitions commit also empties besides those its
    # files cover: e.g. what the previous run of the same scoring batch wrote (score.batch)
    replaces: tuple[dict[str, str | None], ...] = field(default=(), hash=False, compare=False)

    def transactions(self) -> list[tuple[str, int]]:
        """Every (app id, batch) this commit records."""
        if self.app_id is None or self.batch is None:
            return []
        return [(self.app_id, self.batch)] + [(a, self.batch) for a in self.also]

    def commit_metadata(self) -> dict[str, Any]:
        """The flat JSON object stored in the commit's ``commitInfo``."""
        meta = {"lakescore.job": self.job, "lakescore.run_id": self.run_id,
                "lakescore.engine": self.engine}
        meta.update({f"lakescore.{k}": v for k, v in self.metadata.items()})
        return meta


@dataclass(frozen=True)
class ReadResult:
    """A lazily evaluated frame (Spark or Dask) and the table version it reads."""

    frame: Any
    version: int
    table: TableRef


@dataclass(frozen=True)
class WriteResult:
    """What a write did. ``skipped`` means the same (app_id, batch) was already committed."""

    table: TableRef
    version: int
    rows: int
    files: int
    skipped: bool = False
    partitions: dict[str, list[str | None]] = field(default_factory=dict)
    """Per partition column, the values (as the log spells them) of the files this write added;
    empty when unpartitioned or unknown (the native delta-spark path). Lets a caller read back
    exactly what it wrote."""
