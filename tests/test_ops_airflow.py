"""The Airflow DAG (deploy/airflow/lakescore_dag.py) with Apache Airflow 3 from its own venv
(build/airflow-venv, `make setup-ops` installs it): it parses with no import errors, names only files
that exist, and `dag.test()` runs the local variant (spark-submit on this machine) end to end on
the test-size demo data, every task a real lakescore job."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from deltalake import DeltaTable

REPO = Path(__file__).resolve().parents[1]
AIRFLOW_PY = REPO / "build" / "airflow-venv" / "bin" / "python"
pytestmark = pytest.mark.slow

INSPECT = r"""
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
dag = bag.dags.get("lakescore")
out = {"errors": {k: str(v) for k, v in bag.import_errors.items()}}
if dag is not None:
    out.update(max_active_runs=dag.max_active_runs, schedule=str(dag.schedule),
               tasks={t.task_id: {"upstream": sorted(t.upstream_task_ids), "retries": t.retries,
                                  "trigger_rule": str(t.trigger_rule), "type": type(t).__name__,
                                  "command": getattr(t, "bash_command", None),
                                  "pod_template_file": getattr(t, "pod_template_file", None),
                                  "image": getattr(t, "image", None),
                                  "template_fields": list(t.template_fields)}
                      for t in dag.tasks})
print("JSON" + json.dumps(out))
"""

RUN = r"""
import sys
from datetime import datetime, timezone
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
assert not bag.import_errors, bag.import_errors
dag = bag.dags["lakescore"]
run = dag.test(logical_date=datetime(2026, 12, 7, 2, tzinfo=timezone.utc), run_conf={"train": "always"})
print("STATE", run.state)
from airflow.models import TaskInstance
from airflow.utils.session import create_session
with create_session() as session:
    for ti in session.query(TaskInstance).filter(TaskInstance.dag_id == "lakescore",
                                                 TaskInstance.run_id == run.run_id):
        print("TASK", ti.task_id, ti.state)
