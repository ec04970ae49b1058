# lakescore: `make demo` runs the whole pipeline on Spark and Dask; `make test` runs the tests.
# Both set everything up first (Java 17, .venv, the scoring jar), skipping what is done.
SHELL := /bin/bash
PY := .venv/bin/python
ENV := source build/env.sh && export SPARK_LOCAL_IP=127.0.0.1 PYSPARK_PYTHON=$(CURDIR)/$(PY) PYSPARK_DRIVER_PYTHON=$(CURDIR)/$(PY)
CONF ?= conf/demo.yaml

.PHONY: setup setup-ops demo test test-fast bench scale chaos lock clean clean-lakehouse notebook

setup:
	@bash scripts/setup.sh

# what the tests need besides .venv: pushgateway, promtool, CRDs, Airflow's venv, the clusters' env
setup-ops:
	@bash scripts/setup_ops.sh

# ARGS: more options for the job, e.g. ARGS="--set metrics.pushgateway=127.0.0.1:9091 --set openlineage.transport=file"
demo: setup
	@$(ENV) && $(PY) -m jobs.pipeline --conf $(CONF) $(ARGS)

test: setup-ops
	@$(ENV) && $(PY) -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder --durations=30

test-fast: setup-ops
	@$(ENV) && $(PY) -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder -m "not slow"

# The score stage on 50M rows on each engine, within memory (~15 min; ROWS=2000000 for a quick look).
scale: setup
	@$(ENV) && $(PY) bench/scale_scoring.py --rows $${ROWS:-50000000}

# every benchmark, one table of ratios (bench/run.py); BENCH_ARGS="--quick" for a ~3-minute run
bench: setup
	@$(ENV) && $(PY) bench/run.py $(BENCH_ARGS)

# Random SIGKILLs of real jobs on both engines, reruns, every table checked (tests/chaos/chaos.py;
# ~40 cycles, CHAOS_ARGS="--cycles 5" for a shorter run, "--seed S --only K" replays a cycle).
chaos: setup
	@$(ENV) && $(PY) tests/chaos/chaos.py $(CHAOS_ARGS)

# JupyterLab on 127.0.0.1 with a token (PORT=8888, TOKEN=random); an optional extra installed on first use
notebook: setup
	@bash scripts/notebook.sh

lock:
	@$(PY) -m pip freeze --exclude-editable | grep -v '^lakescore' > constraints.txt

clean-lakehouse:
	rm -rf lakehouse

clean: clean-lakehouse
	rm -rf build .venv .pytest_cache
