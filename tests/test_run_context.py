"""engine.run_context without an engine: what a stage's reads and writes put in the run summary,
and the feature definition and model registry loaded once per run."""

from __future__ import annotations

import dataclasses

import pyarrow as pa
import pytest
from deltalake import write_deltalake

from engine.conf import load_conf
from engine.run_context import RunContext
from engine.storage.table import ReadResult, WriteResult


def context(tmp_path, *overrides: str) -> RunContext:
    return RunContext.start(load_conf("conf/test.yaml", overrides=[f"lakehouse={tmp_path}", *overrides]))


def test_a_stage_records_rows_read_versions_written_and_skipped_writes(tmp_path):
    ctx = context(tmp_path)
    events = ctx.table("events")
    write_deltalake(events.path, pa.table({"customer_id": [1, 2, 3]}))
    out = ctx.table("scores")
    with ctx.stage("score", "dask") as record:
        assert ctx.record_read(ReadResult(frame=None, version=0, table=events)) == 3
        ctx.record_write(WriteResult(table=out, version=4, rows=3, files=1))
        ctx.record_write(WriteResult(table=out, version=4, rows=0, files=0, skipped=True),
                         name="scores of m/1")
    assert (record.rows_in, record.rows_out) == (3, 3)
    assert record.written == {"scores": 4} and record.skipped == ["scores of m/1"]
    assert record.outputs == {"scores": out.path}
    assert ctx.summary.stages == [record]


def test_a_stage_that_only_skipped_wrote_zero_rows(tmp_path):
    ctx = context(tmp_path)
    out = ctx.table("training_set")
    with ctx.stage("features", "spark") as record:
        ctx.record_write(WriteResult(table=out, version=2, rows=0, files=0, skipped=True))
    assert record.rows_out == 0 and record.written == {} and record.skipped == ["training_set"]
    assert "training_set (already committed)" in ctx.summary.render()


def test_recording_outside_a_stage_is_refused(tmp_path):
    ctx = context(tmp_path)
    with pytest.raises(RuntimeError, match="outside a stage"):
        ctx.record_write(WriteResult(table=ctx.table("scores"), version=0, rows=1, files=1))


def test_the_feature_set_and_registry_are_loaded_once_per_run_and_again_for_a_new_conf(tmp_path):
    ctx = context(tmp_path)
    definition, registry = ctx.feature_set(), ctx.model_registry()
    assert ctx.feature_set() is definition and ctx.model_registry() is registry
    ctx.conf = dataclasses.replace(ctx.conf)  # a job swapping its conf (jobs.score, carried features)
    assert ctx.feature_set() is not definition and ctx.feature_set() == definition
