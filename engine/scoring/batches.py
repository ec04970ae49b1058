"""Which scores a scoring batch wrote, so that a rerun of the batch can replace all of it.

A scores commit records its batch (``score.batch``, metadata key ``lakescore.score_batch``) and
its rows carry the ``run_id`` of the run that wrote them. A run of the same batch looks up the
runs that recorded the batch and the partitions their rows are in, and hands those to its own
``replace_partitions`` commit (``CommitInfo.replaces``): one commit replaces both what it covers
and what the batch's previous runs wrote, so a corrected input leaves no stale date behind.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from engine.storage.layout import file_path, partition_value
from engine.storage.snapshots import open_table, snapshot_of
from engine.storage.table import TableRef

log = logging.getLogger("lakescore")

BATCH_KEY = "score_batch"


def previous_batch_partitions(out: TableRef, batch: str, model_ids: Sequence[str],
                              partitions: Sequence[str]) -> tuple[dict, ...]:
    """The ``partitions`` (score date, model) of ``model_ids`` that hold rows of an earlier run of
    the scoring ``batch`` (``score.batch``), for the next write to replace with its own.

    Scoring partitions by the rows' dates, so a rerun of a batch whose input was wrong (rows
    dated 2030) would otherwise leave the wrong dates behind. The runs of the batch are the
    ``run_id``s of the scores commits that recorded it; their partitions are found from the
    files' ``run_id`` statistics (a file's rows share one run), reading the column only for a
    file without them."""
    delta = open_table(out)
    if delta is None or not set(partitions) <= set(delta.metadata().partition_columns):
        return ()
    history = delta.history()
    runs = {entry.get("lakescore.run_id") for entry in history
            if entry.get(f"lakescore.{BATCH_KEY}") == batch}
    if not runs:
        return ()
    found = set()
    for file in snapshot_of(out, delta).files:
        if file.partition_values.get("model_id") not in model_ids:
            continue
        low, high = file.mins.get("run_id"), file.maxs.get("run_id")
        if low is not None and low == high:
            holds = low in runs
        else:
            holds = bool(runs & set(_file_column(out, file, "run_id")))
        if holds:
            found.add(tuple((c, partition_value(file.partition_values.get(c)))
                            for c in partitions))
    if found:
        log.info("scoring batch %r: replacing %d partition(s) its previous run wrote to %s",
                 batch, len(found), out)
    return tuple(dict(key) for key in sorted(found, key=str))


def _file_column(table: TableRef, file: Any, column: str) -> list[Any]:
    import pyarrow.parquet as pq

    fs, path = file_path(table, file.uri)
    with fs.open_input_file(path) as handle:
        return pq.read_table(handle, columns=[column]).column(column).to_pylist()
