#!/usr/bin/env bash
# The version matrix's fast subset on the second set (Spark 4.0.x, build/venv-spark40): storage,
# features (Spark = Dask parity), MOJO scoring and the run manifest. `make test` runs the whole
# suite on the main set (Spark 4.1.x); .ci/run runs both. A few minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_matrix.sh
source build/env.sh
PY=build/venv-spark40/bin/python
export SPARK_LOCAL_IP=127.0.0.1 PYSPARK_PYTHON=$PWD/$PY PYSPARK_DRIVER_PYTHON=$PWD/$PY
SUBSET=${MATRIX_TESTS:-"tests/test_storage.py tests/test_features_parity.py tests/test_scoring.py tests/test_manifest.py"}
echo "[matrix] pytest on $($PY -c 'import pyspark; print("pyspark", pyspark.__version__)'): $SUBSET"
# shellcheck disable=SC2086
$PY -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder -m "not slow" -p no:cacheprovider $SUBSET
