"""Reproducible runs and models that carry their features, end to end as a user runs them.

One small lakehouse holds two runs:

- the demo run (``jobs.pipeline`` on Spark and Dask, as ``make demo``: generate, then features →
  validate → train → score per engine), which registers ``churn/1`` with its feature definitions;
  it is shared with test_pipeline_e2e, whose tests run before these (tests/demo_lakehouse.py);
- a score run on Spark from that model alone (``features: null``).

The tests run in file order. First those that need the inputs as generated: the manifests, the
refusals, ``score_batch``, the notebook (whose replay is the score run's, on Dask: within 1e-9)
and the MLflow pyfunc flavor. Then each input is appended to and compacted (``appended_lake``),
and the score run is replayed on Spark (bit-identical: still the original result), the demo run
on Dask (bit-identical with Dask's tables, within 1e-9 of Spark's), the same demo replay again
after a planted difference (reported per column, exit 10); last, vacuum removes the files of the
inputs' first version and the replay fails with a named error, writing nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from deltalake import DeltaTable, write_deltalake

from demo_lakehouse import DEMO_RUN, JOB_H2O_PORT

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow
DEMO_REPLAY = "demo-replay"
SCORE_RUN = "score-from-model"


def run(module: str, *args: str, lakehouse: Path | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, SPARK_LOCAL_IP="127.0.0.1", PYSPARK_PYTHON=sys.executable,
               PYSPARK_DRIVER_PYTHON=sys.executable)
    cmd = [sys.executable, "-m", f"jobs.{module}", *args]
    if lakehouse is not None:
        cmd += ["--conf", "conf/test.yaml", "--set", f"lakehouse={lakehouse}",
                "--set", f"h2o.port={JOB_H2O_PORT}", "--set", "spark.show_progress=false",
                "--set", "dask.show_progress=false"]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    return result


@pytest.fixture(scope="module")
def lake(demo_run):
    """The shared demo run's lakehouse (tests/demo_lakehouse.py), then the score run from its
    model alone."""
    lakehouse, _ = demo_run
    ok(run("score", "--engine", "spark", "--model", "churn/1", "--run-id", SCORE_RUN,
           "--set", "features=null", lakehouse=lakehouse))
    return lakehouse


def manifest_path(lakehouse: Path, run_id: str = SCORE_RUN) -> Path:
    return lakehouse / "runs" / run_id / "manifest.json"


def table(lakehouse: Path, name: str) -> DeltaTable:
    return DeltaTable(str(lakehouse / "tables" / name))


def test_training_logs_the_definitions_with_the_model_version(lake):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{lake}/registry/mlflow.db")
    version = client.get_model_version("churn", "1")
    files = {Path(a.path).name for a in client.list_artifacts(version.run_id, "model")}
    assert {"features.yaml", "features.json"} <= files
    assert version.tags["lakescore.carries_features"] == "true"
    local = Path(client.download_artifacts(version.run_id, "model/features.json"))
    described = json.loads(local.read_text())
    assert described["definition_hash"] == version.tags["lakescore.feature_hash"]
    assert described["events_table"] == str(lake / "tables" / "events")


def test_the_score_job_runs_from_the_model_alone_and_records_it_in_the_manifest(lake):
    scores = table(lake, "scores").to_pandas()
    assert len(scores) == len(table(lake, "to_score").to_pandas())
    manifest = json.loads(manifest_path(lake).read_text())
    assert manifest["job"] == "score"
    # the drift stage reads the model's training set at its version: an input too (the demo run
    # trained churn/1 on one engine's training set, which the model version's tags name)
    from mlflow import MlflowClient

    tags = MlflowClient(tracking_uri=f"sqlite:///{lake}/registry/mlflow.db").get_model_version("churn", "1").tags
    training = Path(tags["lakescore.training_table"]).name
    assert training in {"training_set_spark", "training_set_dask"}, training
    assert {i["name"] for i in manifest["inputs"]} == {"events", "to_score", training}
    assert all(i["version"] == 0 for i in manifest["inputs"])
    assert set(manifest["outputs"]) >= {"scores", "scoring_set"}
    assert [(m["name"], m["version"]) for m in manifest["models"]] == [("churn", "1")]
    assert manifest["features"]["hash"] == DeltaTable(str(lake / "tables" / "scores")).history(1)[0]["lakescore.feature_hash"]
    assert "aggregations" in manifest["features"]["yaml"] or "features" in manifest["features"]["yaml"]


def demo_replay(lake: Path) -> subprocess.CompletedProcess:
    """The demo run replayed on Dask alone, into a lakehouse beside the original (a second
    call with the same replay run id writes nothing again: it compares again)."""
    return run("replay", "--manifest", str(manifest_path(lake, DEMO_RUN)), "--engine", "dask",
               "--run-id", DEMO_REPLAY, "--into", str(lake.parent / f"{lake.name}-replay"))


def test_a_demo_runs_manifest_records_its_generated_inputs_engines_and_model(lake):
    manifest = json.loads(manifest_path(lake, DEMO_RUN).read_text())
    assert manifest["job"] == "pipeline" and manifest["engine"]["engines"] == ["spark", "dask"]
    # the generated demo tables are what the stages read, at the version generated
    assert [(i["name"], i["version"]) for i in manifest["inputs"]] == [
        ("events", 0), ("labels", 0), ("to_score", 0)]
    assert {f"{kind}_{engine}" for kind in ("training_set", "scoring_set", "scores")
            for engine in ("spark", "dask")} <= set(manifest["outputs"])
    assert not {"events", "labels", "to_score"} & set(manifest["outputs"])
    assert manifest["outputs"]["scores_dask"]["engine"] == "dask"
    assert [(m["role"], m["name"], m["version"]) for m in manifest["models"]] == [("model", "churn", "1")]


def test_a_conf_whose_definitions_differ_from_the_models_is_refused_naming_the_features(lake):
    before = {name: table(lake, name).version() for name in ("scores", "scoring_set")}
    result = run("score", "--model", "churn/1", "--set", "features=conf/features/customer_rich.yaml",
                 lakehouse=lake)
    assert result.returncode == 6, result.stderr[-3000:]
    assert "ModelMismatch" in result.stderr and "features" in result.stderr
    assert {name: table(lake, name).version() for name in before} == before


def _register_copy(lake: Path, drop: str) -> str:
    """Version 1 registered again from a copy of its artifacts without ``drop``: a model from
    before models carried features (drop features.yaml) or one whose MOJO is gone."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{lake}/registry/mlflow.db")
    v1 = client.get_model_version("churn", "1")
    source = Path(client.download_artifacts(v1.run_id, "model"))
    copy = lake / "registry" / f"copy-{os.urandom(4).hex()}"
    shutil.copytree(source, copy)
    for path in copy.glob(drop):
        path.unlink()
    tags = {k: v for k, v in v1.tags.items() if k != "lakescore.carries_features"}
    version = client.create_model_version("churn", source=copy.as_uri(), run_id=v1.run_id, tags=tags)
    return f"churn/{version.version}"


