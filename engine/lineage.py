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
    feature_set: str | None = None
    feature_hash: str | None = None
    model_id: str | None = None
    validation_ids: list[str] = field(default_factory=list)

    def to_metadata(self) -> dict[str, Any]:
        """Flat string values: Delta readers (Spark's DESCRIBE HISTORY, delta-rs) show them as is."""
        meta: dict[str, Any] = {"inputs": json.dumps(self.inputs, sort_keys=True)}
        for key in ("feature_set", "feature_hash", "model_id"):
            value = getattr(self, key)
            if value is not None:
                meta[key] = value
        if self.validation_ids:
            meta["validation_ids"] = json.dumps(self.validation_ids)
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
