#!/usr/bin/env bash
# Set up lakescore on a fresh machine: Java 17 (apt-get when javac is missing), .venv with the
# pinned dependencies, and the MOJO scoring jar. Every step is skipped when already done.
# (`make test` also runs scripts/setup_ops.sh: the operations tests' pushgateway, promtool,
# operator CRDs and Airflow venv, which `make demo` and the container image do not need.)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
mkdir -p build

step() { printf '[setup] %s\n' "$*"; }

# 1. Java 17 (Spark 4 needs >= 17; H2O 3.46 refuses newer than 17).
if ! command -v javac >/dev/null 2>&1 && ! ls -d /usr/lib/jvm/java-17-openjdk-* >/dev/null 2>&1; then
  step "javac not found: installing openjdk-17-jdk-headless with apt-get"
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq openjdk-17-jdk-headless >/dev/null
fi
java_major() { "$1" -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1; }
JAVA_HOME_17=""
if command -v java >/dev/null 2>&1 && [ "$(java_major java)" = "17" ] && command -v javac >/dev/null 2>&1; then
  JAVA_HOME_17=$(dirname "$(dirname "$(readlink -f "$(command -v javac)")")")
else
  for d in /usr/lib/jvm/java-17-openjdk-*; do
    if [ -x "$d/bin/javac" ]; then JAVA_HOME_17=$d; break; fi
  done
fi
if [ -z "$JAVA_HOME_17" ] || [ "$(java_major "$JAVA_HOME_17/bin/java")" != "17" ]; then
  echo "[setup] error: Java 17 with javac is required (found: $(java -version 2>&1 | head -1));" \
       "install openjdk-17-jdk-headless" >&2
  exit 1
fi
echo "export JAVA_HOME=$JAVA_HOME_17" > build/env.sh
echo 'export PATH="$JAVA_HOME/bin:$PATH"' >> build/env.sh
step "Java 17 at $JAVA_HOME_17"
export JAVA_HOME=$JAVA_HOME_17 PATH="$JAVA_HOME_17/bin:$PATH"

# 2. The virtualenv with every dependency pinned by constraints.txt.
if ! command -v "$PY" >/dev/null 2>&1; then
  echo "[setup] error: $PY not found; lakescore needs Python 3.11 (set PYTHON=/path/to/python3.11)" >&2
  exit 1
fi
stamp=.venv/.lakescore-installed
if [ ! -f "$stamp" ] || [ requirements.txt -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  [ -x .venv/bin/python ] || { step "creating .venv with $PY"; "$PY" -m venv .venv; }
  step "installing pinned dependencies into .venv (about 2 minutes on a fresh machine)"
  .venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt -c constraints.txt
  # The repo itself on the venv's path (what an editable install does, without a build step).
  site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  echo "$PWD" > "$site/lakescore.pth"
  touch "$stamp"
else
  step ".venv up to date"
fi

# 3. The MOJO scoring jar (our Java class over H2O's genmodel, compiled against pyspark's jars).
bash scripts/build_scorer.sh .venv/bin/python

step "done"
