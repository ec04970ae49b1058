"""Feature definitions: plain typed data, validated at load, shared by every engine.

A ``FeatureSet`` declares windowed aggregations of event columns per entity, optional computed
event columns and filters (row-level expressions, ``engine.features.expressions``) and derived
features over other features. Each engine compiles it into a point-in-time join
(``engine.features.spark`` / ``engine.features.dask``) from the same plan
(``engine.features.plan``); what both must agree on lives here, once: feature names, defaults,
the window contract and the column kinds each input must have.

Semantics (the contract both compilers implement and the parity tests check):

- A definition has one or more entity keys (``entity: customer_id`` or ``entity: [customer_id,
  store_id]``; each int64 or string, of the same kind in the events and the spine). A spine row
  ``(keys..., as_of)`` sees the events whose every key equals the row's with
  ``as_of - window <= event_time < as_of``: the lower bound is included, events at exactly
  ``as_of`` (and after it) are excluded. With ``inclusive: true`` the window is
  ``as_of - window <= event_time <= as_of``. Times are compared in whole microseconds.
- An aggregation's ``where`` condition (a boolean expression over event columns) keeps the
  events for which it is true; a null condition drops the event. "The window's events" below
  means the events of the window that pass ``where``.
- ``count`` is the number of the window's events (events whose aggregated value is null count
  too). ``sum`` is the exact sum of the non-null values (NaN is treated as null) rounded once
  to the nearest double (ties to even; +0.0 for zero; +-inf past the double range): the same
  bits whatever the order of the events, the engine or the partitioning (Python's
  ``math.fsum``). ``mean`` is that sum divided by the number of non-null values, null when there
  are none. ``min``/``max`` are over the non-null values (a zero is +0.0). ``stddev`` is the
  sample standard deviation (``stddev_samp``: n - 1 in the denominator), computed by Welford's
  one-pass update in (event time, value) order; null with fewer than two non-null values. ``distinct_count`` is the exact
  number of distinct non-null values (of any kind). ``last`` is the latest non-null value by
  event time, of a numeric (float64), string, boolean or timestamp column (the output keeps the
  column's type); among values at the same latest time, the greatest wins: the largest number,
  the greatest string in Unicode code-point order (= UTF-8 byte order, Spark's and DuckDB's
  binary string order), ``true`` over ``false``, the latest timestamp. ``time_since_last`` is
  ``as_of`` minus the latest event's time, in seconds (float64, microsecond precision).
- Defaults: a feature whose window holds no events (none at all, none passing ``where``, an
  entity without history, a null entity or as-of time) takes its ``default``; built in, that is
  0 for ``count``, ``distinct_count`` and ``sum`` and null for every other function. A window
  with events but no non-null values gives the function's own result (``sum`` 0.0, ``mean``
  null). With a ``ttl``, a feature whose latest event (passing ``where``) is older than
  ``as_of - ttl`` also takes its default: stale values are never served.
- ``count`` and ``distinct_count`` are int64; ``last`` of a string, boolean or timestamp
  column has that type (its default can only be null, and derived features cannot read it);
  every other feature is float64. Derived features are float64 expressions over other features
  (null where the expression is null, e.g. a division by zero, unless a ``default`` is given).
- Events with a null in any entity key or a null event time are never matched; spine rows
  with a null in any entity key or a null as-of time get the defaults (keys compare as SQL
  ``=`` does: null equals nothing, not even null). Every spine row is kept exactly once
  (duplicates stay duplicates); row order is not preserved.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal, get_args

from engine.errors import DefinitionError, SchemaMismatch
from engine.features import expressions as X

Function = Literal["count", "sum", "mean", "min", "max", "stddev", "distinct_count", "last",
                   "time_since_last"]
FUNCTIONS: tuple[str, ...] = get_args(Function)
INTEGER_FUNCTIONS = frozenset({"count", "distinct_count"})
# Functions that read the aggregated column's values as numbers.
NUMERIC_FUNCTIONS = frozenset({"sum", "mean", "min", "max", "stddev"})
BUILTIN_DEFAULTS: dict[str, float | int | None] = {"count": 0, "distinct_count": 0, "sum": 0.0}

# Bump when the meaning of a feature changes (window bounds, null handling, defaults): the
# definition hash then changes, so tables and models built under the old meaning are not reused.
# (Options added later only enter the hash when used, so older definitions keep their hash.)
# 2: sums are the exact sum correctly rounded (issue 17), no longer a left-to-right fold.
SEMANTICS_VERSION = 2

# Column kinds, as both engines report them (see ``spark_column_kinds`` / ``pandas_column_kinds``).
NUMERIC_KINDS = frozenset({"int", "float", "decimal"})
ENTITY_KINDS = frozenset({"int", "string"})
TIMESTAMP_KINDS = frozenset({"timestamp"})
DISTINCT_KINDS = frozenset({"int", "float", "decimal", "string", "bool"})
LAST_KINDS = NUMERIC_KINDS | {"string", "bool", "timestamp"}
# The output dtype of ``last`` of a non-numeric column, by the column's kind.
LAST_DTYPES = {"string": "string", "bool": "boolean", "timestamp": "datetime64[us, UTC]"}

_UNITS = {"s": timedelta(seconds=1), "m": timedelta(minutes=1), "h": timedelta(hours=1),
          "d": timedelta(days=1), "w": timedelta(weeks=1)}
_DURATION = re.compile(r"^([1-9][0-9]*)([smhdw])$")
_TOP_KEYS = ("name", "entity", "timestamp", "as_of", "source", "source_version", "inclusive",
             "ttl", "columns", "aggregations", "derived")
_REQUIRED_TOP_KEYS = ("name", "entity", "timestamp", "aggregations")
_AGG_KEYS = ("column", "functions", "windows", "where", "prefix", "default", "ttl")
_DERIVED_KEYS = ("expr", "default")
_DEFAULT_AS_OF = "as_of"
_DEFAULT_SOURCE = "events"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


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
class Expression:
    """A parsed row-level expression and the text it was written as."""

    text: str
    tree: X.Expr = field(compare=False)

    @property
    def canonical(self) -> str:
        return X.to_sql(self.tree)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Expression) and self.canonical == other.canonical

    def __hash__(self) -> int:
        return hash(self.canonical)


@dataclass(frozen=True)
class Aggregation:
    """One feature: ``function`` of ``column`` over the ``window`` before each as-of time,
    over the events that pass ``where`` (all when None)."""

    column: str
    function: Function
    window: timedelta
    window_text: str
    where: Expression | None = None
    prefix: str | None = None
    default: float | int | None = None
    ttl: timedelta | None = None

    @property
    def name(self) -> str:
        """``{prefix or column}_{function}_{window}``, e.g. ``amount_sum_30d``."""
        return f"{self.prefix or self.column}_{self.function}_{self.window_text}"

    @property
    def micros(self) -> int:
        return window_micros(self.window)

    @property
    def ttl_micros(self) -> int | None:
        return None if self.ttl is None else window_micros(self.ttl)

    @property
    def dtype(self) -> str:
        """The output's NumPy dtype: ``int64`` for count and distinct_count, ``float64`` otherwise."""
        return "int64" if self.function in INTEGER_FUNCTIONS else "float64"


