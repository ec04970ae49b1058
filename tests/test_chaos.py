"""The fault-injection suite (tests/chaos/chaos.py, ``make chaos``): its checker, and a short run.

The checker must be able to fail: a planted duplicate commit, a lost batch and a deleted data file
are each reported. The short run kills one job per engine at a random (seeded) moment and checks
every table after the rerun; ``make chaos`` runs 20 cycles per engine.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("chaos", REPO / "tests" / "chaos" / "chaos.py")
chaos = importlib.util.module_from_spec(_spec)
sys.modules["chaos"] = chaos  # dataclasses look their module up while the class is made
_spec.loader.exec_module(chaos)

OUTPUT = chaos.Output("t", ("customer_id", "as_of"))


def rows(ids) -> pa.Table:
    ids = list(ids)
    return pa.table({"customer_id": pa.array(ids, pa.int64()),
                     "as_of": pa.array([pd.Timestamp("2025-06-01", tz="UTC")] * len(ids),
                                       pa.timestamp("us", tz="UTC")),
                     "value": pa.array([float(i) for i in ids])})


def check(path: Path, reference: pa.Table) -> chaos.CycleResult:
    result = chaos.CycleResult(index=0, engine="dask", kind="test", kill_at=0, fraction=0,
                               rerun_code=0)
    chaos.check_output(path, OUTPUT, reference.to_pandas(),
                       lambda p: DeltaTable(str(p)).to_pandas(), result)
    return result


def test_a_clean_table_passes_and_orphans_are_counted_then_vacuumed(tmp_path):
    path = tmp_path / "t"
    write_deltalake(str(path), rows(range(10)))
    write_deltalake(str(path), rows(range(10, 20)), mode="append")
    (path / "part-orphan.parquet").write_bytes((path / next(iter(chaos.data_files(path)))).read_bytes())
    result = check(path, rows(range(20)))
    assert result.ok, result.problems
    assert (result.rows, result.lost, result.duplicated, result.orphans) == (20, 0, 0, 1)
    assert "part-orphan.parquet" not in chaos.data_files(path)


def test_a_duplicated_batch_and_a_lost_batch_are_counted(tmp_path):
    path = tmp_path / "t"
    write_deltalake(str(path), rows(range(10)))
    write_deltalake(str(path), rows(range(5)), mode="append")  # a rerun that wrote again
    result = check(path, rows(range(15)))
    assert (result.lost, result.duplicated) == (5, 5)
    assert not result.ok


def test_a_version_whose_file_is_gone_is_reported(tmp_path):
    path = tmp_path / "t"
    write_deltalake(str(path), rows(range(10)))
    write_deltalake(str(path), rows(range(10, 20)), mode="append")
    first = DeltaTable(str(path), version=0).file_uris()[0]
    os.remove(first)
    result = check(path, rows(range(20)))
    assert any("v0 unreadable" in p for p in result.problems), result.problems


@pytest.mark.slow
def test_random_kills_on_both_engines_lose_and_duplicate_nothing(tmp_path, capsys):
    # Seed 11 draws a score job on Spark (killed about halfway) and a merge on Dask.
    code = chaos.main(["--cycles", "1", "--seed", "11", "--workdir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "| spark | score | 1 |" in out and "| dask | merge | 1 |" in out, out
    assert "0 rows lost, 0 duplicated, every check held" in out


def test_partition_values_with_escapes_are_matched_to_their_files(tmp_path):
    # model_id "churn/1" is spelled churn%2F1 in the folder name and in the log
    path = tmp_path / "t"
    data = rows(range(10)).append_column("model_id", pa.array(["churn/1"] * 10))
    write_deltalake(str(path), data, partition_by=["model_id"])
    result = chaos.CycleResult(index=0, engine="dask", kind="test", kill_at=0, fraction=0,
                               rerun_code=0)
    chaos.check_output(path, OUTPUT, data.to_pandas(), lambda p: DeltaTable(str(p)).to_pandas(),
                       result)
    assert result.ok, result.problems
    assert (result.rows, result.orphans) == (10, 0)
