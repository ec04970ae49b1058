"""Row-level expressions (``engine.features.expressions``) evaluated with NumPy on a pandas
partition.

A column is a ``MaskedColumn`` (data and a validity mask); evaluation follows the type and null
rules of ``engine.features.expressions`` with the same floating-point operations, in the same
order, as the Spark compilation (``engine.features.spark_expressions``), which the parity tests
check against DuckDB.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np

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
    Type,
    Unary,
    time_micros,
)

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class MaskedColumn:
    """One column of an expression's values: ``data`` (float64 with NaN for num, object for
    str, bool for bool, int64 microseconds for time) and ``valid`` (False where null)."""

    type: Type
    data: np.ndarray
    valid: np.ndarray


def pandas_input(column: pd.Series, kind: str) -> MaskedColumn:
    """A pandas column as expressions read it (numbers as float64 with NaN as null, times as
    UTC microseconds; the same reading as ``spark_expressions.spark_input``)."""
    import pandas as pd

    kind_type = KIND_TYPES.get(kind, "str")
    if kind_type == "num":
        data = pd.to_numeric(column, errors="raise").astype("float64").to_numpy(na_value=np.nan)
        return MaskedColumn("num", data, ~np.isnan(data))
    if kind_type == "time":
        utc = pd.to_datetime(column, utc=True)
        valid = utc.notna().to_numpy()
        micros = utc.dt.as_unit("us").array.asi8.copy()
        return MaskedColumn("time", micros, valid)
    valid = column.notna().to_numpy()
    if kind_type == "bool":
        return MaskedColumn("bool", column.fillna(False).astype(bool).to_numpy(), valid)
    data = column.astype(object).to_numpy()
    data[~valid] = ""  # nulls are in ``valid``; a plain placeholder keeps comparisons total
    return MaskedColumn("str", data, valid)


def evaluate(expr: Expr, inputs: Mapping[str, MaskedColumn], n: int) -> MaskedColumn:
    """Evaluate ``expr`` over ``n`` rows whose columns are ``inputs`` (see ``pandas_input``)."""
    def go(node: Expr) -> MaskedColumn:
        match node:
            case Col(name):
                return inputs[name]
            case Lit(value):
                return _broadcast(value, n)
            case Unary("NOT", operand):
                v = go(operand)
                return MaskedColumn("bool", ~v.data.astype(bool), v.valid)
            case Unary(_, operand):
                v = go(operand)
                return _num(-v.data.astype("float64"), v.valid)
            case Binary(op, left, right):
                return _binary(op, go(left), go(right), n)
            case InList(operand, values, negated):
                v = go(operand)
                listed = [x.value for x in values]
                if v.type == "num":
                    found = np.isin(v.data, np.asarray(listed, dtype="float64"))
                else:
                    found = np.isin(v.data.astype(object), np.asarray(listed, dtype=object))
                return MaskedColumn("bool", ~found if negated else found, v.valid.copy())
            case IsNull(operand, negated):
                v = go(operand)
                return MaskedColumn("bool", v.valid.copy() if negated else ~v.valid, np.ones(n, dtype=bool))
            case Case(whens, otherwise):
                branches = [(go(c), go(v)) for c, v in whens]
                out = go(otherwise) if otherwise is not None else _broadcast(None, n)
                for condition, value in reversed(branches):
                    out = _choose(condition.data.astype(bool) & condition.valid, value, out, n)
                return out
            case Call("coalesce", args):
                values = [go(a) for a in args]
                out = values[-1]
                for value in reversed(values[:-1]):
                    out = _choose(value.valid, value, out, n)
                return out
            case Call("abs", (arg,)):
                x = go(arg)
                return _num(np.abs(x.data.astype("float64")), x.valid)
            case Call("log", (arg,)):
                x = go(arg)
                data = x.data.astype("float64")
                positive = x.valid & (data > 0)
                with np.errstate(all="ignore"):
                    return _num(np.log(np.where(positive, data, 1.0)), positive)
            case Call(name, (arg,)):
                return _date_part(name, go(arg))
        raise AssertionError(f"not an expression node: {node!r}")

    return go(expr)


def to_pandas(value: MaskedColumn, index: Any = None) -> pd.Series:
    """An evaluated expression as a pandas Series: float64 (NaN null), object strings (None
    null), nullable ``boolean``, or UTC ``datetime64[us]``."""
    import pandas as pd

    if value.type in ("num", "null"):
        return pd.Series(np.where(value.valid, value.data, np.nan).astype("float64"), index=index)
    if value.type == "bool":
        return pd.Series(pd.arrays.BooleanArray(value.data.astype(bool), ~value.valid), index=index)
    if value.type == "time":
        times = pd.to_datetime(value.data, unit="us", utc=True)
        return pd.Series(times, index=index).where(value.valid)
    return pd.Series(np.where(value.valid, value.data, None), index=index, dtype=object)


def _broadcast(value: Any, n: int) -> MaskedColumn:
    """A literal repeated over ``n`` rows."""
    match value:
        case None:
            return MaskedColumn("null", np.full(n, np.nan), np.zeros(n, dtype=bool))
        case datetime():
            return MaskedColumn("time", np.full(n, time_micros(value), dtype="int64"), np.ones(n, dtype=bool))
        case bool():
            return MaskedColumn("bool", np.full(n, value), np.ones(n, dtype=bool))
        case float():
            return MaskedColumn("num", np.full(n, value), np.ones(n, dtype=bool))
    return MaskedColumn("str", np.full(n, value, dtype=object), np.ones(n, dtype=bool))


def _num(data: np.ndarray, valid: np.ndarray) -> MaskedColumn:
    """A numeric column whose NaNs (from the data or produced by arithmetic) are nulls."""
    valid = valid & ~np.isnan(data)
    return MaskedColumn("num", np.where(valid, data, np.nan), valid)


def _choose(mask: np.ndarray, when: MaskedColumn, otherwise: MaskedColumn, n: int) -> MaskedColumn:
    """``when`` where ``mask``, else ``otherwise``; a ``null`` side takes the other's type."""
    kind = when.type if when.type != "null" else otherwise.type
    if kind == "null":
        return otherwise
    fill = {"num": np.nan, "str": None, "bool": False, "time": 0}[kind]

    def data(side: MaskedColumn) -> np.ndarray:
        return side.data if side.type != "null" else np.full(n, fill, dtype=object if kind == "str" else None)

    return MaskedColumn(kind, np.where(mask, data(when), data(otherwise)),
                        np.where(mask, when.valid, otherwise.valid))


