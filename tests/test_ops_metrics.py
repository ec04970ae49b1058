"""engine.metrics and engine.openlineage without a job around them: what a run's summary and
observations become on a real pushgateway, pushadd keeping the last success, and unreachable
endpoints costing a warning and nothing else."""

from __future__ import annotations

import json
import logging

import pytest

from engine.conf import load_conf
from engine.errors import ConfError
from engine.metrics import METRICS, push_run_metrics, table_label
from engine.openlineage import emit_run_event, run_uuid
from engine.run_context import RunContext
from engine.summary import StageRecord
from engine.policies.drift import FeatureDrift
from engine.policies.quarantine import QuarantineResult
from engine.validation.suite import Outcome, ValidationReport
from ops_helpers import free_port, pushgateway, series


@pytest.fixture(scope="module")
def gateway():
    with pushgateway() as address:
        yield address


def context(tmp_path, *overrides: str) -> RunContext:
    conf = load_conf("conf/test.yaml", overrides=[f"lakehouse={tmp_path}", *overrides])
    return RunContext.start(conf)


def outcome(kind: str, column: str, success: bool, unexpected: int) -> Outcome:
    return Outcome(expectation_type=kind, column=column, success=success, unexpected_count=unexpected,
                   element_count=100, observed_value=None, kwargs={"column": column})


def observed_run(tmp_path, gateway: str, failed: bool = False) -> RunContext:
    ctx = context(tmp_path, f"metrics.pushgateway={gateway}", "engine=dask")
    ctx.summary.stages += [
        StageRecord(stage="validate", engine="dask", seconds=2.5, rows_in=100, rows_out=96,
                    written={"training_set": 3, "quarantine_training_set": 0}),
        StageRecord(stage="score", engine="dask", seconds=4.0, rows_in=96, rows_out=96,
                    written={"scores": 7}, status="failed: ValidationFailed" if failed else "ok"),
    ]
    report = ValidationReport(table="training_set@v2 (kept rows)", suite="customer_features", success=False,
                              outcomes=(outcome("expect_column_values_to_not_be_null", "amount_sum_30d", False, 4),
                                        outcome("expect_column_values_to_not_be_null", "customer_id", True, 0)),
                              result_id="r1", engine="dask")
    ctx.observations += [
        ("dask", report),
        ("dask", QuarantineResult(quarantined=4, kept=96, quarantine_table=f"{tmp_path}/tables/quarantine/training_set",
                                  quarantine_version=0, kept_version=3, reasons=("nulls",))),
        ("dask", FeatureDrift(feature="amount_sum_30d", psi=0.31, train_null_rate=0.0, score_null_rate=0.04,
                              train_rows=100, score_rows=96, bins=10, warn=True)),
        ("dask", FeatureDrift(feature="amount_count_7d", psi=None, train_null_rate=None, score_null_rate=None,
                              train_rows=100, score_rows=96, bins=10, warn=False)),
    ]
    return ctx


def values(samples, name: str, **labels) -> list[float]:
    return [v for n, l, v in samples if n == name and all(l.get(k) == x for k, x in labels.items())]


def test_a_run_becomes_one_group_with_bounded_labels(tmp_path, gateway):
    ctx = observed_run(tmp_path, gateway)
    assert push_run_metrics("unit", ctx, 0) == ["lakescore_unit/dask"]
    samples = [s for s in series(gateway) if s[1]["job"] == "lakescore_unit"]
    group = {"job": "lakescore_unit", "engine": "dask"}
    assert values(samples, "lakescore_run_exit_code", **group) == [0]
    assert values(samples, "lakescore_stage_seconds", stage="score", **group) == [4.0]
    assert values(samples, "lakescore_stage_rows_out", stage="validate", **group) == [96]
    assert values(samples, "lakescore_delta_version", table="scores", **group) == [7]
    assert values(samples, "lakescore_scoring_rows_per_second", **group) == [24.0]
    labels = {"table": "training_set", "suite": "customer_features", **group}
    assert values(samples, "lakescore_validation_expectations", **labels) == [2]
    assert values(samples, "lakescore_validation_expectations_failed", **labels) == [1]
    assert values(samples, "lakescore_validation_success", **labels) == [0]
    assert values(samples, "lakescore_rows_quarantined", table="training_set", **group) == [4]
    assert values(samples, "lakescore_drift_psi", feature="amount_sum_30d", **group) == [0.31]
    assert values(samples, "lakescore_drift_psi", feature="amount_count_7d", **group) == []
    assert values(samples, "lakescore_drift_null_rate_change", feature="amount_sum_30d", **group) == [0.04]
    assert values(samples, "lakescore_drift_features_warned", **group) == [1]
    declared = {m.name: set(m.labels) for m in METRICS}
    for name, sample_labels, _ in samples:
        assert set(sample_labels) - {"job", "engine", "instance"} == declared[name], name
        assert ctx.run_id not in json.dumps(sample_labels)


