"""Conf loading: defaults, merging order, and errors that name the file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.conf import Conf, load_conf
from engine.errors import ConfError


def test_base_conf_loads_with_the_dataclass_defaults():
    conf = load_conf()
    assert conf.engine == "spark"
    assert conf.train.valid_from == "2025-10-01"
    assert conf.validation.training_suites[0].endswith("customer_features.json")


def test_job_file_then_overrides_win_in_that_order(tmp_path):
    job = tmp_path / "job.yaml"
    job.write_text("engine: dask\nspark:\n  shuffle_partitions: 3\n")
    conf = load_conf(job, overrides=["spark.shuffle_partitions=5", "demo.seed=11"])
    assert conf.engine == "dask"
    assert conf.spark.shuffle_partitions == 5
    assert conf.spark.master == "local[*]"  # untouched keys keep the base value
    assert conf.demo.seed == 11


def test_unknown_key_is_rejected_naming_the_file_and_key(tmp_path):
    job = tmp_path / "typo.yaml"
    job.write_text("spark:\n  shufle_partitions: 3\n")
    with pytest.raises(ConfError, match=r"typo\.yaml.*conf\.spark.*shufle_partitions") as err:
        load_conf(job)
    assert "shuffle_partitions" in str(err.value)  # the known keys are listed


def test_wrong_type_is_rejected_with_the_key_path():
    with pytest.raises(ConfError, match=r"conf\.dask\.n_workers: expected int"):
        load_conf(overrides=["dask.n_workers=two"])


def test_unknown_engine_value_is_rejected():
    with pytest.raises(ConfError, match="flink"):
        load_conf(overrides=["engine=flink"])


def test_the_engines_are_the_registrys_alone():
    """conf's engine, the jobs' --engine choices and the backend lookup read one registry."""
    from engine.backend import backend_class, backend_names
    from engine.cli import job_parser
    from engine.conf import BACKENDS

    assert backend_names() == sorted(BACKENDS) == ["dask", "spark"]
    for name in BACKENDS:
        assert load_conf(overrides=[f"engine={name}"]).engine == name
        assert backend_class(name).name == name
    engine_option = next(a for a in job_parser("features")._actions if "--engine" in a.option_strings)
    assert sorted(engine_option.choices) == sorted(BACKENDS)


def test_missing_conf_file_is_a_conf_error():
    with pytest.raises(ConfError, match="does not exist"):
        load_conf("conf/nope.yaml")


def test_relative_paths_resolve_under_the_repo_and_uris_stay():
    conf = Conf(lakehouse="s3://bucket/lake")
    assert conf.lakehouse_path("tables", "x") == "s3://bucket/lake/tables/x"
    assert Conf().resolve("conf/base.yaml").endswith("/conf/base.yaml")


def test_table_layout_reaches_the_table_refs_and_unknown_tables_are_refused():
    from engine.errors import ConfError
    from engine.run_context import RunContext

    conf = load_conf(None, overrides=["layout.scores.partition_by=[score_date]",
                                      "layout.scores.keys=[customer_id,score_date]"])
    table = RunContext.start(conf).table("scores")
    assert table.partition_by == ("score_date",) and table.keys == ("customer_id", "score_date")
    assert RunContext.start(conf).table("events").partition_by == ()
    with pytest.raises(ConfError, match="layout: unknown table.s. scorez"):
        load_conf(None, overrides=["layout.scorez.keys=[a]"])
    with pytest.raises(ConfError, match="layout.scores: unknown key.s. partition"):
        load_conf(None, overrides=["layout.scores.partition=[a]"])


def test_no_job_module_shadows_a_standard_library_module():
    """spark-submit runs jobs/<job>.py as a script, which puts jobs/ first on sys.path: a job
    named like a stdlib module (e.g. profile.py) breaks every job's imports (cProfile)."""
    import sys

    jobs = {p.stem for p in (Path(__file__).resolve().parents[1] / "jobs").glob("*.py")}
    assert not jobs & set(sys.stdlib_module_names)