@dataclass(frozen=True)
class DerivedFeature:
    """A float64 feature computed from other features of the same set (e.g. a ratio)."""

    name: str
    expression: Expression
    default: float | None = None

    @property
    def dtype(self) -> str:
        return "float64"


@dataclass(frozen=True)
class FeatureSet:
    """A named set of windowed aggregations over one event source, keyed by one or more entity
    columns (``entity_keys``, in declared order: a spine row matches the events equal on all)."""

    name: str
    entity_keys: tuple[str, ...]
    timestamp: str
    as_of: str
    source: str
    aggregations: tuple[Aggregation, ...]
    columns: tuple[tuple[str, Expression], ...] = ()
    derived: tuple[DerivedFeature, ...] = ()
    inclusive: bool = False
    source_version: int | None = None

    def feature_names(self) -> list[str]:
        """Output feature columns: aggregations in declaration order (column, then function,
        then window), then derived features in declaration order."""
        return [agg.name for agg in self.aggregations] + [d.name for d in self.derived]

    def dtypes(self, event_kinds: Mapping[str, str] | None = None) -> dict[str, str]:
        """Feature name → pandas dtype of every output feature. ``last`` of a string, boolean or
        timestamp column (by ``event_kinds``, see ``event_kinds()``) has that column's type;
        without ``event_kinds`` every ``last`` is taken to be numeric."""
        kinds = event_kinds or {}
        return {**{a.name: LAST_DTYPES.get(kinds.get(a.column, ""), a.dtype) if a.function == "last"
                   else a.dtype for a in self.aggregations},
                **{d.name: d.dtype for d in self.derived}}

    def computed(self) -> dict[str, Expression]:
        """Computed event column name → expression over source columns."""
        return dict(self.columns)

    def event_columns(self) -> list[str]:
        """The columns read from the source: entity keys, event time, then every source column an
        aggregation, a computed column or a filter reads, each once."""
        computed = self.computed()
        used: list[str] = []
        for agg in self.aggregations:
            if agg.column in computed:
                used += X.columns_of(computed[agg.column].tree)
            else:
                used.append(agg.column)
            if agg.where is not None:
                for column in X.columns_of(agg.where.tree):
                    used += X.columns_of(computed[column].tree) if column in computed else [column]
        return list(dict.fromkeys([*self.entity_keys, self.timestamp, *used]))

    def windows(self) -> list[tuple[str, int]]:
        """Distinct windows as ``(text, microseconds)``, in declaration order."""
        return list(dict.fromkeys((agg.window_text, agg.micros) for agg in self.aggregations))


