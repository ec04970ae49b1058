"""Job configuration: typed, validated at load, merged from base + job + environment files.

A job's conf is ``conf/base.yaml`` overlaid by the job's file (``--conf``) and optionally an
environment file (``--env`` → ``conf/env/<name>.yaml``), then by ``--set key.path=value``
overrides. Unknown keys are rejected with the file and key path in the message, so a typo
never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from engine.errors import ConfError, LakescoreError

def _repo_root() -> Path:
    """The lakescore checkout: ``LAKESCORE_HOME``, else the one this package sits in.

    Under spark-submit the package may be imported from a zip (``--py-files``), whose path is
    no directory; ``spark-submit.sh`` sets ``LAKESCORE_HOME`` for that case."""
    home = os.environ.get("LAKESCORE_HOME")
    if home:
        return Path(home).resolve()
    return Path(__file__).resolve().parent.parent


REPO_ROOT = _repo_root()
BASE_CONF = REPO_ROOT / "conf" / "base.yaml"


@dataclass(frozen=True)
class SparkConf:
    master: str = "local[*]"
    app_name: str = "lakescore"
    driver_memory: str = "4g"
    shuffle_partitions: int = 8
    show_progress: bool = True
    options: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DaskConf:
    scheduler: str | None = None
    n_workers: int = 2
    threads_per_worker: int = 1
    memory_limit: str = "4GiB"
    show_progress: bool = True
    dashboard_address: str = "127.0.0.1:0"
    connect_timeout: str = "30s"


@dataclass(frozen=True)
class H2OConf:
    url: str | None = None
    max_mem: str = "4g"
    nthreads: int = -1
    port: int = 54321


@dataclass(frozen=True)
class TablesConf:
    """Logical table name → path, relative to ``lakehouse`` unless absolute or a URI."""

    events: str = "tables/events"
    labels: str = "tables/labels"
    to_score: str = "tables/to_score"
    training_set: str = "tables/training_set"
    scoring_set: str = "tables/scoring_set"
    scores: str = "tables/scores"
    quarantine: str = "tables/quarantine"
    drift: str = "tables/drift_metrics"


@dataclass(frozen=True)
class ValidationConf:
    """Suites (paths under the repo or absolute) run over the training and the scoring set."""

    training_suites: list[str] = field(default_factory=lambda: [
        "expectations/customer_features.json", "expectations/training_labels.json"])
    scoring_suites: list[str] = field(default_factory=lambda: ["expectations/customer_features.json"])
    policy: Literal["fail", "warn", "quarantine"] = "fail"
    training_policy: Literal["fail", "warn", "quarantine"] | None = None
    scoring_policy: Literal["fail", "warn", "quarantine"] | None = None
    # suites of the other tables, by logical name: events, labels and to_score are checked
    # before features are built from them, scores before a batch is written
    suites: dict[str, list[str]] = field(default_factory=dict)
    # guards against garbage in (engine.policies.guards): as-of times may be this far beyond
    # the newest event (a duration; None: the feature set's longest window), and at most this
    # share of a feature table's rows may have every feature at its no-event default
    max_as_of_lag: str | None = None
    max_default_share: float | None = 0.9

    def policy_for(self, logical: str) -> str:
        """The gate for a table: ``training_policy``/``scoring_policy`` when set, else ``policy``."""
        specific = {"training_set": self.training_policy, "scoring_set": self.scoring_policy}
        return specific.get(logical) or self.policy

    def suites_for(self, logical: str) -> list[str]:
        """The suites of a table (``training_suites``/``scoring_suites`` for the feature tables)."""
        specific = {"training_set": self.training_suites, "scoring_set": self.scoring_suites}
        return list(specific.get(logical) or self.suites.get(logical, []))


@dataclass(frozen=True)
class DriftConf:
    """Drift of the scoring batch from the model's training set, checked by the score stage."""

    enabled: bool = True
    bins: int = 10
    psi_threshold: float = 0.2
    null_rate_threshold: float = 0.05
    max_levels: int = 20


@dataclass(frozen=True)
class TrainConf:
    algorithm: Literal["h2o_gbm", "h2o_glm", "h2o_drf", "h2o_automl",
                       "mllib_gbt", "mllib_rf", "mllib_lr"] = "h2o_gbm"
    label: str = "churned"
    valid_from: str = "2025-10-01"
    params: dict[str, Any] = field(default_factory=dict)
    task: Literal["binary", "regression"] = "binary"
    threshold: float = 0.5
    folds: int = 0


