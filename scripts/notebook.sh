#!/usr/bin/env bash
# JupyterLab for lakescore's notebooks: an optional extra (requirements-notebook.txt), installed
# into .venv on first use, never part of the runtime image. Listens on 127.0.0.1 only, with a
# token (TOKEN, default random; PORT, default 8888).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
if ! $PY -c "import jupyterlab" 2>/dev/null; then
  echo "[notebook] installing JupyterLab (requirements-notebook.txt) into .venv"
  $PY -m pip install -q --disable-pip-version-check -r requirements-notebook.txt -c constraints.txt
fi
source build/env.sh
export SPARK_LOCAL_IP=127.0.0.1 PYSPARK_PYTHON=$PWD/$PY PYSPARK_DRIVER_PYTHON=$PWD/$PY
TOKEN=${TOKEN:-$($PY -c 'import secrets; print(secrets.token_hex(24))')}
PORT=${PORT:-8888}
ROOT_FLAG=""; [ "$(id -u)" -eq 0 ] && ROOT_FLAG=--allow-root  # containers and CI run as root
echo "[notebook] JupyterLab at http://127.0.0.1:$PORT/lab?token=$TOKEN"
exec $PY -m jupyter lab --ip 127.0.0.1 --port "$PORT" --no-browser --ServerApp.port_retries=0 \
  --IdentityProvider.token="$TOKEN" --ServerApp.root_dir="$PWD" --ServerApp.open_browser=False $ROOT_FLAG
