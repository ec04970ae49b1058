"""Profiling a Delta table gives the same exact profile and starting suite on both engines; the
suite loads, passes on the profiled data, and catches a defect."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from deltalake import write_deltalake

from engine.backend import backend_class, require_suite
from engine.backends.dask import DaskBackend
from engine.backends.spark import SparkBackend
from engine.storage.table import TableRef
from engine.policies.profile import profile_table, suite_from_profile, write_suite
from engine.validation.suite import load_suite
from tests.test_validation import ROWS, feature_frame

SEGMENTS = ["corporate", "retail", "sme"]


def profiled_frame() -> pd.DataFrame:
    frame = feature_frame()
    frame["segment"] = pd.Series([SEGMENTS[i % 3] for i in range(ROWS)], dtype="object")
    frame.loc[[4, 400, 1000], "segment"] = None
    frame["active"] = np.arange(ROWS) % 4 == 0
    return frame


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    path = tmp_path_factory.mktemp("profile") / "features"
    write_deltalake(str(path), profiled_frame(), mode="overwrite")
    return TableRef(name="features", path=str(path))


def backend_for(engine_name, request):
    if engine_name == "spark":
        return SparkBackend(request.getfixturevalue("spark"))
    return DaskBackend(request.getfixturevalue("dask_cluster_client"), show_progress=False)


def by_name(suite: dict) -> dict:
    return {(e["type"], e["kwargs"].get("column")): e["kwargs"] for e in suite["expectations"]}


def test_profile_is_exact_and_gives_a_suite_the_data_passes(engine_name, request, table, tmp_path):
    backend = backend_for(engine_name, request)
    read = backend.read(table)
    profile = profile_table(backend, read, max_values=5)
    frame = profiled_frame()
    assert profile.rows == ROWS and profile.version == 0
    columns = {c.name: c for c in profile.columns}
    mean = columns["amount_mean_7d"]
    assert (mean.kind, mean.non_null, mean.distinct) == (
        "float", int(frame["amount_mean_7d"].notna().sum()), frame["amount_mean_7d"].nunique())
    assert (mean.min, mean.max) == (frame["amount_mean_7d"].min(), frame["amount_mean_7d"].max())
    assert columns["segment"].values == tuple(SEGMENTS) and columns["segment"].non_null == ROWS - 3
    assert columns["churned"].values == (0, 1) and columns["customer_id"].values is None

    suite = suite_from_profile(profile, "features_start", max_values=5)
    checks = by_name(suite)
    assert checks[("expect_table_columns_to_match_set", None)]["column_set"] == list(frame.columns)
    assert checks[("expect_column_values_to_be_in_set", "segment")]["value_set"] == SEGMENTS
    assert checks[("expect_column_values_to_be_in_set", "active")]["value_set"] == [False, True]
    assert checks[("expect_column_values_to_be_between", "amount_count_7d")] == {
        "column": "amount_count_7d", "min_value": 0, "max_value": int(frame["amount_count_7d"].max())}
    assert checks[("expect_column_values_to_not_be_null", "customer_id")] == {"column": "customer_id"}
    assert checks[("expect_column_values_to_not_be_null", "segment")]["mostly"] == 0.997
    assert "LongType" in checks[("expect_column_values_to_be_in_type_list", "customer_id")]["type_list"]

    path = write_suite(suite, tmp_path / "features_start.json")
    loaded = require_suite(backend_class(engine_name), load_suite(path))  # valid GE, supported on this engine
    report = backend.validate(read.frame, loaded, "features@v0")
    assert report.success, report.summary_lines()


def test_both_engines_write_the_same_suite(request, table):
    suites = []
    for engine_name in ("spark", "dask"):
        backend = backend_for(engine_name, request)
        suites.append(suite_from_profile(profile_table(backend, backend.read(table)), "s"))
    assert json.dumps(suites[0], sort_keys=True) == json.dumps(suites[1], sort_keys=True)


def test_the_starting_suite_catches_new_defects(engine_name, request, table, tmp_path):
    backend = backend_for(engine_name, request)
    path = write_suite(suite_from_profile(profile_table(backend, backend.read(table)), "s"),
                       tmp_path / "s.json")
    frame = profiled_frame()
    frame.loc[[7, 700], "segment"] = "martian"
    frame.loc[[9], "amount_count_90d"] = 1000
    bad = tmp_path / "bad"
    write_deltalake(str(bad), frame, mode="overwrite")
    report = backend.validate(backend.read(TableRef("bad", str(bad))).frame,
                              require_suite(backend_class(engine_name), load_suite(path)), "bad")
    assert {(o.expectation_type, o.column, o.unexpected_count) for o in report.failures()} == {
        ("expect_column_values_to_be_in_set", "segment", 2),
        ("expect_column_values_to_be_between", "amount_count_90d", 1),
        ("expect_column_values_to_be_in_set", "amount_count_90d", 1)}  # 0..5 only: a value set


def test_profile_job_writes_a_suite_that_loads(dask_cluster_client, tmp_path, capsys):
    from jobs.profile_table import main

    write_deltalake(str(tmp_path / "tables" / "training_set"), profiled_frame(), mode="overwrite")
    out = tmp_path / "start.json"
    code = main(["--conf", "conf/test.yaml", "--set", f"lakehouse={tmp_path}", "--engine", "dask",
                 "--scheduler", dask_cluster_client.scheduler.address, "--table", "training_set",
                 "--out", str(out), "--max-values", "5"])
    assert code == 0
    suite = require_suite(backend_class("dask"), load_suite(out))
    assert suite.name == "training_set" and len(suite.expectations) > 20
    assert f"suite training_set: {out}" in capsys.readouterr().out
