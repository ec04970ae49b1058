"""Make a run again from its manifest and prove it made the same thing.

``replay(manifest)`` checks first, writing nothing, that the run can be made again: the manifest
is this lakescore's, the job is one whose outputs are a function of its inputs (``features``,
``score``, ``pipeline``), every input table can still be read at the version the run read (time travel: data
appended, merged or compacted since does not matter; files removed by vacuum do), and the
target lakehouse is not the original. It then runs the same job with the recorded conf, the
recorded feature definitions (the YAML text, not today's file), every input pinned to its
version (``input_versions``) and the recorded model versions, into another lakehouse, so nothing
of the original is touched. Last, each table the run wrote is compared with the replay's, column
by column: bit-identical on the same engine, within ``CROSS_ENGINE_TOLERANCE`` on another.

A ``pipeline`` run (``make demo``: features → validate → train → score on one or more engines)
is replayed without generating its demo tables (they are its inputs, read at the recorded
versions) and without training: it scores with the model version the run registered and
scored with (recorded in the manifest). The scores are a function of the inputs and that model,
so retraining is not needed to reproduce them, and it would register a new model version in the
original's registry, which a replay never touches. Its features, validations and scores are
made again: by default on the engines the run used, each compared bit-identically with the same
engine's tables (``scores_spark`` with ``scores_spark``); with ``--engine`` on that engine alone,
every original engine's tables compared with it (bit-identical on that engine, within the
tolerance on the others).
"""

from __future__ import annotations

import importlib
import json
import logging
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import ConfError, InputVersionGone, LakescoreError
from engine.manifest import REDACTED, InputVersion, Manifest, read_manifest

if TYPE_CHECKING:
    from engine.run_context import RunContext

log = logging.getLogger("lakescore.replay")

REPLAYABLE_JOBS = ("features", "score", "pipeline")
CROSS_ENGINE_TOLERANCE = 1e-9
"""Across engines a float may differ by this much (relative to its size above 1)."""

# Columns that name the run or the engine that made a row, not what was computed.
RUN_COLUMNS = ("run_id", "engine", "training_table", "scoring_table")
# Options of the original command line the replay sets itself.
_REPLACED_OPTIONS = {"--conf", "--env", "--set", "--run-id", "--engine", "--engines", "--scheduler",
                     "--log-level", "--model"}
_REPLACED_FLAGS = {"--skip-generate"}


@dataclass
class ColumnDifference:
    column: str
    rows: int
    max_abs: float | None = None

    def __str__(self) -> str:
        extra = "" if self.max_abs is None else f", max abs difference {self.max_abs:.3g}"
        return f"{self.column}: {self.rows:,} rows differ{extra}"


@dataclass
class TableComparison:
    """One output table of the run against the replay's."""

    name: str
    original: str
    replayed: str
    tolerance: float = 0.0
    rows_original: int = 0
    rows_replayed: int = 0
    only_original: int = 0
    only_replayed: int = 0
    columns: list[ColumnDifference] = field(default_factory=list)
    schema: list[str] = field(default_factory=list)

    @property
    def equal(self) -> bool:
        return not (self.only_original or self.only_replayed or self.columns or self.schema
                    or self.rows_original != self.rows_replayed)

    def describe(self) -> str:
        replayed = Path(self.replayed.rstrip("/")).name
        against = f" vs {replayed}" if replayed and replayed != self.name else ""
        head = (f"{self.name}{against}: {self.rows_original:,} rows original, "
                f"{self.rows_replayed:,} replayed, {_bound(self.tolerance)}")
        if self.equal:
            return f"{head}: equal"
        parts = list(self.schema)
        if self.only_original:
            parts.append(f"{self.only_original:,} rows only in the original")
        if self.only_replayed:
            parts.append(f"{self.only_replayed:,} rows only in the replay")
        parts += [str(c) for c in self.columns]
        return f"{head}: DIFFERENT ({'; '.join(parts)})"


