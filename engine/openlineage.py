"""OpenLineage run events of every job: START when it begins, COMPLETE or FAIL when it ends.

The end event names what the run read and wrote as datasets: each Delta table it committed, at
the version committed (``DatasetVersionDatasetFacet``), with its schema, storage (delta/parquet)
and the lakescore facet (feature set and hash, models with their MLflow run ids, validation result
ids); the tables it read, at the versions its commits recorded (the same metadata ``jobs.lineage``
reads, so a catalog and lakescore's own lineage never disagree), with the Great Expectations
results of this run as ``DataQualityAssertionsDatasetFacet``. When Airflow started the job, the
``OPENLINEAGE_PARENT_*`` variables its task sets make the run a child of the task's run.

Transport from conf (``openlineage.transport``: file, http, console; none by default). An event
that cannot be sent is a warning naming the endpoint; the job's result never depends on it.
"""

from __future__ import annotations

import functools
import logging
import os
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import attr

log = logging.getLogger("lakescore")

PRODUCER = "https://github.com/lakescore/lakescore/tree/main/engine/openlineage.py"
FACET_SCHEMA_URL = ("https://github.com/lakescore/lakescore/blob/main/deploy/openlineage/"
                    "LakescoreDatasetFacet.json#/$defs/LakescoreDatasetFacet")
"""Our custom dataset facet's schema; the file ships in this repo at the same path."""
PARENT_ENV = ("OPENLINEAGE_PARENT_JOB_NAMESPACE", "OPENLINEAGE_PARENT_JOB_NAME",
              "OPENLINEAGE_PARENT_RUN_ID")
"""Set by the Airflow DAG's tasks: the task's own OpenLineage job and run (a UUID)."""


