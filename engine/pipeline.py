"""The stages of a lakescore run over one backend: features → validate → train → score.

Each stage reads Delta tables at a known version, writes at most one Delta commit per output
table, and records in that commit what it read (tables and versions), the feature definition's
hash and, for scores, the model. A stage that fails raises before it commits, so a table is never
left half-written, and the stages after it do not run.
"""

from __future__ import annotations

import logging
import shutil
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.backend import Backend, CanTrainMllib, require
from engine.conf import Conf
from engine.errors import LakescoreError, ModelMismatch
from engine.lineage import Lineage
from engine.storage.delta_log import row_count
from engine.storage.table import CommitInfo, TableRef, WriteMode, WriteResult
from engine.summary import RunSummary

if TYPE_CHECKING:
    from engine.features.definitions import FeatureSet
    from engine.training.registry import ModelRecord
    from engine.validation.suite import ValidationReport

log = logging.getLogger("lakescore")

INPUT_TABLES = ("events", "labels", "to_score")


def new_run_id() -> str:
    """Sortable and unique: UTC time of the start plus a random suffix."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]


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

    @classmethod
    def start(cls, conf: Conf, run_id: str | None = None) -> RunContext:
        run_id = run_id or new_run_id()
        run_dir = conf.lakehouse_path("runs", run_id)
        return cls(conf=conf, run_id=run_id, summary=RunSummary(run_id=run_id, run_dir=run_dir))

    def table(self, logical: str, suffix: str | None = None) -> TableRef:
        """The table for a logical name; outputs get ``suffix`` (default: ``output_suffix``)."""
        path = getattr(self.conf.tables, logical)
        name = logical
        suffix = self.output_suffix if suffix is None else suffix
        if logical not in INPUT_TABLES and suffix:
            path, name = f"{path}_{suffix}", f"{logical}_{suffix}"
        location = path if "://" in path or Path(path).is_absolute() else self.conf.lakehouse_path(path)
        return TableRef(name=name, path=location, storage_options=dict(self.conf.storage_options))

    @property
    def run_dir(self) -> Path:
        return Path(self.summary.run_dir)

    @property
    def models_dir(self) -> Path:
        return Path(self.conf.lakehouse_path("models"))

    def commit(self, job: str, engine: str, table: TableRef, lineage: Lineage,
               app_key: str | None = None) -> CommitInfo:
        """Commit info whose app transaction makes a rerun of the same run (or key) a no-op."""
        app_id = f"lakescore:{job}:{table.name}:{app_key or self.run_id}"
        return CommitInfo(job=job, run_id=self.run_id, engine=engine, app_id=app_id, batch=0,
                          metadata=lineage.to_metadata())


def feature_set(conf: Conf) -> FeatureSet:
    from engine.features.definitions import load_feature_set

    return load_feature_set(conf.resolve(conf.features))


def _record_write(record: Any, result: WriteResult) -> None:
    if result.skipped:
        record.skipped.append(result.table.name)
    else:
        record.written[result.table.name] = result.version
    record.outputs[result.table.name] = result.table.path


def build_features(backend: Backend, ctx: RunContext, spine_table: str, output_table: str,
                   stage: str) -> WriteResult:
    """Join the declared features onto every row of ``spine_table`` as of its time and write
    the result to ``output_table`` (overwrite, one commit)."""
    from engine.features.definitions import definition_hash

    definition = feature_set(ctx.conf)
    with ctx.summary.stage(stage, backend.name) as record:
        events = backend.read(ctx.table("events"), version=definition.source_version,
                              columns=definition.event_columns())
        spine = backend.read(ctx.table(spine_table))
        frame = backend.training_set(definition, events.frame, spine.frame)
        record.rows_in = row_count(spine.table, spine.version)
        record.note = f"{row_count(events.table, events.version):,} events"
        out = ctx.table(output_table)
        lineage = Lineage(inputs={events.table.name: events.version, spine.table.name: spine.version},
                          input_paths={events.table.name: events.table.path, spine.table.name: spine.table.path},
                          feature_set=definition.name, feature_hash=definition_hash(definition))
        current = current_version_made_from(out, lineage)
        if current is not None:
            # The table already holds these features of these input versions: rewriting it would
            # only bump its version and make downstream (scores) see "new" input.
            result = WriteResult(table=out, version=current, rows=0, files=0, skipped=True)
            record.note += f"; up to date at v{current}"
        else:
            result = backend.write(frame, out, WriteMode.OVERWRITE,
                                   ctx.commit(stage, backend.name, out, lineage))
            record.rows_out = result.rows
        _record_write(record, result)
        return result


def current_version_made_from(table: TableRef, lineage: Lineage) -> int | None:
    """The table's latest version if its commit was made from exactly ``lineage``'s inputs and
    feature code, else None. Only the latest commit counts: an older identical commit that was
    since overwritten does not make the table current."""
    from engine.lineage import read_lineage

    try:
        latest = read_lineage(table.path, storage_options=table.storage_options)
    except Exception:  # noqa: BLE001 - no table yet (deltalake raises TableNotFoundError)
        return None
    expected = {k: str(v) for k, v in lineage.to_metadata().items()}
    recorded = {k: str(latest.get(k)) for k in expected}
    if latest and recorded == expected:
        return int(latest["_version"])
    return None


def validate_table(backend: Backend, ctx: RunContext, logical: str, suites: list[str],
                   stage: str = "validate") -> list[ValidationReport]:
    """Run each suite over the table's latest version; raise ``ValidationFailed`` per policy.

    Every report is written under the run directory whatever the verdict, so a failed run
    leaves the evidence behind."""
    from engine.validation.suite import check_supported, enforce, load_suite, write_report

    loaded = [load_suite(ctx.conf.resolve(path)) for path in suites]
    for suite in loaded:
        check_supported(suite, backend.name)
    reports = []
    with ctx.summary.stage(stage, backend.name) as record:
        read = backend.read(ctx.table(logical))
        record.rows_in = row_count(read.table, read.version)
        for suite in loaded:
            report = backend.validate(read.frame, suite, f"{read.table.name}@v{read.version}")
            path = write_report(report, ctx.run_dir / "validation" / backend.name)
            record.outputs[f"validation {suite.name} ({read.table.name})"] = str(path)
            ctx.validation_ids.setdefault(read.table.name, []).append(report.result_id)
            reports.append(report)
        for report in reports:
            enforce(report, ctx.conf.validation.policy)
        record.note = "all expectations met" if all(r.success for r in reports) else "warnings"
    return reports


def train_model(backend: Backend, ctx: RunContext) -> ModelRecord:
    """Train on the training set's latest version with an out-of-time split; register the model.

    H2O imports the Delta table's Parquet files itself, so training does not pass through the
    engine's driver; MLlib needs the Spark backend."""
    from deltalake import DeltaTable

    from engine.features.definitions import definition_hash
    from engine.session import h2o_connection
    from engine.training.registry import register
    from engine.training.split import OutOfTimeSplit

    conf = ctx.conf
    definition = feature_set(conf)
    table = ctx.table("training_set")
    split = OutOfTimeSplit(datetime.fromisoformat(conf.train.valid_from).replace(tzinfo=timezone.utc))
    out_dir = ctx.run_dir / "model"
    if out_dir.exists():
        shutil.rmtree(out_dir)
    with ctx.summary.stage("train", backend.name) as record:
        delta = DeltaTable(table.path, storage_options=table.storage_options or None)
        version = delta.version()
        args = dict(features=definition.feature_names(), label=conf.train.label,
                    time_column=definition.as_of, split=split, params=dict(conf.train.params),
                    out_dir=out_dir)
        if conf.train.algorithm == "h2o_gbm":
            from engine.training.h2o_trainer import train_h2o_gbm

            h2o_connection(conf.h2o)
            trained = train_h2o_gbm(delta.file_uris(), **args)
        else:
            spark_backend = require(backend, CanTrainMllib, "Spark MLlib training (train.algorithm: mllib_gbt)")
            frame = backend.read(table, version=version).frame
            trained = spark_backend.train_mllib(frame, **args)
        model = register(ctx.models_dir, trained, feature_hash=definition_hash(definition),
                         training_table=table.path, training_version=version,
                         run_id=ctx.run_id, engine=backend.name,
                         validation_ids=ctx.validation_ids.get(table.name, []))
        record.rows_in = int(sum(trained.metrics.get(k, 0) for k in ("train_rows", "valid_rows")))
        record.outputs[f"model {model.model_id}"] = str(model.path)
        metrics = {k: trained.metrics[k] for k in ("auc", "logloss") if k in trained.metrics}
        record.note = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
        ctx.summary.facts[f"model {model.model_id} ({backend.name})"] = record.note
        return model