@dataclass
class ReplayReport:
    manifest: str
    run_id: str
    replay_run_id: str
    engine: str
    original_engine: str
    lakehouse: str
    tolerance: float
    tables: list[TableComparison] = field(default_factory=list)
    exit_code: int = 0

    @property
    def equal(self) -> bool:
        return self.exit_code == 0 and all(t.equal for t in self.tables)

    def render(self) -> str:
        bounds = {t.tolerance for t in self.tables} or {self.tolerance}
        bound = (_bound(bounds.pop()) if len(bounds) == 1 else
                 f"bit-identical on the same engine, within {CROSS_ENGINE_TOLERANCE:g} across engines")
        lines = [f"replay of run {self.run_id} ({self.original_engine}) as {self.replay_run_id} "
                 f"on {self.engine} into {self.lakehouse}, compared {bound}:"]
        lines += [f"  {t.describe()}" for t in self.tables]
        lines.append("replay EQUAL" if self.equal else "replay DIFFERS")
        return "\n".join(lines)


def _bound(tolerance: float) -> str:
    return "bit-identical" if tolerance == 0 else f"within {tolerance:g}"


# --- checks before anything is written ---------------------------------------------------------

def check_input_readable(item: InputVersion, storage_options: dict[str, str],
                         retention_hours: float | None) -> None:
    """Raise ``InputVersionGone`` (exit 2) naming the table, version and retention when the
    version's data files (or its log) are gone; vacuum removes the files of old versions."""
    from pyarrow import fs as pafs

    from engine.storage.layout import file_path, filesystem
    from engine.storage.snapshots import snapshot
    from engine.storage.table import TableRef

    table = TableRef(name=item.name, path=item.path, storage_options=dict(storage_options))
    hint = (f"Time travel reaches only versions whose files are younger than the vacuum "
            f"retention (maintain.retention_hours: {retention_hours:g} h in the run's conf); keep "
            "the retention longer than the replays you need." if retention_hours is not None else "")
    try:
        snap = snapshot(table, item.version)
    except LakescoreError as exc:
        raise InputVersionGone(f"input {item.name} ({item.path}) version {item.version} can no "
                               f"longer be read: {exc}. {hint}") from exc
    if not snap.files:
        return
    fs, _root = filesystem(table)
    paths = [file_path(table, f.uri)[1] for f in snap.files]
    missing = [p for p, info in zip(paths, fs.get_file_info(paths)) if info.type == pafs.FileType.NotFound]
    if missing:
        raise InputVersionGone(
            f"input {item.name} ({item.path}) version {item.version} can no longer be read: "
            f"{len(missing)} of its {len(paths)} data files were removed{_vacuums(table)}. {hint}")


def _vacuums(table: Any) -> str:
    """When the table was vacuumed and with which retention, from its history."""
    from datetime import datetime, timezone

    from engine.storage.snapshots import open_table

    delta = open_table(table)
    found = []
    for entry in delta.history() if delta is not None else []:
        if str(entry.get("operation", "")).startswith("VACUUM START"):
            params = entry.get("operationParameters") or {}
            millis = params.get("specifiedRetentionMillis") or params.get("defaultRetentionMillis")
            when = datetime.fromtimestamp(entry["timestamp"] / 1000, timezone.utc).isoformat(timespec="seconds")
            retention = f"{float(millis) / 3.6e6:g} h" if millis not in (None, "") else "default"
            found.append(f"vacuum at version {entry.get('version')} ({when}, retention {retention})")
    return f" by {', '.join(found)}" if found else ""


def _same_location(a: str, b: str) -> bool:
    def norm(p: str) -> str:
        return p.rstrip("/") if "://" in p else str(Path(p).resolve())
    return norm(a) == norm(b)


# --- the replay conf ----------------------------------------------------------------------------

def _drop_redacted(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_redacted(v) for k, v in value.items()
                if not (isinstance(v, str) and REDACTED in v)}
    return value


def _logical_of(conf: Any, path: str) -> str | None:
    """The conf's logical table whose location is ``path``."""
    import dataclasses

    for f in dataclasses.fields(conf.tables):
        location = getattr(conf.tables, f.name)
        location = location if "://" in location or Path(location).is_absolute() else conf.lakehouse_path(location)
        if _same_location(location, path):
            return f.name
    return None


def training_tables(original: Any, models: list[dict[str, str]]) -> tuple[str, ...]:
    """The training tables the registry records for the run's models (those it still holds)."""
    if not models:
        return ()
    from engine.run_context import model_registry

    registry = model_registry(original)
    records = (registry.describe(m["name"], int(m["version"])) for m in models)
    return tuple(r.training_table for r in records if r is not None and r.training_table)


