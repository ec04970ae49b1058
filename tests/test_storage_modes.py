"""Write modes beyond append/overwrite, time travel by timestamp, partition pruning, schema
evolution and conflicting writers, on both engines, on real Delta tables."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from deltalake import DeltaTable

from engine.errors import CommitConflict, SchemaMismatch, TableNotFound, ValidationFailed
from engine.storage.commit import commit_files
from engine.storage.data_files import write_parquet_file
from engine.storage.schema import normalize_schema
from engine.storage.snapshots import snapshot, table_version
from engine.storage.table import CommitInfo, TableRef, WriteMode

REPO = Path(__file__).resolve().parents[1]


def rows(ids, day: str, amount: float = 1.0) -> pd.DataFrame:
    ids = list(ids)
    return pd.DataFrame({
        "customer_id": np.array(ids, dtype="int64"),
        "day": pd.to_datetime([day] * len(ids)).date,
        "amount": np.full(len(ids), amount),
        "event_time": pd.Timestamp(day, tz="UTC").as_unit("us") + pd.to_timedelta(ids, unit="s"),
    })


def frame(engine_name, pdf, request, partitions=2):
    if engine_name == "spark":
        return request.getfixturevalue("spark").createDataFrame(pdf).repartition(partitions)
    import dask.dataframe as dd

    return dd.from_pandas(pdf, npartitions=partitions)


def write(engine_name, data, table, mode, app_id=None, batch=None):
    commit = CommitInfo(job="test", run_id="r", engine=engine_name, app_id=app_id, batch=batch)
    if engine_name == "spark":
        from engine.storage.spark import write_spark

        return write_spark(data, table, mode, commit)
    from engine.storage.dask import write_dask

    return write_dask(data, table, mode, commit)


def read(engine_name, table, request, **kwargs) -> pd.DataFrame:
    if engine_name == "spark":
        from engine.storage.spark import read_spark

        pdf = read_spark(request.getfixturevalue("spark"), table, **kwargs).frame.toPandas()
    else:
        from engine.storage.dask import read_dask

        pdf = read_dask(table, **kwargs).frame.compute()
    return tidy(pdf)


def tidy(pdf: pd.DataFrame) -> pd.DataFrame:
    out = pdf.copy()
    if "day" in out:
        out["day"] = pd.to_datetime(out["day"]).dt.date
    if "event_time" in out:
        out["event_time"] = pd.to_datetime(out["event_time"], utc=True).dt.as_unit("us")
    return out.sort_values("customer_id").reset_index(drop=True)


def on_disk(table: TableRef) -> pd.DataFrame:
    return tidy(DeltaTable(table.path).to_pandas())


def live_files(table: TableRef) -> set[str]:
    return {f.log_path for f in snapshot(table).files}


# --- replace_partitions ----------------------------------------------------------------------

def test_replace_partitions_replaces_only_the_covered_partitions(engine_name, tmp_path, request):
    table = TableRef("scores", str(tmp_path / "scores"), partition_by=("day",))
    first = pd.concat([rows(range(0, 10), "2026-11-01"), rows(range(10, 20), "2026-11-02")])
    write(engine_name, frame(engine_name, first, request), table, WriteMode.APPEND)
    kept_files = {f.log_path for f in snapshot(table, partitions={"day": ["2026-11-01"]}).files}

    again = rows(range(100, 105), "2026-11-02", amount=2.0)
    result = write(engine_name, frame(engine_name, again, request), table, WriteMode.REPLACE_PARTITIONS)

    expected = tidy(pd.concat([rows(range(0, 10), "2026-11-01"), again]))
    pd.testing.assert_frame_equal(on_disk(table), expected, check_dtype=False)
    pd.testing.assert_frame_equal(read(engine_name, table, request), expected, check_dtype=False)
    assert result.version == 1 and result.rows == 5
    assert kept_files <= live_files(table)  # the untouched partition's files were not rewritten
    assert DeltaTable(table.path).history(1)[0]["lakescore.mode"] == "replace_partitions"


@pytest.mark.parametrize("value", ["churn/1", "a b%2Fc"])
def test_replace_and_merge_remove_files_whose_partition_values_need_escaping(engine_name, value,
                                                                             tmp_path, request):
    """Partition directories of values with '/', ' ' or '%' are percent-encoded on disk and once
    more in the log: a replace or merge must still name the old files exactly, or they stay live
    and the table holds the replaced rows twice."""
    table = TableRef("scores", str(tmp_path / "scores"), partition_by=("model_id",),
                     keys=("customer_id", "model_id"))
    first = rows(range(0, 10), "2026-11-01").assign(model_id=value)
    write(engine_name, frame(engine_name, first, request), table, WriteMode.APPEND)
    again = rows(range(0, 4), "2026-11-01", amount=2.0).assign(model_id=value)
    write(engine_name, frame(engine_name, again, request), table, WriteMode.REPLACE_PARTITIONS)
    pd.testing.assert_frame_equal(on_disk(table), tidy(again), check_dtype=False)
    merged = rows(range(2, 6), "2026-11-01", amount=3.0).assign(model_id=value)
    write(engine_name, frame(engine_name, merged, request), table, WriteMode.MERGE)
    expected = tidy(pd.concat([again.iloc[:2], merged]))
    pd.testing.assert_frame_equal(on_disk(table), expected, check_dtype=False)
    pd.testing.assert_frame_equal(read(engine_name, table, request), expected, check_dtype=False)
    assert {f.partition_values["model_id"] for f in snapshot(table).files} == {value}


def test_a_rerun_of_a_partition_replace_changes_nothing(engine_name, tmp_path, request):
    table = TableRef("scores", str(tmp_path / "scores"), partition_by=("day",))
    batch = frame(engine_name, rows(range(5), "2026-11-03"), request)
    write(engine_name, batch, table, WriteMode.REPLACE_PARTITIONS, app_id="score:run-1", batch=0)
    files = live_files(table)
    rerun = write(engine_name, batch, table, WriteMode.REPLACE_PARTITIONS, app_id="score:run-1", batch=0)
    assert rerun.skipped and live_files(table) == files and len(on_disk(table)) == 5


def test_replace_partitions_on_an_unpartitioned_table_is_refused(engine_name, tmp_path, request):
    table = TableRef("scores", str(tmp_path / "scores"))
    write(engine_name, frame(engine_name, rows(range(3), "2026-11-01"), request), table, WriteMode.APPEND)
    with pytest.raises(SchemaMismatch, match="replace_partitions needs a partitioned table"):
        write(engine_name, frame(engine_name, rows(range(3), "2026-11-01"), request), table,
              WriteMode.REPLACE_PARTITIONS)
    assert DeltaTable(table.path).version() == 0


# --- merge -----------------------------------------------------------------------------------

def test_merge_updates_matched_keys_inserts_new_ones_and_keeps_the_rest(engine_name, tmp_path, request):
    table = TableRef("customers", str(tmp_path / "customers"), keys=("customer_id",))
    write(engine_name, frame(engine_name, rows(range(0, 50), "2026-11-01"), request), table, WriteMode.APPEND)
    write(engine_name, frame(engine_name, rows(range(1000, 1050), "2026-11-01"), request), table, WriteMode.APPEND)
    far_files = {f.log_path for f in snapshot(table, 1).files} - \
        {f.log_path for f in snapshot(table, 0).files}

    batch = rows(range(40, 60), "2026-11-05", amount=9.0)
    write(engine_name, frame(engine_name, batch, request), table, WriteMode.MERGE)

    expected = tidy(pd.concat([rows(range(0, 40), "2026-11-01"), batch,
                               rows(range(1000, 1050), "2026-11-01")]))
    pd.testing.assert_frame_equal(on_disk(table), expected, check_dtype=False)
    pd.testing.assert_frame_equal(read(engine_name, table, request), expected, check_dtype=False)
    # keys 40..59 cannot be in the file of keys 1000..1049: its statistics kept it untouched
    assert far_files <= live_files(table)


def test_merge_inserts_rows_with_a_null_key_and_refuses_duplicate_keys(engine_name, tmp_path, request):
    table = TableRef("customers", str(tmp_path / "customers"), keys=("customer_id",))
    write(engine_name, frame(engine_name, rows(range(5), "2026-11-01"), request), table, WriteMode.APPEND)
    duplicated = pd.concat([rows([3, 7], "2026-11-02"), rows([7], "2026-11-02", amount=5.0)])
    with pytest.raises(ValidationFailed) as err:
        write(engine_name, frame(engine_name, duplicated, request), table, WriteMode.MERGE)
    assert "1 key value(s) of ['customer_id']" in str(err.value) and "customers" in str(err.value)
    assert DeltaTable(table.path).version() == 0

    with_null = rows([3, 8], "2026-11-02", amount=4.0).astype({"customer_id": "Int64"})
    with_null.loc[1, "customer_id"] = pd.NA
    write(engine_name, frame(engine_name, with_null, request, partitions=1), table, WriteMode.MERGE)
    result = DeltaTable(table.path).to_pandas()
    assert len(result) == 6 and result["customer_id"].isna().sum() == 1
    assert result.loc[result["customer_id"] == 3, "amount"].tolist() == [4.0]


def test_merge_on_a_partition_key_reads_only_the_batch_partitions(engine_name, tmp_path, request):
    table = TableRef("daily", str(tmp_path / "daily"), partition_by=("day",),
                     keys=("day", "customer_id"))
    first = pd.concat([rows(range(10), "2026-11-01"), rows(range(10), "2026-11-02")])
    write(engine_name, frame(engine_name, first, request), table, WriteMode.APPEND)
    other_day = {f.log_path for f in snapshot(table, partitions={"day": ["2026-11-01"]}).files}
    batch = rows([5, 50], "2026-11-02", amount=3.0)
    write(engine_name, frame(engine_name, batch, request), table, WriteMode.MERGE)
    result = on_disk(table)
    assert len(result) == 21 and other_day <= live_files(table)
    day2 = result[result["day"] == pd.Timestamp("2026-11-02").date()]
    assert sorted(day2.loc[day2["amount"] == 3.0, "customer_id"]) == [5, 50]


# --- time travel, pruning, schema evolution -------------------------------------------------

def test_time_travel_by_timestamp_reads_the_version_current_then(engine_name, tmp_path, request):
    table = TableRef("events", str(tmp_path / "events"))
    write(engine_name, frame(engine_name, rows(range(10), "2026-11-01"), request), table, WriteMode.APPEND)
    between = datetime.now(timezone.utc)
    time.sleep(1.1)
    write(engine_name, frame(engine_name, rows(range(3), "2026-11-02"), request), table, WriteMode.OVERWRITE)
    assert len(read(engine_name, table, request)) == 3
    old = read(engine_name, table, request, version=between)
    pd.testing.assert_frame_equal(old, tidy(rows(range(10), "2026-11-01")), check_dtype=False)
    with pytest.raises(TableNotFound, match="did not exist at"):
        read(engine_name, table, request, version=between - timedelta(days=1))
    with pytest.raises(SchemaMismatch, match="time-zone-aware"):
        read(engine_name, table, request, version=datetime(2030, 1, 1))
    with pytest.raises(TableNotFound, match="has no version 7"):
        read(engine_name, table, request, version=7)


def test_partition_pruning_reads_only_the_asked_partitions(engine_name, tmp_path, request):
    table = TableRef("scores", str(tmp_path / "scores"), partition_by=("day",))
    data = pd.concat([rows(range(5), "2026-11-01"), rows(range(5, 8), "2026-11-02")])
    write(engine_name, frame(engine_name, data, request), table, WriteMode.APPEND)
    got = read(engine_name, table, request, partitions={"day": ["2026-11-02"]})
    assert got["customer_id"].tolist() == [5, 6, 7]
    with pytest.raises(SchemaMismatch, match=r"cannot prune table scores .* by \['amount'\]"):
        read(engine_name, table, request, partitions={"amount": [1.0]})


def test_new_nullable_columns_are_added_only_when_allowed(engine_name, tmp_path, request):
    strict = TableRef("events", str(tmp_path / "events"))
    write(engine_name, frame(engine_name, rows(range(4), "2026-11-01"), request), strict, WriteMode.APPEND)
    wider = rows(range(4, 6), "2026-11-02").assign(channel="web")
    with pytest.raises(SchemaMismatch, match="unexpected column channel"):
        write(engine_name, frame(engine_name, wider, request), strict, WriteMode.APPEND)
    assert DeltaTable(strict.path).version() == 0

    evolving = TableRef("events", strict.path, allow_new_columns=True)
    write(engine_name, frame(engine_name, wider, request), evolving, WriteMode.APPEND)
    result = read(engine_name, evolving, request)
    assert result["channel"].isna().sum() == 4 and (result["channel"] == "web").sum() == 2
    assert "channel" in DeltaTable(strict.path).schema().to_arrow().names


# --- conflicting writers --------------------------------------------------------------------

def _staged(table: TableRef, pdf: pd.DataFrame) -> list:
    """Files written for a batch but not committed: a writer paused before its commit."""
    import pyarrow as pa

    data = pa.Table.from_pandas(pdf, preserve_index=False)
    return write_parquet_file(data, table)


@pytest.mark.parametrize("mode", [WriteMode.REPLACE_PARTITIONS, WriteMode.OVERWRITE])
def test_two_replaces_of_the_same_partition_one_lands_the_other_conflicts(mode, tmp_path):
    import pyarrow as pa

    table = TableRef("scores", str(tmp_path / "scores"), partition_by=("day",))
    first = rows(range(3), "2026-11-01")
    schema = normalize_schema(pa.Schema.from_pandas(first, preserve_index=False))
    commit = CommitInfo("test", "r0", "dask")
    commit_files(table, _staged(table, first), schema, WriteMode.APPEND, commit, ["day"])
    base = table_version(table)
    # A and B both computed their batch from version `base`; B commits first.
    a_files = _staged(table, rows(range(10, 12), "2026-11-01"))
    b_files = _staged(table, rows(range(20, 25), "2026-11-01"))
    commit_files(table, b_files, schema, mode, CommitInfo("test", "B", "dask"), ["day"],
                           read_version=base)
    with pytest.raises(CommitConflict, match="changed since version 0"):
        commit_files(table, a_files, schema, mode, CommitInfo("test", "A", "dask"),
                               ["day"], read_version=base)
    result = on_disk(table)
    assert result["customer_id"].tolist() == [20, 21, 22, 23, 24]
    assert DeltaTable(table.path).version() == base + 1


def test_a_replace_of_another_partition_does_not_conflict(tmp_path):
    import pyarrow as pa

    table = TableRef("scores", str(tmp_path / "scores"), partition_by=("day",))
    first = rows(range(3), "2026-11-01")
    schema = normalize_schema(pa.Schema.from_pandas(first, preserve_index=False))
    commit_files(table, _staged(table, first), schema, WriteMode.APPEND,
                           CommitInfo("test", "r0", "dask"), ["day"])
    a_files = _staged(table, rows(range(10, 12), "2026-11-01"))
    b_files = _staged(table, rows(range(20, 25), "2026-11-02"))
    for files, run in ((b_files, "B"), (a_files, "A")):
        commit_files(table, files, schema, WriteMode.REPLACE_PARTITIONS,
                               CommitInfo("test", run, "dask"), ["day"], read_version=0)
    assert on_disk(table)["customer_id"].tolist() == [10, 11, 20, 21, 22, 23, 24]


KILLED_SPARK_WRITER = """
import sys
sys.path.insert(0, {repo!r})
import pandas as pd
from engine.conf import SparkConf
from engine.session import spark_session
from engine.storage.spark import write_spark
from engine.storage.table import CommitInfo, TableRef, WriteMode
spark = spark_session(SparkConf(master="local[1]", show_progress=False))
frame = pd.DataFrame({{"customer_id": range({start}, {start} + 50), "day": ["2026-11-0{day}"] * 50}})
for _ in range({times}):  # a second time: the run's batch is in the table, nothing is written
    write_spark(spark.createDataFrame(frame), TableRef("victim", {path!r}, partition_by=("day",)),
                WriteMode.{mode}, CommitInfo("test", "{run}", "spark", app_id="{run}", batch=0))
