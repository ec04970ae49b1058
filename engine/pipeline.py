"""The stages of a lakescore run over one backend: features → validate → train → score.

Each stage reads Delta tables at a known version, writes at most one Delta commit per output
table, and records in that commit what it read (tables and versions), the feature definition's
hash and, for scores, the model. A stage that fails raises before it commits, so a table is never
left half-written, and the stages after it do not run.

What a stage reads and writes goes into the run summary once, through the run context
(``ctx.record_read`` / ``ctx.record_write``, ``engine.run_context``); the demo tables are written
by ``engine.demo_data`` and the engines' scores compared by ``engine.replay.compare_scores``.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.backend import Backend, CanConcat, CanScoreMllib, require, require_suite, require_trainer
from engine.errors import ModelMismatch
from engine.lineage import Lineage
from engine.run_context import INPUT_TABLES, RunContext
from engine.storage import snapshots
from engine.storage.footers import check_data_files
from engine.storage.snapshots import row_count
from engine.storage.table import TableRef, WriteMode, WriteResult

if TYPE_CHECKING:
    from engine.features.definitions import FeatureSet
    from engine.training.registry import ModelRecord
    from engine.validation.suite import ValidationReport

log = logging.getLogger("lakescore")


def build_features(backend: Backend, ctx: RunContext, spine_table: str, output_table: str,
                   stage: str) -> WriteResult:
    """Join the declared features onto every row of ``spine_table`` as of its time and write
    the result to ``output_table`` (overwrite, one commit)."""
    from engine.features.definitions import definition_hash

    definition = ctx.feature_set()
    with ctx.stage(stage, backend.name) as record:
        events_version = check_input_files(ctx.table("events"), definition.source_version,
                                           definition.event_columns())
        spine_version = check_input_files(ctx.table(spine_table))
        events = backend.read(ctx.table("events"), version=events_version,
                              columns=definition.event_columns())
        spine = backend.read(ctx.table(spine_table), version=spine_version)
        check_inputs_usable(ctx, definition, events, spine, spine_table)
        frame = backend.training_set(definition, events.frame, spine.frame)
        ctx.record_read(spine)
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
        ctx.record_write(result)
        return result


def check_inputs_usable(ctx: RunContext, definition: FeatureSet, events: Any, spine: Any,
                        spine_table: str) -> None:
    """Before any feature is computed (so nothing is written): a labels spine has its label,
    there are events, and the spine's as-of times are not beyond them
    (``engine.policies.guards``)."""
    from engine.features.definitions import parse_duration
    from engine.policies.guards import check_as_of_fresh, check_spine_columns

    if spine_table == "labels":
        check_spine_columns(spine.table, spine.version, {ctx.conf.train.label: "label"})
    lag = ctx.conf.validation.max_as_of_lag
    check_as_of_fresh(definition, events.table, events.version, spine.table, spine.version,
                      None if lag is None else parse_duration(lag))


def check_input_files(table: TableRef, version: int | None = None,
                      columns: list[str] | None = None) -> int:
    """Resolve the version to read and, for an input table (one lakescore did not write), check
    its files' footers against its schema before an engine opens them: a damaged file is
    ``UnreadableFile`` (exit 8), a mistyped one ``SchemaMismatch`` (exit 3), the same on every
    engine. Tables lakescore wrote are not re-checked. Returns the version."""
    version = snapshots.readable_version(table, version)
    if table.name in INPUT_TABLES:
        check_data_files(table, version, columns)
    return version


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

    Every report is written under the run directory whatever the verdict, as JSON and as GE
    Data Docs HTML (``validation/<engine>/``), so a failed run leaves the evidence behind; the
    summary lists both paths. Under policy ``quarantine`` (``validation.policy_for``) the
    rows failed row-level expectations blame go to the quarantine table and the table keeps
    only the others (``engine.policies.quarantine.quarantine_rows``)."""
    from engine.validation.suite import enforce, load_suite

    loaded = [require_suite(backend, load_suite(ctx.conf.resolve(path))) for path in suites]
    policy = ctx.conf.validation.policy_for(logical)
    reports = []
    with ctx.stage(stage, backend.name) as record:
        read = backend.read(ctx.table(logical), version=check_input_files(ctx.table(logical)))
        ctx.record_read(read)

        def validate(frame: Any, table: str) -> list[ValidationReport]:
            return _run_suites(backend, ctx, loaded, frame, table, read.table.name, record)

        reports = validate(read.frame, f"{read.table.name}@v{read.version}")
        if policy == "quarantine":
            _quarantine(backend, ctx, read, reports, validate, record)
        else:
            for report in reports:
                enforce(report, policy)
        if not record.note:
            record.note = "all expectations met" if all(r.success for r in reports) else "warnings"
        if logical in FEATURE_TABLES and ctx.conf.validation.max_default_share is not None:
            record.note += "; " + _check_default_share(backend, ctx, read, policy)
    return reports