def scoring_time(as_of: Any) -> Any:
    """A scoring time as a UTC ``pandas.Timestamp`` in microseconds; a naive time is read as
    UTC. Raises ``DefinitionError`` for anything that is not a single time."""
    import pandas as pd

    try:
        stamp = pd.Timestamp(as_of)
    except (TypeError, ValueError):
        raise DefinitionError(f"scoring time {as_of!r} is not a time") from None
    if stamp is pd.NaT:
        raise DefinitionError("the scoring time is missing")
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.as_unit("us")


def _fail(definition: str, message: str) -> DefinitionError:
    return DefinitionError(f"feature definition {definition!r}: {message}")


def _name(definition: str, mapping: Mapping[str, Any], key: str, default: str | None = None) -> str:
    value = mapping.get(key, default)
    if not isinstance(value, str) or not value.strip():
        raise _fail(definition, f"key {key!r} must be a non-empty column/table name, got {value!r}")
    return value


def _entity_keys(definition: str, raw: Mapping[str, Any]) -> tuple[str, ...]:
    value = raw.get("entity")
    keys = [value] if isinstance(value, str) else value
    if (not isinstance(keys, list) or not keys
            or not all(isinstance(k, str) and k.strip() for k in keys)):
        raise _fail(definition, f"key 'entity' must be a column name or a non-empty list of column "
                                f"names, got {value!r}")
    keys = [k.strip() for k in keys]
    twice = sorted({k for k in keys if keys.count(k) > 1})
    if twice:
        raise _fail(definition, f"entity key {twice[0]!r} is listed twice in {value!r}")
    return tuple(keys)


def entity_identity(fs: FeatureSet) -> str | list[str]:
    """The entity keys as hashes record them: one key as its name (so hashes made before
    several keys existed stay valid), several as the list in declared order."""
    return fs.entity_keys[0] if len(fs.entity_keys) == 1 else list(fs.entity_keys)


def _expression(definition: str, where: str, text: Any) -> Expression:
    try:
        return Expression(text=str(text).strip(), tree=X.parse_expression(text))
    except DefinitionError as exc:
        raise _fail(definition, f"{where} expression {text!r} is not supported: {exc}") from None


def _number(definition: str, where: str, value: Any, integer: bool) -> float | int | None:
    if value is None and not integer:
        return None
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if integer and not (ok and float(value).is_integer()):
        raise _fail(definition, f"{where}: default must be a whole number for this function, got {value!r}")
    if not ok:
        raise _fail(definition, f"{where}: default must be null or a finite number, got {value!r}")
    return int(value) if integer else float(value)


