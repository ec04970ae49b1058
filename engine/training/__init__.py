"""Trainers (H2O GBM, Spark MLlib GBT) and the local model registry.

What a trainer returns is a ``TrainedModel``: the portable artifact it wrote (a MOJO zip or a
saved MLlib pipeline), the features it expects, and its validation metrics. Both trainers share
the hyper-parameter names and defaults below (H2O's names; the MLlib trainer translates them), so
``train.params`` in conf means the same thing whichever algorithm is chosen.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

DEFAULT_PARAMS: dict[str, Any] = {"ntrees": 50, "max_depth": 5, "learn_rate": 0.1, "seed": 42}
"""Hyper-parameters used when ``train.params`` does not set them."""


@dataclass(frozen=True)
class TrainedModel:
    """A model written to ``artifact`` (a file for ``kind="mojo"``, a directory for ``"mllib"``).

    ``metrics`` holds at least ``auc`` and ``logloss`` on the validation side, ``train_auc``,
    ``train_rows``, ``valid_rows`` and the positives on each side.
    """

    model_id: str
    algorithm: str
    features: tuple[str, ...]
    label: str
    metrics: dict[str, float]
    artifact: Path
    kind: Literal["mojo", "mllib"]
    params: dict[str, Any] = field(default_factory=dict)
    created_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))


def merged_params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    """``DEFAULT_PARAMS`` overlaid by ``params``."""
    return {**DEFAULT_PARAMS, **dict(params or {})}


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
