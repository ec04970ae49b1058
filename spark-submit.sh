#!/usr/bin/env bash
# Run a lakescore job with the spark-submit that ships with pyspark, the venv's Python on driver
# and workers, and the MOJO scoring jars on the classpath:
#   ./spark-submit.sh [spark-submit options] jobs/<job>.py --conf conf/<file>.yaml [job options]
# Spark options (--master, --driver-memory, --conf spark.x=y, --jars) go before the job file.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
[ -f "$here/build/env.sh" ] || { echo "run 'make setup' first" >&2; exit 1; }
source "$here/build/env.sh"
py="$here/.venv/bin/python"
export PYSPARK_PYTHON="$py" PYSPARK_DRIVER_PYTHON="$py" SPARK_LOCAL_IP="${SPARK_LOCAL_IP:-127.0.0.1}"
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}" LAKESCORE_HOME="$here"
spark_home="$("$py" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')"
export SPARK_HOME="$spark_home"
jars="$here/build/jars/lakescore-scorer.jar,$here/build/jars/h2o-genmodel.jar"
if [ -n "${LAKESCORE_DELTA_JARS:-}" ]; then jars="$jars,$LAKESCORE_DELTA_JARS"; fi
# Ship the engine package to executors on a cluster (a no-op cost locally). In the container
# image there is no checkout: lakescore is installed from its wheel on every pod.
py_files=()
if [ -d "$here/engine" ]; then
  (cd "$here" && "$py" -c 'import shutil; shutil.make_archive("build/engine", "zip", ".", "engine")')
  py_files=(--py-files "$here/build/engine.zip")
fi
exec "$spark_home/bin/spark-submit" \
  --conf spark.sql.session.timeZone=UTC \
  --conf spark.driver.host=127.0.0.1 \
  --jars "$jars" \
  "${py_files[@]}" \
  "$@"
