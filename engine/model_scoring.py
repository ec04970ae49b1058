"""``score_batch``: score rows by model name alone, in a notebook or a job.

The model carries its feature definitions (``engine.training.carried``); ``score_batch`` reads
them from the model version, computes exactly those features for the given rows (entity keys and
as-of times) from the events table the model was trained on (or the caller's), point in time,
and scores them with the model, on the engine the rows live in (a Spark or a Dask frame). It
returns the engine's lazy frame: keys, as-of time, the model's outputs and ``model_id``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.errors import ConfError

if TYPE_CHECKING:
    from engine.conf import Conf
    from engine.training.registry import ModelRecord, Registry


def score_batch(model: str | ModelRecord, rows: Any, *, events: Any = None, conf: Conf | None = None,
                registry: Registry | None = None) -> Any:
    """Score ``rows`` (a Spark or Dask frame with the model's entity keys and as-of column).

    ``model``: ``name@alias``, ``name/version``, a name or a resolved ``ModelRecord``.
    ``events``: None (the table the model was trained on), a table path, or a frame of the
    rows' engine. ``conf``: where the registry and storage options come from (default: the
    base conf). ``ModelMismatch`` (exit 6) when the model carries no definitions or its
    artifact is missing."""
    from engine.backend import backend_of_frame
    from engine.conf import load_conf
    from engine.pipeline import _score_frame
    from engine.run_context import model_registry
    from engine.storage.table import TableRef
    from engine.training.carried import carried_features, require_artifact

    conf = conf or load_conf()
    if isinstance(model, str):
        model = (registry or model_registry(conf)).resolve(model)
    require_artifact(model)
    carried = carried_features(model)
    definition = carried.definition
    backend = backend_of_frame(rows)
    if events is None or isinstance(events, str):
        path = events or carried.events_table
        if path is None:
            raise ConfError(f"model {model.model_id} does not record the events table it was "
                            "trained on: pass events=<table path or frame>")
        events = backend.read(TableRef(name="events", path=path, storage_options=dict(conf.storage_options)),
                              version=definition.source_version,
                              columns=definition.event_columns()).frame
    features = backend.training_set(definition, events, rows)
    keys = [*definition.entity_keys, definition.as_of]
    return _score_frame(backend, features, model, keys, {"model_id": model.model_id})