"""


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["REPLACE_PARTITIONS"])
def test_spark_writer_killed_before_commit_leaves_the_table_unchanged_and_its_rerun_lands_once(
        mode, tmp_path):
    path = str(tmp_path / "victim")
    env = dict(os.environ, SPARK_LOCAL_IP="127.0.0.1", PYSPARK_PYTHON=sys.executable)

    def job(run: str, start: int, day: int, kill: bool = False, times: int = 1) -> subprocess.CompletedProcess:
        script = KILLED_SPARK_WRITER.format(repo=str(REPO), path=path, start=start, day=day,
                                            mode=mode, run=run, times=times)
        extra = {"LAKESCORE_TEST_KILL_BEFORE_COMMIT": "victim"} if kill else {}
        return subprocess.run([sys.executable, "-c", script], env={**env, **extra},
                              capture_output=True, text=True, timeout=300)

    ok = job("run-1", 0, 1)
    assert ok.returncode == 0, ok.stderr[-2000:]
    before = DeltaTable(path).to_pandas().sort_values("customer_id").reset_index(drop=True)
    killed = job("run-2", 500, 2, kill=True)
    assert killed.returncode == -9
    table = DeltaTable(path)
    assert table.version() == 0
    pd.testing.assert_frame_equal(table.to_pandas().sort_values("customer_id").reset_index(drop=True), before)
    assert len(list(Path(path).rglob("*.parquet"))) > len(table.file_uris())  # unreferenced files
    # the rerun of the killed run (a new process) lands once; a second rerun changes nothing
    again = job("run-2", 500, 2, times=2)
    assert again.returncode == 0, again.stderr[-2000:]
    result = DeltaTable(path).to_pandas()
    assert DeltaTable(path).version() == 1
    assert sorted(result["customer_id"]) == list(range(50)) + list(range(500, 550))


@pytest.mark.skipif(not os.environ.get("LAKESCORE_DELTA_JARS"),
                    reason="native delta-spark needs Delta's jars (LAKESCORE_DELTA_JARS); Maven "
                           "is not reachable here")
def test_native_delta_spark_replace_partitions_merge_and_time_travel(spark, tmp_path, request):
    from engine.session import delta_enabled

    assert delta_enabled(spark)
    daily = TableRef("scores", str(tmp_path / "scores"), partition_by=("day",))
    first = pd.concat([rows(range(0, 10), "2026-11-01"), rows(range(10, 20), "2026-11-02")])
    write("spark", frame("spark", first, request), daily, WriteMode.APPEND)
    between = datetime.now(timezone.utc)
    time.sleep(1.1)
    again = rows(range(100, 105), "2026-11-02", amount=2.0)
    write("spark", frame("spark", again, request), daily, WriteMode.REPLACE_PARTITIONS)
    pd.testing.assert_frame_equal(on_disk(daily), tidy(pd.concat([rows(range(10), "2026-11-01"), again])),
                                  check_dtype=False)
    assert len(read("spark", daily, request, version=between)) == 20

    keyed = TableRef("customers", str(tmp_path / "customers"), keys=("customer_id",))
    write("spark", frame("spark", rows(range(50), "2026-11-01"), request), keyed, WriteMode.APPEND)
    batch = rows(range(40, 60), "2026-11-05", amount=9.0)
    write("spark", frame("spark", batch, request), keyed, WriteMode.MERGE, app_id="m", batch=0)
    rerun = write("spark", frame("spark", batch, request), keyed, WriteMode.MERGE, app_id="m", batch=0)
    assert rerun.skipped
    pd.testing.assert_frame_equal(on_disk(keyed), tidy(pd.concat([rows(range(40), "2026-11-01"), batch])),
                                  check_dtype=False)


@pytest.mark.parametrize("writer,reader", [("spark", "dask"), ("dask", "spark")])
def test_partitioned_versions_written_by_one_engine_read_identically_on_the_other(writer, reader,
                                                                                 tmp_path, request):
    table = TableRef("scores", str(tmp_path / "scores"), partition_by=("day",), keys=("customer_id",))
    first = pd.concat([rows(range(0, 6), "2026-11-01"), rows(range(6, 12), "2026-11-02")])
    write(writer, frame(writer, first, request), table, WriteMode.APPEND)
    write(writer, frame(writer, rows(range(6, 9), "2026-11-02", 2.0), request), table,
          WriteMode.REPLACE_PARTITIONS)
    write(writer, frame(writer, rows([0, 99], "2026-11-01", 3.0), request), table, WriteMode.MERGE)
    for version in (0, 1, 2):
        expected = tidy(DeltaTable(table.path, version=version).to_pandas())
        pd.testing.assert_frame_equal(read(reader, table, request, version=version)[expected.columns],
                                      expected, check_dtype=False)
    assert len(read(reader, table, request)) == 10  # 6 + 3 replaced + 1 inserted by the merge