def resolve_model(ctx: RunContext, ref: str | None = None) -> ModelRecord:
    from engine.training.registry import resolve

    return resolve(ctx.models_dir, ref or ctx.conf.score.model)


def check_model_fits(model: ModelRecord, definition: FeatureSet) -> None:
    """Refuse a model trained on other feature code than the one about to be computed."""
    from engine.features.definitions import definition_hash

    current = definition_hash(definition)
    if model.feature_hash != current:
        missing = sorted(set(model.features) - set(definition.feature_names()))
        extra = sorted(set(definition.feature_names()) - set(model.features))
        detail = f"; features only in the model: {missing or 'none'}, only in the definition: {extra or 'none'}"
        raise ModelMismatch(
            f"model {model.model_id} was trained on feature set {definition.name!r} with hash "
            f"{model.feature_hash[:12]}, but the definition now hashes to {current[:12]}{detail}. "
            "Retrain the model or score with the feature code it was trained on.")


def score_rows(backend: Backend, ctx: RunContext, model: ModelRecord) -> WriteResult:
    """Score the scoring set (features as of each row's time) with ``model`` into ``scores``.

    The commit's app transaction is keyed by model and scoring-set version, so scoring the same
    rows with the same model again is a no-op: the scores table never holds duplicates."""
    from engine.features.definitions import definition_hash

    definition = feature_set(ctx.conf)
    check_model_fits(model, definition)
    with ctx.summary.stage("score", backend.name) as record:
        scoring = backend.read(ctx.table("scoring_set"))
        record.rows_in = row_count(scoring.table, scoring.version)
        keys = [definition.entity, definition.as_of]
        constants = {"model_id": model.model_id, "run_id": ctx.run_id}
        if model.kind == "mojo":
            scored = backend.score_mojo(scoring.frame, str(model.artifact_path), keys, constants)
        else:
            spark_backend = require(backend, CanTrainMllib, "Spark MLlib scoring")
            scored = spark_backend.score_mllib(scoring.frame, str(model.artifact_path), keys, constants)
        out = ctx.table("scores")
        lineage = Lineage(inputs={scoring.table.name: scoring.version},
                          input_paths={scoring.table.name: scoring.table.path},
                          feature_set=definition.name, feature_hash=definition_hash(definition),
                          model_id=model.model_id,
                          validation_ids=ctx.validation_ids.get(scoring.table.name, []))
        result = backend.write(scored, out, WriteMode.APPEND, ctx.commit(
            "score", backend.name, out, lineage,
            app_key=f"{model.model_id}:{scoring.table.name}@v{scoring.version}"))
        record.rows_out = result.rows
        _record_write(record, result)
        return result


