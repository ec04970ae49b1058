"""The model registry: MLflow tracking runs and registered model versions.

Each trained model is one MLflow run (its parameters, metrics, the MOJO or the MLlib pipeline
directory and the evaluation files as artifacts) and one version of a registered model, whose
tags say what it was trained on: the training set's Delta table and version, the feature
definition's hash and feature list, the validation results that gated the training set, the
code version (git commit) and the engine. The MOJO is logged as a plain artifact, not with
``mlflow.h2o`` (that flavour stores H2O binary models, which need a running H2O of the same
version to load); our scorers read it directly.

By default the tracking and registry store is a SQLite file under the lakehouse and artifacts
live beside it, so a lakehouse carries its own registry; ``registry.tracking_uri`` points a team
at its MLflow server instead. Aliases (``champion``, ``challenger``) select versions (MLflow's
stages are deprecated). A reference in conf is ``name@alias``, ``name/version``, a model name
(its newest version) or ``latest`` (the newest version of ``registry.model_name``).
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import ConfError
from engine.training import TrainedModel

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from engine.conf import RegistryConf

log = logging.getLogger(__name__)

LATEST = "latest"
ARTIFACT_DIR = "model"
TAG = "lakescore."
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_ALIAS = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class ModelRef:
    """A parsed model reference: exactly one of ``alias`` and ``version`` or neither (newest)."""

    name: str
    alias: str | None = None
    version: int | None = None

    def __str__(self) -> str:
        if self.alias:
            return f"{self.name}@{self.alias}"
        return f"{self.name}/{self.version}" if self.version is not None else self.name


def parse_model_ref(text: str, default_name: str) -> ModelRef:
    """``name@alias``, ``name/version``, ``name`` or ``latest`` (→ ``default_name``'s newest).

    Raises ``ConfError`` for anything else, showing the accepted forms."""
    text = text.strip()
    forms = "use name@alias (e.g. churn@champion), name/version (e.g. churn/3), a name, or latest"
    if text == LATEST:
        return ModelRef(default_name)
    if "@" in text:
        name, alias = text.split("@", 1)
        if _NAME.match(name) and _ALIAS.match(alias):
            return ModelRef(name, alias=alias)
    elif "/" in text:
        name, version = text.split("/", 1)
        if _NAME.match(name) and version.isdigit() and int(version) > 0:
            return ModelRef(name, version=int(version))
    elif _NAME.match(text):
        return ModelRef(text)
    raise ConfError(f"model reference {text!r} is not valid; {forms}")


@dataclass(frozen=True)
class ModelRecord:
    """A registered model version as the registry holds it; ``path`` is its local directory
    (the downloaded ``model`` artifact), ``artifact`` the MOJO file or pipeline directory in it."""

    name: str
    version: int
    mlflow_run_id: str
    algorithm: str
    kind: str
    task: str
    features: tuple[str, ...]
    label: str
    feature_hash: str
    training_table: str
    training_version: int
    metrics: dict[str, float]
    created_at: str
    run_id: str
    engine: str
    artifact: str
    path: Path
    git_commit: str = "unknown"
    params: dict[str, Any] = field(default_factory=dict)
    validation_ids: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    feature_fingerprints: dict[str, str] = field(default_factory=dict)

    @property
    def model_id(self) -> str:
        """``name/version``: how scores rows and messages name the model."""
        return f"{self.name}/{self.version}"

    @property
    def artifact_path(self) -> Path:
        """Absolute local path of the MOJO file or MLlib pipeline directory."""
        return self.path / self.artifact


def default_uris(conf: RegistryConf, lakehouse: str) -> tuple[str, str]:
    """(tracking URI, artifact location): conf's, else a SQLite file and a directory under a
    local lakehouse. A lakehouse on an object store has no local file for SQLite: ``ConfError``
    asking for ``registry.tracking_uri``."""
    if conf.tracking_uri:
        tracking = conf.tracking_uri
    elif "://" in lakehouse and not lakehouse.startswith("file://"):
        raise ConfError(f"registry.tracking_uri is not set and the lakehouse {lakehouse} is not a "
                        "local directory, so no SQLite registry can live in it; set "
                        "registry.tracking_uri to your MLflow server (e.g. http://mlflow:5000)")
    else:
        root = Path(lakehouse.removeprefix("file://")) / "registry"
        root.mkdir(parents=True, exist_ok=True)
        tracking = f"sqlite:///{root.resolve()}/mlflow.db"
    if conf.artifact_location:
        artifacts = conf.artifact_location
    elif "://" in lakehouse and not lakehouse.startswith("file://"):
        artifacts = lakehouse.rstrip("/") + "/registry/artifacts"
    else:
        artifacts = (Path(lakehouse.removeprefix("file://")) / "registry" / "artifacts").resolve().as_uri()
    return tracking, artifacts


def s3_artifact_environment(storage_options: Mapping[str, str]) -> None:
    """MLflow's S3 artifact store (boto3) reads its credentials and endpoint from the
    environment: give it the lakehouse's ``storage_options`` (AWS_*), so the MOJO lands beside
    the tables with the same identity. Variables already set in the environment win."""
    opts = {k.upper(): str(v) for k, v in storage_options.items()}
    pairs = {"AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY",
             "AWS_SESSION_TOKEN": "AWS_SESSION_TOKEN", "AWS_REGION": "AWS_DEFAULT_REGION",
             "AWS_ENDPOINT_URL": "MLFLOW_S3_ENDPOINT_URL"}
    for option, variable in pairs.items():
        if opts.get(option):
            os.environ.setdefault(variable, opts[option])


def git_commit(repo: Path) -> str:
    """The checkout's HEAD commit, ``-dirty`` when tracked files differ; ``unknown`` outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def _flat_params(params: Mapping[str, Any]) -> dict[str, str]:
    return {k: (json.dumps(v, sort_keys=True) if isinstance(v, (dict, list, tuple)) else str(v))
            for k, v in params.items()}


class Registry:
    """One MLflow tracking + registry store, and the experiment the train job logs to."""

    def __init__(self, tracking_uri: str, artifact_location: str | None = None,
                 experiment: str = "lakescore", default_name: str = "churn") -> None:
        from mlflow import MlflowClient

        self.tracking_uri = tracking_uri
        self.artifact_location = artifact_location
        self.experiment = experiment
        self.default_name = default_name
        self.client: MlflowClient = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    @classmethod
    def from_conf(cls, conf: RegistryConf, lakehouse: str,
                  storage_options: Mapping[str, str] | None = None) -> Registry:
        tracking, artifacts = default_uris(conf, lakehouse)
        if artifacts.startswith("s3://") and storage_options:
            s3_artifact_environment(storage_options)
        return cls(tracking, artifacts, conf.experiment, conf.model_name)

    def _experiment_id(self) -> str:
        found = self.client.get_experiment_by_name(self.experiment)
        if found is not None:
            return found.experiment_id
        return self.client.create_experiment(self.experiment, artifact_location=self.artifact_location)

    def register(self, trained: TrainedModel, *, feature_hash: str, training_table: str,
                 training_version: int, run_id: str, engine: str, git_commit: str = "unknown",
                 validation_ids: Sequence[str] = (), name: str | None = None,
                 feature_fingerprints: Mapping[str, str] | None = None,
                 extra_artifacts: Sequence[Path] = (), carried_files: Sequence[Path] = ()) -> ModelRecord:
        """Log ``trained`` as a finished MLflow run and register it as a new version of ``name``
        (default ``registry.model_name``). The version's tags carry the lineage; the run carries
        the same tags, the parameters, the metrics and the artifacts. A failure while logging
        marks the run FAILED and registers nothing. ``carried_files`` (the feature definitions,
        ``engine.training.carried``) go beside the model artifact, so they download with it."""
        name = name or self.default_name
        tags = {
            f"{TAG}training_table": str(training_table),
            f"{TAG}training_version": str(int(training_version)),
            f"{TAG}feature_hash": feature_hash,
            f"{TAG}features": json.dumps(list(trained.features)),
            f"{TAG}feature_fingerprints": json.dumps(dict(feature_fingerprints or {}), sort_keys=True),
            f"{TAG}label": trained.label,
            f"{TAG}validation_ids": json.dumps(list(validation_ids)),
            f"{TAG}git_commit": git_commit,
            f"{TAG}engine": engine,
            f"{TAG}algorithm": trained.algorithm,
            f"{TAG}kind": trained.kind,
            f"{TAG}task": trained.task,
            f"{TAG}artifact": Path(trained.artifact).name,
            f"{TAG}run_id": run_id,
            f"{TAG}trained_id": trained.model_id,
            f"{TAG}created_at": trained.created_at.isoformat(),
            f"{TAG}carries_features": "true" if carried_files else "false",
        }
        run = self.client.create_run(self._experiment_id(), run_name=trained.model_id, tags=tags)
        mlflow_run = run.info.run_id
        try:
            from mlflow.entities import Metric, Param

            stamp = int(trained.created_at.timestamp() * 1000)
            self.client.log_batch(
                mlflow_run,
                metrics=[Metric(k, float(v), stamp, 0) for k, v in sorted(trained.metrics.items())],
                params=[Param(k, v) for k, v in sorted(_flat_params(trained.params).items())])
            source = Path(trained.artifact)
            if source.is_dir():
                self.client.log_artifacts(mlflow_run, str(source), f"{ARTIFACT_DIR}/{source.name}")
            else:
                self.client.log_artifact(mlflow_run, str(source), ARTIFACT_DIR)
            for extra in extra_artifacts:
                self.client.log_artifact(mlflow_run, str(extra), "evaluation")
            for carried in carried_files:
                self.client.log_artifact(mlflow_run, str(carried), ARTIFACT_DIR)
        except BaseException:
            self.client.set_terminated(mlflow_run, status="FAILED")
            raise
        self.client.set_terminated(mlflow_run)
        from mlflow.exceptions import MlflowException

        try:
            self.client.create_registered_model(name, tags={f"{TAG}created_by": "lakescore"})
        except MlflowException as exc:
            if "RESOURCE_ALREADY_EXISTS" not in str(getattr(exc, "error_code", "")) + str(exc):
                raise
        artifact_uri = self.client.get_run(mlflow_run).info.artifact_uri
        version = self.client.create_model_version(
            name, source=f"{artifact_uri}/{ARTIFACT_DIR}", run_id=mlflow_run, tags=tags)
        log.info("registered %s/%s (MLflow run %s)", name, version.version, mlflow_run)
        return self._record(version)

    def resolve(self, ref: str | ModelRef) -> ModelRecord:
        """The version ``ref`` names, its artifact available locally.

        Raises ``ConfError`` when the model, version or alias does not exist, listing what does."""
        from mlflow.exceptions import MlflowException

        parsed = ref if isinstance(ref, ModelRef) else parse_model_ref(ref, self.default_name)
        versions = self.versions(parsed.name)
        if not versions:
            names = sorted(m.name for m in self.client.search_registered_models())
            raise ConfError(f"model {str(parsed)!r}: no registered model {parsed.name!r} in "
                            f"{self.tracking_uri} (registered: {', '.join(names) or 'none'}); "
                            "run the train job first")
        if parsed.alias:
            try:
                return self._record(self.client.get_model_version_by_alias(parsed.name, parsed.alias))
            except MlflowException:
                aliases = self.aliases(parsed.name)
                shown = ", ".join(f"{a}→v{v}" for a, v in sorted(aliases.items())) or "none"
                raise ConfError(f"model {str(parsed)!r}: {parsed.name!r} has no alias "
                                f"{parsed.alias!r} (aliases: {shown}); set one with "
                                f"`python -m jobs.promote --model {parsed.name}/<version> "
                                f"--alias {parsed.alias}`") from None
        if parsed.version is None:
            return self._record(versions[-1])
        for version in versions:
            if int(version.version) == parsed.version:
                return self._record(version)
        known = ", ".join(str(v.version) for v in reversed(versions))
        raise ConfError(f"model {str(parsed)!r}: {parsed.name!r} has no version {parsed.version} "
                        f"(versions, newest first: {known})")

    def versions(self, name: str) -> list[Any]:
        """Every version of ``name`` (MLflow ``ModelVersion``), oldest first."""
        found = self.client.search_model_versions(f"name='{name}'")
        return sorted(found, key=lambda v: int(v.version))

    def aliases(self, name: str) -> dict[str, int]:
        from mlflow.exceptions import MlflowException

        try:
            model = self.client.get_registered_model(name)
        except MlflowException:
            return {}
        return {alias: int(version) for alias, version in model.aliases.items()}

    def set_alias(self, ref: str | ModelRef, alias: str) -> ModelRecord:
        """Point ``alias`` of the model at the version ``ref`` names (moving it if it was set)."""
        if not _ALIAS.match(alias) or alias == LATEST or alias.startswith("v") and alias[1:].isdigit():
            raise ConfError(f"alias {alias!r} is not valid: use letters, digits and _, not "
                            f"{LATEST!r} nor v<number> (MLflow reserves them)")
        record = self.resolve(ref)
        self.client.set_registered_model_alias(record.name, alias, str(record.version))
        return self.resolve(ModelRef(record.name, alias=alias))

    def describe(self, name: str, version: int) -> ModelRecord | None:
        """The record of ``name``/``version`` without fetching its artifact (``path`` is then the
        artifact's URI), or None when the registry does not hold it. For lineage queries."""
        from mlflow.exceptions import MlflowException

        try:
            return self._record(self.client.get_model_version(name, str(version)), download=False)
        except MlflowException:
            return None

    def _record(self, version: Any, download: bool = True) -> ModelRecord:
        from mlflow.artifacts import download_artifacts

        tags = dict(version.tags)

        def tag(key: str, default: str = "") -> str:
            return tags.get(TAG + key, default)

        run = self.client.get_run(version.run_id)
        local = Path(download_artifacts(artifact_uri=version.source, tracking_uri=self.tracking_uri)
                     if download else version.source)
        aliases = tuple(sorted(getattr(version, "aliases", []) or []))
        return ModelRecord(
            name=version.name, version=int(version.version), mlflow_run_id=version.run_id,
            algorithm=tag("algorithm"), kind=tag("kind"), task=tag("task", "binary"),
            features=tuple(json.loads(tag("features", "[]"))), label=tag("label"),
            feature_hash=tag("feature_hash"), training_table=tag("training_table"),
            training_version=int(tag("training_version", "-1")), metrics=dict(run.data.metrics),
            created_at=tag("created_at"), run_id=tag("run_id"), engine=tag("engine"),
            artifact=tag("artifact"), path=local, git_commit=tag("git_commit", "unknown"),
            params=dict(run.data.params), validation_ids=tuple(json.loads(tag("validation_ids", "[]"))),
            aliases=aliases, feature_fingerprints=json.loads(tag("feature_fingerprints", "{}")))
