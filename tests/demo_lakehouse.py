"""The demo run that test_pipeline_e2e and test_reproducible share: `make demo` at test size
(``jobs.pipeline`` on Spark and Dask) with metrics and OpenLineage on and two fake secrets
planted, as run id ``demo-run``.

It is the suite's most expensive run (about two CPU minutes), so it is made once per test
process: conftest's ``demo_run`` fixture is session-scoped and conftest's xdist scheduler hands
both modules to the same process, test_pipeline_e2e first. The e2e tests only read it (their one
write, a score rerun, changes no row); test_reproducible then adds its own runs, appends,
compacts and vacuums.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEMO_RUN = "demo-run"

# Ports apart from the test session's own H2O, so both can run at once (and two checkouts'
# test runs side by side, each with its own LAKESCORE_TEST_JOB_H2O_PORT).
JOB_H2O_PORT = os.environ.get("LAKESCORE_TEST_JOB_H2O_PORT", "54371")

# Fake secrets planted in the demo run (a storage credential in conf, a token in the
# environment): no output of the run may contain them (test_planted_secrets_appear_nowhere).
PLANTED_TOKEN = "tok-e2e-planted-7c1d0b93"
PLANTED_STORAGE_SECRET = "sek-e2e-planted-52aa61fe"


def job(name: str) -> list[str]:
    return [sys.executable, "-m", f"jobs.{name}"]


def command(args: list[str], lakehouse: Path, *extra: str,
            env_extra: dict[str, str] | None = None) -> tuple[list[str], dict[str, str]]:
    """A job's command line on conf/test.yaml in ``lakehouse``, and its environment."""
    env = dict(os.environ, SPARK_LOCAL_IP="127.0.0.1", PYSPARK_PYTHON=sys.executable,
               PYSPARK_DRIVER_PYTHON=sys.executable, **(env_extra or {}))
    cmd = [*args, "--conf", "conf/test.yaml", "--set", f"lakehouse={lakehouse}",
           "--set", f"h2o.port={JOB_H2O_PORT}", "--set", "spark.show_progress=false",
           "--set", "dask.show_progress=false", *extra]
    return cmd, env


def run(args: list[str], lakehouse: Path, *extra: str, timeout: int = 600,
        env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """A job as a process of its own, to its end."""
    cmd, env = command(args, lakehouse, *extra, env_extra=env_extra)
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def start(args: list[str], lakehouse: Path, *extra: str,
          env_extra: dict[str, str] | None = None) -> subprocess.Popen:
    """A job as a process of its own (and its own process group), running."""
    cmd, env = command(args, lakehouse, *extra, env_extra=env_extra)
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)


def run_demo(lakehouse: Path, gateway: str) -> subprocess.CompletedProcess:
    result = run(job("pipeline"), lakehouse, "--run-id", DEMO_RUN,
                 "--set", f"metrics.pushgateway={gateway}", "--set", "openlineage.transport=file",
                 "--set", f"storage_options.AWS_SECRET_ACCESS_KEY={PLANTED_STORAGE_SECRET}",
                 env_extra={"MLFLOW_TRACKING_TOKEN": PLANTED_TOKEN})
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-8000:]
    return result