FEATURE_TABLES = ("training_set", "scoring_set")


def _check_default_share(backend: Backend, ctx: RunContext, read: Any, policy: str) -> str:
    """Refuse a feature table whose rows mostly saw no event at all (``guards.check_default_share``);
    under policy ``warn`` only log it."""
    from engine.backend import CanCountDefaults
    from engine.errors import ValidationFailed
    from engine.policies.guards import check_default_share, defaults_of

    columns = set(read.frame.columns)
    defaults = {k: v for k, v in defaults_of(ctx.feature_set()).items() if k in columns}
    if not defaults:
        return "no features of the definition in this table"
    counter = require(backend, CanCountDefaults, "the all-default rows guard")
    count = counter.count_all_default(read.frame, defaults)
    try:
        return check_default_share(count, f"{read.table}@v{read.version}",
                                   ctx.conf.validation.max_default_share, list(defaults))
    except ValidationFailed as exc:
        if policy != "warn":
            raise
        log.warning("%s", exc)
        return f"warning: {count[1]:,} of {count[0]:,} rows all-default"


def _run_suites(backend: Backend, ctx: RunContext, suites: list[Any], frame: Any, label: str,
                table_name: str, record: Any) -> list[ValidationReport]:
    """Each suite over ``frame``; its JSON report and Data Docs under the run directory, its
    result id recorded for the lineage of what is written from ``table_name``."""
    from engine.validation.docs import write_data_docs
    from engine.validation.suite import write_report

    checked = []
    for suite in suites:
        report = backend.validate(frame, suite, label)
        where = ctx.run_location("validation", backend.name)
        options = dict(ctx.conf.storage_options)
        path = write_report(report, where, options)
        docs = write_data_docs(report, where, ctx.run_id, options)
        record.outputs[f"validation {suite.name} ({label})"] = str(path)
        record.outputs[f"data docs {suite.name} ({label})"] = str(docs)
        ctx.validation_ids.setdefault(table_name, []).append(report.result_id)
        ctx.observations.append((backend.name, report))
        checked.append(report)
    return checked


def validate_inputs(backend: Backend, ctx: RunContext, *logical: str) -> None:
    """Validate input tables that have suites in conf (``validation.suites``) before anything
    is built from them; tables without suites are skipped."""
    for name in logical:
        suites = ctx.conf.validation.suites_for(name)
        if suites:
            validate_table(backend, ctx, name, suites, stage=f"validate {name}")


def _validate_scores(backend: Backend, ctx: RunContext, frame: Any, out: TableRef,
                     record: Any) -> None:
    """The scores batch against ``validation.suites.scores`` before it is written (policy
    ``fail`` or ``warn``: a scores batch is never partly written)."""
    from engine.validation.suite import enforce, load_suite

    paths = ctx.conf.validation.suites_for("scores")
    if not paths:
        return
    suites = [require_suite(backend, load_suite(ctx.conf.resolve(path))) for path in paths]
    policy = ctx.conf.validation.policy_for("scores")
    for report in _run_suites(backend, ctx, suites, frame, f"{out.name} (batch)", out.name, record):
        enforce(report, "warn" if policy == "warn" else "fail")


