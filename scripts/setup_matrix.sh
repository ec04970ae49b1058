#!/usr/bin/env bash
# The version matrix's second environment: build/venv-spark40, the main pins with Spark 4.0.x
# (constraints-spark40.txt), and its own scoring jar compiled against that Spark. Skipped when
# up to date. Run by .ci/run (scripts/test_matrix.sh) after the main suite.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
ENV=build/venv-spark40
step() { printf '[matrix] %s\n' "$*"; }
[ -f build/env.sh ] || bash scripts/setup.sh
source build/env.sh
stamp=$ENV/.lakescore-installed
if [ ! -f "$stamp" ] || [ requirements.txt -nt "$stamp" ] || [ constraints-spark40.txt -nt "$stamp" ]; then
  [ -x $ENV/bin/python ] || { step "creating $ENV with $PY"; "$PY" -m venv $ENV; }
  step "installing the Spark 4.0 set into $ENV (constraints-spark40.txt)"
  # requirements.txt pins the main Spark; the second set's pin comes from its constraints.
  sed 's/^pyspark==.*/pyspark/' requirements.txt > build/requirements-spark40.txt
  $ENV/bin/python -m pip install -q --disable-pip-version-check -r build/requirements-spark40.txt \
    -c constraints-spark40.txt
  site=$($ENV/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  echo "$PWD" > "$site/lakescore.pth"
  touch "$stamp"
else
  step "$ENV up to date"
fi
step "$($ENV/bin/python -c 'import pyspark, pandas, numpy, pyarrow; print(f"pyspark {pyspark.__version__}, pandas {pandas.__version__}, numpy {numpy.__version__}, pyarrow {pyarrow.__version__}")')"
