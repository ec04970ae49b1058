"""What a model expects of the features it is given: one fingerprint per feature.

A model records the feature definition's hash (``definition_hash``) and, per feature, a
fingerprint of that feature's own definition (its aggregation plus the set's entity, times and
source). When the definition about to be computed hashes differently, the fingerprints say which
features changed, which the model lacks and which it needs but would not get, so the refusal
names them instead of only two hashes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.features.definitions import FeatureSet


def feature_fingerprints(definition: FeatureSet) -> dict[str, str]:
    """Feature name → sha256 (16 hex digits) of everything that determines its values."""
    from engine.features.definitions import SEMANTICS_VERSION, entity_identity

    shared = {"semantics": SEMANTICS_VERSION, "entity": entity_identity(definition),
              "timestamp": definition.timestamp, "as_of": definition.as_of, "source": definition.source}
    out = {}
    for agg in definition.aggregations:
        fields = {k: v for k, v in dataclasses.asdict(agg).items() if k != "window"}
        doc = {**shared, **fields, "window_us": agg.micros}
        text = json.dumps(doc, sort_keys=True, default=str, separators=(",", ":"))
        out[agg.name] = hashlib.sha256(text.encode()).hexdigest()[:16]
    return out


@dataclasses.dataclass(frozen=True)
class FeatureDifference:
    """Features only the model has, only the definition has, and in both but defined differently."""

    only_in_model: tuple[str, ...]
    only_in_definition: tuple[str, ...]
    changed: tuple[str, ...]

    def __bool__(self) -> bool:
        return bool(self.only_in_model or self.only_in_definition or self.changed)

    def describe(self) -> str:
        parts = [f"{label}: {', '.join(names)}" for label, names in (
            ("defined differently now", self.changed), ("only in the model", self.only_in_model),
            ("only in the definition", self.only_in_definition)) if names]
        return "; ".join(parts) or "no single feature differs (the set's shared keys changed)"


def feature_difference(model_features: Mapping[str, Any] | list[str] | tuple[str, ...],
                       model_fingerprints: Mapping[str, str], definition: FeatureSet) -> FeatureDifference:
    """How the definition's features differ from the model's (by name, then by fingerprint;
    features without a recorded fingerprint compare by name only)."""
    current = feature_fingerprints(definition)
    ours = list(model_features)
    return FeatureDifference(
        only_in_model=tuple(f for f in ours if f not in current),
        only_in_definition=tuple(f for f in current if f not in ours),
        changed=tuple(f for f in ours if f in current and f in model_fingerprints
                      and model_fingerprints[f] != current[f]))
