"""A local model registry: one directory per model under ``models_dir``.

``<models_dir>/<model_id>/meta.json`` says what the model is (algorithm, kind, features, label,
the feature definition's hash), what it was trained on (training table path and Delta version),
how good it is (metrics), and who made it (run id, engine, validation results); the artifact (a
MOJO file or an MLlib pipeline directory) is copied next to it and named relative to it, so a
model directory can be moved or archived whole. ``meta.json`` is written last and atomically: a
directory without it is not a registered model. (MLflow replaces this later; the surface is kept
to ``register`` and ``resolve``.)
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from engine.errors import ConfError
from engine.training import TrainedModel

META_FILE = "meta.json"
LATEST = "latest"


@dataclass(frozen=True)
class ModelRecord:
    """A registered model as read from its ``meta.json``; ``path`` is its directory."""

    model_id: str
    algorithm: str
    kind: str
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
    params: dict[str, Any] = field(default_factory=dict)
    validation_ids: tuple[str, ...] = ()

    @property
    def artifact_path(self) -> Path:
        """Absolute path of the MOJO file or MLlib pipeline directory."""
        return self.path / self.artifact

    def to_meta(self) -> dict[str, Any]:
        meta = asdict(self)
        meta.pop("path")
        meta["features"] = list(self.features)
        meta["validation_ids"] = list(self.validation_ids)
        return meta


def register(models_dir: str | Path, trained: TrainedModel, *, feature_hash: str,
             training_table: str, training_version: int, run_id: str, engine: str,
             validation_ids: Sequence[str] = ()) -> ModelRecord:
    """Copy ``trained``'s artifact into ``<models_dir>/<model_id>/`` and write its ``meta.json``.

    Registering the same ``model_id`` twice is refused (``ConfError``): a registered model never
    changes under the scores that name it.
    """
    model_dir = Path(models_dir) / trained.model_id
    if (model_dir / META_FILE).exists():
        raise ConfError(f"model {trained.model_id} is already registered in {models_dir}; "
                        "a registered model is immutable, train a new one")
    model_dir.mkdir(parents=True, exist_ok=True)
    source = Path(trained.artifact)
    target = model_dir / source.name
    if source.is_dir():
        shutil.copytree(source, target, dirs_exist_ok=True)
    else:
        shutil.copy2(source, target)
    record = ModelRecord(
        model_id=trained.model_id, algorithm=trained.algorithm, kind=trained.kind,
        features=tuple(trained.features), label=trained.label, feature_hash=feature_hash,
        training_table=str(training_table), training_version=int(training_version),
        metrics=dict(trained.metrics), created_at=trained.created_at.isoformat(), run_id=run_id,
        engine=engine, artifact=source.name, path=model_dir.resolve(), params=dict(trained.params),
        validation_ids=tuple(validation_ids))
    partial = model_dir / (META_FILE + ".tmp")
    partial.write_text(json.dumps(record.to_meta(), indent=2, sort_keys=True, default=str) + "\n")
    os.replace(partial, model_dir / META_FILE)
    return record


def read_record(model_dir: str | Path) -> ModelRecord:
    """The ``ModelRecord`` of one model directory."""
    model_dir = Path(model_dir)
    try:
        meta = json.loads((model_dir / META_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise ConfError(f"cannot read the model's {META_FILE} in {model_dir}: {exc}") from exc
    meta["features"] = tuple(meta["features"])
    meta["validation_ids"] = tuple(meta.get("validation_ids", ()))
    return ModelRecord(path=model_dir.resolve(), **meta)


def list_models(models_dir: str | Path) -> list[ModelRecord]:
    """Every registered model, oldest first (by ``created_at``, then id)."""
    root = Path(models_dir)
    records = [read_record(p.parent) for p in root.glob(f"*/{META_FILE}")] if root.is_dir() else []
    return sorted(records, key=lambda r: (datetime.fromisoformat(r.created_at), r.model_id))


def resolve(models_dir: str | Path, ref: str) -> ModelRecord:
    """The model ``ref`` names: ``"latest"`` (newest ``created_at``) or a model id.

    Raises ``ConfError`` when nothing is registered or ``ref`` is unknown, listing the ids that
    exist (newest first)."""
    records = list_models(models_dir)
    if not records:
        raise ConfError(f"no model is registered in {models_dir}; run the train job first")
    if ref == LATEST:
        return records[-1]
    for record in records:
        if record.model_id == ref:
            return record
    known = [r.model_id for r in reversed(records)]
    shown = ", ".join(known[:10]) + (f" and {len(known) - 10} more" if len(known) > 10 else "")
    raise ConfError(f"score.model {ref!r} is not registered in {models_dir}; registered models "
                    f"(newest first): {shown}; or use {LATEST!r}")
