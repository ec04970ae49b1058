"""Delta storage on both engines: round trips, interop, time travel, idempotency, atomicity,
schema checks and concurrent writers — all on real Delta tables read back with deltalake."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from deltalake import DeltaTable

from engine.errors import SchemaMismatch
from engine.storage.table import CommitInfo, TableRef, WriteMode

REPO = Path(__file__).resolve().parents[1]


def sample(n: int = 50, offset: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(offset)
    return pd.DataFrame({
        "customer_id": np.arange(offset, offset + n, dtype="int64"),
        "event_time": pd.date_range("2025-03-01", periods=n, freq="37min", tz="UTC").as_unit("us"),
        "amount": rng.gamma(2.0, 30.0, n).round(2),
        "category": rng.choice(["food", "travel", "fuel"], n),
    })


def to_frame(engine_name, pdf, request):
    if engine_name == "spark":
        return request.getfixturevalue("spark").createDataFrame(pdf)
    import dask.dataframe as dd

    return dd.from_pandas(pdf, npartitions=3)


def write(engine_name, frame, table, mode=WriteMode.APPEND, app_id=None, batch=None):
    commit = CommitInfo(job="test", run_id="r1", engine=engine_name, app_id=app_id, batch=batch,
                        metadata={"purpose": "storage test"})
    if engine_name == "spark":
        from engine.storage.spark import write_spark

        return write_spark(frame, table, mode, commit)
    from engine.storage.dask import write_dask

    return write_dask(frame, table, mode, commit)


def read(engine_name, table, request, version=None) -> pd.DataFrame:
    if engine_name == "spark":
        from engine.storage.spark import read_spark

        result = read_spark(request.getfixturevalue("spark"), table, version=version)
        return result.frame.toPandas()
    from engine.storage.dask import read_dask

    return read_dask(table, version=version).frame.compute()


def normalised(pdf: pd.DataFrame) -> pd.DataFrame:
    out = pdf.sort_values("customer_id").reset_index(drop=True).copy()
    out["category"] = out["category"].astype(object).where(out["category"].notna(), None)
    out["event_time"] = pd.to_datetime(out["event_time"], utc=True).dt.as_unit("us")
    return out[["customer_id", "event_time", "amount", "category"]]


def test_write_then_read_back_is_equal(engine_name, tmp_path, request):
    table = TableRef("events", str(tmp_path / "events"))
    data = sample()
    result = write(engine_name, to_frame(engine_name, data, request), table)
    assert (result.version, result.rows, result.skipped) == (0, 50, False)
    pd.testing.assert_frame_equal(normalised(read(engine_name, table, request)), normalised(data))
    # an independent reader sees the same rows and Delta's own timestamp type
    delta = DeltaTable(table.path)
    pd.testing.assert_frame_equal(normalised(delta.to_pandas()), normalised(data))
    assert "timestamp" in str(delta.schema()) and "timestamp_ntz" not in str(delta.schema())


@pytest.mark.parametrize("writer,reader", [("spark", "dask"), ("dask", "spark")])
def test_a_table_written_by_one_engine_reads_identically_on_the_other(writer, reader, tmp_path, request):
    request.getfixturevalue("spark")
    request.getfixturevalue("dask_cluster_client")
    table = TableRef("events", str(tmp_path / "events"), partition_by=("category",))
    data = sample(80)
    write(writer, to_frame(writer, data, request), table)
    assert DeltaTable(table.path).metadata().partition_columns == ["category"]
    pd.testing.assert_frame_equal(normalised(read(reader, table, request)), normalised(data))


def test_time_travel_returns_the_old_rows(engine_name, tmp_path, request):
    table = TableRef("events", str(tmp_path / "events"))
    write(engine_name, to_frame(engine_name, sample(10), request), table)
    write(engine_name, to_frame(engine_name, sample(5, offset=100), request), table, WriteMode.OVERWRITE)
    assert len(read(engine_name, table, request)) == 5
    pd.testing.assert_frame_equal(normalised(read(engine_name, table, request, version=0)),
                                  normalised(sample(10)))


def test_rerun_of_a_committed_batch_is_skipped(engine_name, tmp_path, request):
    table = TableRef("scores", str(tmp_path / "scores"))
    frame = to_frame(engine_name, sample(20), request)
    first = write(engine_name, frame, table, app_id="run-1", batch=0)
    second = write(engine_name, frame, table, app_id="run-1", batch=0)
    assert not first.skipped and second.skipped
    assert DeltaTable(table.path).version() == 0
    assert len(DeltaTable(table.path).to_pandas()) == 20
    third = write(engine_name, frame, table, app_id="run-2", batch=0)
    assert not third.skipped and len(DeltaTable(table.path).to_pandas()) == 40


def test_schema_mismatch_fails_before_writing_and_names_the_columns(engine_name, tmp_path, request):
    table = TableRef("events", str(tmp_path / "events"))
    write(engine_name, to_frame(engine_name, sample(10), request), table)
    files_before = sorted(p.name for p in Path(table.path).rglob("*.parquet"))
    bad = sample(10).rename(columns={"amount": "amount_eur"}).assign(customer_id=lambda d: d.customer_id.astype("float64"))
    with pytest.raises(SchemaMismatch) as err:
        write(engine_name, to_frame(engine_name, bad, request), table)
    message = str(err.value)
    assert "missing column amount" in message and "unexpected column amount_eur" in message
    assert "customer_id is double, the table has int64" in message and "events" in message
    assert DeltaTable(table.path).version() == 0
    assert sorted(p.name for p in Path(table.path).rglob("*.parquet")) == files_before


def test_commit_metadata_records_job_run_and_engine(engine_name, tmp_path, request):
    table = TableRef("events", str(tmp_path / "events"))
    write(engine_name, to_frame(engine_name, sample(5), request), table)
    entry = DeltaTable(table.path).history(1)[0]
    assert entry["lakescore.job"] == "test"
    assert entry["lakescore.run_id"] == "r1"
    assert entry["lakescore.engine"] == engine_name
    assert entry["lakescore.purpose"] == "storage test"


def test_concurrent_appends_both_land(engine_name, tmp_path, request):
    table = TableRef("events", str(tmp_path / "events"))
    write(engine_name, to_frame(engine_name, sample(5), request), table)
    frames = [to_frame(engine_name, sample(30, offset=1000 * (i + 1)), request) for i in range(2)]
    errors = []

    def append(frame):
        try:
            write(engine_name, frame, table)
        except Exception as exc:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=append, args=(f,)) for f in frames]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(DeltaTable(table.path).to_pandas()) == 65
    assert DeltaTable(table.path).version() == 2


KILLED_WRITER = """
import sys
import dask.dataframe as dd
import pandas as pd
sys.path.insert(0, {repo!r})
from engine.storage.dask import write_dask
from engine.storage.table import CommitInfo, TableRef, WriteMode
frame = pd.DataFrame({{"customer_id": range(100), "amount": [1.5] * 100}})
write_dask(dd.from_pandas(frame, npartitions=4), TableRef("victim", {path!r}), WriteMode.{mode},
           CommitInfo("test", "killed", "dask"))
