#!/usr/bin/env bash
# Build build/jars/lakescore-scorer.jar (java/src, compiled against H2O's genmodel and pyspark's
# jars) and extract H2O's official slim build/jars/h2o-genmodel.jar from the h2o wheel's h2o.jar.
# Skips when the jar is newer than every source.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-.venv/bin/python}
out=build/jars
jar_file=$out/lakescore-scorer.jar
mkdir -p "$out"
command -v javac >/dev/null 2>&1 || { echo "[scorer] error: javac not found; install openjdk-17-jdk-headless" >&2; exit 1; }
if [ -f "$jar_file" ] && [ -f "$out/h2o-genmodel.jar" ] && [ -z "$(find java/src -newer "$jar_file" -name '*.java')" ]; then
  echo "[scorer] $jar_file up to date"
  exit 0
fi
echo "[scorer] extracting h2o-genmodel.jar from the h2o wheel"
"$PY" - "$out/h2o-genmodel.jar" <<'PYEOF'
import os, sys, zipfile
import h2o
h2o_jar = os.path.join(os.path.dirname(h2o.__file__), "backend", "bin", "h2o.jar")
with zipfile.ZipFile(h2o_jar) as z, open(sys.argv[1], "wb") as f:
    f.write(z.read("www/3/h2o-genmodel.jar"))
PYEOF
spark_jars="$("$PY" -c 'import os, pyspark; print(os.path.join(os.path.dirname(pyspark.__file__), "jars"))')"
classes=$(mktemp -d)
trap 'rm -rf "$classes"' EXIT
echo "[scorer] compiling java/src with javac --release 17"
javac --release 17 -nowarn -d "$classes" -cp "$out/h2o-genmodel.jar:$spark_jars/*" $(find java/src -name '*.java')
jar cf "$jar_file.tmp" -C "$classes" .
mv "$jar_file.tmp" "$jar_file"
echo "[scorer] built $jar_file"
