"""The one small interface every engine implements, and the registry that picks one by name.

The engine is chosen once, at the edge (``--engine`` or ``engine:`` in conf), by ``open_backend``;
nothing above this module asks "is this Spark?". What a backend can run is declared by its class
and asked, never inferred from its name: ``Capabilities`` (the expectation types it evaluates, the
trainer families it hosts; ``require_suite``, ``require_trainer``), and small mixins for the
operations only some engines have (``CanScoreMllib``), checked once with ``require``. Each fails
with a ``NotSupportedByBackend`` naming the engine and what it cannot do.

Backends are registered lazily by import path, so importing ``engine`` never imports Spark,
Dask or H2O.
"""

from __future__ import annotations

import importlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from engine.conf import BACKENDS
from engine.errors import ConfError, NotSupportedByBackend

if TYPE_CHECKING:
    from engine.conf import Conf
    from engine.features.definitions import FeatureSet
    from engine.storage.data_files import WrittenFile
    from engine.storage.snapshots import TableFile
    from engine.storage.table import CommitInfo, ReadResult, TableRef, WriteMode, WriteResult
    from engine.training import Trainer
    from engine.validation.suite import ExpectationSupport, RowRule, Suite, ValidationReport


@dataclass(frozen=True)
class Capabilities:
    """What a backend runs, declared once by its class and asked by its callers."""

    expectations: ExpectationSupport
    """The Great Expectations types (and options) it evaluates exactly."""
    trainer_families: frozenset[str]
    """The trainer families (``engine.training.Trainer.family``) whose training data it can hold."""


@runtime_checkable
class Backend(Protocol):
    """What the pipeline needs from an engine. Frames are the engine's own lazy frames."""

    name: str
    capabilities: Capabilities

    def read(self, table: TableRef, version: int | datetime | None = None,
             columns: Sequence[str] | None = None,
             partitions: Mapping[str, Collection[Any]] | None = None) -> ReadResult:
        """Read a Delta table (latest, a ``version``, or the version current at a datetime),
        only the files of ``partitions`` when given; the result says which version was read."""

    def write(self, frame: Any, table: TableRef, mode: WriteMode, commit: CommitInfo) -> WriteResult:
        """Write a frame as one Delta commit; skipped when ``commit``'s batch is already in."""

    def training_set(self, definition: FeatureSet, events: Any, spine: Any) -> Any:
        """Every spine row with its features as of the row's time (point-in-time correct)."""

    def scoring_set(self, definition: FeatureSet, events: Any, as_of: Any, entities: Any = None) -> Any:
        """The same features as of one time for every entity (of ``entities``, or seen in
        ``events`` by then): training and scoring share one definition, so they cannot skew."""

    def rewrite_files(self, table: TableRef, files: Sequence[TableFile],
                      files_out: int) -> list[WrittenFile]:
        """The rows of ``files`` rewritten as ``files_out`` new, uncommitted files (compaction)."""

    def validate(self, frame: Any, suite: Suite, table: str) -> ValidationReport:
        """Run a Great Expectations suite over the whole frame."""

    def score_mojo(self, frame: Any, mojo_path: str, keep: Sequence[str],
                   constants: Mapping[str, str], missing_columns: str = "na") -> Any:
        """``keep`` columns, the MOJO's outputs (``engine.scoring.mojo.output_columns``: ``score``;
        ``prediction`` for classifiers; ``p_<level>`` per class for multinomial) and one column per
        constant. A feature column the frame lacks scores as missing values with a warning, as
        H2O's ``predict`` does (``missing_columns="error"`` refuses instead)."""

    def require_scorer(self, mojo_paths: Sequence[str] = ()) -> None:
        """Raise ``EnvironmentProblem`` unless MOJO scoring can run wherever it will: the scorer
        jars and Java there, and each of ``mojo_paths`` readable by genmodel on every worker or
        executor (naming the one that cannot)."""

    def with_utc_date(self, frame: Any, timestamp_column: str, name: str) -> Any:
        """The frame plus ``name``: the UTC calendar date of ``timestamp_column`` (a Delta
        ``date``), e.g. the score date that partitions the scores table."""

    def approx_quantiles(self, frame: Any, column: str, probabilities: Sequence[float],
                         where: Mapping[str, Any] | None = None) -> list[float | None]:
        """Quantiles of a numeric column's non-null values (of the rows whose ``where`` columns
        equal the given values), approximate (rank error about
        1e-4) so that one pass in bounded memory serves any size; ``None`` when all are null.
        For run summaries (score deciles); drift needs the exact ``column_quantiles``."""

    def close(self) -> None:
        """Release what the backend started (never a session it was handed)."""


class CanScoreMllib:
    """Mixin: the backend can score Spark MLlib pipelines."""

    def score_mllib(self, frame: Any, model_path: str, keep: Sequence[str],
                    constants: Mapping[str, str]) -> Any:
        raise NotImplementedError


class CanConcat:
    """Mixin: the backend can stack frames of the same columns (e.g. two models' scores)."""

    def concat(self, frames: Sequence[Any]) -> Any:
        raise NotImplementedError


class CanQuarantine:
    """Mixin: the backend can split a frame into the rows failed row-level expectations blame
    (with their reasons) and the rest (``engine.policies.quarantine``)."""

    def quarantine_split(self, frame: Any, rules: Sequence[RowRule],
                         constants: Mapping[str, str]) -> tuple[Any, Any]:
        raise NotImplementedError