def test_a_model_without_carried_definitions_is_refused_and_nothing_is_written(lake):
    old = _register_copy(lake, "features.*")
    before = {name: table(lake, name).version() for name in ("scores", "scoring_set")}
    result = run("score", "--model", old, "--set", "features=null", lakehouse=lake)
    assert result.returncode == 6, result.stderr[-3000:]
    assert "carries no feature definitions" in result.stderr and old in result.stderr
    assert {name: table(lake, name).version() for name in before} == before


def test_a_model_whose_mojo_is_missing_is_refused_and_nothing_is_written(lake):
    broken = _register_copy(lake, "*.mojo")
    before = table(lake, "scores").version()
    result = run("score", "--model", broken, lakehouse=lake)
    assert result.returncode == 6, result.stderr[-3000:]
    assert "is missing" in result.stderr and broken in result.stderr
    assert table(lake, "scores").version() == before


def test_score_batch_scores_a_spark_frame_by_model_name_alone(lake, spark):
    from engine import score_batch
    from engine.conf import load_conf

    conf = load_conf("conf/test.yaml", overrides=[f"lakehouse={lake}"])
    rows = spark.createDataFrame(table(lake, "to_score").to_pandas())
    scored = score_batch(model="churn/1", rows=rows, conf=conf).toPandas()
    written = table(lake, "scores").to_pandas()
    for frame in (scored, written):
        frame["as_of"] = pd.to_datetime(frame["as_of"], utc=True).astype("datetime64[us, UTC]")
    merged = written.merge(scored, on=["customer_id", "as_of"], suffixes=("", "_batch"))
    assert len(merged) == len(written) == len(scored)
    assert (merged["score"] == merged["score_batch"]).all()


