"""The plan both compilers execute: which event inputs to prepare, which windowed statistics
to compute over them, and how each feature is made from those statistics.

Planning lives here, once, so the Spark and Dask compilers cannot drift apart: they only differ
in how they compute a ``Stat`` (a window function in Spark, a pass over sorted NumPy arrays in
Dask). Each feature's final value is an expression (``engine.features.expressions``) over the
statistics' columns, evaluated by the same expression compilers as user expressions: defaults,
TTLs and ``mean = sum / n`` are written once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

from engine.features import expressions as X
from engine.features.definitions import (
    BUILTIN_DEFAULTS,
    NUMERIC_KINDS,
    Aggregation,
    Expression,
    FeatureSet,
)

PREFIX = "__lakescore_"
AS_OF_MICROS = PREFIX + "as_of_us"


@dataclass(frozen=True)
class Input:
    """A column prepared from the events: the events passing ``where`` (``column`` None: an
    indicator, 1 or null), or ``column``'s value where ``where`` holds, else null (numeric:
    as float64 with NaN as null; ``numeric`` False: the raw value, for distinct counts)."""

    column: str | None
    where: Expression | None
    numeric: bool

    def name(self, index: int) -> str:
        kind = "events" if self.column is None else "value" if self.numeric else "raw"
        return f"{PREFIX}{kind}_{index}"


@dataclass(frozen=True)
class Stat:
    """A windowed statistic of one input over ``[as_of - micros, as_of)`` (or ``]`` when
    inclusive). ``kind``: ``count`` (events), ``sum``, ``n`` (non-null values), ``min``,
    ``max``, ``std`` (Welford, sample), ``last`` (latest non-null value, greatest on ties; of a
    raw input: a string, boolean or timestamp value, else a float64),
    ``last_time`` (latest event time, microseconds), ``distinct`` (distinct non-null values)."""

    kind: str
    input: int
    micros: int

    @property
    def name(self) -> str:
        return f"{PREFIX}{self.kind}_{self.input}_{self.micros}"


class Plan:
    """Inputs, statistics and feature expressions of a ``FeatureSet``.

    ``event_kinds`` (the events' column kinds with the computed columns', see
    ``definitions.event_kinds``) tells which ``last`` features read a non-numeric column; without
    it every column is taken to be numeric."""

    def __init__(self, fs: FeatureSet, event_kinds: Mapping[str, str] | None = None) -> None:
        self.fs = fs
        self.event_kinds = dict(event_kinds or {})
        self.inputs: list[Input] = []
        self.stats: list[Stat] = []
        self.features: dict[str, X.Expr] = {}
        for agg in fs.aggregations:
            self.features[agg.name] = self._feature(agg)
        for derived in fs.derived:
            expr = derived.expression.tree
            if derived.default is not None:
                expr = X.Call("coalesce", (expr, X.Lit(float(derived.default))))
            self.features[derived.name] = expr

    def _input(self, column: str | None, where: Expression | None, numeric: bool) -> int:
        wanted = Input(column, where, numeric)
        if wanted not in self.inputs:
            self.inputs.append(wanted)
        return self.inputs.index(wanted)

    def _stat(self, kind: str, input_index: int, micros: int) -> X.Col:
        stat = Stat(kind, input_index, micros)
        if stat not in self.stats:
            self.stats.append(stat)
        return X.Col(stat.name)

    def _feature(self, agg: Aggregation) -> X.Expr:
        events = self._input(None, agg.where, True)
        w = agg.micros
        if agg.function == "count":
            value: X.Expr = self._stat("count", events, w)
        elif agg.function == "time_since_last":
            last = self._stat("last_time", events, w)
            value = X.Binary("/", X.Binary("-", X.Col(AS_OF_MICROS), last), X.Lit(1e6))
        elif agg.function == "distinct_count":
            value = self._stat("distinct", self._input(agg.column, agg.where, False), w)
        elif agg.function == "last" and self.event_kinds.get(agg.column, "float") not in NUMERIC_KINDS:
            value = self._stat("last", self._input(agg.column, agg.where, False), w)
        else:
            values = self._input(agg.column, agg.where, True)
            if agg.function == "sum":
                value = X.Call("coalesce", (self._stat("sum", values, w), X.Lit(0.0)))
            elif agg.function == "mean":
                n = self._stat("n", values, w)
                value = X.Case(((X.Binary(">", n, X.Lit(0.0)),
                                 X.Binary("/", self._stat("sum", values, w), n)),), None)
            elif agg.function == "stddev":
                n = self._stat("n", values, w)
                value = X.Case(((X.Binary(">=", n, X.Lit(2.0)), self._stat("std", values, w)),), None)
            else:
                value = self._stat({"min": "min", "max": "max", "last": "last"}[agg.function], values, w)
        default = X.Lit(None if agg.default is None else float(agg.default))
        if agg.default == BUILTIN_DEFAULTS.get(agg.function) and agg.ttl_micros is None:
            # Over an empty window every function already gives its built-in default (0 for
            # count, distinct_count and sum, null otherwise): no emptiness check to compute.
            return value
        empty: X.Expr = X.Binary("=", self._stat("count", events, w), X.Lit(0.0))
        if agg.ttl_micros is not None:
            stale = X.Binary("=", self._stat("count", events, agg.ttl_micros), X.Lit(0.0))
            empty = X.Binary("OR", empty, stale)
        return X.Case(((empty, default),), value)

    @cached_property
    def sort_inputs(self) -> list[int]:
        """Numeric inputs of ``std`` statistics, in plan order: after entity and time, events
        are sorted by these values (ascending, nulls last), because Welford's update depends on
        the order of the values it folds; every engine folds them in this order. Sums need no
        order: they are exact, rounded once."""
        folded = {s.input for s in self.stats if s.kind == "std"}
        return [i for i in range(len(self.inputs)) if i in folded]

    def raw_last_kinds(self) -> dict[str, str]:
        """Stat name → column kind of the ``last`` statistics over raw (non-numeric) values:
        the statistics that are not float64."""
        out = {}
        for stat in self.stats:
            item = self.inputs[stat.input]
            if stat.kind == "last" and not item.numeric and item.column is not None:
                out[stat.name] = self.event_kinds[item.column]
        return out

    def windows(self) -> list[int]:
        """Distinct window lengths (microseconds) the statistics need, ascending."""
        return sorted({s.micros for s in self.stats})