@dataclass(frozen=True)
class ScoreConf:
    model: str = "latest"
    as_of: str | None = None
    challenger: str | None = None
    # the scoring batch this run (re)writes: a run with the same batch replaces every scores
    # partition the previous run of that batch wrote (e.g. a stale as-of date), in one commit
    batch: str | None = None


@dataclass(frozen=True)
class RegistryConf:
    """MLflow tracking and model registry; null URIs mean a SQLite file and an artifact
    directory under the lakehouse (``registry/mlflow.db``, ``registry/artifacts``)."""

    tracking_uri: str | None = None
    artifact_location: str | None = None
    experiment: str = "lakescore"
    model_name: str = "churn"


@dataclass(frozen=True)
class TableLayout:
    """How one logical table is laid out: partition columns (new tables), merge keys, and
    whether appends may add nullable columns."""

    partition_by: list[str] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    allow_new_columns: bool = False


@dataclass(frozen=True)
class MaintainConf:
    """``jobs.maintain``: compaction target and vacuum retention."""

    target_file_mb: int = 128
    min_files: int = 2
    retention_hours: float = 168.0


@dataclass(frozen=True)
class DemoConf:
    customers: int = 10000
    start: str = "2025-01-01"
    days: int = 365
    mean_events_per_customer: float = 200.0
    label_every_days: int = 30
    churn_horizon_days: int = 30
    seed: int = 7


@dataclass(frozen=True)
class MetricsConf:
    """Prometheus metrics of each run, pushed to a pushgateway (``engine.metrics``); off when
    ``pushgateway`` is null. A push that fails is a warning: it never fails the job."""

    pushgateway: str | None = None
    timeout_seconds: float = 5.0


@dataclass(frozen=True)
class OpenLineageConf:
    """OpenLineage run events of each job (``engine.openlineage``): START, then COMPLETE or FAIL
    with the datasets read and written. An emit that fails is a warning, never a failed job."""

    transport: Literal["file", "http", "console"] | None = None
    file: str | None = None
    url: str | None = None
    endpoint: str = "api/v1/lineage"
    namespace: str = "lakescore"
    timeout_seconds: float = 5.0


BACKENDS: dict[str, str] = {
    "spark": "engine.backends.spark:SparkBackend",
    "dask": "engine.backends.dask:DaskBackend",
}
"""The engine registry: each engine's name → its Backend class, imported when the engine is first
opened (``engine.backend.backend_class``). The one list of engines: conf's ``engine``, the jobs'
``--engine`` choices and the backend lookup all read it."""


