"""What a written table records about how it was made, in its Delta commit's metadata.

Every lakescore commit carries the tables and versions it read, the feature definition's name
and content hash, the model (for scores) and the validation results that gated it, so that a
score can be traced back to the data, feature code and model that made it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
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
    ``_version`` set to that version; empty when the commit was not made by lakescore."""
    from deltalake import DeltaTable

    table = DeltaTable(path, storage_options=storage_options or None)
    wanted = table.version() if version is None else version
    for entry in table.history():
        if entry.get("version") == wanted:
            found = {k.removeprefix("lakescore."): v for k, v in entry.items()
                     if k.startswith("lakescore.")}
            return {**found, "_version": wanted} if found else {}
    return {}


def trace(path: str, version: int | None = None, models_dir: str | None = None,
          runs_dir: str | None = None, storage_options: dict[str, str] | None = None,
          _depth: int = 0) -> dict[str, Any]:
    """The chain that made ``path`` at ``version``, as a tree of plain dicts.

    A table node names its version and the job, run and engine that committed it, its feature
    hash, the validation results that gated it (with their report files when ``runs_dir`` is
    given), its model (with the model's training table, followed in turn) and its input tables
    at the versions that were read. Tables lakescore did not write end the chain."""
    from deltalake import DeltaTable

    table = DeltaTable(path, storage_options=storage_options or None)
    wanted = table.version() if version is None else version
    meta = read_lineage(path, wanted, storage_options)
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
    if meta.get("model_id"):
        node["model"] = _model(meta["model_id"], models_dir, runs_dir, storage_options, _depth)
    inputs = json.loads(meta.get("inputs", "{}"))
    paths = json.loads(meta.get("input_paths", "{}"))
    node["inputs"] = [trace(paths[name], v, models_dir, runs_dir, storage_options, _depth + 1)
                      if name in paths else {"table": name, "version": v}
                      for name, v in sorted(inputs.items())]
    return node


def _validation(result_id: str, runs_dir: str | None) -> dict[str, Any]:
    from pathlib import Path

    found = sorted(Path(runs_dir).glob(f"*/validation/*/*{result_id}*.json")) if runs_dir else []
    return {"result_id": result_id, **({"report": str(found[0])} if found else {})}


def _model(model_id: str, models_dir: str | None, runs_dir: str | None,
           storage_options: dict[str, str] | None, depth: int) -> dict[str, Any]:
    from pathlib import Path

    meta_path = Path(models_dir or "") / model_id / "meta.json"
    if models_dir is None or not meta_path.exists():
        return {"model_id": model_id, "note": "not found in the model registry"}
    meta = json.loads(meta_path.read_text())
    node = {"model_id": model_id, "algorithm": meta.get("algorithm"), "path": str(meta_path.parent),
            "feature_hash": meta.get("feature_hash"), "metrics": {k: meta["metrics"][k] for k in
                                                                 ("auc", "logloss") if k in meta.get("metrics", {})},
            "validations": [_validation(v, runs_dir) for v in meta.get("validation_ids", [])]}
    node["training_set"] = trace(meta["training_table"], meta["training_version"], models_dir,
                                 runs_dir, storage_options, depth + 1)
    return node


def render(node: dict[str, Any], indent: int = 0) -> str:
    """The tree as indented text: one line per table or model, its details under it, then
    what it was made from, one level deeper."""
    pad = "  " * indent
    arrow = "" if indent == 0 else "<- "
    if "model_id" in node:
        metrics = " ".join(f"{k} {v:.4f}" for k, v in node.get("metrics", {}).items())
        head = f"{pad}{arrow}model {node['model_id']} ({node.get('algorithm', '?')}) {metrics}".rstrip()
        parents = [node["training_set"]] if "training_set" in node else []
    else:
        head = f"{pad}{arrow}{node['table']} @ v{node['version']}"
        if "job" in node:
            head += f"  (job {node['job']}, run {node.get('run_id')}, {node.get('engine')})"
        parents = ([node["model"]] if "model" in node else []) + node.get("inputs", [])
    details = [node["note"]] if node.get("note") else []
    if node.get("feature_hash"):
        label = f"feature set {node['feature_set']}" if node.get("feature_set") else "feature"
        details.append(f"{label} hash {node['feature_hash'][:16]}")
    details += [f"validated by {v['result_id']} {v.get('report', '')}".rstrip()
                for v in node.get("validations", [])]
    lines = [head, *(f"{pad}   {d}" for d in details)]
    lines += [render(parent, indent + 1) for parent in parents]
    return "\n".join(lines)