def replay_conf(manifest: Manifest, lakehouse: str, engine: str, features_file: str,
                model_tables: tuple[str, ...] = ()) -> dict[str, Any]:
    """The conf of the replay: the run's, redacted keys left out (give them again with
    ``--set``/``--env``), inputs at their original locations pinned to their versions, every
    output under ``lakehouse``, the recorded feature definitions, the original registry.

    An input among ``model_tables`` (the recorded models' training sets, which the drift stage
    reads through the model record at the model's training version) needs no conf table: a
    model trained by a pipeline on several engines names ``training_set_spark``, no table of the
    score run's conf."""
    import dataclasses

    from engine.conf import _coerce, Conf
    from engine.training.registry import default_uris

    original = _coerce(manifest.conf, Conf, "manifest conf")
    data = _drop_redacted(manifest.conf)
    inputs = {}
    for item in manifest.inputs:
        logical = _logical_of(original, item.path)
        if logical is None and any(_same_location(item.path, t) for t in model_tables):
            continue
        if logical is None:
            raise ConfError(f"manifest input {item.name} ({item.path}) is none of the run's "
                            "tables.*; the manifest does not match its conf")
        inputs[logical] = item
    tables = dict(data["tables"])
    for f in dataclasses.fields(original.tables):
        path = tables[f.name]
        if f.name in inputs:
            tables[f.name] = inputs[f.name].path
        elif "://" in path or Path(path).is_absolute():  # an output outside the lakehouse
            tables[f.name] = f"tables/{f.name}"
    tracking, artifacts = default_uris(original.registry, original.lakehouse_path())
    data.update(lakehouse=lakehouse, engine=engine, features=features_file, tables=tables,
                input_versions={name: item.version for name, item in inputs.items()})
    data["registry"] = {**data["registry"], "tracking_uri": tracking, "artifact_location": artifacts}
    return data


def job_arguments(manifest: Manifest) -> list[str]:
    """The job's own options from the original command line (conf-level ones are in the conf)."""
    kept, skip = [], False
    for arg in manifest.argv:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in _REPLACED_FLAGS:
            continue
        if name in _REPLACED_OPTIONS:
            skip = "=" not in arg
            continue
        kept.append(arg)
    return kept


# --- comparing outputs ----------------------------------------------------------------------------

def read_output(path: str, version: int | None, run_id: str, storage_options: dict[str, str]):
    """The rows ``run_id`` wrote into the table at ``version`` (all rows when the table has no
    ``run_id`` column: it was overwritten whole), without the run's bookkeeping columns."""
    import pyarrow.compute as pc

    from engine.storage.snapshots import require_table
    from engine.storage.table import TableRef

    data = require_table(TableRef.at(path, storage_options), version).to_pyarrow_table()
    if "run_id" in data.column_names:
        data = data.filter(pc.equal(data["run_id"], run_id))
    return data.drop_columns([c for c in RUN_COLUMNS if c in data.column_names])


