"""Suites on input and output tables: events checked before features are built from them, a
scores batch checked before it is written; both engines, real GE, real Delta."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from deltalake import DeltaTable, write_deltalake

from engine.conf import load_conf
from engine.errors import ConfError, ValidationFailed
from engine.pipeline import validate_inputs
from engine.run_context import RunContext


def backend_for(engine_name, request):
    if engine_name == "spark":
        from engine.backends.spark import SparkBackend

        return SparkBackend(spark=request.getfixturevalue("spark"))
    from engine.backends.dask import DaskBackend

    return DaskBackend(client=request.getfixturevalue("dask_cluster_client"), show_progress=False)


def events(bad: int) -> pd.DataFrame:
    frame = pd.DataFrame({
        "customer_id": range(40), "amount": [10.0] * 40,
        "event_time": pd.date_range("2026-01-01", periods=40, freq="h", tz="UTC").as_unit("us"),
        "category": ["grocery", "travel"] * 20})
    frame.loc[: bad - 1, "amount"] = -1.0
    return frame


@pytest.mark.parametrize("bad", [0, 3])
def test_events_suite_gates_the_input_naming_table_column_and_count(engine_name, bad, request, tmp_path):
    conf = load_conf("conf/test.yaml", overrides=[f"lakehouse={tmp_path}"])
    assert conf.validation.suites_for("events") == ["expectations/events.json"]
    ctx = RunContext.start(conf)
    write_deltalake(ctx.table("events").path, events(bad))
    backend = backend_for(engine_name, request)
    if not bad:
        validate_inputs(backend, ctx, "events", "scores")  # scores: no suite by default, skipped
        assert [s.stage for s in ctx.summary.stages] == ["validate events"]
        return
    with pytest.raises(ValidationFailed) as err:
        validate_inputs(backend, ctx, "events")
    assert "events@v0" in str(err.value)
    assert f"expect_column_values_to_be_between(amount): {bad} unexpected" in str(err.value)
    reports = list((ctx.run_dir / "validation" / engine_name).glob("*.json"))
    assert reports and not json.loads(reports[0].read_text())["success"]


def test_suites_for_unknown_tables_are_refused_at_load(tmp_path):
    with pytest.raises(ConfError, match="validation.suites: unknown table.s. evnts"):
        load_conf("conf/test.yaml", overrides=["validation.suites.evnts=[x.json]"])
