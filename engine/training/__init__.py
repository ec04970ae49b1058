"""Trainers (H2O and Spark MLlib families) and the model registry (MLflow).

What a trainer returns is a ``TrainedModel``: the portable artifact it wrote (a MOJO zip or a
saved MLlib pipeline), the features it expects, and its validation metrics. Both trainers share
the hyper-parameter names and defaults below (H2O's names; the MLlib trainer translates them), so
``train.params`` in conf means the same thing whichever algorithm is chosen.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

DEFAULT_PARAMS: dict[str, Any] = {"ntrees": 50, "max_depth": 5, "learn_rate": 0.1, "seed": 42}
"""Hyper-parameters of the GBMs used when ``train.params`` does not set them."""

Task = Literal["binary", "regression"]

TRAINERS: dict[str, str] = {
    "h2o_gbm": "engine.training.h2o_trainer:H2OTrainer",
    "h2o_glm": "engine.training.h2o_trainer:H2OTrainer",
    "h2o_drf": "engine.training.h2o_trainer:H2OTrainer",
    "h2o_automl": "engine.training.h2o_trainer:H2OTrainer",
    "mllib_gbt": "engine.training.mllib_trainer:MllibTrainer",
    "mllib_rf": "engine.training.mllib_trainer:MllibTrainer",
    "mllib_lr": "engine.training.mllib_trainer:MllibTrainer",
}
"""Algorithm name → trainer class, imported when first used (so importing ``engine.training``
never imports H2O or Spark)."""

TRAINER_FAMILIES: dict[str, str] = {"h2o": "H2O", "mllib": "Spark MLlib"}
"""Trainer family → its name in messages. A backend declares the families it hosts
(``engine.backend.Capabilities.trainer_families``): ``h2o`` reads the training set's files,
so any backend; ``mllib`` a Spark DataFrame."""


@dataclass(frozen=True)
class TrainSpec:
    """What to learn, from which columns, and how to judge it; the same for every algorithm.

    ``split`` sends rows before ``valid_from`` to training and the rest to validation. With
    ``folds`` > 1 the training rows are also cross-validated, every row of one ``group_column``
    value (the entity) in one fold, so a customer's rows never sit on both sides of a fold.
    ``threshold`` is the probability cut for accuracy and F1 of a binary model."""

    features: tuple[str, ...]
    label: str
    time_column: str
    split: Any
    params: dict[str, Any] = field(default_factory=dict)
    task: Task = "binary"
    threshold: float = 0.5
    folds: int = 0
    group_column: str | None = None


@dataclass(frozen=True)
class TrainingData:
    """One version of the training set: its Parquet ``files`` (H2O imports them itself) and,
    for trainers that run inside an engine, the engine's ``frame`` of the same rows."""

    files: tuple[str, ...]
    frame: Any = None


@dataclass(frozen=True)
class TrainingSource:
    """One version of the training set, in every form a trainer may read it. Each trainer takes
    the form it needs (``Trainer.training_data``), so the caller never asks which family it
    holds; the costly forms are made only when asked for.

    ``local_files()`` gives the Parquet files on local disk (copies when they live in an object
    store); ``frame()`` reads the engine's frame of the same rows; ``h2o`` is where an H2O
    cluster is (``engine.conf.H2OConf``)."""

    files: tuple[str, ...]
    local_files: Callable[[], tuple[str, ...]]
    frame: Callable[[], Any]
    h2o: Any = None


@runtime_checkable
class Trainer(Protocol):
    """Fits one algorithm; ``family`` names the engine it needs (``h2o``: an H2O cluster beside
    any engine; ``mllib``: Spark), which backends declare they host."""

    algorithm: str
    family: Literal["h2o", "mllib"]

    def training_data(self, source: TrainingSource) -> TrainingData:
        """The training set in the form ``train`` reads (and the engine it needs, connected)."""

    def train(self, data: TrainingData, spec: TrainSpec, out_dir: Path) -> TrainedModel:
        """Fit on the training side, evaluate on the validation side (and folds), write the
        portable artifact and ``metrics.json`` / ``evaluation.json`` under ``out_dir``."""


def trainer_for(algorithm: str) -> Trainer:
    """The trainer of ``algorithm``; ``ConfError`` naming the known ones otherwise."""
    import importlib

    from engine.errors import ConfError

    if algorithm not in TRAINERS:
        raise ConfError(f"train.algorithm {algorithm!r} is not known; choose one of "
                        f"{', '.join(sorted(TRAINERS))}")
    module, cls = TRAINERS[algorithm].split(":")
    return getattr(importlib.import_module(module), cls)(algorithm)


@dataclass(frozen=True)
class TrainedModel:
    """A model written to ``artifact`` (a file for ``kind="mojo"``, a directory for ``"mllib"``).

    ``metrics`` holds the validation side's metrics without a prefix (binary: ``auc``,
    ``pr_auc``, ``logloss``, ``accuracy``, ``f1``...; regression: ``rmse``, ``mae``, ``r2``), the
    training side's with ``train_``, the pooled cross-validation folds' with ``cv_``, and the row
    counts. ``importance`` is each feature's share of the model's variable importance.
    """

    model_id: str
    algorithm: str
    features: tuple[str, ...]
    label: str
    metrics: dict[str, float]
    artifact: Path
    kind: Literal["mojo", "mllib"]
    params: dict[str, Any] = field(default_factory=dict)
    task: Literal["binary", "regression"] = "binary"
    created_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    importance: dict[str, float] = field(default_factory=dict)


def model_id_for(algorithm: str, created_at: datetime, *, features: Sequence[str], label: str,
                 params: Mapping[str, Any], inputs: Sequence[str], valid_from: datetime) -> str:
    """``<algorithm>-<UTC time to the millisecond>-<8 hex digits>``, e.g.
    ``h2o_gbm-20251001T120000123-1a2b3c4d``.

    The hex digits hash what determines the model (algorithm, features, label, parameters, the
    training files by name, the split boundary): two ids with the same hash were trained on the
    same inputs the same way. The time makes each training run's id unique and lets ids sort by
    age. Only ``[A-Za-z0-9_-]`` is used, so the id is a safe directory name and H2O key.
    """
    content = json.dumps({"algorithm": algorithm, "features": list(features), "label": label,
                          "params": dict(params), "inputs": sorted(inputs),
                          "valid_from": valid_from.isoformat()}, sort_keys=True, default=str)
    digest = hashlib.sha256(content.encode()).hexdigest()[:8]
    stamp = created_at.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%S%f")[:-3]
    return f"{algorithm}-{stamp}-{digest}"


def write_metrics(out_dir: Path, metrics: Mapping[str, float]) -> Path:
    """``out_dir/metrics.json`` (sorted keys), next to the artifact."""
    path = out_dir / "metrics.json"
    path.write_text(json.dumps(dict(metrics), indent=2, sort_keys=True) + "\n")
    return path


def write_evaluation(out_dir: Path, details: Mapping[str, Any], importance: Mapping[str, float]) -> Path:
    """``out_dir/evaluation.json``: calibration tables and variable importance (largest first)."""
    path = out_dir / "evaluation.json"
    ranked = dict(sorted(importance.items(), key=lambda kv: (-kv[1], kv[0])))
    path.write_text(json.dumps({**dict(details), "variable_importance": ranked}, indent=2,
                               sort_keys=True) + "\n")
    return path


def shares(raw: Mapping[str, float]) -> dict[str, float]:
    """Importances scaled to sum to 1 (all zeros stay zeros)."""
    total = float(sum(abs(v) for v in raw.values()))
    return {k: (abs(float(v)) / total if total else 0.0) for k, v in raw.items()}