def _aggregations(definition: str, items: Any, ttl: timedelta | None) -> tuple[Aggregation, ...]:
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
        condition = (_expression(definition, f"{where}.where of column {column!r}", item["where"])
                     if item.get("where") is not None else None)
        prefix = item.get("prefix")
        if prefix is not None and (not isinstance(prefix, str) or not _NAME.match(prefix)):
            raise _fail(definition, f"{where}.prefix must be a name of letters, digits and _, got {prefix!r}")
        agg_ttl = ttl
        if item.get("ttl") is not None:
            try:
                agg_ttl = parse_duration(item["ttl"])
            except DefinitionError as exc:
                raise _fail(definition, f"{where}.ttl of column {column!r}: {exc}") from None
        for function in functions:
            default = (_number(definition, f"{where} ({function} of {column!r})", item["default"],
                               function in INTEGER_FUNCTIONS)
                       if "default" in item else BUILTIN_DEFAULTS.get(function))
            if function == "sum" and default is not None:
                default = float(default)
            for text in windows:
                try:
                    window = parse_duration(text)
                except DefinitionError as exc:
                    raise _fail(definition, f"{where}.windows of column {column!r}: {exc}") from None
                out.append(Aggregation(column=column, function=function, window=window,
                                       window_text=text.strip(), where=condition, prefix=prefix,
                                       default=default, ttl=agg_ttl))
    seen: set[str] = set()
    for agg in out:
        if agg.name in seen:
            raise _fail(definition, f"feature {agg.name!r} is declared twice (give aggregations of the "
                                    f"same column a different 'prefix')")
        seen.add(agg.name)
    return tuple(out)


def _columns(definition: str, raw: Any) -> tuple[tuple[str, Expression], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, Mapping):
        raise _fail(definition, f"key 'columns' must map a column name to an expression, got {raw!r}")
    out = []
    for name, text in raw.items():
        if not isinstance(name, str) or not _NAME.match(name):
            raise _fail(definition, f"computed column name {name!r} must be letters, digits and _")
        out.append((name, _expression(definition, f"computed column {name!r}", text)))
    return tuple(out)


def _derived(definition: str, raw: Any, known: list[str]) -> tuple[DerivedFeature, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, Mapping):
        raise _fail(definition, f"key 'derived' must map a feature name to an expression, got {raw!r}")
    out: list[DerivedFeature] = []
    available = {name: "float" for name in known}
    for name, spec in raw.items():
        where = f"derived feature {name!r}"
        if not isinstance(name, str) or not _NAME.match(name):
            raise _fail(definition, f"{where}: the name must be letters, digits and _")
        if isinstance(spec, Mapping):
            unknown = sorted(set(spec) - set(_DERIVED_KEYS))
            if unknown or "expr" not in spec:
                raise _fail(definition, f"{where} needs 'expr' and may have 'default'; got keys "
                                        f"{', '.join(map(str, spec))}")
            text, default = spec["expr"], _number(definition, where, spec.get("default"), False)
        else:
            text, default = spec, None
        expression = _expression(definition, where, text)
        try:
            kind = X.infer_type(expression.tree, available)
        except (DefinitionError, SchemaMismatch) as exc:
            raise _fail(definition, f"{where}: expression {text!r}: {exc} (a derived feature reads "
                                    f"the features declared before it)") from None
        if kind not in ("num", "null"):
            raise _fail(definition, f"{where}: expression {text!r} is {kind}, expected a number")
        if name in available:
            raise _fail(definition, f"feature {name!r} is declared twice")
        available[name] = "float"
        out.append(DerivedFeature(name=name, expression=expression, default=default))
    return tuple(out)