def test_pushadd_keeps_the_last_success_when_a_later_run_fails(tmp_path, gateway):
    first = observed_run(tmp_path / "a", gateway)
    push_run_metrics("keep", first, 0)
    group = {"job": "lakescore_keep", "engine": "dask"}
    success = values(series(gateway), "lakescore_last_success_timestamp_seconds", **group)
    assert len(success) == 1
    second = observed_run(tmp_path / "b", gateway, failed=True)
    push_run_metrics("keep", second, 4)
    after = series(gateway)
    assert values(after, "lakescore_run_exit_code", **group) == [4]
    assert values(after, "lakescore_stage_failed", stage="score", **group) == [1]
    assert values(after, "lakescore_last_success_timestamp_seconds", **group) == success
    assert values(after, "lakescore_run_finished_timestamp_seconds", **group)[0] >= success[0]


def test_metrics_and_lineage_are_off_by_default(tmp_path):
    ctx = context(tmp_path)
    assert ctx.conf.metrics.pushgateway is None and ctx.conf.openlineage.transport is None
    assert push_run_metrics("off", ctx, 0) == []
    assert emit_run_event("off", ctx, "START") is False
    assert not (tmp_path / "openlineage").exists()


def test_unreachable_endpoints_are_a_warning_naming_them(tmp_path, caplog):
    gateway, lineage = f"127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"
    ctx = observed_run(tmp_path, gateway)
    ctx = RunContext(conf=load_conf("conf/test.yaml", overrides=[
        f"lakehouse={tmp_path}", f"metrics.pushgateway={gateway}", "metrics.timeout_seconds=2",
        "openlineage.transport=http", f"openlineage.url={lineage}", "openlineage.timeout_seconds=2"]),
        run_id=ctx.run_id, summary=ctx.summary, observations=ctx.observations)
    with caplog.at_level(logging.WARNING, logger="lakescore"):
        assert push_run_metrics("unit", ctx, 0) == []
        assert emit_run_event("unit", ctx, "COMPLETE") is False
    messages = [r.getMessage() for r in caplog.records]
    assert any(f"pushgateway {gateway}" in m and "job's result is unchanged" in m for m in messages), messages
    assert any(f"{lineage}/api/v1/lineage" in m for m in messages), messages


def test_http_transport_without_a_url_is_a_conf_error():
    with pytest.raises(ConfError, match="openlineage.url"):
        load_conf("conf/test.yaml", overrides=["openlineage.transport=http"])


def test_file_transport_writes_start_and_fail_with_the_error(tmp_path):
    ctx = context(tmp_path, "openlineage.transport=file")
    assert emit_run_event("unit", ctx, "START")
    assert emit_run_event("unit", ctx, "FAIL", "ValidationFailed: 4 rows")
    events = [json.loads(line) for line in (tmp_path / "openlineage" / "events.jsonl").read_text().splitlines()]
    assert [e["eventType"] for e in events] == ["START", "FAIL"]
    assert {e["run"]["runId"] for e in events} == {run_uuid("unit", ctx.run_id)}
    assert events[1]["run"]["facets"]["errorMessage"]["message"] == "ValidationFailed: 4 rows"


def test_validation_labels_drop_versions_and_notes():
    assert table_label("scoring_set_dask@v12 (kept rows)") == "scoring_set_dask"
    assert table_label("events@v0") == "events"