def test_score_batch_scores_a_dask_frame_equal_within_1e_9(lake, dask_cluster_client):
    import dask.dataframe as dd

    from engine import score_batch
    from engine.conf import load_conf

    conf = load_conf("conf/test.yaml", overrides=[f"lakehouse={lake}"])
    rows = dd.from_pandas(table(lake, "to_score").to_pandas(), npartitions=2)
    scored = score_batch(model="churn/1", rows=rows, conf=conf).compute()
    written = table(lake, "scores").to_pandas()
    merged = written.merge(scored, on=["customer_id", "as_of"], suffixes=("", "_batch"))
    assert len(merged) == len(written)
    assert (merged["score"] - merged["score_batch"]).abs().max() <= 1e-9


@pytest.fixture
def mlflow_registry(lake):
    import mlflow

    uri = f"sqlite:///{lake}/registry/mlflow.db"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    yield mlflow
    mlflow.set_tracking_uri(None)


def test_the_mlflow_pyfunc_flavor_scores_a_pandas_frame_like_the_score_job(lake, mlflow_registry):
    model = mlflow_registry.pyfunc.load_model("models:/churn/1")
    scoring_set = table(lake, "scoring_set").to_pandas()
    predicted = model.predict(scoring_set)
    assert list(predicted.columns) == ["score"] and len(predicted) == len(scoring_set)
    mine = scoring_set[["customer_id", "as_of"]].assign(pyfunc=predicted["score"].to_numpy())
    merged = table(lake, "scores").to_pandas().merge(mine, on=["customer_id", "as_of"])
    assert len(merged) == len(scoring_set)
    assert (merged["score"] - merged["pyfunc"]).abs().max() <= 1e-12


def test_the_mlflow_pyfunc_flavor_works_as_a_spark_udf(lake, mlflow_registry, spark):
    scoring_set = table(lake, "scoring_set").to_pandas()
    udf = mlflow_registry.pyfunc.spark_udf(spark, "models:/churn/1", result_type="double",
                                           env_manager="local")
    features = [c for c in scoring_set.columns if c not in ("customer_id", "as_of", "label")]
    frame = spark.createDataFrame(scoring_set).withColumn("pyfunc", udf(*features))
    scored = frame.select("customer_id", "as_of", "pyfunc").toPandas()
    written = table(lake, "scores").to_pandas()
    for each in (scored, written):
        each["as_of"] = pd.to_datetime(each["as_of"], utc=True).astype("datetime64[us, UTC]")
    merged = written.merge(scored, on=["customer_id", "as_of"])
    assert len(merged) == len(scoring_set)
    assert (merged["score"] - merged["pyfunc"]).abs().max() <= 1e-12


def test_the_pyfunc_flavor_of_a_model_whose_mojo_is_missing_is_a_named_error(lake, mlflow_registry):
    from engine.errors import ModelMismatch

    broken = _register_copy(lake, "*.mojo")
    with pytest.raises(ModelMismatch, match="is missing"):
        mlflow_registry.pyfunc.load_model(f"models:/{broken}")


def replay(lake: Path, into: Path, *extra: str) -> subprocess.CompletedProcess:
    return run("replay", "--manifest", str(manifest_path(lake)), "--into", str(into), *extra)


