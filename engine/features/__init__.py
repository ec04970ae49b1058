"""Feature definitions (plain data, ``definitions``) and their point-in-time compilers
(``spark``, ``dask``), imported only by the backend that uses them."""

from engine.features.definitions import (
    Aggregation,
    FeatureSet,
    check_inputs,
    definition_hash,
    load_feature_set,
    parse_duration,
)

__all__ = ["Aggregation", "FeatureSet", "check_inputs", "definition_hash", "load_feature_set",
           "parse_duration"]
