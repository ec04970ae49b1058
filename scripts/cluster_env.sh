#!/usr/bin/env bash
# The Python environment of the test clusters' executors and workers: a venv of its own
# (build/cluster-env) where lakescore is installed from a wheel built from pyproject.toml, so
# executors and workers never import the checkout. Its third-party packages are those of .venv
# (the same constraints.txt pins), copied rather than installed a second time: pip would unpack
# and compile the same ~150 packages again (~2.5 CPU minutes of a fresh clone's set-up); the
# copy leaves out .venv's lakescore.pth (the checkout on the path) and its console scripts (the
# tests start `python -m dask …`). Needs .venv (`make setup`).
# LAKESCORE_VENV picks another source venv (e.g. build/venv-spark40, the version matrix's second
# set): its env is build/cluster-env-<that venv's name>, so the two sets' clusters never mix.
# Usage: scripts/cluster_env.sh   (prints the env's python on its last line)
# Skips what is done: the dependencies when pyproject.toml and the source venv's packages are
# unchanged, the wheel when engine/, jobs/ and pyproject.toml are unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
venv=${LAKESCORE_VENV:-.venv}
venv=${venv%/}
if [ "$(realpath -m "$venv")" = "$(realpath -m .venv)" ]; then
  env_dir=build/cluster-env
else
  env_dir=build/cluster-env-$(basename "$venv")
fi
dist=build/dist
mkdir -p build "$dist"

step() { printf '[cluster-env] %s\n' "$*" >&2; }

source_hash=$(cat pyproject.toml README.md $(find engine jobs -name '*.py' | sort) | sha256sum | cut -c1-16)
if [ ! -f "$venv/.lakescore-installed" ]; then
  echo "[cluster-env] error: $venv is not set up; run \`make setup\` first (or scripts/setup_matrix.sh for build/venv-spark40)" >&2
  exit 1
fi
theirs=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
# the source venv's packages at their versions (the names of its dist-info folders)
deps_hash=$( (cat pyproject.toml; ls "$theirs" | grep '\.dist-info$' | sort) | sha256sum | cut -c1-16)
wheel=$dist/lakescore-0.1.0-py3-none-any.whl

if [ ! -f "$dist/.source-$source_hash" ] || [ ! -f "$wheel" ]; then
  step "building the lakescore wheel from pyproject.toml"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  # A copy of what the wheel holds, so setuptools' build/ and egg-info stay out of the checkout.
  cp -r pyproject.toml README.md engine jobs "$work/"
  find "$work" -name __pycache__ -prune -exec rm -rf {} +
  rm -f "$dist"/lakescore-*.whl "$dist"/.source-*
  "$PY" -m pip wheel -q --disable-pip-version-check --no-deps \
    -w "$dist" "$work" >&2
  touch "$dist/.source-$source_hash"
fi

if [ ! -f "$env_dir/.deps-$deps_hash" ]; then
  step "creating $env_dir: $venv's pinned packages, lakescore from its wheel"
  rm -rf "$env_dir"
  "$PY" -m venv --without-pip "$env_dir"
  ours=$("$env_dir/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  cp -a "$theirs/." "$ours/"
  rm -f "$ours/lakescore.pth"
  "$env_dir/bin/python" -m pip install -q --disable-pip-version-check --no-deps "$wheel" >&2
  "$env_dir/bin/python" -m pip check >&2 || { echo "[cluster-env] error: pip check failed in $env_dir" >&2; exit 1; }
  touch "$env_dir/.deps-$deps_hash" "$env_dir/.source-$source_hash"
fi
if [ ! -f "$env_dir/.source-$source_hash" ]; then
  step "installing the new lakescore wheel into $env_dir"
  "$env_dir/bin/python" -m pip install -q --disable-pip-version-check --no-deps --force-reinstall "$wheel" >&2
  rm -f "$env_dir"/.source-*
  touch "$env_dir/.source-$source_hash"
fi
echo "$PWD/$env_dir/bin/python"
