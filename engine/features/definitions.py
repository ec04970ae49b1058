"""Feature definitions: plain typed data, validated at load, shared by every engine.

A ``FeatureSet`` declares windowed aggregations of event columns per entity. Each engine
compiles it into a point-in-time join (``engine.features.spark`` / ``engine.features.dask``);
what both must agree on lives here, once: feature names, defaults, the window contract and the
column kinds each input must have.

Semantics (the contract both compilers implement and the parity tests check):

- A spine row ``(entity, as_of)`` sees the events of the same entity with
  ``as_of - window <= event_time < as_of``: the lower bound is included, events at exactly
  ``as_of`` (and after it) are excluded. Times are compared in whole microseconds.
- ``count`` is the number of events in the window (events whose aggregated value is null count
  too); it is 0 when there are none.
- ``sum`` adds the non-null values (NaN is treated as null) in event-time order; 0.0 when there
  are none. ``mean`` is that sum divided by the number of non-null values; null when there are
  none. ``sum`` and ``mean`` are float64, ``count`` is int64.
- Events with a null entity or a null event time are never matched; spine rows with a null
  entity or a null as-of time get the defaults. Every spine row is kept exactly once
  (duplicates stay duplicates); row order is not preserved.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal, get_args

from engine.errors import DefinitionError, SchemaMismatch

Function = Literal["count", "sum", "mean"]
FUNCTIONS: tuple[str, ...] = get_args(Function)

# Bump when the meaning of a feature changes (window bounds, null handling, defaults): the
# definition hash then changes, so tables and models built under the old meaning are not reused.
SEMANTICS_VERSION = 1

# Column kinds, as both engines report them (see ``spark_column_kinds`` / ``pandas_column_kinds``).
INTEGER_KINDS = frozenset({"int"})
NUMERIC_KINDS = frozenset({"int", "float", "decimal"})
ENTITY_KINDS = frozenset({"int", "string"})
TIMESTAMP_KINDS = frozenset({"timestamp"})

_UNITS = {"s": timedelta(seconds=1), "m": timedelta(minutes=1), "h": timedelta(hours=1),
          "d": timedelta(days=1), "w": timedelta(weeks=1)}
_DURATION = re.compile(r"^([1-9][0-9]*)([smhdw])$")
_TOP_KEYS = ("name", "entity", "timestamp", "as_of", "source", "aggregations")
_REQUIRED_TOP_KEYS = ("name", "entity", "timestamp", "aggregations")
_AGG_KEYS = ("column", "functions", "windows")
_DEFAULT_AS_OF = "as_of"
_DEFAULT_SOURCE = "events"


def parse_duration(text: str) -> timedelta:
    """``"90s"``, ``"15m"``, ``"1h"``, ``"7d"``, ``"2w"`` → a positive ``timedelta``.

    Only a positive whole number followed by one unit letter is accepted, so a window's name
    and its length can never disagree; anything else raises ``DefinitionError`` naming it.
    """
    match = _DURATION.match(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise DefinitionError(
            f"invalid duration {text!r}: write a positive whole number and one unit of "
            f"s, m, h, d, w (e.g. '90s', '15m', '1h', '7d', '2w')")
    return int(match.group(1)) * _UNITS[match.group(2)]


def window_micros(window: timedelta) -> int:
    """A window's length in whole microseconds (exact integer arithmetic, no float rounding)."""
    return (window.days * 86_400 + window.seconds) * 1_000_000 + window.microseconds


@dataclass(frozen=True)
class Aggregation:
    """One feature: ``function`` of ``column`` over the ``window`` before each as-of time."""

    column: str
    function: Function
    window: timedelta
    window_text: str

    @property
    def name(self) -> str:
        """``{column}_{function}_{window}``, e.g. ``amount_sum_30d``."""
        return f"{self.column}_{self.function}_{self.window_text}"

    @property
    def micros(self) -> int:
        return window_micros(self.window)

    @property
    def dtype(self) -> str:
        """The output's NumPy dtype: ``int64`` for count, ``float64`` otherwise."""
        return "int64" if self.function == "count" else "float64"


