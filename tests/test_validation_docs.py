"""Every validation keeps its evidence: the result JSON and Great Expectations' Data Docs HTML under
the run directory, listed in the run summary, whatever the verdict, on both engines."""

from __future__ import annotations

import html
import json
import re

import numpy as np
import pytest
from deltalake import write_deltalake

from engine.backends.dask import DaskBackend
from engine.backends.spark import SparkBackend
from engine.conf import load_conf
from engine.errors import ValidationFailed
from engine.pipeline import validate_table
from engine.run_context import RunContext
from engine.validation.docs import write_data_docs
from engine.validation.suite import load_suite
from tests.test_validation import FEATURES_SUITE, LABELS_SUITE, ROWS, feature_frame, run, spread


def page_text(path) -> str:
    """The visible text of an HTML page (scripts and styles dropped)."""
    text = path.read_text()
    text = re.sub(r"<(script|style).*?</\1>", " ", text, flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", text)))


def test_data_docs_page_shows_the_verdict_of_each_expectation(engine_name, tmp_path):
    frame = feature_frame()
    frame.loc[spread(ROWS, 3), "amount_sum_7d"] = np.nan
    report = run(engine_name, frame, load_suite(FEATURES_SUITE), table="training_set@v7")
    path = write_data_docs(report, tmp_path / "docs", run_name="run-1")
    assert path.name == f"training_set@v7.customer_features.{report.result_id}.html"
    text = page_text(path)
    assert "Expectation Suite: customer_features" in text
    assert "Data asset: training_set@v7" in text and "Status: Failed" in text
    assert f"Evaluated Expectations {len(report.outcomes)}" in text
    assert "Unsuccessful Expectations 1" in text
    assert f"3 unexpected values found. 0.25% of {ROWS} total rows." in text
    assert "amount_sum_7d" in text and "run-1" in text and engine_name in text


def test_a_check_that_could_not_run_shows_its_error(engine_name, tmp_path):
    frame = feature_frame().drop(columns=["amount_sum_90d"])
    report = run(engine_name, frame, load_suite(FEATURES_SUITE))
    text = page_text(write_data_docs(report, tmp_path, run_name="r"))
    assert "raised an exception" in text and 'The column "amount_sum_90d"' in text


@pytest.mark.parametrize("policy", ["warn", "fail"])
def test_every_validation_writes_its_json_and_data_docs_and_the_summary_lists_them(
        engine_name, request, tmp_path, policy):
    frame = feature_frame()
    frame.loc[[5], "churned"] = 3
    conf = load_conf("conf/test.yaml", overrides=[f"lakehouse={tmp_path}", f"validation.policy={policy}"])
    ctx = RunContext.start(conf)
    ctx.output_suffix = engine_name
    write_deltalake(ctx.table("training_set").path, frame, mode="overwrite")
    backend = (SparkBackend(request.getfixturevalue("spark")) if engine_name == "spark" else
               DaskBackend(request.getfixturevalue("dask_cluster_client"), show_progress=False))
    if policy == "fail":
        with pytest.raises(ValidationFailed):
            validate_table(backend, ctx, "training_set", conf.validation.training_suites)
    else:
        validate_table(backend, ctx, "training_set", conf.validation.training_suites)

    outputs = ctx.summary.stages[-1].outputs
    directory = tmp_path / "runs" / ctx.run_id / "validation" / engine_name
    table = f"training_set_{engine_name}@v0"
    for suite in (load_suite(FEATURES_SUITE), load_suite(LABELS_SUITE)):
        report_path = outputs[f"validation {suite.name} ({table})"]
        docs_path = outputs[f"data docs {suite.name} ({table})"]
        written = json.loads(open(report_path).read())
        assert written["suite"] == suite.name and written["table"] == table
        assert docs_path == report_path.removesuffix(".json") + ".html"
        assert f"Expectation Suite: {suite.name}" in page_text(directory / docs_path.split("/")[-1])
        assert written["result_id"] in ctx.validation_ids[f"training_set_{engine_name}"]
    assert sorted(p.suffix for p in directory.iterdir()) == [".html", ".html", ".json", ".json"]
    rendered = ctx.summary.render()
    assert all(path in rendered for path in outputs.values())