"""


@pytest.mark.parametrize("mode", ["APPEND", "OVERWRITE"])
def test_writer_killed_between_files_and_commit_leaves_the_table_unchanged(mode, tmp_path):
    path = str(tmp_path / "victim")
    script = KILLED_WRITER.format(repo=str(REPO), path=path, mode=mode)
    ok = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    before = DeltaTable(path).to_pandas()
    env = dict(os.environ, LAKESCORE_TEST_KILL_BEFORE_COMMIT="victim")
    killed = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert killed.returncode == -9
    table = DeltaTable(path)
    assert table.version() == 0
    pd.testing.assert_frame_equal(table.to_pandas(), before)
    # the orphans are on disk, unreferenced, and vacuum finds them
    assert len(list(Path(path).glob("*.parquet"))) > len(table.file_uris())
    orphans = table.vacuum(retention_hours=0, enforce_retention_duration=False, dry_run=True, full=True)
    assert len(orphans) == len(list(Path(path).glob("*.parquet"))) - len(table.file_uris())


# --- layout, types and schema evolution ----------------------------------------------------

ODD_VALUES = ["a b:c", "x/y%z", None]


@pytest.mark.parametrize("writer,reader", [("spark", "dask"), ("dask", "spark")])
def test_partition_values_with_spaces_slashes_and_nulls_round_trip(writer, reader, tmp_path,
                                                                   request):
    request.getfixturevalue("spark")
    request.getfixturevalue("dask_cluster_client")
    table = TableRef("events", str(tmp_path / "events"), partition_by=("category",))
    data = sample(30).assign(category=[ODD_VALUES[i % 3] for i in range(30)])
    write(writer, to_frame(writer, data, request), table)
    assert sorted(DeltaTable(table.path).partitions(), key=str) == sorted(
        [{"category": v} for v in ODD_VALUES], key=str)
    pd.testing.assert_frame_equal(normalised(read(reader, table, request)), normalised(data))
    pd.testing.assert_frame_equal(normalised(DeltaTable(table.path).to_pandas()), normalised(data))


def test_keys_stay_int64_and_timestamps_utc_on_every_reader(engine_name, tmp_path, request):
    table = TableRef("events", str(tmp_path / "events"))
    write(engine_name, to_frame(engine_name, sample(10), request), table)
    fields = {f.name: str(f.type) for f in DeltaTable(table.path).schema().fields}
    assert fields["customer_id"] == 'PrimitiveType("long")'
    assert fields["event_time"] == 'PrimitiveType("timestamp")'
    from engine.storage.dask import read_dask

    dtypes = read_dask(table).frame.dtypes
    assert str(dtypes["customer_id"]) == "int64"
    assert str(dtypes["event_time"]) == "datetime64[us, UTC]"
    from engine.storage.spark import read_spark

    spark_types = dict(read_spark(request.getfixturevalue("spark"), table).frame.dtypes)
    assert spark_types["customer_id"] == "bigint" and spark_types["event_time"] == "timestamp"


def test_naive_timestamps_are_refused_naming_the_column(tmp_path):
    import dask.dataframe as dd

    table = TableRef("events", str(tmp_path / "events"))
    naive = sample(5).assign(event_time=lambda d: d.event_time.dt.tz_localize(None))
    with pytest.raises(SchemaMismatch, match="'event_time'.*time-zone-naive"):
        write("dask", dd.from_pandas(naive, npartitions=1), table)
    assert not (tmp_path / "events").exists()


def test_overwrite_with_a_new_schema_and_partitioning_replaces_the_table(engine_name, tmp_path,
                                                                         request):
    table = TableRef("events", str(tmp_path / "events"), partition_by=("category",))
    write(engine_name, to_frame(engine_name, sample(12), request), table)
    replacement = pd.DataFrame({"customer_id": np.arange(3, dtype="int64"), "score": [0.1, 0.2, 0.3]})
    result = write(engine_name, to_frame(engine_name, replacement, request),
                   TableRef("events", table.path), WriteMode.OVERWRITE)
    delta = DeltaTable(table.path)
    assert result.version == delta.version() == 1
    assert delta.metadata().partition_columns == []
    got = read(engine_name, table, request).sort_values("customer_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(got[["customer_id", "score"]], replacement)
    assert len(read(engine_name, table, request, version=0)) == 12


def test_an_empty_frame_creates_an_empty_table_with_the_schema(engine_name, tmp_path, request):
    table = TableRef("events", str(tmp_path / "events"))
    empty = to_frame(engine_name, sample(5), request)
    empty = empty.limit(0) if engine_name == "spark" else empty.head(0, compute=False)
    result = write(engine_name, empty, table)
    assert (result.version, result.rows, result.files) == (0, 0, 0)
    back = read(engine_name, table, request)
    assert len(back) == 0 and list(back.columns) == list(sample(0).columns)


def test_overwrite_replaces_rows_and_counts_them(engine_name, tmp_path, request):
    table = TableRef("events", str(tmp_path / "events"))
    write(engine_name, to_frame(engine_name, sample(10), request), table)
    result = write(engine_name, to_frame(engine_name, sample(7, offset=500), request), table,
                   WriteMode.OVERWRITE)
    assert (result.version, result.rows, result.skipped) == (1, 7, False)
    pd.testing.assert_frame_equal(normalised(read(engine_name, table, request)),
                                  normalised(sample(7, offset=500)))


# --- the engine-free protocol (commit, data files, stats) ---------------------------------------------------

def arrow_sample(n: int, offset: int = 0):
    import pyarrow as pa

    return pa.Table.from_pandas(sample(n, offset), preserve_index=False)


def test_file_stats_let_deltalake_skip_files_by_key(tmp_path):
    from engine.storage.commit import commit_files
    from engine.storage.data_files import write_parquet_file

    table = TableRef("events", str(tmp_path / "events"))
    commit = CommitInfo(job="test", run_id="r1", engine="none")
    for offset in (0, 1000):
        data = arrow_sample(20, offset)
        commit_files(table, write_parquet_file(data, table), data.schema, WriteMode.APPEND, commit)
    delta = DeltaTable(table.path)
    assert len(delta.file_uris()) == 2
    assert len(delta.file_uris(file_pruning_predicate="customer_id >= 1000")) == 1
    import pyarrow as pa

    actions = pa.table(delta.get_add_actions(flatten=True)).sort_by("min.customer_id")
    assert actions["num_records"].to_pylist() == [20, 20]
    assert actions["min.customer_id"].to_pylist() == [0, 1000]
    assert actions["max.customer_id"].to_pylist() == [19, 1019]
    assert actions["null_count.amount"].to_pylist() == [0, 0]


def test_stats_have_no_bounds_for_a_float_column_with_nan():
    import pyarrow as pa

    from engine.storage.stats import file_stats

    stats = json.loads(file_stats(pa.table({"x": [1.0, float("nan"), 3.0], "k": [1, 2, 3]})))
    assert "x" not in stats["minValues"] and "x" not in stats["maxValues"]
    assert stats["minValues"]["k"] == 1 and stats["nullCount"]["x"] == 0


def test_timestamp_stats_round_outwards_to_milliseconds():
    import pyarrow as pa

    from engine.storage.stats import file_stats

    ts = pa.array([1_500, 2_001_500], pa.timestamp("us", tz="UTC"))  # 1.5 ms and 2001.5 ms
    stats = json.loads(file_stats(pa.table({"t": ts})))
    assert stats["minValues"]["t"] == "1970-01-01T00:00:00.001Z"
    assert stats["maxValues"]["t"] == "1970-01-01T00:00:02.002Z"


def test_committing_an_already_committed_batch_is_a_conflict(tmp_path):
    from engine.errors import CommitConflict
    from engine.storage.commit import commit_files
    from engine.storage.data_files import write_parquet_file
    from engine.storage.snapshots import committed_batch

    table = TableRef("scores", str(tmp_path / "scores"))
    commit = CommitInfo(job="test", run_id="r1", engine="none", app_id="app", batch=3)
    data = arrow_sample(5)
    late = write_parquet_file(data, table)  # a writer that checked before the first commit
    commit_files(table, write_parquet_file(data, table), data.schema, WriteMode.APPEND, commit)
    with pytest.raises(CommitConflict, match="batch 3 of 'app'"):
        commit_files(table, late, data.schema, WriteMode.APPEND, commit)
    assert DeltaTable(table.path).version() == 0
    assert committed_batch(table, "app") == 3


@pytest.mark.skipif(not os.environ.get("LAKESCORE_DELTA_JARS"),
                    reason="native delta-spark needs Delta's jars (LAKESCORE_DELTA_JARS); Maven "
                           "is unreachable here")
def test_native_delta_spark_round_trip_and_skip(spark, tmp_path):
    from engine.session import delta_enabled

    assert delta_enabled(spark)
    table = TableRef("events", str(tmp_path / "events"))
    frame = spark.createDataFrame(sample(20))
    first = write("spark", frame, table, app_id="native", batch=0)
    second = write("spark", frame, table, app_id="native", batch=0)
    assert not first.skipped and second.skipped
    assert DeltaTable(table.path).history(1)[0]["version"] == 0
    from engine.storage.spark import read_spark

    assert read_spark(spark, table, version=0).frame.count() == 20


def test_dask_reads_a_large_foreign_file_as_several_partitions_in_order(tmp_path):
    """A table written elsewhere (here delta-rs, one file of ~1M-row row groups) is read in
    partitions of about a row group each, so one big file never has to fit one worker at once;
    the rows and their order are the file's."""
    import pyarrow as pa
    from deltalake import write_deltalake

    from engine.storage.dask import READ_PART_ROWS, read_dask
    from engine.storage.snapshots import snapshot

    rows = 2 * READ_PART_ROWS + 1000
    data = pa.table({"row_id": np.arange(rows, dtype="int64"), "value": np.arange(rows) * 0.5})
    write_deltalake(str(tmp_path / "big"), data)
    table = TableRef("big", str(tmp_path / "big"))
    files = snapshot(table).files
    assert len(files) == 1 and files[0].rows == rows
    frame = read_dask(table).frame
    assert frame.npartitions == 3
    sizes = frame.map_partitions(len).compute().tolist()
    assert sum(sizes) == rows and max(sizes) <= READ_PART_ROWS
    back = frame.compute()
    assert back["row_id"].tolist() == list(range(rows))
    assert (back["value"] == back["row_id"] * 0.5).all()