@dataclass(frozen=True)
class FeatureSet:
    """A named set of windowed aggregations over one event source, keyed by one entity."""

    name: str
    entity: str
    timestamp: str
    as_of: str
    source: str
    aggregations: tuple[Aggregation, ...]

    def feature_names(self) -> list[str]:
        """Output feature columns, in declaration order (column, then function, then window)."""
        return [agg.name for agg in self.aggregations]

    def event_columns(self) -> list[str]:
        """The columns read from the source: entity, event time, then each aggregated column once."""
        return list(dict.fromkeys([self.entity, self.timestamp,
                                   *(agg.column for agg in self.aggregations)]))

    def summed_columns(self) -> list[str]:
        """Event columns whose values are added (``sum`` or ``mean``), each once, in declaration
        order. ``count`` needs no values: it counts events."""
        return list(dict.fromkeys(a.column for a in self.aggregations if a.function != "count"))

    def windows(self) -> list[tuple[str, int]]:
        """Distinct windows as ``(text, microseconds)``, in declaration order."""
        return list(dict.fromkeys((agg.window_text, agg.micros) for agg in self.aggregations))


def _fail(definition: str, message: str) -> DefinitionError:
    return DefinitionError(f"feature definition {definition!r}: {message}")


def _name(definition: str, mapping: Mapping[str, Any], key: str, default: str | None = None) -> str:
    value = mapping.get(key, default)
    if not isinstance(value, str) or not value.strip():
        raise _fail(definition, f"key {key!r} must be a non-empty column/table name, got {value!r}")
    return value


def _aggregations(definition: str, items: Any) -> tuple[Aggregation, ...]:
    if not isinstance(items, list) or not items:
        raise _fail(definition, f"key 'aggregations' must be a non-empty list, got {items!r}")
    out: list[Aggregation] = []
    for i, item in enumerate(items):
        where = f"aggregations[{i}]"
        if not isinstance(item, Mapping):
            raise _fail(definition, f"{where} must be a mapping with keys {', '.join(_AGG_KEYS)}, "
                                    f"got {item!r}")
        unknown = sorted(set(item) - set(_AGG_KEYS))
        if unknown:
            raise _fail(definition, f"unknown key {where}.{unknown[0]!r} (value {item[unknown[0]]!r}); "
                                    f"allowed keys: {', '.join(_AGG_KEYS)}")
        column = _name(definition, item, "column")
        functions, windows = item.get("functions"), item.get("windows")
        for key, values in (("functions", functions), ("windows", windows)):
            if not isinstance(values, list) or not values:
                raise _fail(definition, f"{where}.{key} of column {column!r} must be a non-empty list, "
                                        f"got {values!r}")
        for function in functions:
            if function not in FUNCTIONS:
                raise _fail(definition, f"{where}.functions of column {column!r}: unsupported function "
                                        f"{function!r}; choose from {', '.join(FUNCTIONS)}")
        for function in functions:
            for text in windows:
                try:
                    window = parse_duration(text)
                except DefinitionError as exc:
                    raise _fail(definition, f"{where}.windows of column {column!r}: {exc}") from None
                out.append(Aggregation(column=column, function=function, window=window,
                                       window_text=text.strip()))
    seen: set[str] = set()
    for agg in out:
        if agg.name in seen:
            raise _fail(definition, f"feature {agg.name!r} is declared twice")
        seen.add(agg.name)
    return tuple(out)


def load_feature_set(path_or_mapping: str | Path | Mapping[str, Any]) -> FeatureSet:
    """A validated ``FeatureSet`` from a YAML file or an already-parsed mapping.

    Fails with ``DefinitionError`` naming the definition, the key and the value on: an unknown
    key, a missing required key (``name``, ``entity``, ``timestamp``, ``aggregations``), an
    unsupported function, a window that is not a duration, a feature declared twice, or a name
    that the entity, time or as-of column would share. ``as_of`` defaults to ``"as_of"`` and
    ``source`` to ``"events"``. Nothing is submitted to any engine before this passes.
    """
    if isinstance(path_or_mapping, Mapping):
        raw: Any = path_or_mapping
        label = str(path_or_mapping.get("name", "<mapping>"))
    else:
        from engine.conf import read_yaml_mapping

        path = Path(path_or_mapping)
        raw = read_yaml_mapping(path, "feature definition file", DefinitionError)
        label = str(raw.get("name", path))
    unknown = sorted(set(raw) - set(_TOP_KEYS))
    if unknown:
        raise _fail(label, f"unknown key {unknown[0]!r} (value {raw[unknown[0]]!r}); "
                           f"allowed keys: {', '.join(_TOP_KEYS)}")
    missing = [key for key in _REQUIRED_TOP_KEYS if key not in raw]
    if missing:
        raise _fail(label, f"missing required key {missing[0]!r}")
    fs = FeatureSet(
        name=_name(label, raw, "name"),
        entity=_name(label, raw, "entity"),
        timestamp=_name(label, raw, "timestamp"),
        as_of=_name(label, raw, "as_of", _DEFAULT_AS_OF),
        source=_name(label, raw, "source", _DEFAULT_SOURCE),
        aggregations=_aggregations(label, raw["aggregations"]),
    )
    for agg in fs.aggregations:
        if agg.column in (fs.entity, fs.timestamp):
            raise _fail(fs.name, f"column {agg.column!r} is the entity or event-time column and cannot "
                                 f"be aggregated")
    clashes = sorted(set(fs.feature_names()) & {fs.entity, fs.as_of})
    if clashes:
        raise _fail(fs.name, f"feature name {clashes[0]!r} is also the entity or as-of column")
    return fs


