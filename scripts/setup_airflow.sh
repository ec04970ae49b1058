#!/usr/bin/env bash
# Apache Airflow in its own virtualenv under build/airflow-venv, for testing deploy/airflow's DAG.
# Airflow is heavy (~150 packages, ~800 MB) and pins its own dependency tree, so it stays out of
# lakescore's .venv; its tasks call lakescore through the project's own entry points instead.
# Skipped when the venv is already installed from the current deploy/airflow/constraints.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
VENV=build/airflow-venv
stamp=$VENV/.lakescore-installed
pins=deploy/airflow/constraints.txt
if [ -f "$stamp" ] && [ "$stamp" -nt "$pins" ]; then
  printf '[setup] Airflow venv up to date (%s)\n' "$VENV"
  exit 0
fi
printf '[setup] installing Apache Airflow into %s (about 4 minutes on a fresh machine)\n' "$VENV"
start=$(date +%s)
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check \
  -r deploy/airflow/requirements.txt -c "$pins"
touch "$stamp"
printf '[setup] Airflow installed in %ss\n' "$(( $(date +%s) - start ))"