def test_the_second_notebook_scores_by_model_name_traces_replays_and_plots_drift(lake):
    """Its replay is of the latest replayable run, the score run (Spark), on Dask: the other
    engine's replay of the score run, equal within 1e-9."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(REPO / "notebooks" / "score_replay_drift.ipynb", as_version=4)
    env = {"LAKESCORE_LAKEHOUSE": str(lake), "LAKESCORE_MODEL": "churn/1", "LAKESCORE_TEST": "1"}
    os.environ.update(env)
    try:
        NotebookClient(notebook, timeout=600, kernel_name="python3",
                       resources={"metadata": {"path": str(REPO / "notebooks")}}).execute()
    finally:
        for key in env:
            del os.environ[key]
    outputs = "".join(o.get("text", "") for c in notebook.cells for o in c.get("outputs", []))
    assert "rows scored by churn/1 from its carried feature definitions" in outputs
    assert "model churn/1" in outputs and "replay EQUAL" in outputs, outputs[-3000:]
    assert f"replay of run {SCORE_RUN} (spark)" in outputs and "on dask" in outputs, outputs[-3000:]
    assert "within 1e-09" in outputs, outputs[-3000:]
    for figure in ("score_batch_distribution.png", "drift.png"):
        assert (lake / figure).exists()


def test_replay_of_a_manifest_from_another_lakescore_version_exits_2_writing_nothing(lake, tmp_path):
    raw = json.loads(manifest_path(lake).read_text())
    raw["lakescore"]["version"] = "0.0.1"
    other = tmp_path / "manifest.json"
    other.write_text(json.dumps(raw))
    result = run("replay", "--manifest", str(other), "--into", str(tmp_path / "other"))
    assert result.returncode == 2 and "ManifestMismatch" in result.stderr, result.stderr[-2000:]
    assert not (tmp_path / "other").exists()


def test_replay_targets_pair_each_engines_tables_with_the_replays():
    from engine.replay import CROSS_ENGINE_TOLERANCE, replay_target

    where = {"path": "/lake/tables/scores_dask", "version": 3, "engine": "dask"}
    both = ["spark", "dask"]
    assert replay_target("scores_dask", where, both, both, "/lake", "/r") == ("/r/tables/scores_dask", 0.0)
    assert replay_target("scores_dask", where, both, ["spark"], "/lake", "/r") == (
        "/r/tables/scores", CROSS_ENGINE_TOLERANCE)
    assert replay_target("scores_dask", where, both, ["dask"], "/lake", "/r") == ("/r/tables/scores", 0.0)
    single = {"path": "/lake/tables/scores", "version": 1}  # a manifest without engines per output
    assert replay_target("scores", single, ["spark"], ["dask"], "/lake", "/r") == (
        "/r/tables/scores", CROSS_ENGINE_TOLERANCE)
    assert replay_target("scores", single, ["spark"], ["spark"], "/lake", "/r") == ("/r/tables/scores", 0.0)


def test_a_replay_conf_reads_a_models_training_set_through_the_model_and_refuses_other_inputs(tmp_path):
    """A score run's drift stage reads its model's training set (``training_set_spark`` when a
    pipeline trained it on two engines): no table of the run's conf, read through the model at
    its training version. Any other input outside the conf's tables is a mismatched manifest."""
    import dataclasses

    from engine.conf import load_conf
    from engine.errors import ConfError
    from engine.manifest import InputVersion, Manifest
    from engine.replay import replay_conf

    conf = load_conf("conf/test.yaml", overrides=[f"lakehouse={tmp_path}"])
    tables = tmp_path / "tables"
    training = str(tables / "training_set_spark")
    manifest = Manifest(
        run_id="r", job="score", argv=[], created="", conf=dataclasses.asdict(conf), redacted=[],
        inputs=[InputVersion("events", str(tables / "events"), 3),
                InputVersion("to_score", str(tables / "to_score"), 1),
                InputVersion("training_set_spark", training, 0)],
        outputs={}, features={}, models=[], engine={"name": "spark"}, lakescore={}, runtime={})
    data = replay_conf(manifest, str(tmp_path / "replay"), "spark", "f.yaml", model_tables=(training,))
    assert data["input_versions"] == {"events": 3, "to_score": 1}
    assert data["tables"]["events"] == str(tables / "events")
    with pytest.raises(ConfError, match="training_set_spark .* is none of the run's tables"):
        replay_conf(manifest, str(tmp_path / "replay"), "spark", "f.yaml")


def test_compare_reports_each_differing_column_with_counts():
    import pyarrow as pa

    from engine.replay import compare_tables

    original = pa.table({"id": [1, 2, 3, 4], "score": [0.1, 0.2, 0.3, float("nan")], "n": [1, 2, 3, 4]})
    replayed = pa.table({"id": [1, 2, 3, 5], "score": [0.1, 0.2 + 1e-12, 0.3, float("nan")], "n": [1, 2, 3, 4]})
    exact = compare_tables("t", original, replayed, 0.0)
    assert not exact.equal
    assert exact.only_original == 1 and exact.only_replayed == 1
    assert [(c.column, c.rows) for c in exact.columns] == [("score", 1)]
    assert "score: 1 rows differ" in exact.describe()
    assert compare_tables("t", original.slice(0, 3), replayed.slice(0, 3), 1e-9).equal
    assert compare_tables("t", original, original, 0.0).equal


# --- after each input was appended to and compacted (the tests above need them as generated) ---


@pytest.fixture(scope="module")
def appended_lake(lake):
    """The lakehouse after each input was appended to and compacted (on Dask): later events of
    the same customers (features would change), new labelled and new customers to score. The
    tests that need the inputs as generated come before the first test using it."""
    tables = lake / "tables"
    events = table(lake, "events").to_pandas()
    write_deltalake(str(tables / "events"), events.head(500).assign(amount=lambda f: f["amount"] * 3),
                    mode="append")
    for name in ("labels", "to_score"):
        rows = table(lake, name).to_pandas().head(50)
        write_deltalake(str(tables / name), rows.assign(customer_id=rows["customer_id"] + 10_000_000),
                        mode="append")
    ok(run("maintain", "--table", "events", "--table", "labels", "--table", "to_score", "--engine",
           "dask", "--compact-only", "--set", "maintain.min_files=2", lakehouse=lake))
    for name in ("events", "labels", "to_score"):
        assert table(lake, name).version() >= 2, name  # appended, then compacted
    return lake


