"""The whole pipeline end to end, as a user runs it: the jobs as processes on a small demo.

One run of ``python -m jobs.pipeline`` (Spark then Dask, real H2O, real Delta, real Great
Expectations) into a temporary lakehouse, shared with test_reproducible (tests/demo_lakehouse.py:
these tests run first and change no row); the tests read what it wrote with ``deltalake`` and run
the other entry points (single jobs, the lineage job, the notebook) against it.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pandas as pd
import pytest
from deltalake import DeltaTable

from demo_lakehouse import PLANTED_STORAGE_SECRET, PLANTED_TOKEN, job, run, start
from ops_helpers import series

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def table(lakehouse: Path, name: str) -> DeltaTable:
    return DeltaTable(str(lakehouse / "tables" / name))


def test_pipeline_exits_zero_and_prints_the_run_summary(demo_run):
    _, result = demo_run
    out = result.stdout
    for stage in ("generate", "features", "validate", "train", "score features", "score"):
        assert f"\n{stage} " in out, out
    assert "scores spark vs dask" in out
    assert "summary saved to" in out
    # the libraries' INFO lines (Spark, py4j, Dask, GE, MLflow) are off without --verbose
    chatter = [line for line in result.stderr.splitlines()
               if " INFO " in line and not re.search(r" INFO (lakescore|engine|jobs)[.:]", line)]
    assert not chatter, chatter[:5]


def test_planted_secrets_appear_nowhere(demo_run, gateway):
    """Every byte the demo run left (logs, summaries, manifests, Delta logs and data, MLflow's
    database with its tags and params, its artifacts, lineage events, validation reports) and
    the metrics it pushed: neither planted secret is in any of them."""
    from urllib.request import urlopen

    lakehouse, result = demo_run
    outputs = {str(p.relative_to(lakehouse)): p.read_bytes()
               for p in lakehouse.rglob("*") if p.is_file()}
    assert any(p.endswith(".db") for p in outputs), sorted(outputs)  # MLflow's tags and params
    assert any("manifest.json" in p for p in outputs) and any("_delta_log" in p for p in outputs)
    outputs["stdout"], outputs["stderr"] = result.stdout.encode(), result.stderr.encode()
    with urlopen(f"http://{gateway}/metrics", timeout=10) as response:
        outputs["pushed metrics"] = response.read()
    for secret in (PLANTED_TOKEN, PLANTED_STORAGE_SECRET):
        leaks = [p for p, data in outputs.items() if secret.encode() in data]
        assert not leaks, f"{secret} found in {leaks}"


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
    # the MOJO, the pyfunc flavor's MLmodel and the feature definitions the model carries
    assert sorted(a.path for a in client.list_artifacts(version.run_id, "model")) == [
        "model/MLmodel", "model/features.json", "model/features.yaml", "model/model.mojo"]
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
    # tables of its own: the demo lakehouse's `scores` is test_reproducible's score run's
    own = ("--set", "tables.scoring_set=tables/scoring_set_rerun", "--set", "tables.scores=tables/scores_rerun",
           "--set", "tables.drift=tables/drift_rerun")
    first = run(job("score"), lakehouse, "--engine", "dask", *own)
    assert first.returncode == 0, first.stderr[-4000:]
    to_score = table(lakehouse, "to_score").to_pandas()
    assert len(table(lakehouse, "scores_rerun").to_pandas()) == len(to_score)
    version = table(lakehouse, "scores_rerun").version()
    again = run(job("score"), lakehouse, "--engine", "dask", *own)
    assert again.returncode == 0, again.stderr[-4000:]
    assert "already committed" in again.stdout
    assert table(lakehouse, "scores_rerun").version() == version
    assert len(table(lakehouse, "scores_rerun").to_pandas()) == len(to_score)


def test_two_score_jobs_started_together_one_lands_the_other_exits_5_and_its_rerun_completes(demo_run, tmp_path):
    """Two score jobs for churn/1 and one date, on Dask and on Spark, into one scores table, each
    a process of its own: both are held at their commit (LAKESCORE_TEST_COMMIT_GATE) once they
    have scored, so the race happens every time. Dask's commits; Spark's then finds the table
    changed, exits 5 naming the table and the version, and writes nothing; its rerun completes
    without a second copy (the batch is already committed) and every key is in the table once."""
    from engine.storage.commit_hooks import COMMIT_GATE_ENV

    lakehouse, _ = demo_run
    gate = tmp_path / "gate"
    gate.mkdir()

    def own(engine: str) -> tuple[str, ...]:  # apart from the demo's tables, one scores table
        return ("--engine", engine, "--set", f"tables.scoring_set=tables/scoring_set_race_{engine}",
                "--set", "tables.scores=tables/scores_race", "--set", f"tables.drift=tables/drift_race_{engine}")

    jobs = {engine: start(job("score"), lakehouse, *own(engine), env_extra={COMMIT_GATE_ENV: f"scores:{gate}"})
            for engine in ("dask", "spark")}
    try:
        for engine, proc in jobs.items():  # both scored and wrote their files; neither committed
            ready = gate / f"ready-{proc.pid}-MainThread"
            while not ready.exists():
                assert proc.poll() is None, f"{engine}: exit {proc.returncode} before its commit: {proc.stdout.read()[-3000:]}"
                time.sleep(0.1)
        outputs = {}
        for engine, proc in jobs.items():  # Dask's commits first
            (gate / f"go-{proc.pid}-MainThread").touch()
            outputs[engine] = proc.communicate(timeout=300)[0]
    finally:
        for proc in jobs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, 9)
                proc.wait()
    assert jobs["dask"].returncode == 0, outputs["dask"][-3000:]
    assert jobs["spark"].returncode == 5, outputs["spark"][-3000:]
    assert "CommitConflict" in outputs["spark"] and "scores" in outputs["spark"], outputs["spark"][-3000:]
    assert "changed since version" in outputs["spark"] or "version 0" in outputs["spark"], outputs["spark"][-3000:]
    scores = table(lakehouse, "scores_race")
    assert scores.version() == 0 and scores.history(1)[0]["lakescore.engine"] == "dask"
    to_score = len(table(lakehouse, "to_score").to_pandas())
    rerun = run(job("score"), lakehouse, *own("spark"))
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    # the same rows scored by the same model are one batch whichever engine scored them: the
    # rerun finds it committed by Dask and adds nothing
    assert "already committed" in rerun.stdout, rerun.stdout[-3000:]
    frame = table(lakehouse, "scores_race").to_pandas()
    assert table(lakehouse, "scores_race").version() == 0
    assert len(frame) == to_score and not frame.duplicated(["customer_id", "as_of", "model_id"]).any()


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


# --- Operations: the demo run's metrics on a real pushgateway and its OpenLineage events ----

@pytest.fixture(scope="module")
def validate_runs(demo_run, gateway, tmp_path_factory):
    """Three runs of the validate job on Dask pushing to the same gateway: one that passes, one
    that fails (nulls; exit 4, started "from Airflow" with OpenLineage parent variables), one that
    quarantines the failing rows. The pushed series are read after the failure and at the end."""
    from deltalake import write_deltalake

    lakehouse, _ = demo_run
    observe = ("--set", f"metrics.pushgateway={gateway}", "--set", "openlineage.transport=file")
    passed = run(job("validate"), lakehouse, "--engine", "dask", *observe,
                 "--set", "tables.training_set=tables/training_set_dask")
    assert passed.returncode == 0, passed.stderr[-3000:]
    after_pass = series(gateway)
    bad = tmp_path_factory.mktemp("bad")
    frame = table(lakehouse, "training_set_dask").to_pandas()
    frame["amount_sum_30d"] = frame["amount_sum_30d"].mask(frame.index % 50 == 0)
    nulls = int(frame["amount_sum_30d"].isna().sum())
    write_deltalake(str(bad / "tables" / "training_set"), frame)
    parent = {"OPENLINEAGE_PARENT_JOB_NAMESPACE": "airflow", "OPENLINEAGE_PARENT_JOB_NAME": "lakescore.validate",
              "OPENLINEAGE_PARENT_RUN_ID": "3f5e1b6c-8a4d-4d7e-9b1a-2c3d4e5f6a7b"}
    os.environ.update(parent)
    try:
        failed = run(job("validate"), bad, "--engine", "dask", *observe)
    finally:
        for name in parent:
            os.environ.pop(name)
    assert failed.returncode == 4, failed.stdout[-2000:] + failed.stderr[-2000:]
    after_fail = series(gateway)
    quarantined = run(job("validate"), bad, "--engine", "dask", *observe,
                      "--set", "validation.policy=quarantine")
    assert quarantined.returncode == 0, quarantined.stderr[-3000:]
    return {"lakehouse": bad, "nulls": nulls, "parent": parent, "after_pass": after_pass,
            "after_fail": after_fail, "end": series(gateway), "failed": failed}


def test_validate_job_exits_4_on_a_feature_table_with_nulls(validate_runs):
    failed = validate_runs["failed"]
    assert failed.returncode == 4
    assert (f"expect_column_values_to_not_be_null(amount_sum_30d): {validate_runs['nulls']} unexpected"
            in failed.stderr), failed.stderr[-3000:]
    assert "training_set@v0" in failed.stderr


def pushed(samples, name: str, **labels) -> list[float]:
    return [v for n, l, v in samples if n == name and all(l.get(k) == str(x) for k, x in labels.items())]


def test_demo_run_pushes_one_metrics_group_per_engine(demo_run, gateway):
    from ops_helpers import series

    lakehouse, _ = demo_run
    samples = series(gateway)
    groups = {(labels["job"], labels["engine"]) for _, labels, _ in samples}
    assert {("lakescore_pipeline", e) for e in ("spark", "dask", "deltalake")} <= groups
    for engine in ("spark", "dask"):
        group = {"job": "lakescore_pipeline", "engine": engine}
        assert pushed(samples, "lakescore_run_exit_code", **group) == [0]
        assert pushed(samples, "lakescore_last_success_timestamp_seconds", **group)
        stages = {l["stage"] for n, l, _ in samples if n == "lakescore_stage_seconds" and l["engine"] == engine}
        assert {"features", "validate", "train" if engine == "spark" else "score", "score"} <= stages
        scores = table(lakehouse, f"scores_{engine}")
        assert pushed(samples, "lakescore_delta_version", table=f"scores_{engine}", **group) == [scores.version()]
        assert pushed(samples, "lakescore_stage_rows_out", stage="score", **group) == [len(scores.to_pandas())]
        assert pushed(samples, "lakescore_validation_expectations_failed", table=f"training_set_{engine}",
                      suite="customer_features", **group) == [0]
        assert pushed(samples, "lakescore_validation_expectations", table=f"training_set_{engine}",
                      suite="customer_features", **group)[0] > 0
        drift = table(lakehouse, f"drift_metrics_{engine}").to_pandas()
        psi = {l["feature"]: v for n, l, v in samples if n == "lakescore_drift_psi" and l["engine"] == engine}
        assert psi.keys() == set(drift.loc[drift["psi"].notna(), "feature"])
        assert pushed(samples, "lakescore_scoring_rows_per_second", **group)[0] > 0
        assert pushed(samples, "lakescore_model_info", model_name="churn", model_version="1", role="model", **group) == [1]
    run_id = json.loads(next((lakehouse / "runs").glob("*/summary.json")).read_text())["run_id"]
    assert all(run_id not in value for _, labels, _ in samples for value in labels.values()), "unbounded label"


def test_a_failed_run_pushes_its_exit_code_and_keeps_the_last_success(validate_runs):
    group = {"job": "lakescore_validate", "engine": "dask"}
    before, after = validate_runs["after_pass"], validate_runs["after_fail"]
    assert pushed(before, "lakescore_run_exit_code", **group) == [0]
    assert pushed(after, "lakescore_run_exit_code", **group) == [4]
    last_success = pushed(before, "lakescore_last_success_timestamp_seconds", **group)
    assert last_success and pushed(after, "lakescore_last_success_timestamp_seconds", **group) == last_success
    assert pushed(after, "lakescore_run_finished_timestamp_seconds", **group)[0] > last_success[0]
    assert pushed(after, "lakescore_validation_expectations_failed", table="training_set",
                  suite="customer_features", **group) == [1]
    assert pushed(validate_runs["end"], "lakescore_rows_quarantined", table="training_set", **group) == \
        [validate_runs["nulls"]]


def test_dashboard_and_alerts_name_only_metrics_the_jobs_pushed(validate_runs):
    """Every metric the Grafana dashboard and the alerts query was pushed by the runs above."""
    from test_ops_deploy import alert_metric_names, dashboard, dashboard_metric_names

    names = {name for name, _, _ in validate_runs["end"]}
    assert dashboard_metric_names(dashboard()) <= names, dashboard_metric_names(dashboard()) - names
    assert alert_metric_names() <= names, alert_metric_names() - names


def lineage_events(lakehouse: Path) -> list[dict]:
    path = lakehouse / "openlineage" / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_openlineage_events_carry_the_versions_and_hashes_of_the_commits(demo_run):
    """The COMPLETE event of the demo run names each table it wrote at the version committed,
    with the feature hash, inputs and models the commit's metadata records (what jobs.lineage
    reads), the schema of that version and the GE results of its validated inputs."""
    from engine.lineage import read_lineage

    lakehouse, _ = demo_run
    events = [e for e in lineage_events(lakehouse) if e["job"]["name"] == "pipeline"]
    assert [e["eventType"] for e in events] == ["START", "COMPLETE"]
    assert events[0]["run"]["runId"] == events[1]["run"]["runId"]
    complete = events[1]
    outputs = {d["name"]: d for d in complete["outputs"]}
    inputs = {(d["name"], d["facets"]["version"]["datasetVersion"]): d for d in complete["inputs"]}
    for name in ("training_set_spark", "scores_spark", "training_set_dask", "scores_dask"):
        path = str(lakehouse / "tables" / name)
        dataset = outputs[path]
        assert dataset["namespace"] == "file"
        delta = DeltaTable(path)
        version = int(dataset["facets"]["version"]["datasetVersion"])
        meta = read_lineage(path, version)
        assert meta["run_id"] == dataset["facets"]["lakescore"]["run_id"]
        assert dataset["facets"]["lakescore"]["feature_hash"] == meta["feature_hash"]
        assert [f["name"] for f in dataset["facets"]["schema"]["fields"]] == \
            [f.name for f in delta.schema().fields]
        assert dataset["facets"]["storage"] == {**dataset["facets"]["storage"], "storageLayer": "delta",
                                                "fileFormat": "parquet"}
        recorded_paths = json.loads(meta["input_paths"])
        for input_name, input_version in json.loads(meta["inputs"]).items():
            assert (recorded_paths[input_name], str(input_version)) in inputs
    (model,) = outputs[str(lakehouse / "tables" / "scores_spark")]["facets"]["lakescore"]["models"]
    (version,) = registry_client(lakehouse).search_model_versions("name='churn'")
    assert (model["name"], model["version"], model["mlflow_run_id"]) == ("churn", "1", version.run_id)
    training = inputs[(str(lakehouse / "tables" / "training_set_spark"), "0")]
    assertions = training["inputFacets"]["dataQualityAssertions"]["assertions"]
    report = json.loads(next((lakehouse / "runs").glob(
        "*/validation/spark/training_set_spark@v0.customer_features.*.json")).read_text())
    assert sorted((a["assertion"], a.get("column"), a["success"]) for a in assertions if a["name"] == "customer_features") == \
        sorted((o["expectation_type"], o["column"], o["success"]) for o in report["outcomes"])
    tags = {t["key"]: t["value"] for t in complete["run"]["facets"]["tags"]["tags"]}
    assert tags["model"] == "churn/1" and tags["mlflow_run_id"] == version.run_id


def test_openlineage_events_follow_the_spec_and_our_facet_schema(demo_run, validate_runs):
    """Each event has what the OpenLineage 2-0-2 RunEvent requires (checked field by field: the
    spec's JSON schema file is not shipped by any package this machine can install), and the
    lakescore facet validates against deploy/openlineage/LakescoreDatasetFacet.json."""
    import uuid

    import jsonschema
    from dateutil.parser import isoparse

    schema = json.loads((REPO / "deploy" / "openlineage" / "LakescoreDatasetFacet.json").read_text())
    facet_schema = schema["$defs"]["LakescoreDatasetFacet"]["allOf"][1]
    events = lineage_events(demo_run[0]) + lineage_events(validate_runs["lakehouse"])
    assert events
    for event in events:
        assert event["eventType"] in {"START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER"}
        assert isoparse(event["eventTime"]).tzinfo is not None
        assert event["schemaURL"].startswith("https://openlineage.io/spec/2-0-2/OpenLineage.json#")
        assert event["producer"].startswith("https://")
        uuid.UUID(event["run"]["runId"])
        assert event["job"]["namespace"] == "lakescore" and event["job"]["name"]
        facets = [*event["run"].get("facets", {}).values(), *event["job"].get("facets", {}).values()]
        for dataset in event.get("inputs", []) + event.get("outputs", []):
            assert dataset["namespace"] and dataset["name"]
            facets += [*dataset.get("facets", {}).values(), *dataset.get("inputFacets", {}).values(),
                       *dataset.get("outputFacets", {}).values()]
            if "lakescore" in dataset.get("facets", {}):
                jsonschema.validate(dataset["facets"]["lakescore"], facet_schema)
        for facet in facets:
            assert facet["_producer"].startswith("https://") and facet["_schemaURL"].startswith("https://")


def test_a_failed_job_emits_fail_with_the_error_and_its_airflow_parent(validate_runs):
    events = [e for e in lineage_events(validate_runs["lakehouse"]) if e["job"]["name"] == "validate"]
    assert [e["eventType"] for e in events] == ["START", "FAIL", "START", "COMPLETE"]
    fail = events[1]
    assert "expect_column_values_to_not_be_null" in fail["run"]["facets"]["errorMessage"]["message"]
    parent = fail["run"]["facets"]["parent"]
    assert parent["run"]["runId"] == validate_runs["parent"]["OPENLINEAGE_PARENT_RUN_ID"]
    assert (parent["job"]["namespace"], parent["job"]["name"]) == ("airflow", "lakescore.validate")
    assert "parent" not in events[3]["run"]["facets"]
    (dataset,) = fail["inputs"]
    failed = [a for a in dataset["inputFacets"]["dataQualityAssertions"]["assertions"] if not a["success"]]
    assert [(a["assertion"], a["column"], a["actual"]) for a in failed] == \
        [("expect_column_values_to_not_be_null", "amount_sum_30d", str(validate_runs["nulls"]))]


def test_unreachable_pushgateway_and_lineage_endpoint_warn_and_leave_the_result(demo_run):
    from ops_helpers import free_port

    lakehouse, _ = demo_run
    gateway, lineage = f"127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"
    result = run(job("validate"), lakehouse, "--engine", "dask",
                 "--set", "tables.training_set=tables/training_set_dask",
                 "--set", f"metrics.pushgateway={gateway}", "--set", "openlineage.transport=http",
                 "--set", f"openlineage.url={lineage}", "--set", "openlineage.timeout_seconds=2")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"could not push the validate run's metrics to pushgateway {gateway}" in result.stderr
    assert f"could not emit the START event of validate to {lineage}/api/v1/lineage" in result.stderr
    assert f"could not emit the COMPLETE event of validate to {lineage}/api/v1/lineage" in result.stderr