def _quarantine(backend: Backend, ctx: RunContext, read: Any, reports: list[ValidationReport],
                validate: Any, record: Any) -> None:
    from engine.policies.quarantine import QUARANTINE_RUN_ID, QUARANTINE_SOURCE, quarantine_rows

    target = ctx.table_at(f"quarantine_{read.table.name}",
                          f"{ctx.table('quarantine').path}/{read.table.name}")
    result = quarantine_rows(
        backend, read, reports, target,
        commit_for=lambda job, table, lineage: ctx.commit(job, backend.name, table, lineage),
        revalidate=lambda kept: validate(kept, f"{read.table.name} (kept rows)"),
        constants={QUARANTINE_RUN_ID: ctx.run_id,
                   QUARANTINE_SOURCE: f"{read.table.name}@v{read.version}"})
    if result is not None:
        ctx.observations.append((backend.name, result))
        # The kept rows replace the table read in place: it stays the output of the stage
        # that made it (so the run's manifest keeps that commit's lineage); they are what
        # goes on, the stage's rows out.
        ctx.record_write(result.kept_write, output=False)
        ctx.record_write(result.quarantine_write, rows_out=False)
        record.note = (f"quarantined {result.quarantined:,} rows ({'; '.join(result.reasons)}), "
                       f"kept {result.kept:,}")


def train_model(backend: Backend, ctx: RunContext) -> ModelRecord:
    """Train on the training set's latest version with an out-of-time split; register the model
    as a new MLflow model version tagged with its lineage.

    H2O imports the Delta table's Parquet files itself, so training does not pass through the
    engine's driver; MLlib needs the Spark backend."""
    from engine.conf import REPO_ROOT
    from engine.features.definitions import definition_hash
    from engine.training import TrainingSource, TrainSpec, trainer_for
    from engine.training.carried import model_companions
    from engine.training.contract import feature_fingerprints
    from engine.training.registry import git_commit
    from engine.training.split import OutOfTimeSplit

    conf = ctx.conf
    definition = ctx.feature_set()
    table = ctx.table("training_set")
    split = OutOfTimeSplit(datetime.fromisoformat(conf.train.valid_from).replace(tzinfo=timezone.utc))
    # The trainer writes the MOJO and its reports to a local directory, which the registry
    # then logs as the model's artifacts: the run directory when it is local, else a temporary one.
    from engine.storage.files import is_remote

    out_dir = (Path(tempfile.mkdtemp(prefix=f"lakescore-model-{ctx.run_id}-"))
               if is_remote(ctx.summary.run_dir) else ctx.run_dir / "model")
    if out_dir.exists():
        shutil.rmtree(out_dir)
    registry = ctx.model_registry()
    with ctx.stage("train", backend.name) as record:
        delta = snapshots.require_table(table)  # the pinned version, else the latest: one load
        version = delta.version()
        spec = TrainSpec(features=tuple(definition.feature_names()), label=conf.train.label,
                         time_column=definition.as_of, split=split, params=dict(conf.train.params),
                         task=conf.train.task, threshold=conf.train.threshold,
                         # Folds group by the first entity key: rows sharing it share a fold, so
                         # no entity (all keys) straddles two folds.
                         folds=conf.train.folds, group_column=definition.entity_keys[0])
        trainer = trainer_for(conf.train.algorithm)
        require_trainer(backend, trainer)
        files = tuple(delta.file_uris())
        data = trainer.training_data(TrainingSource(
            files=files, h2o=conf.h2o,
            local_files=lambda: local_copies(table, files, out_dir.parent / "training_set"),
            frame=lambda: backend.read(table, version=version).frame))
        trained = trainer.train(data, spec, out_dir)
        carried = model_companions(conf.resolve(conf.features), definition, ctx.table("events").path,
                                   trained, out_dir / "carried")
        model = registry.register(
            trained, feature_hash=definition_hash(definition), training_table=table.path,
            training_version=version, run_id=ctx.run_id, engine=backend.name,
            git_commit=git_commit(REPO_ROOT), validation_ids=ctx.validation_ids.get(table.name, []),
            feature_fingerprints=feature_fingerprints(definition),
            extra_artifacts=sorted(p for p in out_dir.glob("*.json")), carried_files=carried)
        ctx.observations.append((backend.name, ("trained", model)))
        record.rows_in = int(sum(trained.metrics.get(k, 0) for k in ("train_rows", "valid_rows")))
        record.outputs[f"model {model.model_id}"] = f"{registry.tracking_uri} (MLflow run {model.mlflow_run_id})"
        metrics = {k: trained.metrics[k] for k in ("auc", "logloss", "rmse") if k in trained.metrics}
        record.note = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
        ctx.summary.facts[f"model {model.model_id} ({backend.name})"] = record.note
        return model