def test_replay_on_the_same_engine_after_appends_and_compaction_is_bit_identical_and_touches_nothing(
        appended_lake, tmp_path):
    """The score run replayed on Spark after its inputs were appended to and compacted: the
    original result, bit-identical, and nothing of the original touched."""
    lake = appended_lake
    before = {name: table(lake, name).version() for name in ("scores", "scoring_set", "events")}
    result = ok(replay(lake, tmp_path / "same"))
    assert "bit-identical" in result.stdout and "replay EQUAL" in result.stdout, result.stdout
    assert "scores: " in result.stdout and ": equal" in result.stdout
    assert {name: table(lake, name).version() for name in before} == before
    replayed = DeltaTable(str(tmp_path / "same" / "tables" / "scores")).to_pandas()
    assert len(replayed) == len(table(lake, "scores").to_pandas()) < len(table(lake, "to_score").to_pandas())


def test_a_demo_run_replays_bit_identical_on_its_engine_and_within_1e_9_across_after_appends_and_compaction(appended_lake):
    from mlflow import MlflowClient

    lake = appended_lake
    client = MlflowClient(tracking_uri=f"sqlite:///{lake}/registry/mlflow.db")
    registered = sorted(str(v.version) for v in client.search_model_versions("name='churn'"))
    before = {p.name: DeltaTable(str(p)).version() for p in (lake / "tables").iterdir()}
    result = ok(demo_replay(lake))
    out = result.stdout
    assert "replay of run demo-run (spark,dask) as demo-replay on dask" in out, out[-3000:]
    for kind in ("training_set", "scoring_set", "scores"):
        assert f"{kind}_spark vs {kind}: " in out and f"{kind}_dask vs {kind}: " in out, out[-3000:]
    lines = {line.split(":")[0].strip(): line for line in out.splitlines() if " vs " in line}
    assert all(line.endswith(": equal") for line in lines.values()), out[-3000:]
    assert "bit-identical: equal" in lines["scores_dask vs scores"]
    assert "within 1e-09: equal" in lines["scores_spark vs scores"]
    assert "replay EQUAL" in out
    # nothing of the original was touched, no model was trained or registered
    assert {p.name: DeltaTable(str(p)).version() for p in (lake / "tables").iterdir()} == before
    assert "stage train" not in result.stderr
    assert sorted(str(v.version) for v in client.search_model_versions("name='churn'")) == registered
    replayed = DeltaTable(str(lake.parent / f"{lake.name}-replay" / "tables" / "scores")).to_pandas()
    original = DeltaTable(str(lake / "tables" / "scores_dask")).to_pandas()
    assert len(replayed) == len(original) < len(DeltaTable(str(lake / "tables" / "to_score")).to_pandas())


def test_a_planted_difference_in_a_demo_replay_is_reported_per_column_with_exit_10(appended_lake):
    lake = appended_lake
    scores = lake.parent / f"{lake.name}-replay" / "tables" / "scores"
    if not scores.exists():
        pytest.skip("needs the replay of the test before")
    frame = DeltaTable(str(scores)).to_pandas()
    frame.loc[frame.index[:3], "score"] += 0.25  # three scores changed, one row lost
    write_deltalake(str(scores), frame.iloc[:-1], mode="overwrite",
                    partition_by=DeltaTable(str(scores)).metadata().partition_columns)
    result = demo_replay(lake)
    assert result.returncode == 10, result.stdout[-3000:] + result.stderr[-3000:]
    line = next(l for l in result.stdout.splitlines() if l.strip().startswith("scores_dask vs scores"))
    assert "DIFFERENT" in line and "1 rows only in the original" in line, line
    assert "score: 3 rows differ, max abs difference 0.25" in line, line
    assert "replay DIFFERS" in result.stdout


def test_replay_of_a_vacuumed_input_version_fails_naming_version_and_retention(appended_lake, tmp_path):
    lake = appended_lake  # last: vacuum removes the files every replay above reads
    ok(run("maintain", "--table", "events", "--vacuum-only", "--retention-hours", "0",
           "--allow-short-retention", lakehouse=lake))
    result = replay(lake, tmp_path / "gone")
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-3000:]
    assert "InputVersionGone" in result.stderr and "version 0" in result.stderr
    assert "retention" in result.stderr
    assert not (tmp_path / "gone").exists()