def canonical_json(fs: FeatureSet) -> str:
    """The definition as canonical JSON: sorted keys, no whitespace, windows in microseconds.

    Independent of YAML key order and formatting; any change of a feature (column, function,
    window, names) or of ``SEMANTICS_VERSION`` changes it.
    """
    doc = {
        "semantics": SEMANTICS_VERSION,
        "name": fs.name, "entity": fs.entity, "timestamp": fs.timestamp, "as_of": fs.as_of,
        "source": fs.source,
        "aggregations": [{"column": a.column, "function": a.function, "window_us": a.micros,
                          "window": a.window_text} for a in fs.aggregations],
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def definition_hash(fs: FeatureSet) -> str:
    """sha256 hex of ``canonical_json(fs)``: what tables and models record to prove which
    features they were built from."""
    return hashlib.sha256(canonical_json(fs).encode("utf-8")).hexdigest()


def check_inputs(fs: FeatureSet, event_columns: Mapping[str, str], spine_columns: Mapping[str, str]) -> None:
    """Fail before any job runs if the events or the spine cannot feed ``fs``.

    ``*_columns`` map column name → kind (``"int"``, ``"float"``, ``"decimal"``, ``"string"``,
    ``"timestamp"``, ``"bool"``, ``"date"``, or another engine type name). A missing column
    raises ``DefinitionError``; a column of the wrong kind, an entity of different kinds in
    the two tables, or a spine column that a feature would overwrite raises ``SchemaMismatch``.
    Messages name the definition, the table (events or spine) and the column.
    """
    def need(table: str, columns: Mapping[str, str], column: str, role: str,
             kinds: frozenset[str], expected: str) -> str:
        if column not in columns:
            raise DefinitionError(
                f"feature definition {fs.name!r}: {table} table has no {role} column {column!r}; "
                f"its columns are: {', '.join(sorted(columns)) or 'none'}")
        kind = columns[column]
        if kind not in kinds:
            raise SchemaMismatch(
                f"feature definition {fs.name!r}: {role} column {column!r} of the {table} table is "
                f"{kind}, expected {expected}; cast it in the {table} table")
        return kind

    events_entity = need("events", event_columns, fs.entity, "entity", ENTITY_KINDS, "integer or string")
    spine_entity = need("spine", spine_columns, fs.entity, "entity", ENTITY_KINDS, "integer or string")
    if events_entity != spine_entity:
        raise SchemaMismatch(
            f"feature definition {fs.name!r}: entity column {fs.entity!r} is {events_entity} in the "
            f"events table but {spine_entity} in the spine table; cast one so both have the same kind")
    need("events", event_columns, fs.timestamp, "event-time", TIMESTAMP_KINDS, "a timestamp")
    need("spine", spine_columns, fs.as_of, "as-of", TIMESTAMP_KINDS, "a timestamp")
    for agg in fs.aggregations:
        kinds = NUMERIC_KINDS if agg.function != "count" else frozenset(event_columns.values())
        need("events", event_columns, agg.column, f"aggregated ({agg.function})", kinds, "numeric")
    clashes = sorted(set(fs.feature_names()) & set(spine_columns))
    if clashes:
        raise SchemaMismatch(
            f"feature definition {fs.name!r}: spine table already has column {clashes[0]!r}, which "
            f"a feature would overwrite; drop or rename it in the spine")
