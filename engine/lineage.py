"""What a written table records about how it was made, in its Delta commit's metadata.

Every lakescore commit carries the tables and versions it read, the feature definition's name
and content hash, the model (for scores) and the validation results that gated it, so that a
score can be traced back to the data, feature code and model that made it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from collections.abc import Callable
from typing import Any


@dataclass(frozen=True)
class Lineage:
    inputs: dict[str, int] = field(default_factory=dict)
    input_paths: dict[str, str] = field(default_factory=dict)
    feature_set: str | None = None
    feature_hash: str | None = None
    model_id: str | None = None
    validation_ids: list[str] = field(default_factory=list)
    models: list[dict[str, str]] = field(default_factory=list)
    """For scores: each model that scored the batch (``role``, ``name``, ``version``,
    ``mlflow_run_id``, ``registry``), the champion first."""

    def to_metadata(self) -> dict[str, Any]:
        """Flat string values: Delta readers (Spark's DESCRIBE HISTORY, delta-rs) show them as is."""
        meta: dict[str, Any] = {"inputs": json.dumps(self.inputs, sort_keys=True)}
        if self.input_paths:
            meta["input_paths"] = json.dumps(self.input_paths, sort_keys=True)
        for key in ("feature_set", "feature_hash", "model_id"):
            value = getattr(self, key)
            if value is not None:
                meta[key] = value
        if self.validation_ids:
            meta["validation_ids"] = json.dumps(self.validation_ids)
        if self.models:
            first = self.models[0]
            meta["model_name"], meta["model_version"] = first["name"], str(first["version"])
            meta["model_run_id"] = first["mlflow_run_id"]
            meta["models"] = json.dumps(self.models, sort_keys=True)
        return meta


def read_lineage(path: str, version: int | None = None,
                 storage_options: dict[str, str] | None = None) -> dict[str, Any]:
    """The lakescore metadata of the commit that produced ``version`` (default: latest), with
    ``_version`` set to that version; empty when the commit was not made by lakescore.
    ``TableNotFound`` when there is no table at ``path``."""
    from engine.storage.snapshots import require_table
    from engine.storage.table import TableRef

    return _commit_lineage(require_table(TableRef.at(path, storage_options)), version)


def _commit_lineage(table: Any, version: int | None) -> dict[str, Any]:
    """:func:`read_lineage` of a loaded ``DeltaTable``."""
    wanted = table.version() if version is None else version
    for entry in table.history():
        if entry.get("version") == wanted:
            found = {k.removeprefix("lakescore."): v for k, v in entry.items()
                     if k.startswith("lakescore.")}
            return {**found, "_version": wanted} if found else {}
    return {}


ModelLookup = Callable[[str, int], "dict[str, Any] | None"]
"""(model name, version) → what the registry records about it (``model_lineage`` keys), or None."""


def trace(path: str, version: int | None = None, runs_dir: str | None = None,
          storage_options: dict[str, str] | None = None, _depth: int = 0,
          model_lookup: ModelLookup | None = None) -> dict[str, Any]:
    """The chain that made ``path`` at ``version``, as a tree of plain dicts.

    A table node names its version and the job, run and engine that committed it, its feature
    hash, the validation results that gated it (with their report files when ``runs_dir`` is
    given), the model(s) that scored it (``model``, and ``models`` with the challenger), each
    with the model's training table followed in turn, and its input tables at the versions that
    were read. ``model_lookup`` answers for the registry; tables lakescore did not write end the
    chain."""
    from engine.errors import TableNotFound
    from engine.storage.snapshots import open_table
    from engine.storage.table import TableRef

    table = open_table(TableRef.at(path, storage_options))
    if table is None:
        if _depth == 0:
            raise TableNotFound(f"lineage: there is no Delta table at {path}; give a logical table "
                                "name from conf (e.g. scores, scores_spark) or a table path")
        return {"table": path, "version": version, "note": "table not found (moved or deleted)"}
    latest = table.version()
    wanted = latest if version is None else version
    if _depth == 0 and not 0 <= wanted <= latest:
        raise TableNotFound(f"lineage: {path} has no version {wanted} (versions 0 to {latest})")
    meta = _commit_lineage(table, wanted)
    node: dict[str, Any] = {"table": path, "version": wanted}
    if not meta:
        node["note"] = "not written by lakescore (no lineage recorded)"
        return node
    for key in ("job", "run_id", "engine", "feature_set", "feature_hash", "demo_hash"):
        if key in meta:
            node[key] = meta[key]
    if "validation_ids" in meta:
        node["validations"] = [_validation(vid, runs_dir) for vid in json.loads(meta["validation_ids"])]
    if _depth > 10:
        return node
    follow = dict(runs_dir=runs_dir, storage_options=storage_options, model_lookup=model_lookup)
    if meta.get("models"):
        node["models"] = [_model(m, runs_dir, _depth, follow) for m in json.loads(meta["models"])]
        node["model"] = node["models"][0]
    elif meta.get("model_id"):
        node["model"] = {"model_id": meta["model_id"],
                         "note": "recorded without a registry version (older local registry)"}
    inputs = json.loads(meta.get("inputs", "{}"))
    paths = json.loads(meta.get("input_paths", "{}"))
    node["inputs"] = [trace(paths[name], v, _depth=_depth + 1, **follow)
                      if name in paths else {"table": name, "version": v}
                      for name, v in sorted(inputs.items())]
    return node


def _validation(result_id: str, runs_dir: str | None) -> dict[str, Any]:
    from pathlib import Path

    found = sorted(Path(runs_dir).glob(f"*/validation/*/*{result_id}*.json")) if runs_dir else []
    out: dict[str, Any] = {"result_id": result_id}
    if found:
        out["report"] = str(found[0])
        try:
            success = json.loads(found[0].read_text()).get("success")
        except (OSError, ValueError, AttributeError):
            success = None
        if success is not None:
            out["success"] = bool(success)
    return out


def _model(recorded: dict[str, str], runs_dir: str | None, depth: int,
           follow: dict[str, Any]) -> dict[str, Any]:
    name, version = recorded["name"], int(recorded["version"])
    node: dict[str, Any] = {"model_id": f"{name}/{version}", "name": name, "version": version,
                            "mlflow_run_id": recorded.get("mlflow_run_id")}
    if recorded.get("role"):
        node["role"] = recorded["role"]
    lookup = follow.get("model_lookup")
    found = lookup(name, version) if lookup is not None else None
    if not found:
        node["note"] = "not found in the model registry"
        return node
    node.update({k: found[k] for k in ("algorithm", "feature_hash", "git_commit", "engine", "registry",
                                       "training_table", "training_version") if k in found})
    node["metrics"] = {k: v for k, v in found.get("metrics", {}).items()
                       if k in ("auc", "logloss", "rmse")}
    node["validations"] = [_validation(v, runs_dir) for v in found.get("validation_ids", [])]
    if found.get("training_table"):
        node["training_set"] = trace(found["training_table"], int(found["training_version"]),
                                     _depth=depth + 1, **follow)
    return node


def model_lineage(record: Any) -> dict[str, Any]:
    """What a registered model version (``ModelRecord``) contributes to a lineage tree."""
    return {"algorithm": record.algorithm, "feature_hash": record.feature_hash,
            "git_commit": record.git_commit, "engine": record.engine,
            "training_table": record.training_table, "training_version": record.training_version,
            "metrics": dict(record.metrics), "validation_ids": list(record.validation_ids)}


def render(node: dict[str, Any], indent: int = 0) -> str:
    """The tree as indented text: one line per table or model, its details under it, then
    what it was made from, one level deeper."""
    pad = "  " * indent
    arrow = "" if indent == 0 else "<- "
    if "model_id" in node:
        metrics = " ".join(f"{k} {v:.4f}" for k, v in node.get("metrics", {}).items())
        role = f"{node['role']} " if node.get("role") and node["role"] != "model" else ""
        head = f"{pad}{arrow}{role}model {node['model_id']} ({node.get('algorithm', '?')}) {metrics}".rstrip()
        if node.get("mlflow_run_id"):
            head += f"  (MLflow run {node['mlflow_run_id']}, code {str(node.get('git_commit', '?'))[:12]})"
        parents = [node["training_set"]] if "training_set" in node else []
    else:
        head = f"{pad}{arrow}{node['table']} @ v{node['version']}"
        if "job" in node:
            head += f"  (job {node['job']}, run {node.get('run_id')}, {node.get('engine')})"
        models = node.get("models") or ([node["model"]] if "model" in node else [])
        parents = models + node.get("inputs", [])
    details = [node["note"]] if node.get("note") else []
    if node.get("feature_hash"):
        label = f"feature set {node['feature_set']}" if node.get("feature_set") else "feature"
        details.append(f"{label} hash {node['feature_hash'][:16]}")
    details += [f"validated by {v['result_id']}"
                + {True: " (passed)", False: " (FAILED)"}.get(v.get("success"), "")
                + f" {v.get('report', '')}".rstrip()
                for v in node.get("validations", [])]
    lines = [head, *(f"{pad}   {d}" for d in details)]
    lines += [render(parent, indent + 1) for parent in parents]
    return "\n".join(lines)
