"""Row-level expressions (``engine.features.expressions``) compiled to Spark ``Column``s.

Every node becomes a built-in Spark expression (no UDF), following the type and null rules of
``engine.features.expressions``; the parity tests check the results against the NumPy
evaluation (``engine.features.dask_expressions``) and DuckDB.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING

from engine.features.expressions import (
    COMPARISONS,
    KIND_TYPES,
    Binary,
    Call,
    Case,
    Col,
    Expr,
    InList,
    IsNull,
    Lit,
    Unary,
    infer_type,
    time_micros,
)

if TYPE_CHECKING:
    from pyspark.sql import Column


def spark_input(name: str, kind: str) -> Column:
    """A source column as expressions read it: numbers as double with NaN as null."""
    from pyspark.sql import functions as F

    if KIND_TYPES.get(kind) == "num":
        value = F.col(name).cast("double")
        return F.when(~F.isnan(value), value)
    if kind == "timestamp":
        return F.col(name).cast("timestamp")
    return F.col(name)


def to_spark(expr: Expr, column: Callable[[str], Column], kinds: Mapping[str, str] | None = None) -> Column:
    """A Spark ``Column`` for ``expr``; ``column(name)`` gives each input column already in its
    expression form (numbers as double with NaN as null, see ``spark_input``). ``kinds``
    (column → kind) tells a timestamp difference from a numeric one; without it every column
    is read as a number."""
    from pyspark.sql import functions as F

    def is_time(node: Expr) -> bool:
        if kinds is None:
            return isinstance(node, Lit) and isinstance(node.value, datetime)
        return infer_type(node, kinds) == "time"

    def nan_to_null(value: Column) -> Column:
        return F.when(~F.isnan(value), value)

    def go(node: Expr) -> Column:
        match node:
            case Col(name):
                return column(name)
            case Lit(datetime() as value):
                return F.timestamp_micros(F.lit(time_micros(value)))
            case Lit(value):
                return F.lit(value)
            case Unary("NOT", operand):
                return ~go(operand)
            case Unary(_, operand):
                return -go(operand)
            case Binary("-", left, right) if is_time(left) or is_time(right):
                # Whole microseconds subtracted as longs, then one division: exact and rounded
                # once, as the NumPy evaluation does it.
                later, earlier = (F.unix_micros(go(side).cast("timestamp")) for side in (left, right))
                return (later - earlier).cast("double") / F.lit(1e6)
            case Binary("AND", left, right):
                return go(left) & go(right)
            case Binary("OR", left, right):
                return go(left) | go(right)
            case Binary("+", left, right):
                return nan_to_null(go(left) + go(right))
            case Binary("-", left, right):
                return nan_to_null(go(left) - go(right))
            case Binary("*", left, right):
                return nan_to_null(go(left) * go(right))
            case Binary("/", left, right):
                divisor = go(right)
                return nan_to_null(F.when(divisor != 0, go(left).cast("double") / divisor))
            case Binary("%", left, right):
                divisor = go(right)
                return nan_to_null(F.when(divisor != 0, go(left).cast("double") % divisor))
            case Binary(op, left, right):
                return COMPARISONS[op](go(left), go(right))
            case InList(operand, values, negated):
                found = go(operand).isin([v.value for v in values])
                return ~found if negated else found
            case IsNull(operand, negated):
                return go(operand).isNotNull() if negated else go(operand).isNull()
            case Case(whens, otherwise):
                out = None
                for condition, value in whens:
                    branch = (go(condition), go(value))
                    out = F.when(*branch) if out is None else out.when(*branch)
                return out.otherwise(go(otherwise)) if otherwise is not None else out
            case Call("coalesce", args):
                return F.coalesce(*(go(a) for a in args))
            case Call("log", (arg,)):
                value = go(arg)
                return F.when(value > 0, F.log(value))
            case Call("abs", (arg,)):
                return F.abs(go(arg))
            case Call("dayofweek", (arg,)):
                return ((F.dayofweek(go(arg)) + 5) % 7 + 1).cast("double")  # Sunday 1 … → Monday 1 …
            case Call(name, (arg,)):
                part = {"year": F.year, "month": F.month, "day": F.dayofmonth, "hour": F.hour,
                        "minute": F.minute}[name]
                return part(go(arg)).cast("double")
        raise AssertionError(f"not an expression node: {node!r}")

    return go(expr)