"""


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory) -> Path:
    """One Airflow home (SQLite metadata database) for the module: migrating it takes a while."""
    return tmp_path_factory.mktemp("airflow")


def airflow(script: str, home: Path, env: dict[str, str], timeout: int = 1500) -> subprocess.CompletedProcess:
    if not AIRFLOW_PY.exists():
        pytest.fail(f"{AIRFLOW_PY} is missing: run `make setup-ops` (scripts/setup_airflow.sh)")
    full = dict(os.environ, AIRFLOW_HOME=str(home), AIRFLOW__CORE__DAGS_FOLDER=str(REPO / "deploy" / "airflow"),
                AIRFLOW__CORE__LOAD_EXAMPLES="False", AIRFLOW__LOGGING__LOGGING_LEVEL="WARNING",
                SPARK_LOCAL_IP="127.0.0.1", **env)
    if not (home / "airflow.db").exists():
        migrated = subprocess.run([str(AIRFLOW_PY), "-m", "airflow", "db", "migrate"], env=full,
                                  capture_output=True, text=True, timeout=600)
        assert migrated.returncode == 0, migrated.stderr[-3000:]
    return subprocess.run([str(AIRFLOW_PY), "-c", script, str(REPO / "deploy" / "airflow")], env=full,
                          capture_output=True, text=True, timeout=timeout, cwd=home)


def inspect(home: Path, **env: str) -> dict:
    result = airflow(INSPECT, home, env)
    assert result.returncode == 0, result.stderr[-3000:]
    (line,) = [l for l in result.stdout.splitlines() if l.startswith("JSON")]
    return json.loads(line[4:])


def test_dag_parses_in_airflow_with_its_chain_retries_and_one_active_run(airflow_home):
    found = inspect(airflow_home)
    assert found["errors"] == {}
    tasks = found["tasks"]
    assert set(tasks) == {"features", "validate", "training_day", "train", "score", "maintain"}
    assert tasks["validate"]["upstream"] == ["features"]
    assert tasks["train"]["upstream"] == ["training_day"]
    assert tasks["score"]["upstream"] == ["train", "validate"] and tasks["score"]["trigger_rule"] == "none_failed"
    assert tasks["maintain"]["upstream"] == ["score"]
    assert found["max_active_runs"] == 1 and all(t["retries"] == 2 for t in tasks.values())
    for task_id in ("features", "validate", "train", "score", "maintain"):
        command = tasks[task_id]["command"]
        assert "--run-id {{ lakescore_run_id(run_id) }}" in command, command
    assert tasks["score"]["command"].startswith("./spark-submit.sh jobs/score.py")


def test_kubernetes_variant_names_the_image_and_a_pod_template_that_exist(airflow_home):
    """Airflow only logs a missing template file (import_errors stays empty), so the files the
    DAG names are checked here."""
    found = inspect(airflow_home, LAKESCORE_RUNNER="kubernetes")
    assert found["errors"] == {}
    for task_id in ("features", "validate", "train", "score", "maintain"):
        task = found["tasks"][task_id]
        assert task["type"] == "KubernetesPodOperator"
        assert Path(task["pod_template_file"]).is_file(), task["pod_template_file"]
        assert task["image"] == "ghcr.io/lakescore/lakescore:0.1.0"
    for task in found["tasks"].values():
        if task["command"]:
            script = task["command"].split()[1]
            assert (REPO / script).exists() or script.startswith("-m"), script


@pytest.mark.timeout(1800)  # five jobs, each a JVM (and H2O for train): ~14 min on a loaded 2-core machine
def test_dag_test_runs_the_local_variant_end_to_end_on_the_test_data(tmp_path, airflow_home):
    lakehouse = tmp_path / "lake"
    env = dict(os.environ, SPARK_LOCAL_IP="127.0.0.1", PYSPARK_PYTHON=sys.executable,
               PYSPARK_DRIVER_PYTHON=sys.executable)
    generated = subprocess.run([sys.executable, "-m", "jobs.generate", "--conf", "conf/test.yaml",
                                "--set", f"lakehouse={lakehouse}"], cwd=REPO, env=env,
                               capture_output=True, text=True, timeout=600)
    assert generated.returncode == 0, generated.stderr[-3000:]
    port = os.environ.get("LAKESCORE_TEST_JOB_H2O_PORT", "54371")
    overrides = (f"lakehouse={lakehouse} h2o.port={port} spark.show_progress=false "
                 "dask.show_progress=false openlineage.transport=file")
    result = airflow(RUN, airflow_home, {"LAKESCORE_HOME": str(REPO), "LAKESCORE_CONF": "conf/test.yaml",
                                     "LAKESCORE_SET": overrides})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    states = dict(line.split()[1:] for line in result.stdout.splitlines() if line.startswith("TASK"))
    assert "STATE success" in result.stdout, result.stdout[-3000:] + result.stderr[-6000:]
    assert states == {t: "success" for t in ("features", "validate", "training_day", "train", "score", "maintain")}
    # the Spark jobs ran through ./spark-submit.sh (local master): one feature row per label,
    # one score per row to score
    training = DeltaTable(str(lakehouse / "tables" / "training_set")).to_pandas()
    assert len(training) == len(DeltaTable(str(lakehouse / "tables" / "labels")).to_pandas())
    scores = DeltaTable(str(lakehouse / "tables" / "scores")).to_pandas()
    to_score = DeltaTable(str(lakehouse / "tables" / "to_score")).to_pandas()
    assert len(scores) == len(to_score) and scores["run_id"].nunique() == 1
    # every task ran with the DAG run's one lakescore run id, and named its Airflow task as parent
    events = [json.loads(l) for l in (lakehouse / "openlineage" / "events.jsonl").read_text().splitlines()]
    run_ids = {t["value"] for e in events for t in e["run"]["facets"]["tags"]["tags"] if t["key"] == "lakescore_run_id"}
    assert run_ids == {scores["run_id"].iloc[0]}
    assert {e["job"]["name"] for e in events} == {"features", "validate", "train", "score", "maintain"}
    assert {e["run"]["facets"]["parent"]["job"]["name"] for e in events} == \
        {f"lakescore.{t}" for t in ("features", "validate", "train", "score", "maintain")}
