"""lakescore's nightly DAG: features → validate → train (weekly) → score (daily) → maintain.

Each task runs one lakescore job, in one of two ways (``LAKESCORE_RUNNER``):

- ``local``: on the Airflow worker, the Spark jobs through the checkout's ``spark-submit.sh``
  (pyspark's spark-submit with the scorer jars), the others with its venv's Python. The worker
  needs the checkout (``LAKESCORE_HOME``) set up with ``make setup``.
- ``kubernetes``: a pod from lakescore's image per task (KubernetesPodOperator, pod template
  ``pod_template.yaml`` beside this file), conf from the ``lakescore-conf`` ConfigMap and S3
  credentials from the ``lakescore-s3`` Secret (deploy/k8s).

Every task of a DAG run passes the same ``--run-id`` (made from Airflow's run id), so a retried
task reruns with the run id whose commits are already in the tables: lakescore's idempotent
commits make what was written a no-op, and the retry finishes what was not. The task's
OpenLineage job and run go to the job as ``OPENLINEAGE_PARENT_*``: lakescore's events name the
Airflow task as their parent run.

Environment of the scheduler/worker (all optional):
  LAKESCORE_RUNNER   local | kubernetes (default local)
  LAKESCORE_HOME     the checkout, for local (default /opt/lakescore)
  LAKESCORE_VENV     the venv of the local runner's jobs, for local (default .venv in the checkout)
  LAKESCORE_CONF     the job conf, relative to LAKESCORE_HOME or absolute (default
                     /etc/lakescore/cluster.yaml)
  LAKESCORE_ENGINE   spark | dask (default spark)
  LAKESCORE_SET      extra ``key=value`` conf overrides, separated by spaces
  LAKESCORE_IMAGE    the image, for kubernetes (default ghcr.io/lakescore/lakescore:0.1.0)
  LAKESCORE_NAMESPACE  the pods' namespace, for kubernetes (default lakescore)
"""

from __future__ import annotations

import os
import re
import shlex
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

from airflow.sdk import DAG, Param

HERE = Path(__file__).resolve().parent
RUNNER = os.environ.get("LAKESCORE_RUNNER", "local")
HOME = os.environ.get("LAKESCORE_HOME", "/opt/lakescore")
# the venv the local runner's jobs run with (spark-submit.sh reads the same variable)
VENV = os.environ.get("LAKESCORE_VENV", ".venv")
CONF = os.environ.get("LAKESCORE_CONF", "/etc/lakescore/cluster.yaml")
ENGINE = os.environ.get("LAKESCORE_ENGINE", "spark")
OVERRIDES = os.environ.get("LAKESCORE_SET", "").split()
IMAGE = os.environ.get("LAKESCORE_IMAGE", "ghcr.io/lakescore/lakescore:0.1.0")
NAMESPACE = os.environ.get("LAKESCORE_NAMESPACE", "lakescore")
POD_TEMPLATE = HERE / "pod_template.yaml"
OPENLINEAGE_NAMESPACE = "airflow"
TRAINING_WEEKDAY = 0  # Monday: the weekly model is trained before that day's scoring


def lakescore_run_id(airflow_run_id: str) -> str:
    """A lakescore run id from Airflow's (``scheduled__2026-12-06T02:00:00+00:00`` →
    ``scheduled__2026-12-06T020000`` + a short hash): the same for every task and retry of the
    DAG run, and safe in paths and Delta app ids."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "", airflow_run_id.split("+")[0])[:48]
    return f"{safe}-{uuid.uuid5(uuid.NAMESPACE_URL, airflow_run_id).hex[:6]}"


def openlineage_run_id(dag_id: str, task_id: str, airflow_run_id: str, try_number: int) -> str:
    """The Airflow task try's OpenLineage run id (a UUID), the parent of lakescore's run."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"airflow:{dag_id}.{task_id}:{airflow_run_id}:{try_number}"))


def is_training_day(logical_date: datetime, params: dict) -> bool:
    """Train on the weekly training day, or always/never when the run's ``train`` param says so
    (Airflow passes both from the task's context)."""
    mode = params.get("train", "auto")
    if mode in ("always", "never"):
        return mode == "always"
    return logical_date.weekday() == TRAINING_WEEKDAY