@dataclass(frozen=True)
class Conf:
    lakehouse: str = "./lakehouse"
    engine: str = "spark"
    """One of ``BACKENDS``."""
    features: str | None = "conf/features/customer.yaml"
    """The feature definition file; null: jobs.score takes the definitions its model carries."""
    spark: SparkConf = field(default_factory=SparkConf)
    dask: DaskConf = field(default_factory=DaskConf)
    h2o: H2OConf = field(default_factory=H2OConf)
    tables: TablesConf = field(default_factory=TablesConf)
    validation: ValidationConf = field(default_factory=ValidationConf)
    drift: DriftConf = field(default_factory=DriftConf)
    train: TrainConf = field(default_factory=TrainConf)
    score: ScoreConf = field(default_factory=ScoreConf)
    demo: DemoConf = field(default_factory=DemoConf)
    maintain: MaintainConf = field(default_factory=MaintainConf)
    layout: dict[str, TableLayout] = field(default_factory=dict)
    registry: RegistryConf = field(default_factory=RegistryConf)
    metrics: MetricsConf = field(default_factory=MetricsConf)
    openlineage: OpenLineageConf = field(default_factory=OpenLineageConf)
    storage_options: dict[str, str] = field(default_factory=dict)
    input_versions: dict[str, int] = field(default_factory=dict)
    """Logical table → the Delta version its reads travel to (``jobs.replay`` pins a run's inputs)."""

    def __post_init__(self) -> None:
        known = {f.name for f in dataclasses.fields(self.tables)}
        for section, names in (("layout", self.layout), ("validation.suites", self.validation.suites),
                               ("input_versions", self.input_versions)):
            unknown = sorted(set(names) - known)
            if unknown:
                raise ConfError(f"{section}: unknown table(s) {', '.join(unknown)}; the tables "
                                f"are {', '.join(sorted(known))}")

    def resolve(self, relative: str) -> str:
        """A path from conf: URIs and absolute paths as they are, others under the repo root."""
        if "://" in relative or Path(relative).is_absolute():
            return relative
        return str((REPO_ROOT / relative).resolve())

    def lakehouse_path(self, *parts: str) -> str:
        root = self.resolve(self.lakehouse)
        return "/".join([root.rstrip("/"), *parts])


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def read_yaml_mapping(path: Path, what: str, error: type[LakescoreError] = ConfError) -> dict[str, Any]:
    """A YAML file that must hold a mapping; every failure is ``error`` naming ``what`` and the
    file. Shared by conf files and feature definition files."""
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise error(f"{what} {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise error(f"{what} {path} must hold a mapping at the top, not {type(data).__name__}")
    return data


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise ConfError(f"conf file {path} does not exist")
    return read_yaml_mapping(path, "conf file")


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Check ``value`` against a type hint; build nested dataclasses; reject unknown keys."""
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfError(f"{where}: expected a mapping, got {value!r}")
        hints = typing.get_type_hints(hint)
        names = {f.name for f in dataclasses.fields(hint)}
        unknown = sorted(set(value) - names)
        if unknown:
            raise ConfError(f"{where}: unknown key(s) {', '.join(unknown)}; known keys: "
                            f"{', '.join(sorted(names))}")
        return hint(**{k: _coerce(v, hints[k], f"{where}.{k}") for k, v in value.items()})
    if origin is Literal:
        if value not in typing.get_args(hint):
            raise ConfError(f"{where}: {value!r} is not one of {typing.get_args(hint)}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfError as exc:
                errors.append(str(exc))
        raise ConfError("; ".join(errors))
    if origin is list:
        if not isinstance(value, list):
            raise ConfError(f"{where}: expected a list, got {value!r}")
        (item,) = typing.get_args(hint)
        return [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfError(f"{where}: expected a mapping, got {value!r}")
        _key, item = typing.get_args(hint) or (Any, Any)
        return {k: _coerce(v, item, f"{where}.{k}") for k, v in value.items()}
    if hint is Any:
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if hint is str and hasattr(value, "isoformat"):  # YAML turns 2025-10-01 into a date
        return value.isoformat()
    if isinstance(hint, type) and not isinstance(value, hint):
        raise ConfError(f"{where}: expected {hint.__name__}, got {value!r}")
    if hint is int and isinstance(value, bool):
        raise ConfError(f"{where}: expected int, got {value!r}")
    return value


def _parse_override(item: str) -> dict[str, Any]:
    if "=" not in item:
        raise ConfError(f"--set {item!r}: expected key.path=value")
    key, raw = item.split("=", 1)
    value = yaml.safe_load(raw) if raw else ""
    for part in reversed(key.split(".")):
        value = {part: value}
    return value  # type: ignore[return-value]


def load_conf(job_file: str | Path | None = None, env: str | None = None,
              overrides: list[str] | tuple[str, ...] = ()) -> Conf:
    """Load base + job + env conf and ``key.path=value`` overrides into a validated ``Conf``."""
    sources: list[tuple[str, dict[str, Any]]] = [(str(BASE_CONF), _read_yaml(BASE_CONF))]
    if job_file is not None:
        path = Path(job_file)
        if not path.is_absolute() and not path.exists():
            path = REPO_ROOT / path
        sources.append((str(path), _read_yaml(path)))
    if env is not None:
        path = REPO_ROOT / "conf" / "env" / f"{env}.yaml"
        sources.append((str(path), _read_yaml(path)))
    for item in overrides:
        sources.append((f"--set {item}", _parse_override(item)))
    merged: dict[str, Any] = {}
    for where, data in sources:
        # Validate after each source, so the message names the file that brought the bad key.
        merged = _merge(merged, data)
        try:
            _coerce(merged, Conf, "conf")
        except ConfError as exc:
            raise ConfError(f"{where}: {exc}") from None
    conf = _coerce(merged, Conf, "conf")
    _check_combinations(conf)
    return conf


def _check_combinations(conf: Conf) -> None:
    """Keys that only make sense together, checked once every source is merged (a later
    ``--set`` may bring the second key), and the engine against the registry."""
    if conf.engine not in BACKENDS:
        raise ConfError(f"engine: {conf.engine!r} is not an engine lakescore has; choose one of "
                        f"{', '.join(sorted(BACKENDS))}")
    lineage = conf.openlineage
    if lineage.transport == "http" and not lineage.url:
        raise ConfError("openlineage.transport is http but openlineage.url is not set; give "
                        "the backend's URL (e.g. http://marquez:5000) or another transport")