def compare_tables(name: str, original: Any, replayed: Any, tolerance: float,
                   original_path: str = "", replayed_path: str = "") -> TableComparison:
    """Per column, how many rows differ. Rows are matched on every non-float column (keys,
    times, labels, names); float columns must then be equal (NaN equals NaN) or, with a
    ``tolerance``, within it (relative to the value's size above 1)."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    result = TableComparison(name=name, original=original_path, replayed=replayed_path,
                             tolerance=tolerance, rows_original=original.num_rows,
                             rows_replayed=replayed.num_rows)
    if set(original.column_names) != set(replayed.column_names):
        result.schema.append(f"columns differ: only original {sorted(set(original.column_names) - set(replayed.column_names))}, "
                             f"only replay {sorted(set(replayed.column_names) - set(original.column_names))}")
        return result
    replayed = replayed.select(original.column_names)
    floats = [f.name for f in original.schema if pa.types.is_floating(f.type)]
    keys = [c for c in original.column_names if c not in floats]
    left = original.to_pandas(coerce_temporal_nanoseconds=False)
    right = replayed.to_pandas(coerce_temporal_nanoseconds=False)
    for column in keys:  # exact comparison of keys needs one representation on both sides
        if str(left[column].dtype) != str(right[column].dtype):
            result.schema.append(f"{column}: type {left[column].dtype} vs {right[column].dtype}")
    if result.schema:
        return result
    left["_n"] = left.groupby(keys, dropna=False).cumcount() if keys else range(len(left))
    right["_n"] = right.groupby(keys, dropna=False).cumcount() if keys else range(len(right))
    merged = pd.merge(left, right, on=[*keys, "_n"], how="outer", suffixes=("", "__replay"),
                      indicator=True)
    result.only_original = int((merged["_merge"] == "left_only").sum())
    result.only_replayed = int((merged["_merge"] == "right_only").sum())
    both = merged[merged["_merge"] == "both"]
    for column in floats:
        a = both[column].to_numpy(dtype="float64")
        b = both[f"{column}__replay"].to_numpy(dtype="float64")
        same_nan = np.isnan(a) & np.isnan(b)
        if tolerance == 0:
            # bit-identical: the same doubles (0.0 and -0.0 differ too)
            differ = ~same_nan & (a.view("int64") != b.view("int64"))
        else:
            scale = np.maximum(1.0, np.abs(a))
            with np.errstate(invalid="ignore"):
                differ = ~same_nan & ~(np.abs(a - b) <= tolerance * scale)
        count = int(differ.sum())
        if count:
            gaps = np.abs(a[differ] - b[differ])
            worst = float(np.nanmax(gaps)) if np.isfinite(gaps).any() else math.nan
            result.columns.append(ColumnDifference(column, count, worst))
    return result


def _replay_path(output_path: str, original_lakehouse: str, lakehouse: str, name: str) -> str:
    root = original_lakehouse.rstrip("/")
    if output_path.startswith(root + "/"):
        return lakehouse.rstrip("/") + output_path[len(root):]
    return lakehouse.rstrip("/") + f"/tables/{name}"


def replay_target(name: str, where: dict[str, Any], original_engines: list[str],
                  replay_engines: list[str], original_lakehouse: str,
                  lakehouse: str) -> tuple[str, float]:
    """Where the replay wrote the table the run wrote as ``name``, and the tolerance to compare
    them with. A run on several engines writes one table per engine (``scores_spark``); the
    replay's table is the one of the same engine when the replay ran it, else the one of the
    replay's (single) engine: bit-identical on the same engine, ``CROSS_ENGINE_TOLERANCE`` across."""
    engine = where.get("engine") or original_engines[0]
    path = where["path"].rstrip("/")
    suffix = f"_{engine}"
    if len(original_engines) > 1 and name.endswith(suffix) and path.endswith(suffix):
        name, path = name[: -len(suffix)], path[: -len(suffix)]
    target = engine if engine in replay_engines else replay_engines[0]
    if len(replay_engines) > 1:
        name, path = f"{name}_{target}", f"{path}_{target}"
    tolerance = 0.0 if target == engine else CROSS_ENGINE_TOLERANCE
    return _replay_path(path, original_lakehouse, lakehouse, name), tolerance


# --- the replay ---------------------------------------------------------------------------------------

