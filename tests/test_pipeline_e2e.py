"""The whole pipeline end to end, as a user runs it: the jobs as processes on a small demo.

One module-scoped run of ``python -m jobs.pipeline`` (Spark then Dask, real H2O, real Delta,
real Great Expectations) into a temporary lakehouse; the tests read what it wrote with
``deltalake`` and run the other entry points (spark-submit, single jobs, the notebook) against it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from deltalake import DeltaTable

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

# Ports apart from the test session's own H2O, so both can run at once (and two checkouts'
# test runs side by side, each with its own LAKESCORE_TEST_JOB_H2O_PORT).
JOB_H2O_PORT = os.environ.get("LAKESCORE_TEST_JOB_H2O_PORT", "54371")


def run(args: list[str], lakehouse: Path, *extra: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, SPARK_LOCAL_IP="127.0.0.1", PYSPARK_PYTHON=sys.executable,
               PYSPARK_DRIVER_PYTHON=sys.executable)
    cmd = [*args, "--conf", "conf/test.yaml", "--set", f"lakehouse={lakehouse}",
           "--set", f"h2o.port={JOB_H2O_PORT}", "--set", "spark.show_progress=false",
           "--set", "dask.show_progress=false", *extra]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def job(name: str) -> list[str]:
    return [sys.executable, "-m", f"jobs.{name}"]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    lakehouse = tmp_path_factory.mktemp("lakehouse")
    result = run(job("pipeline"), lakehouse)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-8000:]
    return lakehouse, result


def table(lakehouse: Path, name: str) -> DeltaTable:
    return DeltaTable(str(lakehouse / "tables" / name))


def test_pipeline_exits_zero_and_prints_the_run_summary(demo_run):
    _, result = demo_run
    out = result.stdout
    for stage in ("generate", "features", "validate", "train", "score features", "score"):
        assert f"\n{stage} " in out, out
    assert "scores spark vs dask" in out
    assert "summary saved to" in out


def test_feature_tables_have_one_row_per_label_on_both_engines(demo_run):
    lakehouse, _ = demo_run
    labels = table(lakehouse, "labels").to_pandas()
    for engine in ("spark", "dask"):
        training = table(lakehouse, f"training_set_{engine}").to_pandas()
        assert len(training) == len(labels)
        assert {"amount_count_7d", "amount_sum_30d", "amount_mean_90d", "churned"} <= set(training.columns)


def test_scores_table_has_one_row_per_customer_to_score(demo_run):
    lakehouse, _ = demo_run
    to_score = table(lakehouse, "to_score").to_pandas()
    for engine in ("spark", "dask"):
        scores = table(lakehouse, f"scores_{engine}").to_pandas()
        assert len(scores) == len(to_score)
        assert scores["score"].between(0, 1).all()
        assert scores["model_id"].nunique() == 1 and scores["run_id"].nunique() == 1


def test_spark_and_dask_scores_agree_for_the_same_rows_and_model(demo_run):
    lakehouse, _ = demo_run
    keys = ["customer_id", "as_of", "model_id"]
    spark = table(lakehouse, "scores_spark").to_pandas()
    dask = table(lakehouse, "scores_dask").to_pandas()
    both = spark.merge(dask, on=keys, suffixes=("_spark", "_dask"), validate="one_to_one")
    assert len(both) == len(spark) == len(dask)
    assert (both["score_spark"] - both["score_dask"]).abs().max() <= 1e-9


def test_spark_and_dask_training_sets_are_equal(demo_run):
    lakehouse, _ = demo_run
    spark = table(lakehouse, "training_set_spark").to_pandas()
    dask = table(lakehouse, "training_set_dask").to_pandas()
    keys = ["customer_id", "as_of"]
    spark = spark.sort_values(keys).reset_index(drop=True)
    dask = dask.sort_values(keys).reset_index(drop=True)[spark.columns]
    pd.testing.assert_frame_equal(spark, dask, check_dtype=False, rtol=1e-12)


def test_commits_record_lineage(demo_run):
    lakehouse, _ = demo_run
    scores = table(lakehouse, "scores_spark").history(1)[0]
    assert scores["lakescore.job"] == "score"
    assert scores["lakescore.model_id"] == "churn/1"
    (version,) = registry_client(lakehouse).search_model_versions("name='churn'")
    assert (scores["lakescore.model_name"], scores["lakescore.model_version"]) == ("churn", "1")
    assert scores["lakescore.model_run_id"] == version.run_id
    assert "scoring_set_spark" in json.loads(scores["lakescore.inputs"])
    training = table(lakehouse, "training_set_spark").history(1)[0]
    assert set(json.loads(training["lakescore.inputs"])) == {"events", "labels"}
    assert len(training["lakescore.feature_hash"]) >= 12


def registry_client(lakehouse: Path):
    from mlflow import MlflowClient

    uri = f"sqlite:///{lakehouse / 'registry' / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def test_model_is_registered_with_metrics_mojo_and_lineage_tags(demo_run):
    lakehouse, _ = demo_run
    client = registry_client(lakehouse)
    (version,) = client.search_model_versions("name='churn'")
    run = client.get_run(version.run_id)
    assert run.data.metrics["auc"] > 0.7 and "logloss" in run.data.metrics
    assert [a.path for a in client.list_artifacts(version.run_id, "model")] == ["model/model.mojo"]
    tags = version.tags
    training = table(lakehouse, "training_set_spark")
    assert tags["lakescore.training_table"] == str(lakehouse / "tables" / "training_set_spark")
    assert int(tags["lakescore.training_version"]) == training.version()
    assert tags["lakescore.feature_hash"] == training.history(1)[0]["lakescore.feature_hash"]
    assert len(json.loads(tags["lakescore.validation_ids"])) == 2
    assert tags["lakescore.engine"] == "spark" and len(tags["lakescore.git_commit"]) >= 40


def test_validation_results_are_kept_under_the_run(demo_run):
    lakehouse, _ = demo_run
    results = list((lakehouse / "runs").glob("*/validation/*/*.json"))
    assert {p.parent.name for p in results} == {"spark", "dask"}


def test_rerunning_the_score_job_writes_no_duplicate_rows(demo_run):
    lakehouse, _ = demo_run
    first = run(job("score"), lakehouse, "--engine", "dask")
    assert first.returncode == 0, first.stderr[-4000:]
    to_score = table(lakehouse, "to_score").to_pandas()
    assert len(table(lakehouse, "scores").to_pandas()) == len(to_score)
    version = table(lakehouse, "scores").version()
    again = run(job("score"), lakehouse, "--engine", "dask")
    assert again.returncode == 0, again.stderr[-4000:]
    assert "already committed" in again.stdout
    assert table(lakehouse, "scores").version() == version
    assert len(table(lakehouse, "scores").to_pandas()) == len(to_score)


def test_spark_submit_runs_a_job(demo_run):
    lakehouse, _ = demo_run
    result = run([str(REPO / "spark-submit.sh"), "--master", "local[2]", "jobs/features.py"], lakehouse)
    assert result.returncode == 0, result.stderr[-4000:]
    assert re.search(r"^validate events +spark +ok", result.stdout, re.M), result.stdout[-3000:]
    assert re.search(r"^features +spark +ok", result.stdout, re.M), result.stdout[-3000:]
    assert len(table(lakehouse, "training_set").to_pandas()) == len(table(lakehouse, "labels").to_pandas())


def test_notebook_executes_against_the_demo_outputs(demo_run):
    import nbformat
    from nbclient import NotebookClient

    lakehouse, _ = demo_run
    notebook = nbformat.read(REPO / "notebooks" / "explore_demo.ipynb", as_version=4)
    os.environ["LAKESCORE_LAKEHOUSE"] = str(lakehouse)
    try:
        NotebookClient(notebook, timeout=300, kernel_name="python3",
                       resources={"metadata": {"path": str(REPO / "notebooks")}}).execute()
    finally:
        del os.environ["LAKESCORE_LAKEHOUSE"]
    assert (lakehouse / "score_distribution.png").exists()
    outputs = "".join(o.get("text", "") for c in notebook.cells for o in c.get("outputs", []))
    assert "rows scored on both engines; max abs difference" in outputs


def test_bad_feature_values_stop_the_pipeline_before_training(tmp_path):
    """Negative amounts are stopped by the events suite before any feature is built; without
    it, the negative feature sums they make are stopped by the features suite. Either way the
    run exits 4, names the table, expectation, column and count, and trains and scores nothing."""
    lakehouse = tmp_path / "lake"
    result = run(job("generate"), lakehouse)
    assert result.returncode == 0, result.stderr[-4000:]
    events_path = lakehouse / "tables" / "events"
    events = DeltaTable(str(events_path)).to_pyarrow_table()
    frame = events.to_pandas()
    frame.loc[frame.index[:25], "amount"] = -frame.loc[frame.index[:25], "amount"]
    from deltalake import write_deltalake
    import pyarrow as pa

    write_deltalake(str(events_path), pa.Table.from_pandas(frame, schema=events.schema, preserve_index=False),
                    mode="overwrite")
    result = run(job("pipeline"), lakehouse, "--engines", "dask", "--skip-generate")
    assert result.returncode == 4, result.stdout[-3000:] + result.stderr[-3000:]
    assert "events@v1" in result.stderr
    assert "expect_column_values_to_be_between(amount): 25 unexpected" in result.stderr
    assert not (lakehouse / "tables" / "training_set").exists()
    result = run(job("pipeline"), lakehouse, "--engines", "dask", "--skip-generate",
                 "--set", "validation.suites.events=[]")
    assert result.returncode == 4, result.stdout[-3000:] + result.stderr[-3000:]
    assert "expect_column_values_to_be_between" in result.stderr
    assert "amount_sum_" in result.stderr
    assert not (lakehouse / "registry" / "mlflow.db").exists() or not registry_client(lakehouse).search_model_versions()
    assert not (lakehouse / "tables" / "scores").exists()


def test_validate_job_exits_4_on_a_feature_table_with_nulls(demo_run, tmp_path):
    from deltalake import write_deltalake

    lakehouse, _ = demo_run
    frame = table(lakehouse, "training_set_dask").to_pandas()
    frame["amount_sum_30d"] = frame["amount_sum_30d"].mask(frame.index % 50 == 0)
    nulls = int(frame["amount_sum_30d"].isna().sum())
    write_deltalake(str(tmp_path / "tables" / "training_set"), frame)
    result = run(job("validate"), tmp_path, "--engine", "dask")
    assert result.returncode == 4, result.stdout[-2000:] + result.stderr[-2000:]
    assert f"expect_column_values_to_not_be_null(amount_sum_30d): {nulls} unexpected" in result.stderr
    assert "training_set@v0" in result.stderr


def test_lineage_job_traces_scores_back_to_model_training_set_and_sources(demo_run):
    lakehouse, _ = demo_run
    result = run(job("lineage"), lakehouse, "--table", "scores_spark", "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    tree = json.loads(result.stdout)
    assert tree["table"].endswith("scores_spark") and tree["job"] == "score"
    assert [Path(v["report"]).parent.name for v in tree["validations"]] == ["spark"]
    model = tree["model"]
    assert model["feature_hash"] == tree["feature_hash"]
    (version,) = registry_client(lakehouse).search_model_versions("name='churn'")
    assert (model["model_id"], model["mlflow_run_id"]) == ("churn/1", version.run_id)
    assert model["git_commit"] == version.tags["lakescore.git_commit"] and model["metrics"]["auc"] > 0.7
    assert [Path(v["report"]).parent.name for v in model["validations"]] == ["spark", "spark"]
    assert all(v["success"] for v in model["validations"] + tree["validations"])
    training = model["training_set"]
    assert training["table"].endswith("training_set_spark") and training["version"] == model_version(lakehouse)
    assert {Path(n["table"]).name for n in training["inputs"]} == {"events", "labels"}
    assert {Path(n["table"]).name for n in tree["inputs"][0]["inputs"]} == {"events", "to_score"}
    text = run(job("lineage"), lakehouse, "--table", "scores_spark")
    assert "<- model " in text.stdout and "<- " + str(lakehouse / "tables" / "events") in text.stdout


def model_version(lakehouse: Path) -> int:
    (version,) = registry_client(lakehouse).search_model_versions("name='churn'")
    return int(version.tags["lakescore.training_version"])