def run_uuid(job: str, run_id: str) -> str:
    """The OpenLineage run id (a UUID, as the spec requires) of a lakescore job's run: the same
    for a retry with the same ``--run-id``, so a catalog sees one run that failed, then completed."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"lakescore:{job}:{run_id}"))


def events_file(conf: Any) -> str:
    """Where the file transport writes: ``openlineage.file``, else ``<lakehouse>/openlineage/events.jsonl``."""
    chosen = conf.openlineage.file
    return conf.resolve(chosen) if chosen else conf.lakehouse_path("openlineage", "events.jsonl")


def endpoint(conf: Any) -> str:
    """The place events go, as a warning names it."""
    lineage = conf.openlineage
    if lineage.transport == "file":
        return events_file(conf)
    if lineage.transport == "http":
        return f"{str(lineage.url).rstrip('/')}/{lineage.endpoint.lstrip('/')}"
    return str(lineage.transport)


def emit_run_event(job: str, ctx: Any, state: str, error: str | None = None) -> bool:
    """Emit the run's ``state`` event (START, COMPLETE or FAIL) when a transport is set.
    Returns whether an event was sent; never raises."""
    conf = ctx.conf
    if not conf.openlineage.transport:
        return False
    try:
        event = run_event(job, ctx, state, error)
        client = _client(conf)
        client.emit(event)
        client.close(timeout=conf.openlineage.timeout_seconds)
    except Exception as exc:  # noqa: BLE001 - lineage must never fail the job
        log.warning("openlineage: could not emit the %s event of %s to %s: %s (the job's result "
                    "is unchanged)", state, job, endpoint(conf), exc)
        return False
    return True


def _client(conf: Any) -> Any:
    from openlineage.client import OpenLineageClient

    lineage = conf.openlineage
    if lineage.transport == "file":
        from openlineage.client.transport.file import FileConfig, FileTransport

        path = events_file(conf)
        if "://" not in path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        transport = FileTransport(FileConfig(log_file_path=path, append=True))
    elif lineage.transport == "http":
        from openlineage.client.transport.http import HttpConfig, HttpTransport

        transport = HttpTransport(HttpConfig(url=lineage.url, endpoint=lineage.endpoint,
                                             timeout=lineage.timeout_seconds,
                                             retry={"total": 1, "backoff_factor": 0.2,
                                                    "status_forcelist": [500, 502, 503, 504]}))
    else:
        from openlineage.client.transport.console import ConsoleConfig, ConsoleTransport

        transport = ConsoleTransport(ConsoleConfig())
    return OpenLineageClient(transport=transport)


def run_event(job: str, ctx: Any, state: str, error: str | None = None) -> Any:
    """The ``RunEvent`` of ``state`` for this run; datasets only on the end events."""
    from openlineage.client.event_v2 import Job, Run, RunEvent, RunState
    from openlineage.client.facet_v2 import error_message_run, job_type_job, tags_run

    conf = ctx.conf
    run_facets: dict[str, Any] = {}
    parent = _parent_facet()
    if parent is not None:
        run_facets["parent"] = parent
    engines = list(dict.fromkeys(s.engine for s in ctx.summary.stages)) or [conf.engine]
    tags = [tags_run.TagsRunFacetFields(key="lakescore_run_id", value=ctx.run_id, source="LAKESCORE"),
            tags_run.TagsRunFacetFields(key="engine", value=",".join(engines), source="LAKESCORE")]
    inputs, outputs = [], []
    if state != "START":
        inputs, outputs = datasets(ctx)
        for role, model in _models(ctx):
            prefix = "" if role == "model" else f"{role}_"
            tags += [tags_run.TagsRunFacetFields(key=f"{prefix}model", value=model.model_id, source="LAKESCORE"),
                     tags_run.TagsRunFacetFields(key=f"{prefix}mlflow_run_id", value=model.mlflow_run_id,
                                                 source="LAKESCORE")]
    run_facets["tags"] = tags_run.TagsRunFacet(tags=tags)
    if error:
        run_facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
            message=error, programmingLanguage="python")
    job_facets = {"jobType": job_type_job.JobTypeJobFacet(processingType="BATCH",
                                                          integration="LAKESCORE", jobType="JOB")}
    return RunEvent(eventType=getattr(RunState, state),
                    eventTime=datetime.now(timezone.utc).isoformat(),
                    run=Run(runId=run_uuid(job, ctx.run_id), facets=run_facets),
                    job=Job(namespace=conf.openlineage.namespace, name=job, facets=job_facets),
                    inputs=inputs, outputs=outputs, producer=PRODUCER)


def _parent_facet() -> Any:
    values = [os.environ.get(name) for name in PARENT_ENV]
    if not all(values):
        return None
    from openlineage.client.facet_v2 import parent_run

    namespace, name, run_id = values
    return parent_run.ParentRunFacet(run=parent_run.Run(runId=str(run_id)),
                                     job=parent_run.Job(namespace=str(namespace), name=str(name)))


def _models(ctx: Any) -> list[tuple[str, Any]]:
    seen: dict[tuple[str, str], Any] = {}
    for _engine, item in getattr(ctx, "observations", []):
        if isinstance(item, tuple) and len(item) == 2 and hasattr(item[1], "mlflow_run_id"):
            seen.setdefault((item[0], item[1].model_id), item[1])
    return [(role, model) for (role, _), model in seen.items()]


def dataset_id(path: str) -> tuple[str, str]:
    """OpenLineage's naming of a table's location: ``file`` + absolute path for local tables,
    ``scheme://authority`` + path for object stores (``s3://bucket``, ``/prefix/table``)."""
    parsed = urlparse(path)
    if parsed.scheme and parsed.scheme != "file" and len(parsed.scheme) > 1:
        return f"{parsed.scheme}://{parsed.netloc}", parsed.path or "/"
    return "file", str(Path(parsed.path if parsed.scheme == "file" else path).resolve())


def datasets(ctx: Any) -> tuple[list[Any], list[Any]]:
    """(inputs, outputs) of the run. Outputs: every table a stage committed, at that version.
    Inputs: the tables and versions those commits recorded as read, and the tables this run
    validated, each with this run's Great Expectations results on it."""
    from openlineage.client.event_v2 import InputDataset, OutputDataset
    from openlineage.client.facet_v2 import output_statistics_output_dataset

    from engine.lineage import read_lineage

    outputs, read = [], {}
    for stage in ctx.summary.stages:
        for table, version in stage.written.items():
            path = stage.outputs.get(table) or _table_path(ctx, table)
            if path is None:
                continue
            meta = _quiet(read_lineage, path, version, dict(ctx.conf.storage_options)) or {}
            facets = {**_table_facets(path, version, ctx), "lakescore": _lakescore_facet(meta)}
            stats = {}
            if stage.rows_out is not None and len(stage.written) == 1:
                stats["outputStatistics"] = output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
                    rowCount=int(stage.rows_out))
            namespace, name = dataset_id(path)
            outputs.append(OutputDataset(namespace=namespace, name=name, facets=facets,
                                         outputFacets=stats))
            paths = _json(meta.get("input_paths"))
            for table_name, input_version in _json(meta.get("inputs")).items():
                if table_name in paths:
                    read[(paths[table_name], int(input_version))] = table_name
    assertions = _assertions(ctx)
    for (table_name, version), _ in assertions.items():
        path = _table_path(ctx, table_name)
        if path is not None and version is not None:
            read.setdefault((path, version), table_name)
    inputs = []
    for (path, version), table_name in sorted(read.items()):
        namespace, name = dataset_id(path)
        input_facets = {}
        found = assertions.get((table_name, version))
        if found:
            input_facets["dataQualityAssertions"] = found
        inputs.append(InputDataset(namespace=namespace, name=name, facets=_table_facets(path, version, ctx),
                                   inputFacets=input_facets))
    return inputs, outputs