def local_copies(table: TableRef, files: tuple[str, ...], directory: Path) -> tuple[str, ...]:
    """A table's ``files`` on local disk: themselves when local, else copies in ``directory``
    read through the storage layer's filesystem (the table's ``storage_options``)."""
    from pyarrow import fs as pafs

    from engine.storage.layout import file_path

    if not any("://" in uri and not uri.startswith("file://") for uri in files):
        return files
    directory.mkdir(parents=True, exist_ok=True)
    local = []
    for k, uri in enumerate(files):
        source_fs, path = file_path(table, uri)
        target = directory / f"{k:05d}-{Path(path).name}"
        pafs.copy_files(path, str(target), source_filesystem=source_fs,
                        destination_filesystem=pafs.LocalFileSystem())
        local.append(str(target))
    return tuple(local)


def resolve_model(ctx: RunContext, ref: str | None = None) -> ModelRecord:
    """The registered version ``ref`` (default ``score.model``) names: ``name@alias``,
    ``name/version``, a name or ``latest``."""
    return ctx.model_registry().resolve(ref or ctx.conf.score.model)


def check_model_fits(model: ModelRecord, definition: FeatureSet) -> None:
    """Refuse a model trained on other feature code than the one about to be computed, naming
    the features that differ (changed definition, only in the model, only in the definition)."""
    from engine.features.definitions import definition_hash
    from engine.training.contract import feature_difference

    current = definition_hash(definition)
    difference = feature_difference(model.features, model.feature_fingerprints, definition)
    if model.feature_hash != current or difference:
        raise ModelMismatch(
            f"model {model.model_id} was trained on feature set {definition.name!r} with hash "
            f"{model.feature_hash[:12]}, but the definition now hashes to {current[:12]}; features "
            f"{difference.describe()}. Retrain the model or score with the feature code it was "
            "trained on.")


def require_scorer(backend: Backend, *models: ModelRecord | None) -> None:
    """Before any work of a scoring job: the engine can run the MOJO scorer everywhere it will
    and each model's MOJO can be read there (Spark: the class on the driver, the MOJO on the
    executors; Dask: Java 17, the jars and the MOJO on every worker), so a broken Java, a missing
    jar or a MOJO a worker cannot write or read is exit 7 before anything is written."""
    from engine.scoring.mojo import read_mojo_info

    mojos = [str(m.artifact_path) for m in models if m is not None and m.kind == "mojo"]
    for path in mojos:  # a file that is no MOJO is the model's fault (ModelMismatch), not a worker's
        read_mojo_info(path)
    if mojos:
        backend.require_scorer(mojos)


def _score_frame(backend: Backend, frame: Any, model: ModelRecord, keys: list[str],
                 constants: dict[str, str]) -> Any:
    if model.kind == "mojo":
        return backend.score_mojo(frame, str(model.artifact_path), keys, constants)
    spark_backend = require(backend, CanScoreMllib, "Spark MLlib scoring")
    return spark_backend.score_mllib(frame, str(model.artifact_path), keys, constants)