class CanProfile:
    """Mixin: the backend computes exact per-column statistics (``engine.policies.profile``)."""

    def profile_columns(self, frame: Any, kinds: Mapping[str, str],
                        max_values: int) -> tuple[int, dict[str, dict]]:
        raise NotImplementedError


class CanMeasureDrift:
    """Mixin: exact quantiles and binned counts of columns (``engine.policies.drift``)."""

    def column_quantiles(self, frame: Any, columns: Sequence[str],
                         probabilities: Sequence[float]) -> dict[str, list]:
        raise NotImplementedError

    def bin_counts(self, frame: Any, edges: Mapping[str, Sequence[float]]) -> dict[str, dict]:
        raise NotImplementedError

    def level_counts(self, frame: Any, columns: Sequence[str]) -> dict[str, dict]:
        """Per column: ``rows``, ``nulls`` and ``levels`` (value as text → count; booleans as
        ``true``/``false`` on every engine)."""
        raise NotImplementedError


class CanCountDefaults:
    """Mixin: count the rows in which every given column holds its default
    (``engine.policies.guards``)."""

    def count_all_default(self, frame: Any, defaults: Mapping[str, Any]) -> tuple[int, int]:
        """(rows, rows where each column equals its default; a None default means null)."""
        raise NotImplementedError


class CanInspectWorkers:
    """Mixin: the backend reports the facts of every executor/worker process
    (``engine.environment.local_facts``), with a probe of the lakehouse from each, and the
    checks only its own JVMs can answer (``jobs.doctor``)."""

    workers_load_scorer_jars = False
    """Whether the executors'/workers' Python processes load the scorer jars themselves (Dask,
    through JPype) rather than their JVMs (Spark, checked by ``engine_findings``)."""

    def worker_facts(self, lakehouse: str | None = None,
                     storage_options: Mapping[str, str] | None = None) -> list[tuple[str, dict, Any]]:
        """``(host label, facts, lakehouse finding or None)`` per executor/worker process."""
        raise NotImplementedError

    def engine_findings(self, reference: Mapping[str, str], delta: bool = False) -> list[Any]:
        """Findings only this engine can make (Spark: the JVMs' version and scorer jar)."""
        raise NotImplementedError


C = TypeVar("C")


def require(backend: Backend, capability: type[C], feature: str) -> C:
    """Return ``backend`` as ``capability`` or fail naming the backend and the feature."""
    if not isinstance(backend, capability):
        raise NotSupportedByBackend(backend.name, feature)
    return backend  # type: ignore[return-value]


def require_suite(backend: Backend | type[Backend], suite: Suite) -> Suite:
    """``suite`` when ``backend`` (or a backend class) evaluates every expectation of it exactly;
    else ``NotSupportedByBackend`` naming the backend and the first one it cannot, before any data
    is read."""
    from engine.validation.suite import check_supported

    check_supported(suite, backend.name, backend.capabilities.expectations)
    return suite


def require_trainer(backend: Backend, trainer: Trainer) -> None:
    """Fail unless ``backend`` hosts ``trainer``'s family, naming the backend and the algorithm."""
    from engine.training import TRAINER_FAMILIES

    if trainer.family not in backend.capabilities.trainer_families:
        raise NotSupportedByBackend(backend.name, f"{TRAINER_FAMILIES[trainer.family]} training "
                                                  f"(train.algorithm: {trainer.algorithm})")


def backend_names() -> list[str]:
    """The engines lakescore has (``engine.conf.BACKENDS``), sorted."""
    return sorted(BACKENDS)


def backend_class(name: str) -> type[Backend]:
    """The class registered as ``name``, imported (nothing is started): its ``capabilities`` can be
    asked before any engine runs."""
    try:
        module_name, class_name = BACKENDS[name].split(":")
    except KeyError:
        raise ConfError(f"unknown engine {name!r}; choose one of {', '.join(backend_names())}") from None
    return getattr(importlib.import_module(module_name), class_name)


def open_backend(name: str, conf: Conf, preflight: bool = True) -> Backend:
    """Start the named engine from conf (``Class.from_conf``). With ``preflight`` the engine
    first checks its executors/workers against this process (``engine.environment``) and
    raises ``EnvironmentProblem`` at the first side that differs; ``jobs.doctor`` opens it
    without, to report every side."""
    return backend_class(name).from_conf(conf, preflight=preflight)


# The package a frame's class comes from → the backend that computes on such frames.
_FRAME_PACKAGES: dict[str, str] = {"pyspark": "spark", "dask": "dask"}


def backend_of_frame(frame: Any) -> Backend:
    """The backend that owns ``frame`` (a Spark or Dask frame), on the session or client the
    frame already lives in (``Class.for_frame``): nothing new is started, nothing is closed."""
    package = type(frame).__module__.split(".", 1)[0]
    name = _FRAME_PACKAGES.get(package)
    if name is None:
        raise ConfError(f"rows of type {type(frame).__module__}.{type(frame).__name__} are not a frame "
                        f"of any engine ({', '.join(sorted(_FRAME_PACKAGES))}): pass a Spark or Dask "
                        "DataFrame of entity keys and as-of times")
    return backend_class(name).for_frame(frame)