def _assertions(ctx: Any) -> dict[tuple[str, int | None], Any]:
    """This run's GE results, by (table name, version) of the table they checked."""
    from openlineage.client.facet_v2 import data_quality_assertions_dataset as dq

    from engine.validation.suite import ValidationReport

    found: dict[tuple[str, int | None], list[Any]] = {}
    for _engine, item in getattr(ctx, "observations", []):
        if not isinstance(item, ValidationReport):
            continue
        table, _, rest = item.table.partition("@v")
        digits = "".join(c for c in rest.split(" ")[0] if c.isdigit())
        key = (table.split(" (")[0].strip(), int(digits) if digits else None)
        found.setdefault(key, []).extend(
            dq.Assertion(assertion=o.expectation_type, success=bool(o.success), column=o.column,
                         name=item.suite,
                         actual=None if o.unexpected_count is None else str(o.unexpected_count))
            for o in item.outcomes)
    return {k: dq.DataQualityAssertionsDatasetFacet(assertions=v) for k, v in found.items()}


def _table_path(ctx: Any, table_name: str) -> str | None:
    """The path of a table the run names (``scoring_set_dask`` → the dask scoring set)."""
    fields = sorted(ctx.conf.tables.__dataclass_fields__, key=len, reverse=True)
    for logical in fields:
        if table_name == logical or table_name.startswith(f"{logical}_"):
            return ctx.table(logical, suffix=table_name[len(logical) + 1:]).path
    return None


def _table_facets(path: str, version: int, ctx: Any) -> dict[str, Any]:
    from openlineage.client.facet_v2 import dataset_version_dataset, schema_dataset, storage_dataset

    facets: dict[str, Any] = {
        "version": dataset_version_dataset.DatasetVersionDatasetFacet(datasetVersion=str(version)),
        "storage": storage_dataset.StorageDatasetFacet(storageLayer="delta", fileFormat="parquet"),
    }
    fields = _quiet(_schema_fields, path, version, dict(ctx.conf.storage_options))
    if fields:
        facets["schema"] = schema_dataset.SchemaDatasetFacet(fields=[
            schema_dataset.SchemaDatasetFacetFields(name=name, type=kind) for name, kind in fields])
    return facets


def _schema_fields(path: str, version: int, storage_options: dict[str, str]) -> list[tuple[str, str]]:
    from engine.storage.snapshots import require_table
    from engine.storage.table import TableRef

    schema = require_table(TableRef.at(path, storage_options), version).schema()
    return [(f.name, _type_name(f.type)) for f in schema.fields]


def _type_name(kind: Any) -> str:
    return str(getattr(kind, "type", None) or kind)


def _quiet(fn: Any, *args: Any) -> Any:
    """Metadata a table may not have (moved, vacuumed): the event goes out without it."""
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001
        log.debug("openlineage: %s%s failed: %s", fn.__name__, args[:2], exc)
        return None


def _json(value: Any) -> dict[str, Any]:
    import json

    return json.loads(value) if isinstance(value, str) and value else {}


def _lakescore_facet(meta: dict[str, Any]) -> Any:
    """What lakescore recorded in the commit that wrote this version (``engine.lineage``)."""
    return _facet_class()(
        job=meta.get("job"), run_id=meta.get("run_id"), engine=meta.get("engine"),
        feature_set=meta.get("feature_set"), feature_hash=meta.get("feature_hash"),
        validation_ids=list(_json_list(meta.get("validation_ids"))),
        models=list(_json_list(meta.get("models"))), producer=PRODUCER)


@functools.cache
def _facet_class() -> type:
    """The custom facet's class, built on first use (openlineage is imported only when on)."""
    from openlineage.client.facet_v2 import DatasetFacet

    @attr.define
    class LakescoreDatasetFacet(DatasetFacet):
        job: str | None = None
        run_id: str | None = None
        engine: str | None = None
        feature_set: str | None = None
        feature_hash: str | None = None
        validation_ids: list[str] = attr.field(factory=list)
        models: list[dict[str, str]] = attr.field(factory=list)

        @staticmethod
        def _get_schema() -> str:
            return FACET_SCHEMA_URL

    return LakescoreDatasetFacet


def _json_list(value: Any) -> list[Any]:
    import json

    return json.loads(value) if isinstance(value, str) and value else []
