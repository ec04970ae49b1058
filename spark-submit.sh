#!/usr/bin/env bash
# Run a lakescore job with the spark-submit that ships with pyspark, the venv's Python on driver
# and workers, and the MOJO scoring jars on the classpath:
#   ./spark-submit.sh [spark-submit options] jobs/<job>.py --conf conf/<file>.yaml [job options]
# Spark options (--master, --driver-memory, --conf spark.x=y, --jars) go before the job file.
# LAKESCORE_VENV names the venv (and so the pyspark) to run with: .venv (`make setup`, the main
# pins) unless set, e.g. build/venv-spark40 for the version matrix's second set.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
[ -f "$here/build/env.sh" ] || { echo "run 'make setup' first" >&2; exit 1; }
# A JAVA_HOME of the caller's wins over the one `make setup` found; either way it is checked
# here (Java 17: Spark 4 needs >= 17, H2O <= 17) and named, so a broken one is exit 7 with
# what was found instead of spark-class's own error.
user_java_home="${JAVA_HOME:-}"
source "$here/build/env.sh"
if [ -n "$user_java_home" ]; then
  java_source="your JAVA_HOME"
  export JAVA_HOME="$user_java_home" PATH="$user_java_home/bin:$PATH"
else
  java_source="build/env.sh (make setup)"
fi
java_bin="$JAVA_HOME/bin/java"
if [ ! -x "$java_bin" ]; then
  echo "spark-submit.sh: EnvironmentProblem: no executable $java_bin (JAVA_HOME=$JAVA_HOME from $java_source); set JAVA_HOME to a Java 17 or unset it to use make setup's" >&2
  exit 7
fi
java_version="$("$java_bin" -version 2>&1 | sed -n 's/.*version "\([^"]*\)".*/\1/p' | head -1)"
if [ "${java_version%%.*}" != "17" ]; then
  echo "spark-submit.sh: EnvironmentProblem: Java 17 is needed, found '${java_version:-unknown}' at $java_bin (JAVA_HOME from $java_source)" >&2
  exit 7
fi
echo "spark-submit.sh: Java $java_version at $JAVA_HOME (from $java_source)" >&2
venv="${LAKESCORE_VENV:-$here/.venv}"
py="$venv/bin/python"
if [ ! -x "$py" ]; then
  echo "spark-submit.sh: EnvironmentProblem: no executable $py (LAKESCORE_VENV=${LAKESCORE_VENV:-unset}); run 'make setup' or point LAKESCORE_VENV at a venv with lakescore's requirements" >&2
  exit 7
fi
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
