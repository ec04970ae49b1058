"""Delta tables on S3 (a local moto S3 server on 127.0.0.1, ``s3_options`` in conftest): writers,
readers, merge, time travel and vacuum take credentials and endpoint from storage_options."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest

from engine.storage import maintenance
from engine.storage.snapshots import snapshot
from engine.storage.table import CommitInfo, TableRef, WriteMode

pytest.importorskip("moto")


def data(ids, day: str, amount: float = 1.0) -> pd.DataFrame:
    ids = list(ids)
    return pd.DataFrame({"customer_id": np.array(ids, dtype="int64"), "day": [day] * len(ids),
                         "amount": np.full(len(ids), amount)})


def test_dask_on_s3_writes_merges_time_travels_and_vacuums(s3_options, dask_cluster_client):
    import dask.dataframe as dd

    from engine.storage.dask import read_dask, rewrite_dask, write_dask

    table = TableRef("scores", "s3://lake/tables/scores", storage_options=s3_options,
                     partition_by=("day",), keys=("day", "customer_id"))
    assert "test" not in repr(table)  # credentials never reach logs
    write_dask(dd.from_pandas(pd.concat([data(range(10), "d1"), data(range(10), "d2")]), npartitions=2),
               table, WriteMode.APPEND, CommitInfo("test", "r1", "dask"))
    first = datetime.now(timezone.utc)
    time.sleep(1.1)
    write_dask(dd.from_pandas(data([3, 42], "d2", 5.0), npartitions=1), table, WriteMode.MERGE,
               CommitInfo("test", "r2", "dask", app_id="merge", batch=0))
    again = write_dask(dd.from_pandas(data([3, 42], "d2", 5.0), npartitions=1), table,
                       WriteMode.MERGE, CommitInfo("test", "r2", "dask", app_id="merge", batch=0))
    assert again.skipped
    now = read_dask(table).frame.compute()
    assert len(now) == 21 and sorted(now.loc[now.amount == 5.0, "customer_id"]) == [3, 42]
    assert len(read_dask(table, version=first).frame.compute()) == 20
    assert len(read_dask(table, partitions={"day": ["d1"]}).frame.compute()) == 10

    result = maintenance.compact(table, rewrite_dask, CommitInfo("maintain", "m", "dask"), 64 << 20)
    assert result.files_added == 2 and len(read_dask(table).frame.compute()) == 21
    vacuumed = maintenance.vacuum(table, retention_hours=0, enforce_retention=False)
    assert vacuumed.files_deleted >= result.files_removed
    assert len(snapshot(table).files) == 2
    assert len(read_dask(table).frame.compute()) == 21