JOBS = {
    # task id: (module, arguments, runs on the engine)
    "features": ("features", [], True),
    "validate": ("validate", ["--table", "training_set"], True),
    "train": ("train", [], True),
    "score": ("score", [], True),
    "maintain": ("maintain", [], False),
}
RUN_ID = "{{ lakescore_run_id(run_id) }}"
PARENT_ENV = {
    "OPENLINEAGE_PARENT_JOB_NAMESPACE": OPENLINEAGE_NAMESPACE,
    "OPENLINEAGE_PARENT_JOB_NAME": "{{ dag.dag_id }}.{{ task.task_id }}",
    "OPENLINEAGE_PARENT_RUN_ID": "{{ openlineage_run_id(dag.dag_id, task.task_id, run_id, ti.try_number) }}",
}


def job_arguments(module: str, args: list[str], on_engine: bool, conf: str) -> list[str]:
    """The job's command-line arguments after its entry point (``jobs/<module>.py`` or
    ``-m jobs.<module>``)."""
    out = ["--conf", conf, "--run-id", RUN_ID, *args]
    if on_engine:
        out += ["--engine", ENGINE]
    for item in OVERRIDES:
        out += ["--set", item]
    return out


def local_task(task_id: str, module: str, args: list[str], on_engine: bool):
    """The job on this worker: Spark jobs through spark-submit.sh, the others with the venv."""
    from airflow.providers.standard.operators.bash import BashOperator

    arguments = job_arguments(module, args, on_engine, CONF)
    if on_engine and ENGINE == "spark":
        command = ["./spark-submit.sh", f"jobs/{module}.py", *arguments]
    else:
        command = [f"{VENV}/bin/python", "-m", f"jobs.{module}", *arguments]
    return BashOperator(task_id=task_id, cwd=HOME, env=PARENT_ENV, append_env=True,
                        bash_command=" ".join(shlex.quote(c) if "{{" not in c else c for c in command))


def kubernetes_task(task_id: str, module: str, args: list[str], on_engine: bool):
    """The job in a pod from lakescore's image (the image's conf mount and Secret come from
    the pod template)."""
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

    arguments = job_arguments(module, args, on_engine, CONF)
    return KubernetesPodOperator(
        task_id=task_id, name=f"lakescore-{task_id}", namespace=NAMESPACE, image=IMAGE,
        pod_template_file=str(POD_TEMPLATE), cmds=["python", "-m", f"jobs.{module}"],
        arguments=arguments, env_vars=PARENT_ENV, service_account_name="lakescore",
        get_logs=True, on_finish_action="delete_succeeded_pod")


def build_dag() -> DAG:
    from airflow.providers.standard.operators.python import ShortCircuitOperator

    make = kubernetes_task if RUNNER == "kubernetes" else local_task
    with DAG(
        dag_id="lakescore",
        description="features → validate → train (weekly) → score (daily) → maintain",
        schedule="0 2 * * *",
        start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
        catchup=False,
        max_active_runs=1,
        default_args={"retries": 2, "retry_delay": timedelta(minutes=5), "owner": "mlops"},
        user_defined_macros={"lakescore_run_id": lakescore_run_id,
                             "openlineage_run_id": openlineage_run_id},
        params={"train": Param("auto", enum=["auto", "always", "never"],
                               description="auto: train on Mondays; always/never: this run")},
        tags=["lakescore"],
        doc_md=__doc__,
    ) as dag:
        tasks = {task_id: make(task_id, *spec) for task_id, spec in JOBS.items()}
        training_day = ShortCircuitOperator(
            task_id="training_day", python_callable=is_training_day,
            ignore_downstream_trigger_rules=False)
        # score runs whether train ran or was skipped (not on a training day), never after a failure
        tasks["score"].trigger_rule = "none_failed"
        tasks["features"] >> tasks["validate"] >> training_day >> tasks["train"] >> tasks["score"]
        tasks["validate"] >> tasks["score"] >> tasks["maintain"]
    return dag


dag = build_dag()