def _binary(op: str, a: MaskedColumn, b: MaskedColumn, n: int) -> MaskedColumn:
    """``a op b`` with SQL's null rules (three-valued ``AND``/``OR``, null otherwise)."""
    if op in ("AND", "OR"):
        x, y = a.data.astype(bool), b.data.astype(bool)
        if op == "AND":
            false = (a.valid & ~x) | (b.valid & ~y)
            valid = false | (a.valid & b.valid)
            return MaskedColumn("bool", ~false & x & y, valid)
        true = (a.valid & x) | (b.valid & y)
        valid = true | (a.valid & b.valid)
        return MaskedColumn("bool", true, valid)
    valid = a.valid & b.valid
    if op == "-" and "time" in (a.type, b.type):
        x, y = (np.where(valid, v.data, 0).astype("int64") if v.type == "time" else np.zeros(n, "int64")
                for v in (a, b))
        return _num((x - y).astype("float64") / 1e6, valid)
    if op in ("+", "-", "*", "/", "%"):
        x, y = a.data.astype("float64"), b.data.astype("float64")
        with np.errstate(all="ignore"):
            if op == "+":
                return _num(x + y, valid)
            if op == "-":
                return _num(x - y, valid)
            if op == "*":
                return _num(x * y, valid)
            nonzero = valid & (y != 0)
            safe = np.where(nonzero, y, 1.0)
            return _num(x / safe if op == "/" else np.fmod(x, safe), nonzero)
    if a.type == "null" or b.type == "null":
        return MaskedColumn("bool", np.zeros(n, dtype=bool), np.zeros(n, dtype=bool))
    x, y = a.data, b.data
    if a.type == "str":
        x, y = np.where(valid, x, ""), np.where(valid, y, "")
    elif a.type == "num":
        x, y = np.where(valid, x, 0.0), np.where(valid, y, 0.0)
    return MaskedColumn("bool", np.asarray(COMPARISONS[op](x, y), dtype=bool), valid)


def _date_part(name: str, x: MaskedColumn) -> MaskedColumn:
    """``year`` … ``dayofweek`` (ISO, Monday 1) of a time column, in UTC."""
    import pandas as pd

    times = pd.to_datetime(np.where(x.valid, x.data, 0), unit="us", utc=True)
    parts = {"year": times.year, "month": times.month, "day": times.day, "hour": times.hour,
             "minute": times.minute, "dayofweek": times.dayofweek + 1}
    return _num(np.asarray(parts[name], dtype="float64"), x.valid)
