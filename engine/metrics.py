"""Prometheus metrics of a finished run, pushed to a pushgateway (``metrics.pushgateway``).

A batch job lives too briefly to be scraped, so each run pushes its figures once, at the end:
one group per (job, engine) of the run, replacing that group's series of the same names. Labels
are bounded (job, engine, stage, table, suite, feature, model name/version): no run ids or keys,
so a year of nightly runs does not grow the series count. ``lakescore_last_success_timestamp_seconds``
is pushed only by a successful run, and with POST (pushadd), so a failed run leaves the last
success in place for "no success for N hours" alerts. A push that fails is logged as a warning
naming the gateway; the job's exit code never depends on it.

Every metric the jobs push is declared in ``METRICS``: docs/operate.md and the Grafana
dashboard's test read that list.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("lakescore")

PREFIX = "lakescore_"


@dataclass(frozen=True)
class Metric:
    name: str
    labels: tuple[str, ...]
    help: str


METRICS: tuple[Metric, ...] = (
    Metric("lakescore_run_exit_code", (), "exit code of the run (0 success; README's table)"),
    Metric("lakescore_run_finished_timestamp_seconds", (), "when the run ended (Unix time)"),
    Metric("lakescore_run_duration_seconds", (), "seconds of the run's stages on this engine"),
    Metric("lakescore_last_success_timestamp_seconds", (),
           "when the job last succeeded (Unix time); pushed only on success"),
    Metric("lakescore_stage_seconds", ("stage",), "seconds of one stage"),
    Metric("lakescore_stage_failed", ("stage",), "1 when the stage failed, else 0"),
    Metric("lakescore_stage_rows_in", ("stage",), "rows the stage read"),
    Metric("lakescore_stage_rows_out", ("stage",), "rows the stage wrote"),
    Metric("lakescore_delta_version", ("table",), "Delta table version the run committed"),
    Metric("lakescore_validation_expectations", ("table", "suite"), "expectations evaluated"),
    Metric("lakescore_validation_expectations_failed", ("table", "suite"), "expectations failed"),
    Metric("lakescore_validation_success", ("table", "suite"), "1 when every expectation was met"),
    Metric("lakescore_rows_quarantined", ("table",), "rows set aside by the quarantine policy"),
    Metric("lakescore_drift_psi", ("feature",),
           "population stability index of the scoring batch against the training set"),
    Metric("lakescore_drift_null_rate_change", ("feature",),
           "scoring batch null rate minus the training set's"),
    Metric("lakescore_drift_features_warned", (), "features whose drift passed a threshold"),
    Metric("lakescore_scoring_rows_per_second", (),
           "rows scored per second of the score stage (read, score, check, write)"),
    Metric("lakescore_model_info", ("model_name", "model_version", "role"),
           "1 for each model the run trained or scored with"),
)
BY_NAME = {m.name: m for m in METRICS}


def push_run_metrics(job: str, ctx: Any, exit_code: int) -> list[str]:
    """Push the run's metrics when ``metrics.pushgateway`` is set; returns the groups pushed
    (``job/engine``). Never raises: a failed push is a warning naming the gateway."""
    gateway = ctx.conf.metrics.pushgateway
    if not gateway:
        return []
    try:
        from prometheus_client import pushadd_to_gateway
    except ImportError as exc:  # pragma: no cover - a dependency of lakescore
        log.warning("metrics: prometheus_client is not installed (%s); nothing pushed to %s", exc, gateway)
        return []
    pushed = []
    for engine, registry in run_registries(job, ctx, exit_code).items():
        try:
            pushadd_to_gateway(gateway, job=f"{PREFIX}{job}", grouping_key={"engine": engine},
                               registry=registry, timeout=ctx.conf.metrics.timeout_seconds)
        except Exception as exc:  # noqa: BLE001 - any failure to push must not fail the job
            log.warning("metrics: could not push the %s run's metrics to pushgateway %s: %s "
                        "(the job's result is unchanged)", job, gateway, exc)
            return pushed
        pushed.append(f"{PREFIX}{job}/{engine}")
    if pushed:
        log.info("metrics: pushed %s to %s", ", ".join(pushed), gateway)
    return pushed


def run_registries(job: str, ctx: Any, exit_code: int, now: float | None = None) -> dict[str, Any]:
    """One ``CollectorRegistry`` per engine the run used (the engine of its stages; the conf's
    engine when no stage ran), holding the metrics of ``METRICS`` that the run has figures for."""
    from prometheus_client import CollectorRegistry, Gauge

    now = time.time() if now is None else now
    stages = list(ctx.summary.stages)
    engines = list(dict.fromkeys(s.engine for s in stages)) or [ctx.conf.engine]
    out = {}
    for engine in engines:
        registry = CollectorRegistry()
        gauges: dict[str, Any] = {}
        for name, labels, value in _samples(engine, [s for s in stages if s.engine == engine],
                                            _observed(ctx, engine), exit_code, now):
            # Only metrics with a figure are registered: an unlabelled gauge would otherwise push
            # 0 (a failed run must not push a last success of 0).
            if name not in gauges:
                metric = BY_NAME[name]
                gauges[name] = Gauge(name, metric.help, metric.labels, registry=registry)
            gauge = gauges[name]
            (gauge.labels(**labels) if labels else gauge).set(value)
        out[engine] = registry
    return out


def _observed(ctx: Any, engine: str) -> list[Any]:
    return [item for seen_on, item in getattr(ctx, "observations", []) if seen_on == engine]


def table_label(label: str) -> str:
    """A table's name from a validation label (``scoring_set_dask@v3 (kept rows)`` → ``scoring_set_dask``):
    versions and notes would make the label unbounded."""
    return label.split("@")[0].split(" (")[0].strip()


def _samples(engine: str, stages: list[Any], observed: Iterable[Any], exit_code: int,
             now: float) -> Iterable[tuple[str, dict[str, str], float]]:
    from engine.training.registry import ModelRecord
    from engine.policies.drift import FeatureDrift
    from engine.policies.quarantine import QuarantineResult
    from engine.validation.suite import ValidationReport

    yield "lakescore_run_exit_code", {}, exit_code
    yield "lakescore_run_finished_timestamp_seconds", {}, now
    yield "lakescore_run_duration_seconds", {}, sum(s.seconds for s in stages)
    if exit_code == 0:
        yield "lakescore_last_success_timestamp_seconds", {}, now
    for s in stages:
        stage = {"stage": s.stage}
        yield "lakescore_stage_seconds", stage, s.seconds
        yield "lakescore_stage_failed", stage, 0 if s.status == "ok" else 1
        if s.rows_in is not None:
            yield "lakescore_stage_rows_in", stage, s.rows_in
        if s.rows_out is not None:
            yield "lakescore_stage_rows_out", stage, s.rows_out
        for table, version in s.written.items():
            yield "lakescore_delta_version", {"table": table}, version
        if s.stage == "score" and s.rows_out and s.seconds > 0:
            yield "lakescore_scoring_rows_per_second", {}, s.rows_out / s.seconds
    warned = None
    for item in observed:
        if isinstance(item, ValidationReport):
            labels = {"table": table_label(item.table), "suite": item.suite}
            yield "lakescore_validation_expectations", labels, len(item.outcomes)
            yield "lakescore_validation_expectations_failed", labels, len(item.failures())
            yield "lakescore_validation_success", labels, 1 if item.success else 0
        elif isinstance(item, QuarantineResult):
            # the quarantine table's path ends in the name of the table its rows came from
            source = item.quarantine_table.rstrip("/").rsplit("/", 1)[-1]
            yield "lakescore_rows_quarantined", {"table": source}, item.quarantined
        elif isinstance(item, FeatureDrift):
            warned = (warned or 0) + (1 if item.warn else 0)
            if item.psi is not None:
                yield "lakescore_drift_psi", {"feature": item.feature}, item.psi
            if item.train_null_rate is not None and item.score_null_rate is not None:
                yield ("lakescore_drift_null_rate_change", {"feature": item.feature},
                       item.score_null_rate - item.train_null_rate)
        elif isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], ModelRecord):
            role, model = item
            yield ("lakescore_model_info", {"model_name": model.name, "model_version": str(model.version),
                                            "role": role}, 1)
    if warned is not None:
        yield "lakescore_drift_features_warned", {}, warned