def replay(manifest_uri: str, *, engine: str | None = None, into: str | None = None,
           overrides: list[str] = (), env: str | None = None,
           storage_options: dict[str, str] | None = None, run_id: str | None = None) -> ReplayReport:
    """Replay the run of ``manifest_uri`` and compare; see the module docstring. Raises before
    writing anything when the run cannot be made again."""
    import yaml

    from engine.conf import Conf, _coerce, load_conf
    from engine.run_context import new_run_id

    options = dict(storage_options or {})
    manifest = read_manifest(manifest_uri, options)
    if manifest.job not in REPLAYABLE_JOBS:
        raise ConfError(f"run {manifest.run_id} is a {manifest.job!r} job; replay makes again the "
                        f"jobs whose tables are a function of their inputs: {', '.join(REPLAYABLE_JOBS)}")
    if not manifest.outputs:
        raise ConfError(f"run {manifest.run_id} ({manifest.job}) wrote no table (it was up to date "
                        "or skipped): there is nothing to replay and compare")
    if "yaml" not in manifest.features:
        raise ConfError(f"manifest {manifest_uri} carries no feature definitions "
                        f"({manifest.features.get('error', 'none recorded')})")
    original = _coerce(manifest.conf, Conf, "manifest conf")
    original_lakehouse = original.lakehouse_path()
    original_engines = list(manifest.engine.get("engines") or [manifest.engine["name"]])
    engines = [engine] if engine else original_engines
    engine = engines[0]
    replay_id = run_id or new_run_id()
    lakehouse = into or f"{original_lakehouse}/replays/{replay_id}"
    if _same_location(lakehouse, original_lakehouse):
        raise ConfError(f"--into {lakehouse} is the original run's lakehouse: a replay writes into "
                        "another lakehouse so that nothing of the original is touched")
    options = {**_drop_redacted(manifest.conf.get("storage_options", {})), **options}
    retention = manifest.conf.get("maintain", {}).get("retention_hours")
    for item in manifest.inputs:
        check_input_readable(item, options, retention)

    with tempfile.TemporaryDirectory(prefix="lakescore-replay-") as scratch:
        features_file = Path(scratch) / Path(manifest.features["path"]).name
        features_file.write_text(manifest.features["yaml"])
        data = replay_conf(manifest, lakehouse, engine, str(features_file),
                           model_tables=training_tables(original, manifest.models))
        conf_file = Path(scratch) / "replay.yaml"
        conf_file.write_text(yaml.safe_dump(data, sort_keys=False))
        extra = [f"storage_options.{k}={json.dumps(v)}" for k, v in options.items()]
        conf = load_conf(conf_file, env=env, overrides=[*extra, *overrides])  # fails before writing
        argv = ["--conf", str(conf_file), "--run-id", replay_id,
                *[a for o in [*extra, *overrides] for a in ("--set", o)],
                *(["--env", env] if env else []), *job_arguments(manifest)]
        champion = next((m for m in manifest.models if m.get("role") in ("model", "champion")), None)
        challenger = next((m for m in manifest.models if m.get("role") == "challenger"), None)
        if manifest.job in ("score", "pipeline"):
            if champion is None:
                raise ConfError(f"manifest of {manifest.job} run {manifest.run_id} records no model "
                                "it scored with (the run wrote no scores): nothing to replay")
            argv += ["--model", f"{champion['name']}/{champion['version']}"]
        if manifest.job == "score":
            argv += ["--set", "score.challenger=" + (f"{challenger['name']}/{challenger['version']}"
                                                     if challenger else "null")]
        if manifest.job == "pipeline":  # its generated tables are inputs; its model is recorded
            argv += ["--skip-generate", "--engines", ",".join(engines)]
        log.info("replaying run %s (%s on %s) as %s on %s into %s", manifest.run_id, manifest.job,
                 ",".join(original_engines), replay_id, ",".join(engines), lakehouse)
        job = importlib.import_module(f"jobs.{manifest.job}")
        code = job.main(argv)
    # bit-identical throughout only when every engine of the run was replayed on itself
    loosest = 0.0 if set(original_engines) <= set(engines) else CROSS_ENGINE_TOLERANCE
    report = ReplayReport(manifest=manifest_uri, run_id=manifest.run_id, replay_run_id=replay_id,
                          engine=",".join(engines), original_engine=",".join(original_engines),
                          lakehouse=lakehouse, tolerance=loosest, exit_code=code)
    if code:
        return report
    replay_options = dict(conf.storage_options)
    for name, where in sorted(manifest.outputs.items()):
        target, tolerance = replay_target(name, where, original_engines, engines,
                                          original_lakehouse, lakehouse)
        report.tables.append(compare_tables(
            name, read_output(where["path"], where["version"], manifest.run_id, options),
            read_output(target, None, replay_id, replay_options), tolerance, where["path"], target))
    return report


def compare_scores(ctx: RunContext, engines: list[str]) -> float:
    """Max absolute difference between the engines' scores for the same rows and model.

    Reads each engine's scores table through the storage layer (independently of both engines)
    and joins on the keys; a row scored by one engine and not the other is a failure too."""
    import pandas as pd

    from engine.storage import snapshots

    definition = ctx.feature_set()
    keys = [*definition.entity_keys, definition.as_of, "model_id"]
    frames = []
    for engine in engines:
        ref = ctx.table("scores", suffix=engine)
        frame = snapshots.require_table(ref).to_pandas(
            columns=[*keys, "score", "run_id"])
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
