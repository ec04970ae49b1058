"""Compaction and vacuum on real Delta tables, with each engine, and the maintain job."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from deltalake import DeltaTable

from engine.errors import CommitConflict
from engine.storage import maintenance
from engine.storage.commit import commit_files, commit_rewrite
from engine.storage.data_files import write_parquet_file
from engine.storage.snapshots import arrow_schema, snapshot
from engine.storage.table import CommitInfo, TableRef, WriteMode

REPO = Path(__file__).resolve().parents[1]


def batch(i: int, n: int = 20) -> pd.DataFrame:
    return pd.DataFrame({"customer_id": np.arange(i * n, (i + 1) * n, dtype="int64"),
                         "day": ["2026-11-01" if i % 2 else "2026-11-02"] * n,
                         "amount": np.full(n, float(i))})


def rewrite(engine_name, request):
    if engine_name == "spark":
        from engine.storage.spark import rewrite_spark

        spark = request.getfixturevalue("spark")
        return lambda table, files, n: rewrite_spark(spark, table, files, n)
    request.getfixturevalue("dask_cluster_client")
    from engine.storage.dask import rewrite_dask

    return rewrite_dask


def small_appends(table: TableRef, count: int = 6) -> None:
    from engine.storage.dask import write_dask
    import dask.dataframe as dd

    for i in range(count):
        write_dask(dd.from_pandas(batch(i), npartitions=1), table, WriteMode.APPEND,
                   CommitInfo("test", f"r{i}", "dask"))


def rows_of(path: str, version: int | None = None) -> pd.DataFrame:
    return (DeltaTable(path, version=version).to_pandas()
            .sort_values("customer_id").reset_index(drop=True)[["customer_id", "day", "amount"]])


def test_compaction_rewrites_small_files_per_partition_without_changing_rows(engine_name, tmp_path,
                                                                             request):
    table = TableRef("events", str(tmp_path / "events"), partition_by=("day",))
    small_appends(table)
    before = rows_of(table.path)
    version_before = DeltaTable(table.path).version()
    result = maintenance.compact(table, rewrite(engine_name, request),
                                 CommitInfo("maintain", "m1", engine_name), target_bytes=64 << 20)
    assert (result.files_removed, result.files_added, result.rows) == (6, 2, 120)
    after = DeltaTable(table.path)
    assert len(after.file_uris()) == 2
    pd.testing.assert_frame_equal(rows_of(table.path), before)
    pd.testing.assert_frame_equal(rows_of(table.path, version_before), before)  # time travel
    log_lines = Path(table.path, "_delta_log", f"{result.version:020d}.json").read_text().splitlines()
    actions = [json.loads(line) for line in log_lines]
    assert all(a["add"]["dataChange"] is False for a in actions if "add" in a)
    assert all(a["remove"]["dataChange"] is False for a in actions if "remove" in a)
    # nothing left to compact: a second run commits nothing
    again = maintenance.compact(table, rewrite(engine_name, request),
                                CommitInfo("maintain", "m2", engine_name), target_bytes=64 << 20)
    assert again.version is None and DeltaTable(table.path).version() == result.version


def test_compaction_refuses_when_a_file_was_removed_meanwhile(tmp_path, request):
    table = TableRef("events", str(tmp_path / "events"), partition_by=("day",))
    small_appends(table, 4)
    snap = snapshot(table)
    # a concurrent overwrite removes every file after compaction planned its groups
    import pyarrow as pa

    data = pa.Table.from_pandas(batch(9), preserve_index=False)
    files = write_parquet_file(data, table, snap.schema)
    commit_files(table, files, snap.schema, WriteMode.OVERWRITE,
                           CommitInfo("test", "other", "dask"), ["day"])
    request.getfixturevalue("dask_cluster_client")
    from engine.storage.dask import rewrite_dask

    added = rewrite_dask(table, snap.files, 1)
    with pytest.raises(CommitConflict, match="removed by a concurrent commit"):
        commit_rewrite(table, added, snap.files, snap.schema, snap.version,
                                 CommitInfo("maintain", "m", "dask"))
    assert rows_of(table.path)["customer_id"].tolist() == list(range(180, 200))


def test_vacuum_deletes_removed_and_orphan_files_but_never_live_ones(tmp_path):
    table = TableRef("events", str(tmp_path / "events"), partition_by=("day",))
    small_appends(table, 4)
    import pyarrow as pa

    # an orphan: files written by a writer that died before committing
    write_parquet_file(pa.Table.from_pandas(batch(7), preserve_index=False), table,
                                 arrow_schema(table))
    from engine.storage.dask import rewrite_dask

    maintenance.compact(table, rewrite_dask, CommitInfo("maintain", "m", "dask"), 64 << 20)
    live = {Path(u.removeprefix("file://")).resolve() for u in DeltaTable(table.path).file_uris()}
    on_disk = {p.resolve() for p in Path(table.path).rglob("*.parquet")}
    assert len(on_disk - live) == 5  # 4 compacted away + 1 orphan

    kept = maintenance.vacuum(table, retention_hours=168)
    assert kept.files_deleted == 0  # all younger than the retention
    with pytest.raises(Exception, match="(?i)retention"):
        maintenance.vacuum(table, retention_hours=0)  # below the table's retention: refused
    dry = maintenance.vacuum(table, retention_hours=0, dry_run=True, enforce_retention=False)
    assert dry.files_deleted == 5 and {p.resolve() for p in Path(table.path).rglob("*.parquet")} == on_disk
    done = maintenance.vacuum(table, retention_hours=0, enforce_retention=False)
    assert done.files_deleted == 5
    assert {p.resolve() for p in Path(table.path).rglob("*.parquet")} == live
    assert len(rows_of(table.path)) == 80


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["dask", "spark"])
def test_maintain_job_compacts_and_vacuums_the_conf_tables(engine, tmp_path):
    lakehouse = tmp_path / "lake"
    table = TableRef("scores", str(lakehouse / "tables" / "scores"), partition_by=("day",))
    small_appends(table)
    env = dict(os.environ, SPARK_LOCAL_IP="127.0.0.1", PYSPARK_PYTHON=sys.executable,
               PYSPARK_DRIVER_PYTHON=sys.executable)
    cmd = [sys.executable, "-m", "jobs.maintain", "--conf", "conf/test.yaml", "--engine", engine,
           "--set", f"lakehouse={lakehouse}", "--set", "spark.show_progress=false",
           "--set", "dask.show_progress=false", "--table", "scores",
           "--retention-hours", "0", "--allow-short-retention"]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "compact scores" in done.stdout and "6 files" in done.stdout
    assert "deleted 6 files older than 0 h" in done.stdout
    assert len(DeltaTable(table.path).file_uris()) == 2
    assert len(list(Path(table.path).rglob("*.parquet"))) == 2
    bad = subprocess.run(cmd[:-5] + ["--table", "nope"], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=600)
    assert bad.returncode == 2 and "unknown table(s) ['nope']" in bad.stderr
