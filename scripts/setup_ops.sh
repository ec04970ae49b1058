#!/usr/bin/env bash
# Everything the tests need (`make setup-ops`, run by `make test`): lakescore's .venv
# (scripts/setup.sh) and, beside it, each step skipped when done:
#   1. Prometheus' pushgateway and promtool (Debian packages prometheus-pushgateway, prometheus);
#      installed only, never started as services: the tests start the gateway on a free port.
#   2. The Dask Kubernetes operator's published DaskJob CRD and its license, from the
#      dask-kubernetes wheel on PyPI, under build/crds/ (the SparkApplication schema comes from
#      the operator's kubeflow-spark-api package in .venv).
#   3. Apache Airflow in its own venv (scripts/setup_airflow.sh).
#   4. The test clusters' executors/workers environment: lakescore from its wheel, no checkout
#      (scripts/cluster_env.sh, build/cluster-env).
# .venv and Airflow's venv are installed at the same time (each pip install keeps one core busy:
# on 2 cores from a fresh clone ~3 minutes instead of ~6 one after another; their output is
# interleaved, each line says which it is); the clusters' env is made from .venv once it is done.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
step() { printf '[setup] %s\n' "$*"; }

bash scripts/setup.sh &
main=$!

if ! command -v prometheus-pushgateway >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
  step "installing prometheus-pushgateway and prometheus (promtool) with apt-get"
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  # policy-rc.d-less machines would start the services: the tests need only the binaries.
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    prometheus-pushgateway prometheus >/dev/null
  for service in prometheus prometheus-pushgateway; do
    $SUDO service "$service" stop >/dev/null 2>&1 || true
  done
else
  step "pushgateway and promtool present"
fi

DASK_K8S=2026.3.0
crds=build/crds/dask-kubernetes-$DASK_K8S
if [ ! -f "$crds/daskjob.yaml" ]; then
  step "fetching the DaskJob CRD from the dask-kubernetes $DASK_K8S wheel (PyPI)"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  "$PY" -m pip download -q --disable-pip-version-check --no-deps \
    "dask-kubernetes==$DASK_K8S" -d "$tmp"
  mkdir -p "$crds"
  "$PY" - "$tmp"/dask_kubernetes-*.whl "$crds" <<'PYEOF'
import sys, zipfile
wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    names = z.namelist()
    crd = "dask_kubernetes/operator/deployment/helm/dask-kubernetes-operator/crds/daskjob.yaml"
    license_file = next(n for n in names if n.endswith(".dist-info/licenses/LICENSE") or n.endswith(".dist-info/LICENSE"))
    open(f"{out}/LICENSE", "wb").write(z.read(license_file))
    open(f"{out}/daskjob.yaml.tmp", "wb").write(z.read(crd))
PYEOF
  mv "$crds/daskjob.yaml.tmp" "$crds/daskjob.yaml"
else
  step "DaskJob CRD cached in $crds"
fi

bash scripts/setup_airflow.sh &
airflow=$!
failed=0
if ! wait "$main"; then
  echo "[setup] error: scripts/setup.sh (.venv) failed (its output is above)" >&2
  failed=1
elif ! bash scripts/cluster_env.sh >/dev/null; then
  failed=1
fi
if ! wait "$airflow"; then
  echo "[setup] error: scripts/setup_airflow.sh (Airflow's venv) failed (its output is above)" >&2
  failed=1
fi
exit $failed
