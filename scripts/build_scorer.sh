#!/usr/bin/env bash
# Build build/jars/lakescore-scorer.jar (java/src compiled against H2O's genmodel and pyspark's
# jars) and extract H2O's official slim build/jars/h2o-genmodel.jar from the h2o wheel's h2o.jar.
# Usage: scripts/build_scorer.sh [PYTHON]  (default .venv/bin/python; it must import h2o, pyspark)
# Skips when the jar is newer than every Java source and h2o-genmodel.jar exists.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-.venv/bin/python}
out=build/jars
jar_file=$out/lakescore-scorer.jar
genmodel=$out/h2o-genmodel.jar

if [ -f "$jar_file" ] && [ -f "$genmodel" ] && [ -z "$(find java/src -name '*.java' -newer "$jar_file")" ]; then
  echo "[scorer] $jar_file up to date"
  exit 0
fi
for tool in javac jar; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "[scorer] error: $tool not found on PATH; install a Java 17 JDK (openjdk-17-jdk-headless) or run \`make setup\`" >&2
    exit 1
  }
done
mkdir -p "$out"

echo "[scorer] extracting www/3/h2o-genmodel.jar from the h2o wheel's h2o.jar"
"$PY" - "$genmodel" <<'PYEOF'
import os, sys, zipfile
import h2o
h2o_jar = os.path.join(os.path.dirname(h2o.__file__), "backend", "bin", "h2o.jar")
with zipfile.ZipFile(h2o_jar) as z, open(sys.argv[1] + ".tmp", "wb") as f:
    f.write(z.read("www/3/h2o-genmodel.jar"))
os.replace(sys.argv[1] + ".tmp", sys.argv[1])
PYEOF

spark_jars="$("$PY" -c 'import os, pyspark; print(os.path.join(os.path.dirname(pyspark.__file__), "jars"))')"
classes=$(mktemp -d)
trap 'rm -rf "$classes"' EXIT
echo "[scorer] compiling java/src with javac --release 17"
javac --release 17 -nowarn -d "$classes" -cp "$genmodel:$spark_jars/*" $(find java/src -name '*.java')

echo "[scorer] jarring the classes into $jar_file"
jar cf "$jar_file.tmp" -C "$classes" .
mv "$jar_file.tmp" "$jar_file"
echo "[scorer] built $jar_file"
