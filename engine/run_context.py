"""What every stage of one run shares: the conf, the table catalog, the run's files, the commit
every write carries, and the run summary each stage's reads and writes are recorded in, once.

The catalog turns a logical table name (``events``, ``scores``, ...) into a ``TableRef``: its
location under the lakehouse, its layout, the lakehouse's storage options and, for a replay, the
input version it is pinned to. The feature definition and the model registry are loaded once per
run (``RunContext.feature_set``, ``RunContext.model_registry``), not once per stage.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from engine.conf import Conf
from engine.errors import ConfError
from engine.lineage import Lineage
from engine.storage.snapshots import row_count
from engine.storage.table import CommitInfo, ReadResult, TableRef, WriteResult
from engine.summary import RunSummary, StageRecord

if TYPE_CHECKING:
    from engine.features.definitions import FeatureSet
    from engine.training.registry import Registry

INPUT_TABLES = ("events", "labels", "to_score")
"""The tables a run reads but never writes (the demo generator aside): never suffixed per engine."""

T = TypeVar("T")


def new_run_id() -> str:
    """Sortable and unique: UTC time of the start plus a random suffix."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]


def feature_set(conf: Conf) -> FeatureSet:
    """The feature definition file conf names (``features``), parsed and checked."""
    from engine.features.definitions import load_feature_set

    if conf.features is None:
        raise ConfError("features: is null; name the feature definition file (only jobs.score "
                        "takes the definitions from its model when features is null)")
    return load_feature_set(conf.resolve(conf.features))


def model_registry(conf: Conf) -> Registry:
    """The MLflow registry of conf (``registry.*``; by default a SQLite file in the lakehouse)."""
    from engine.training.registry import Registry

    return Registry.from_conf(conf.registry, conf.lakehouse_path(), dict(conf.storage_options))


@dataclass
class RunContext:
    """What every stage of one run shares. ``output_suffix`` keeps each engine's outputs apart
    when one pipeline runs on several engines (``scores`` → ``scores_dask``)."""

    conf: Conf
    run_id: str
    summary: RunSummary
    output_suffix: str = ""
    validation_ids: dict[str, list[str]] = field(default_factory=dict)
    """Result ids of the validations run in this run, by the name of the table they checked."""
    observations: list[tuple[str, Any]] = field(default_factory=list)
    """(engine, what a stage saw): validation reports, quarantine results, drift figures and
    (role, model) pairs, for the run's metrics and lineage events (``engine.metrics``)."""
    _open: list[StageRecord] = field(default_factory=list, repr=False)
    _loaded: dict[str, tuple[Conf, Any]] = field(default_factory=dict, repr=False)

    @classmethod
    def start(cls, conf: Conf, run_id: str | None = None) -> RunContext:
        run_id = run_id or new_run_id()
        run_dir = conf.lakehouse_path("runs", run_id)
        return cls(conf=conf, run_id=run_id, summary=RunSummary(run_id=run_id, run_dir=run_dir))

    # --- the table catalog --------------------------------------------------------------------

    def table(self, logical: str, suffix: str | None = None) -> TableRef:
        """The table for a logical name; outputs get ``suffix`` (default: ``output_suffix``)."""
        path = getattr(self.conf.tables, logical)
        name = logical
        suffix = self.output_suffix if suffix is None else suffix
        if logical not in INPUT_TABLES and suffix:
            path, name = f"{path}_{suffix}", f"{logical}_{suffix}"
        location = path if "://" in path or Path(path).is_absolute() else self.conf.lakehouse_path(path)
        layout = self.conf.layout.get(logical)
        extra = {} if layout is None else {"partition_by": tuple(layout.partition_by),
                                           "keys": tuple(layout.keys),
                                           "allow_new_columns": layout.allow_new_columns}
        return TableRef(name=name, path=location, storage_options=dict(self.conf.storage_options),
                        version=self.conf.input_versions.get(logical), **extra)

    def table_at(self, name: str, path: str) -> TableRef:
        """A table by location (e.g. the training set a model records), with the lakehouse's
        storage options."""
        return TableRef(name=name, path=path, storage_options=dict(self.conf.storage_options))

    @property
    def run_dir(self) -> Path:
        """The run directory as a local path (tests, local lakehouses); what the run writes goes
        through ``run_location`` so that an object-store lakehouse stays one."""
        return Path(self.summary.run_dir)

    def run_location(self, *parts: str) -> str:
        """Where this run's files go: under ``<lakehouse>/runs/<run_id>``, local or a URI."""
        from engine.storage.files import join

        return join(self.summary.run_dir, *parts)

    def commit(self, job: str, engine: str, table: TableRef, lineage: Lineage,
               app_key: str | None = None) -> CommitInfo:
        """Commit info whose app transaction makes a rerun of the same run (or key) a no-op."""
        app_id = f"lakescore:{job}:{table.name}:{app_key or self.run_id}"
        return CommitInfo(job=job, run_id=self.run_id, engine=engine, app_id=app_id, batch=0,
                          metadata=lineage.to_metadata())

    # --- loaded once per run ------------------------------------------------------------------

    def feature_set(self) -> FeatureSet:
        """The run's feature definition, parsed on first use (``ConfError`` when conf has none)."""
        return self._once("feature_set", feature_set)

    def model_registry(self) -> Registry:
        """The run's model registry, opened on first use."""
        return self._once("model_registry", model_registry)

    def _once(self, key: str, load: Callable[[Conf], T]) -> T:
        # Keyed by the conf too: a job that swaps it (jobs.score takes a model's carried
        # definitions) loads again from the new one.
        cached = self._loaded.get(key)
        if cached is None or cached[0] is not self.conf:
            cached = self._loaded[key] = (self.conf, load(self.conf))
        return cached[1]

    # --- recording what stages read and write -------------------------------------------------

    @contextmanager
    def stage(self, name: str, engine: str) -> Iterator[StageRecord]:
        """One stage in the run summary (timed, logged, a failure recorded and re-raised);
        ``record_read`` and ``record_write`` record into it while it runs."""
        with self.summary.stage(name, engine) as record:
            self._open.append(record)
            try:
                yield record
            finally:
                self._open.pop()

    def record_read(self, read: ReadResult) -> int:
        """Count the rows of the table version ``read`` read (from the Delta log's statistics,
        no data is read) in the open stage's rows in; return them."""
        rows = row_count(read.table, read.version)
        record = self._stage_open()
        record.rows_in = (record.rows_in or 0) + rows
        return rows

    def record_write(self, result: WriteResult, name: str | None = None, *, output: bool = True,
                     rows_out: bool = True) -> None:
        """Record one write of the open stage from what it returned: the version it committed
        (or, when the same commit was already in, that it was skipped, as ``name``, default the
        table's name), where the table is (``output=False``: a table rewritten in place that
        stays the output of the stage that made it) and its rows in the stage's rows out
        (``rows_out=False``: rows set aside, not going on)."""
        self._stage_open().add_write(result.table.name, result.table.path if output else None,
                                     result.rows if rows_out else None,
                                     None if result.skipped else result.version, name)

    def _stage_open(self) -> StageRecord:
        if not self._open:
            raise RuntimeError("record_read/record_write outside a stage: open one with ctx.stage()")
        return self._open[-1]