def write_demo_tables(ctx: RunContext) -> None:
    """Generate the demo's events, labels and rows to score (seeded) into Delta tables.

    Skipped when the tables already hold data generated from the same demo conf, so a second
    ``make demo`` reuses them; a changed size or seed regenerates all three."""
    import dataclasses
    import hashlib
    import json

    from deltalake import DeltaTable, write_deltalake
    from deltalake.exceptions import TableNotFoundError
    from deltalake.transaction import CommitProperties

    from engine.demo_data import generate_demo

    demo = ctx.conf.demo
    demo_hash = hashlib.sha256(json.dumps(dataclasses.asdict(demo), sort_keys=True).encode()).hexdigest()[:16]
    with ctx.summary.stage("generate", "deltalake") as record:
        refs = {name: ctx.table(name) for name in INPUT_TABLES}
        try:
            existing = [DeltaTable(r.path).history(1)[0].get("lakescore.demo_hash") for r in refs.values()]
        except TableNotFoundError:
            existing = []
        if existing == [demo_hash] * len(refs):
            record.note = "demo tables already generated with this conf; reused"
            for r in refs.values():
                record.outputs[r.name] = r.path
            return
        data = generate_demo(demo)
        tables = {"events": data.events, "labels": data.labels, "to_score": data.to_score}
        for name, arrow in tables.items():
            ref = refs[name]
            meta = {"lakescore.job": "generate", "lakescore.run_id": ctx.run_id,
                    "lakescore.engine": "deltalake",
                    "lakescore.demo_hash": demo_hash}
            write_deltalake(ref.path, arrow, mode="overwrite", schema_mode="overwrite",
                            commit_properties=CommitProperties(custom_metadata=meta),
                            storage_options=ref.storage_options or None)
            record.written[name] = DeltaTable(ref.path).version()
            record.outputs[name] = ref.path
        record.rows_out = sum(t.num_rows for t in tables.values())
        record.note = f"{data.events.num_rows:,} events, {data.labels.num_rows:,} labels"


def compare_scores(ctx: RunContext, engines: list[str]) -> float:
    """Max absolute difference between the engines' scores for the same rows and model.

    Reads each engine's scores table with deltalake (independently of both engines) and joins
    on the keys; a row scored by one engine and not the other is a failure too."""
    import pandas as pd
    from deltalake import DeltaTable

    definition = feature_set(ctx.conf)
    keys = [definition.entity, definition.as_of, "model_id"]
    frames = []
    for engine in engines:
        ref = ctx.table("scores", suffix=engine)
        frame = DeltaTable(ref.path).to_pandas(columns=[*keys, "score", "run_id"])
        frame = frame[frame["run_id"] == ctx.run_id] if (frame["run_id"] == ctx.run_id).any() else frame
        frames.append(frame.drop(columns="run_id").rename(columns={"score": f"score_{engine}"}))
    merged = frames[0]
    for frame in frames[1:]:
        merged = pd.merge(merged, frame, on=keys, how="outer", indicator=True)
        unmatched = int((merged["_merge"] != "both").sum())
        if unmatched:
            raise LakescoreError(f"{unmatched} rows of the scores tables were scored by only one "
                                 f"of {engines}; rerun the score stage on each engine")
        merged = merged.drop(columns="_merge")
    base = merged[f"score_{engines[0]}"]
    diff = max(float((merged[f"score_{e}"] - base).abs().max()) for e in engines[1:])
    ctx.summary.facts[f"scores {' vs '.join(engines)}"] = (
        f"{len(merged):,} rows, max abs difference {diff:.3g}")
    return diff