def score_rows(backend: Backend, ctx: RunContext, model: ModelRecord,
               challenger: ModelRecord | None = None) -> WriteResult:
    """Score the scoring set (features as of each row's time) with ``model`` into ``scores``;
    with a ``challenger``, score the same rows with it too and write both in the same commit
    (one row per model, told apart by ``model_id``).

    The commit records one app transaction per model, keyed by model and scoring-set version:
    a model that already scored this scoring-set version is left out (scoring the same rows with
    the same model again is a no-op, alone or next to a challenger), so the scores table never
    holds a model's rows for one input twice."""
    from engine.features.definitions import definition_hash
    from engine.scoring.batches import BATCH_KEY, previous_batch_partitions

    definition = ctx.feature_set()
    models = [model] + ([challenger] if challenger is not None else [])
    for each in models:
        check_model_fits(each, definition)
    check_drift(backend, ctx, model)
    with ctx.stage("score", backend.name) as record:
        scoring = backend.read(ctx.table("scoring_set"))
        ctx.record_read(scoring)
        out = ctx.table("scores")
        commits = {each.model_id: ctx.commit("score", backend.name, out, Lineage(),
                                             app_key=f"{each.model_id}:{scoring.table.name}@v{scoring.version}")
                   for each in models}
        delta = snapshots.open_table(out)  # one log load answers every model
        done = [m for m in models if snapshots.committed_in(delta, commits[m.model_id])]
        if done:
            skipped = WriteResult(table=out, version=delta.version(), rows=0, files=0, skipped=True)
            for each in done:
                ctx.record_write(skipped, name=f"{out.name} of {each.model_id}")
            models = [m for m in models if m not in done]
            if not models:
                return skipped
        keys = [*definition.entity_keys, definition.as_of]
        scored = [_score_frame(backend, scoring.frame, each, keys,
                               {"model_id": each.model_id, "run_id": ctx.run_id}) for each in models]
        frame = scored[0] if len(scored) == 1 else require(backend, CanConcat, "champion/challenger scoring").concat(scored)
        roles = (["model"] if challenger is None else
                 ["champion" if m is model else "challenger" for m in models])
        ctx.observations.extend((backend.name, pair) for pair in zip(roles, models))
        lineage = Lineage(inputs={scoring.table.name: scoring.version},
                          input_paths={scoring.table.name: scoring.table.path},
                          feature_set=definition.name, feature_hash=definition_hash(definition),
                          model_id=models[0].model_id,
                          validation_ids=ctx.validation_ids.get(scoring.table.name, []),
                          models=[{"role": role, "name": each.name, "version": str(each.version),
                                   "mlflow_run_id": each.mlflow_run_id,
                                   "registry": ctx.model_registry().tracking_uri}
                                  for role, each in zip(roles, models)])
        frame = backend.with_utc_date(frame, definition.as_of, SCORE_DATE)
        _validate_scores(backend, ctx, frame, out, record)
        first = commits[models[0].model_id]
        batch = ctx.conf.score.batch
        replaces = (previous_batch_partitions(out, batch, [m.model_id for m in models], SCORES_PARTITIONS)
                    if batch else ())
        commit = replace(first, metadata={**lineage.to_metadata(), **({BATCH_KEY: batch} if batch else {})},
                         also=tuple(commits[m.model_id].app_id for m in models[1:]),
                         replaces=replaces)
        started = time.perf_counter()
        result = backend.write(frame, out, scores_write_mode(out), commit)
        seconds = time.perf_counter() - started
        ctx.record_write(result)
        record.note = describe_scores(backend, out, result, [m.model_id for m in models],
                                      ctx.run_id, seconds)
        return result


SCORE_DATE = "score_date"
SCORES_PARTITIONS = (SCORE_DATE, "model_id")


def scores_write_mode(out: TableRef) -> WriteMode:
    """Replace the (score date, model) partitions a batch covers when the scores table is laid
    out by them (the default, ``layout.scores``): scoring a date again with a model replaces that
    model's scores of that date, so a rerun never duplicates rows, even when its input changed,
    and other models' and dates' scores are untouched. A table laid out otherwise is appended
    to; the app transaction per model and input still makes a rerun of the same input a no-op."""
    partitions = snapshots.partition_columns(out)
    if all(column in partitions for column in SCORES_PARTITIONS):
        return WriteMode.REPLACE_PARTITIONS
    log.warning("scores table %s is partitioned by %s, not %s: appending (a rerun of the same "
                "input is skipped; a rerun with changed input adds rows)", out, partitions,
                list(SCORES_PARTITIONS))
    return WriteMode.APPEND