def load_feature_set(path_or_mapping: str | Path | Mapping[str, Any]) -> FeatureSet:
    """A validated ``FeatureSet`` from a YAML file or an already-parsed mapping.

    Fails with ``DefinitionError`` naming the definition, the key and the value on: an unknown
    key, a missing required key (``name``, ``entity``, ``timestamp``, ``aggregations``), an
    unsupported function, a window or ttl that is not a duration, an expression outside the
    supported grammar (naming the expression), a feature declared twice, or a name that the
    entity, time or as-of column would share. ``as_of`` defaults to ``"as_of"`` and ``source``
    to ``"events"``. Nothing is submitted to any engine before this passes.
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
    inclusive = raw.get("inclusive", False)
    if not isinstance(inclusive, bool):
        raise _fail(label, f"key 'inclusive' must be true or false, got {inclusive!r}")
    version = raw.get("source_version")
    if version is not None and (isinstance(version, bool) or not isinstance(version, int) or version < 0):
        raise _fail(label, f"key 'source_version' must be a Delta version (a whole number >= 0), got {version!r}")
    ttl = None
    if raw.get("ttl") is not None:
        try:
            ttl = parse_duration(raw["ttl"])
        except DefinitionError as exc:
            raise _fail(label, f"key 'ttl': {exc}") from None
    aggregations = _aggregations(label, raw["aggregations"], ttl)
    fs = FeatureSet(
        name=_name(label, raw, "name"),
        entity_keys=_entity_keys(label, raw),
        timestamp=_name(label, raw, "timestamp"),
        as_of=_name(label, raw, "as_of", _DEFAULT_AS_OF),
        source=_name(label, raw, "source", _DEFAULT_SOURCE),
        aggregations=aggregations,
        columns=_columns(label, raw.get("columns")),
        derived=_derived(label, raw.get("derived"), [a.name for a in aggregations]),
        inclusive=inclusive,
        source_version=version,
    )
    computed = fs.computed()
    for agg in fs.aggregations:
        if agg.column in (*fs.entity_keys, fs.timestamp) and agg.function != "count":
            raise _fail(fs.name, f"column {agg.column!r} is an entity key or the event-time column and "
                                 f"cannot be aggregated")
    for name, expression in fs.columns:
        if name in (*fs.entity_keys, fs.timestamp):
            raise _fail(fs.name, f"computed column {name!r} would replace the entity or event-time column")
        inner = sorted(set(X.columns_of(expression.tree)) & set(computed))
        if inner:
            raise _fail(fs.name, f"computed column {name!r}: expression {expression.text!r} reads the "
                                 f"computed column {inner[0]!r}; computed columns read source columns only")
    if fs.as_of in fs.entity_keys or fs.timestamp in fs.entity_keys:
        raise _fail(fs.name, f"the as-of or event-time column is also an entity key "
                             f"{list(fs.entity_keys)!r}")
    clashes = sorted(set(fs.feature_names()) & {*fs.entity_keys, fs.as_of})
    if clashes:
        raise _fail(fs.name, f"feature name {clashes[0]!r} is also the entity or as-of column")
    return fs


def canonical_json(fs: FeatureSet) -> str:
    """The definition as canonical JSON: sorted keys, no whitespace, windows in microseconds,
    expressions in their canonical text.

    Independent of YAML key order, formatting, expression spacing and keyword case; any change
    of a feature (column, function, window, filter, default, ttl, names, expressions), of the
    entity keys (one key is recorded as its name, several as the list in declared order) or of
    ``SEMANTICS_VERSION`` changes it. Options that are not used (no filter, the built-in
    default, no ttl, exclusive windows, no pinned version) are left out, so a definition written
    before they existed keeps its hash.
    """
    def aggregation(a: Aggregation) -> dict[str, Any]:
        doc: dict[str, Any] = {"column": a.column, "function": a.function, "window_us": a.micros,
                               "window": a.window_text}
        if a.where is not None:
            doc["where"] = a.where.canonical
        if a.prefix is not None:
            doc["prefix"] = a.prefix
        if a.default != BUILTIN_DEFAULTS.get(a.function):
            doc["default"] = a.default
        if a.ttl is not None:
            doc["ttl_us"] = a.ttl_micros
        return doc

    doc: dict[str, Any] = {
        "semantics": SEMANTICS_VERSION,
        "name": fs.name, "entity": entity_identity(fs), "timestamp": fs.timestamp, "as_of": fs.as_of,
        "source": fs.source,
        "aggregations": [aggregation(a) for a in fs.aggregations],
    }
    if fs.columns:
        doc["columns"] = {name: e.canonical for name, e in fs.columns}
    if fs.derived:
        doc["derived"] = {d.name: {"expr": d.expression.canonical, "default": d.default}
                          for d in fs.derived}
    if fs.inclusive:
        doc["inclusive"] = True
    if fs.source_version is not None:
        doc["source_version"] = fs.source_version
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def definition_hash(fs: FeatureSet) -> str:
    """sha256 hex of ``canonical_json(fs)``: what tables and models record to prove which
    features they were built from."""
    return hashlib.sha256(canonical_json(fs).encode("utf-8")).hexdigest()


def event_kinds(fs: FeatureSet, event_columns: Mapping[str, str]) -> dict[str, str]:
    """The events' column kinds plus those of ``fs``'s computed columns (typed from their
    expressions). Raises like ``check_inputs`` when an expression cannot be typed."""
    kinds = dict(event_columns)
    for name, expression in fs.columns:
        if name in event_columns:
            raise SchemaMismatch(
                f"feature definition {fs.name!r}: computed column {name!r} is also a column of the "
                f"events table; rename the computed column")
        kinds[name] = X.TYPE_KINDS[_typed(fs, f"computed column {name!r}", expression, event_columns)]
    return kinds


def _typed(fs: FeatureSet, where: str, expression: Expression, kinds: Mapping[str, str]) -> str:
    try:
        return X.infer_type(expression.tree, kinds)
    except DefinitionError as exc:
        raise DefinitionError(f"feature definition {fs.name!r}: {where}: expression "
                              f"{expression.text!r}: the events table has no column: {exc}") from None
    except SchemaMismatch as exc:
        raise SchemaMismatch(f"feature definition {fs.name!r}: {where}: expression "
                             f"{expression.text!r}: {exc}") from None


def check_inputs(fs: FeatureSet, event_columns: Mapping[str, str], spine_columns: Mapping[str, str]) -> None:
    """Fail before any job runs if the events or the spine cannot feed ``fs``.

    ``*_columns`` map column name → kind (``"int"``, ``"float"``, ``"decimal"``, ``"string"``,
    ``"timestamp"``, ``"bool"``, ``"date"``, or another engine type name). A missing column
    (also one read by an expression) raises ``DefinitionError``; a column of the wrong kind, an
    expression of the wrong type (a filter that is not boolean, arithmetic on strings), an
    entity of different kinds in the two tables, or a spine column that a feature would
    overwrite raises ``SchemaMismatch``. Messages name the definition, the table (events or
    spine), the column and the expression.
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

    for key in fs.entity_keys:
        events_entity = need("events", event_columns, key, "entity", ENTITY_KINDS, "integer or string")
        spine_entity = need("spine", spine_columns, key, "entity", ENTITY_KINDS, "integer or string")
        if events_entity != spine_entity:
            raise SchemaMismatch(
                f"feature definition {fs.name!r}: entity column {key!r} is {events_entity} in the "
                f"events table but {spine_entity} in the spine table; cast one so both have the same kind")
    need("events", event_columns, fs.timestamp, "event-time", TIMESTAMP_KINDS, "a timestamp")
    need("spine", spine_columns, fs.as_of, "as-of", TIMESTAMP_KINDS, "a timestamp")
    kinds = event_kinds(fs, event_columns)
    for agg in fs.aggregations:
        if agg.function in NUMERIC_FUNCTIONS:
            allowed, expected = NUMERIC_KINDS, "numeric"
        elif agg.function == "last":
            allowed, expected = LAST_KINDS, "a number, string, boolean or timestamp"
        elif agg.function == "distinct_count":
            allowed, expected = DISTINCT_KINDS, "a number, string or boolean"
        else:
            allowed, expected = frozenset(kinds.values()), "any"
        need("events", kinds, agg.column, f"aggregated ({agg.function})", allowed, expected)
        if agg.where is not None:
            found = _typed(fs, f"filter of {agg.name!r}", agg.where, kinds)
            if found != "bool":
                raise SchemaMismatch(f"feature definition {fs.name!r}: filter of {agg.name!r}: expression "
                                     f"{agg.where.text!r} is {found}, expected a condition (boolean)")
    typed = fs.dtypes(kinds)
    non_numeric = {a.name: kinds[a.column] for a in fs.aggregations if typed[a.name] in LAST_DTYPES.values()}
    for agg in fs.aggregations:
        if agg.name in non_numeric and agg.default is not None:
            raise SchemaMismatch(
                f"feature definition {fs.name!r}: feature {agg.name!r} is the last value of the "
                f"{non_numeric[agg.name]} column {agg.column!r}, so its default can only be null, "
                f"got {agg.default!r}; remove the default")
    for derived in fs.derived:
        read = sorted(set(X.columns_of(derived.expression.tree)) & set(non_numeric))
        if read:
            raise SchemaMismatch(
                f"feature definition {fs.name!r}: derived feature {derived.name!r} reads {read[0]!r}, "
                f"the last value of a {non_numeric[read[0]]} column; derived features read numeric "
                f"features only")
    clashes = sorted(set(fs.feature_names()) & set(spine_columns))
    if clashes:
        raise SchemaMismatch(
            f"feature definition {fs.name!r}: spine table already has column {clashes[0]!r}, which "
            f"a feature would overwrite; drop or rename it in the spine")
