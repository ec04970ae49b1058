"""The MLflow model registry: versions with lineage tags (checked with MLflow's own client),
references by alias / version / name, promotion, and the feature-contract refusal.

No engine is needed: the artifacts here are small files; trained models are registered in
tests/test_training.py and by the pipeline tests."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
from mlflow import MlflowClient

from engine.conf import RegistryConf, load_conf
from engine.errors import ConfError, ModelMismatch
from engine.features.definitions import definition_hash, load_feature_set
from engine.training import TrainedModel
from engine.training.contract import feature_fingerprints
from engine.training.registry import ModelRef, Registry, default_uris, parse_model_ref

FEATURE_YAML = {"name": "activity", "entity": "customer_id", "timestamp": "event_time",
                "aggregations": [{"column": "amount", "functions": ["count", "sum"], "windows": ["7d", "30d"]}]}


def trained(tmp_path: Path, n: int, auc: float = 0.8) -> TrainedModel:
    artifact = tmp_path / f"trained-{n}" / "model.mojo"
    artifact.parent.mkdir(parents=True)
    artifact.write_bytes(b"mojo bytes %d" % n)
    return TrainedModel(model_id=f"h2o_gbm-{n}", algorithm="h2o_gbm",
                        features=tuple(load_feature_set(FEATURE_YAML).feature_names()), label="churned",
                        metrics={"auc": auc, "logloss": 0.3}, artifact=artifact, kind="mojo",
                        params={"ntrees": 20, "seed": 42},
                        created_at=datetime(2025, 6, n, tzinfo=timezone.utc))


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> tuple[str, str]:
    """One SQLite store for the module (creating its tables takes seconds)."""
    return default_uris(RegistryConf(), str(tmp_path_factory.mktemp("lake")))


@pytest.fixture
def registry(store, request) -> Registry:
    """A registry whose default model name is unique to the test."""
    name = "m_" + request.node.name.split("[")[0].removeprefix("test_")[:40]
    return Registry(*store, experiment=name, default_name=name)


def register(registry: Registry, tmp_path: Path, n: int, **kwargs):
    definition = load_feature_set(FEATURE_YAML)
    return registry.register(trained(tmp_path, n), feature_hash=definition_hash(definition),
                             training_table="/lake/tables/training_set", training_version=n + 2,
                             run_id=f"run-{n}", engine="dask", git_commit="abc123",
                             validation_ids=[f"val-{n}a", f"val-{n}b"],
                             feature_fingerprints=feature_fingerprints(definition), **kwargs)


def test_default_registry_is_a_sqlite_file_and_artifact_dir_under_the_lakehouse(tmp_path):
    tracking, artifacts = default_uris(RegistryConf(), str(tmp_path / "lake"))
    assert tracking == f"sqlite:///{tmp_path}/lake/registry/mlflow.db"
    assert artifacts == (tmp_path / "lake" / "registry" / "artifacts").as_uri()
    assert default_uris(RegistryConf(tracking_uri="http://mlflow:5000"), "s3://bucket/lake") == (
        "http://mlflow:5000", "s3://bucket/lake/registry/artifacts")
    with pytest.raises(ConfError, match="registry.tracking_uri is not set .* s3://bucket/lake"):
        default_uris(RegistryConf(), "s3://bucket/lake")


def test_mlflow_client_lists_versions_with_lineage_tags_params_metrics_and_artifact(registry, tmp_path):
    first = register(registry, tmp_path, 1)
    second = register(registry, tmp_path, 2)
    assert (first.version, second.version) == (1, 2)

    client = MlflowClient(tracking_uri=registry.tracking_uri, registry_uri=registry.tracking_uri)
    versions = sorted(client.search_model_versions(f"name='{registry.default_name}'"),
                      key=lambda v: int(v.version))
    assert [int(v.version) for v in versions] == [1, 2]
    tags = versions[1].tags
    definition = load_feature_set(FEATURE_YAML)
    assert tags["lakescore.training_table"] == "/lake/tables/training_set"
    assert tags["lakescore.training_version"] == "4"
    assert tags["lakescore.feature_hash"] == definition_hash(definition)
    assert json.loads(tags["lakescore.validation_ids"]) == ["val-2a", "val-2b"]
    assert tags["lakescore.git_commit"] == "abc123" and tags["lakescore.engine"] == "dask"
    assert tags["lakescore.algorithm"] == "h2o_gbm"
    run = client.get_run(versions[1].run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params == {"ntrees": "20", "seed": "42"}
    assert run.data.metrics == {"auc": 0.8, "logloss": 0.3}
    assert run.data.tags["lakescore.feature_hash"] == definition_hash(definition)
    assert [a.path for a in client.list_artifacts(run.info.run_id, "model")] == ["model/model.mojo"]
    assert second.artifact_path.read_bytes() == b"mojo bytes 2"


def test_references_by_version_name_latest_and_alias(registry, tmp_path):
    register(registry, tmp_path, 1)
    register(registry, tmp_path, 2)
    name = registry.default_name
    assert registry.resolve(f"{name}/1").version == 1
    assert registry.resolve(name).version == 2
    assert registry.resolve("latest").version == 2
    promoted = registry.set_alias(f"{name}/1", "champion")
    assert promoted.version == 1 and promoted.aliases == ("champion",)
    assert registry.resolve(f"{name}@champion").artifact_path.read_bytes() == b"mojo bytes 1"
    registry.set_alias(f"{name}/2", "champion")  # moving an alias
    assert registry.resolve(f"{name}@champion").version == 2


def test_unknown_alias_version_and_model_are_conf_errors_listing_what_exists(registry, tmp_path):
    name = registry.default_name
    with pytest.raises(ConfError, match=f"no registered model '{name}' .* run the train job first"):
        registry.resolve("latest")
    register(registry, tmp_path, 1)
    register(registry, tmp_path, 2)
    registry.set_alias(f"{name}/2", "champion")
    with pytest.raises(ConfError, match=r"has no alias 'challenger' \(aliases: champion→v2\).*jobs.promote"):
        registry.resolve(f"{name}@challenger")
    with pytest.raises(ConfError, match=r"has no version 7 \(versions, newest first: 2, 1\)"):
        registry.resolve(f"{name}/7")
    with pytest.raises(ConfError, match=f"no registered model 'other' .*registered: .*{name}"):
        registry.resolve("other@champion")


@pytest.mark.parametrize("text", ["churn@", "churn/0", "churn/x", "@champion", "a b", "churn@v-1"])
def test_malformed_references_are_conf_errors_showing_the_forms(text):
    with pytest.raises(ConfError, match="name@alias .* name/version"):
        parse_model_ref(text, "churn")


def test_reference_forms_parse():
    assert parse_model_ref("churn@champion", "x") == ModelRef("churn", alias="champion")
    assert parse_model_ref("churn/12", "x") == ModelRef("churn", version=12)
    assert parse_model_ref("latest", "churn") == ModelRef("churn")


def test_a_failure_while_logging_marks_the_run_failed_and_registers_nothing(registry, tmp_path):
    broken = trained(tmp_path, 1)
    broken.artifact.unlink()
    with pytest.raises(Exception):
        registry.register(broken, feature_hash="h", training_table="t", training_version=0,
                          run_id="r", engine="spark")
    client = registry.client
    runs = client.search_runs([registry._experiment_id()])
    assert [r.info.status for r in runs] == ["FAILED"]
    assert registry.versions(registry.default_name) == []


def test_promote_job_sets_and_moves_an_alias(tmp_path, capsys):
    from jobs.promote import main

    lake = tmp_path / "lake"
    registry = Registry(*default_uris(RegistryConf(), str(lake)))
    register(registry, tmp_path, 1)
    register(registry, tmp_path, 2)
    args = ["--conf", "conf/test.yaml", "--set", f"lakehouse={lake}"]
    assert main([*args, "--model", "churn/1", "--alias", "challenger"]) == 0
    assert "churn@challenger: unset -> v1" in capsys.readouterr().out
    assert main([*args, "--model", "churn/2", "--alias", "challenger"]) == 0
    assert "churn@challenger: v1 -> v2" in capsys.readouterr().out
    assert registry.aliases("churn") == {"challenger": 2}
    assert main([*args, "--model", "churn/9"]) == 2


def test_a_model_whose_features_are_defined_differently_is_refused_naming_them(registry, tmp_path):
    from engine.pipeline import check_model_fits

    model = register(registry, tmp_path, 1)
    same = load_feature_set(FEATURE_YAML)
    check_model_fits(model, same)  # fits: nothing raised
    changed = load_feature_set({**FEATURE_YAML, "aggregations": [
        {"column": "amount", "functions": ["count"], "windows": ["7d"]},
        {"column": "amount", "functions": ["sum"], "windows": ["7d"]},
        {"column": "amount", "functions": ["mean"], "windows": ["7d"]}]})
    # amount_count_7d and amount_sum_7d are unchanged; the 30-day ones are gone, a mean is new.
    with pytest.raises(ModelMismatch, match=r"/1 .*only in the model: amount_count_30d, amount_sum_30d; "
                                            r"only in the definition: amount_mean_7d"):
        check_model_fits(model, changed)
    renamed_entity = load_feature_set({**FEATURE_YAML, "entity": "account_id"})
    with pytest.raises(ModelMismatch, match=r"defined differently now: amount_count_7d, amount_count_30d, amount_sum_7d, amount_sum_30d\."):
        check_model_fits(model, renamed_entity)


def test_conf_accepts_a_registry_section_and_rejects_unknown_keys(tmp_path):
    conf = load_conf("conf/test.yaml", overrides=["registry.model_name=fraud",
                                                  "score.challenger=fraud@challenger"])
    assert conf.registry.model_name == "fraud" and conf.score.challenger == "fraud@challenger"
    with pytest.raises(ConfError, match="registry: unknown key"):
        load_conf("conf/test.yaml", overrides=["registry.uri=x"])