def describe_scores(backend: Backend, out: TableRef, result: WriteResult, model_ids: list[str],
                    run_id: str, seconds: float) -> str:
    """Rows/s of scoring + writing, and the deciles of the scores just written: read back from
    the partitions this write added (one pass over one column, approximate quantiles), so the
    scoring is not recomputed and nothing is collected."""
    if result.skipped or not result.rows:
        return "nothing new to score"
    rate = result.rows / seconds if seconds > 0 else float("inf")
    # Only the partitions this write added are read (all of the table on the native path).
    frame = backend.read(out, version=result.version, columns=["score", "run_id", "model_id"],
                         partitions=result.partitions or None).frame
    parts = []
    for model_id in model_ids:
        deciles = backend.approx_quantiles(frame, "score", [i / 10 for i in range(1, 10)],
                                           where={"run_id": run_id, "model_id": model_id})
        shown = " ".join("-" if q is None else f"{q:.3g}" for q in deciles)
        parts.append(f"{model_id} score deciles {shown}")
    return f"{rate:,.0f} rows/s; " + "; ".join(parts)


def check_drift(backend: Backend, ctx: RunContext, model: ModelRecord) -> WriteResult | None:
    """Compare each model feature in the scoring set with the model's training set (PSI over the
    training deciles, or over the training levels for string and boolean features, and null
    rate, ``engine.policies.drift``); log a warning per drifted feature and append the figures
    to the drift metrics table with lineage.

    Drift informs, it never gates: whatever goes wrong while measuring or recording it (a type
    without a measure, an unreadable training set, a conflict on the metrics table) is logged as
    a warning and noted in the run summary, and scoring goes on."""
    drift = ctx.conf.drift
    if not drift.enabled:
        return None
    with ctx.stage("drift", backend.name) as record:
        try:
            return _measure_drift(backend, ctx, model, record)
        except Exception as exc:  # noqa: BLE001 - drift must never fail a job (see docstring)
            log.warning("drift not measured, scoring goes on: %s: %s", type(exc).__name__, exc,
                        exc_info=log.isEnabledFor(logging.DEBUG))
            record.status = "not measured"
            record.note = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
            return None


def _measure_drift(backend: Backend, ctx: RunContext, model: ModelRecord, record: Any) -> WriteResult:
    from engine.policies.drift import measure_drift, write_drift_metrics
    from engine.validation.kinds import column_kinds

    drift = ctx.conf.drift
    name = Path(model.training_table.rstrip("/")).name
    train_ref = ctx.table_at(name, model.training_table)
    train = backend.read(train_ref, version=model.training_version)
    scoring = backend.read(ctx.table("scoring_set"))
    features = list(model.features)
    kinds = column_kinds(snapshots.arrow_schema(train_ref, model.training_version))
    drifts = measure_drift(backend, train.frame, scoring.frame, features, drift.bins,
                           drift.psi_threshold, drift.null_rate_threshold, kinds=kinds,
                           max_levels=drift.max_levels)
    out = ctx.table("drift")
    lineage = Lineage(inputs={name: train.version, scoring.table.name: scoring.version},
                      input_paths={name: train.table.path, scoring.table.name: scoring.table.path},
                      model_id=model.model_id,
                      validation_ids=ctx.validation_ids.get(scoring.table.name, []))
    commit = ctx.commit("drift", backend.name, out, lineage,
                        app_key=f"{model.model_id}:{scoring.table.name}@v{scoring.version}")
    result = write_drift_metrics(drifts, out, commit, constants={
        "run_id": ctx.run_id, "model_id": model.model_id, "engine": backend.name,
        "training_table": f"{name}@v{train.version}",
        "scoring_table": f"{scoring.table.name}@v{scoring.version}"})
    ctx.record_write(result)
    ctx.record_read(scoring)
    ctx.observations.extend((backend.name, d) for d in drifts)
    warned = [d.feature for d in drifts if d.warn]
    worst = max((d for d in drifts if d.psi is not None), key=lambda d: d.psi, default=None)
    record.note = (f"max PSI {worst.psi:.3f} ({worst.feature}); " if worst else "") + \
        (f"drift warned: {', '.join(warned)}" if warned else "no drift above thresholds")
    return result
