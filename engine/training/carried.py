"""Models that carry their features: the feature definitions travel inside the model version.

Training logs the definition file (``features.yaml``, its text as written) and what it compiles
to (``features.json``: the feature set's name, its ``definition_hash`` and the events table the
training set was built from) into the model's artifact directory, so they download with the MOJO.
Scoring by model name alone (``score_batch``, ``jobs.score`` with ``features: null``) reads them
back; a model registered before models carried features, or whose files were altered, is refused
by name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from engine.errors import ModelMismatch

if TYPE_CHECKING:
    from engine.features.definitions import FeatureSet
    from engine.training import TrainedModel
    from engine.training.registry import ModelRecord

DEFINITIONS_FILE = "features.yaml"
DESCRIPTION_FILE = "features.json"


@dataclass(frozen=True)
class CarriedFeatures:
    """What a model carries: the definition, its YAML text and the events table it was trained on."""

    definition: FeatureSet
    yaml: str
    events_table: str | None


def write_carried_files(definition_file: str, definition: FeatureSet, events_table: str,
                        out_dir: Path) -> list[Path]:
    """The two files to log beside the model artifact: the definition's YAML and its description."""
    from engine.features.definitions import definition_hash

    out_dir.mkdir(parents=True, exist_ok=True)
    yaml_path = out_dir / DEFINITIONS_FILE
    yaml_path.write_text(Path(definition_file).read_text())
    description = out_dir / DESCRIPTION_FILE
    description.write_text(json.dumps({"feature_set": definition.name,
                                       "definition_hash": definition_hash(definition),
                                       "features": definition.feature_names(),
                                       "events_table": events_table}, indent=2))
    return [yaml_path, description]


def model_companions(definition_file: str, definition: FeatureSet, events_table: str,
                     trained: TrainedModel, out_dir: Path) -> list[Path]:
    """Every file to log beside a newly trained model's artifact: the carried feature
    definitions and, for a MOJO, the ``MLmodel`` that makes it an MLflow pyfunc model
    (``engine.scoring.flavor``)."""
    files = write_carried_files(definition_file, definition, events_table, out_dir)
    if trained.kind == "mojo":
        from engine.scoring.flavor import mlmodel_for_mojo

        files.append(mlmodel_for_mojo(Path(trained.artifact), out_dir, definition.dtypes()))
    return files


def carried_features(model: ModelRecord) -> CarriedFeatures:
    """The definitions ``model`` was trained with, from its artifact directory.

    ``ModelMismatch`` (exit 6) when the model carries none (registered before this lakescore
    version) or when the carried YAML no longer hashes to what the model was trained on."""
    from engine.features.definitions import definition_hash, load_feature_set

    path = Path(model.path) / DEFINITIONS_FILE
    if not path.exists():
        raise ModelMismatch(
            f"model {model.model_id} carries no feature definitions (no {DEFINITIONS_FILE} in its "
            f"artifacts at {model.path}; it was trained before models carried their features). "
            "Score it with the features file it was trained on (features: <file> in conf), or "
            "retrain it so that it carries them.")
    text = path.read_text()
    definition = load_feature_set(path)
    found = definition_hash(definition)
    if found != model.feature_hash:
        raise ModelMismatch(
            f"model {model.model_id}: its carried {DEFINITIONS_FILE} hashes to {found[:12]}, but the "
            f"model was trained on feature hash {model.feature_hash[:12]}; the artifact was altered. "
            "Retrain the model.")
    description = Path(model.path) / DESCRIPTION_FILE
    events = json.loads(description.read_text()).get("events_table") if description.exists() else None
    return CarriedFeatures(definition=definition, yaml=text, events_table=events)


def require_artifact(model: ModelRecord) -> None:
    """``ModelMismatch`` (exit 6) naming the file when the model's MOJO / pipeline is missing."""
    if not model.artifact or not Path(model.artifact_path).exists():
        raise ModelMismatch(
            f"model {model.model_id}: its artifact {model.artifact or '(none recorded)'} is missing "
            f"from {model.path} (MLflow run {model.mlflow_run_id}); re-register the model or restore "
            "the artifact in the registry's artifact store")


def conf_with_carried_features(conf, model: ModelRecord, run_dir: Path):
    """``conf`` whose ``features`` is the model's carried definition file, written under the run
    directory (so the run's manifest and lineage record exactly what was computed)."""
    import dataclasses

    carried = carried_features(model)
    path = Path(run_dir) / DEFINITIONS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(carried.yaml)
    return dataclasses.replace(conf, features=str(path))
