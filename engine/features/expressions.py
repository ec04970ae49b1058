"""Row-level expressions: a small SQL subset, parsed once, compiled for Spark and for pandas.

A feature definition writes expressions as strings (``"category = 'travel'"``,
``"CASE WHEN amount > 100 THEN log(amount) ELSE 0 END"``). ``parse_expression`` turns one into
a tree of frozen nodes with a recursive-descent parser of our own, so nothing is ever handed to
``eval`` or to an engine's SQL parser, and anything outside the grammar is rejected when the
definition is loaded. The tree is compiled to a Spark ``Column`` by
``engine.features.spark_expressions.to_spark`` and evaluated on a pandas frame
(``evaluate_pandas``); both follow the rules below, which the parity tests check against DuckDB.

Grammar (keywords case-insensitive)::

    expr   := or ;  or := and (OR and)* ;  and := not (AND not)* ;  not := NOT not | cmp
    cmp    := sum [ (= | != | <> | < | <= | > | >=) sum | [NOT] IN (literal, ...) | IS [NOT] NULL ]
    sum    := prod ((+ | -) prod)* ;  prod := unary ((* | / | %) unary)* ;  unary := - unary | atom
    atom   := number | 'string' | TRUE | FALSE | NULL | TIMESTAMP 'time' | column
            | function(expr, ...) | (expr) | CASE WHEN expr THEN expr [WHEN expr THEN expr]* [ELSE expr] END

Functions: ``log`` (natural, also ``ln``), ``abs``, ``coalesce(a, b, ...)``, and the date parts
``year``, ``month``, ``day``, ``hour``, ``minute``, ``dayofweek`` (ISO: Monday 1 … Sunday 7) of a
timestamp, in UTC. Columns are plain identifiers or ``"quoted"``.

Types are ``num`` (every number is a float64: integers are read as doubles), ``str``, ``bool``
and ``time`` (a timestamp, in microseconds).

Timestamps: ``TIMESTAMP '2025-06-01'``, ``TIMESTAMP '2025-06-01 12:30:00'`` (also with
``.ffffff``, a ``T`` separator, ``Z`` or a ``+hh:mm`` offset) is a time literal, read as UTC when
it has no offset. Times compare with times (``=``, ``!=``, ``<``, ``<=``, ``>``, ``>=``), never
with strings or numbers. ``a - b`` of two times is the elapsed seconds from ``b`` to ``a`` as a
number (float64, exact to the microsecond for spans under ~285 years; divide by 86400 for
days); no other arithmetic takes a time (``event_time + 1`` and ``event_time - 60`` are
rejected, naming the expression). ``TIMESTAMP`` is a keyword only before a quoted string, so a
column named ``timestamp`` still reads as a column. Null rules, as in SQL:
arithmetic and comparisons with a null give null; ``AND``/``OR``/``NOT`` use three-valued
logic; ``CASE`` takes the first branch whose condition is true (a null condition is not true)
and is null without ``ELSE``; ``x IN (...)`` is null for a null ``x``. NaN in a numeric column
is read as null. Division or ``%`` by zero gives null (not an error, not infinity); ``log`` of
a value ≤ 0 gives null; a NaN produced by arithmetic (``inf - inf``) is null. Arithmetic and
comparisons give bit-identical results on both engines; ``log`` comes from each engine's math
library (Java's, NumPy's) and may differ in the last bit.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Union

import numpy as np

from engine.errors import DefinitionError, SchemaMismatch

if TYPE_CHECKING:
    import pandas as pd

Type = str  # "num" | "str" | "bool" | "time" | "null"

# Column kind (see ``engine.features.definitions.check_inputs``) → expression type.
KIND_TYPES = {"int": "num", "float": "num", "decimal": "num", "string": "str", "bool": "bool",
              "timestamp": "time"}
# Expression type → the column kind of a computed column.
TYPE_KINDS = {"num": "float", "str": "string", "bool": "bool", "time": "timestamp", "null": "float"}

DATE_PARTS = ("year", "month", "day", "hour", "minute", "dayofweek")
FUNCTIONS = ("log", "ln", "abs", "coalesce", *DATE_PARTS)
# What each comparison means, on Spark columns and NumPy arrays alike (both overload the operators).
COMPARISONS: dict[str, Callable[[Any, Any], Any]] = {
    "=": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt,
    ">=": operator.ge}
_COMPARISONS = (*COMPARISONS, "<>")
_KEYWORDS = {"AND", "OR", "NOT", "IN", "IS", "NULL", "TRUE", "FALSE", "CASE", "WHEN", "THEN",
             "ELSE", "END"}


@dataclass(frozen=True)
class Col:
    name: str


@dataclass(frozen=True)
class Lit:
    value: float | str | bool | datetime | None  # a datetime is UTC-aware (TIMESTAMP '...')


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def time_micros(value: datetime) -> int:
    """A UTC-aware datetime as whole microseconds since the epoch (exact integer arithmetic)."""
    return (value - _EPOCH) // timedelta(microseconds=1)


def _time_literal(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise DefinitionError(f"TIMESTAMP {text!r} is not a time; write TIMESTAMP 'YYYY-MM-DD', "
                              f"'YYYY-MM-DD hh:mm:ss[.ffffff]' (UTC) or with a +hh:mm offset") from None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


@dataclass(frozen=True)
class Unary:
    op: str  # "-" | "NOT"
    operand: Expr


@dataclass(frozen=True)
class Binary:
    op: str  # + - * / % = != < <= > >= AND OR
    left: Expr
    right: Expr


@dataclass(frozen=True)
class InList:
    operand: Expr
    values: tuple[Lit, ...]
    negated: bool


@dataclass(frozen=True)
class IsNull:
    operand: Expr
    negated: bool


@dataclass(frozen=True)
class Case:
    whens: tuple[tuple[Expr, Expr], ...]
    otherwise: Expr | None


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple[Expr, ...]


Expr = Union[Col, Lit, Unary, Binary, InList, IsNull, Case, Call]


# ---------------------------------------------------------------------------------------------
# parsing

_TOKEN = re.compile(r"""\s*(?:
    (?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<str>'(?:[^']|'')*')
  | (?P<qid>"(?:[^"]|"")+")
  | (?P<id>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op><=|>=|<>|!=|[-+*/%=<>(),])
)""", re.VERBOSE)


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise DefinitionError(f"cannot read {text[pos:].strip()[:20]!r} at position {pos}")
        kind = match.lastgroup or ""
        value = match.group(kind)
        if kind == "id" and value.upper() in _KEYWORDS:
            kind, value = "kw", value.upper()
        out.append((kind, value))
        pos = match.end()
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.i = 0

    def peek(self, kind: str | None = None, value: str | None = None) -> bool:
        if self.i >= len(self.tokens):
            return False
        k, v = self.tokens[self.i]
        return (kind is None or k == kind) and (value is None or v == value)

    def take(self, kind: str | None = None, value: str | None = None) -> str:
        if not self.peek(kind, value):
            found = repr(self.tokens[self.i][1]) if self.i < len(self.tokens) else "the end"
            raise DefinitionError(f"expected {value or kind} but found {found}")
        self.i += 1
        return self.tokens[self.i - 1][1]

    def accept(self, kind: str, value: str) -> bool:
        if self.peek(kind, value):
            self.i += 1
            return True
        return False

    def parse(self) -> Expr:
        expr = self.or_()
        if self.i < len(self.tokens):
            raise DefinitionError(f"unexpected {self.tokens[self.i][1]!r} after a complete expression")
        return expr

    def or_(self) -> Expr:
        expr = self.and_()
        while self.accept("kw", "OR"):
            expr = Binary("OR", expr, self.and_())
        return expr

    def and_(self) -> Expr:
        expr = self.not_()
        while self.accept("kw", "AND"):
            expr = Binary("AND", expr, self.not_())
        return expr

    def not_(self) -> Expr:
        if self.accept("kw", "NOT"):
            return Unary("NOT", self.not_())
        return self.cmp()

    def cmp(self) -> Expr:
        left = self.sum_()
        if self.peek("op") and self.tokens[self.i][1] in _COMPARISONS:
            op = self.take("op")
            return Binary("!=" if op == "<>" else op, left, self.sum_())
        negated = self.peek("kw", "NOT") and self.i + 1 < len(self.tokens) and self.tokens[self.i + 1] == ("kw", "IN")
        if negated:
            self.i += 1
        if self.accept("kw", "IN"):
            self.take("op", "(")
            values = [self.literal()]
            while self.accept("op", ","):
                values.append(self.literal())
            self.take("op", ")")
            return InList(left, tuple(values), negated)
        if self.accept("kw", "IS"):
            is_not = self.accept("kw", "NOT")
            self.take("kw", "NULL")
            return IsNull(left, is_not)
        return left

    def literal(self) -> Lit:
        negative = self.accept("op", "-")
        if self.peek("num"):
            value = float(self.take("num"))
            return Lit(-value if negative else value)
        if not negative and self.peek("str"):
            return Lit(self.take("str")[1:-1].replace("''", "'"))
        raise DefinitionError("IN takes a list of number or string literals")

    def sum_(self) -> Expr:
        expr = self.prod()
        while self.peek("op") and self.tokens[self.i][1] in ("+", "-"):
            expr = Binary(self.take("op"), expr, self.prod())
        return expr

    def prod(self) -> Expr:
        expr = self.unary()
        while self.peek("op") and self.tokens[self.i][1] in ("*", "/", "%"):
            expr = Binary(self.take("op"), expr, self.unary())
        return expr

    def unary(self) -> Expr:
        if self.accept("op", "-"):
            operand = self.unary()
            if isinstance(operand, Lit) and isinstance(operand.value, float):
                return Lit(-operand.value)
            return Unary("-", operand)
        return self.atom()

    def atom(self) -> Expr:
        if self.peek("num"):
            return Lit(float(self.take("num")))
        if self.peek("str"):
            return Lit(self.take("str")[1:-1].replace("''", "'"))
        if self.peek("qid"):
            return Col(self.take("qid")[1:-1].replace('""', '"'))
        if self.accept("op", "("):
            expr = self.or_()
            self.take("op", ")")
            return expr
        for word, value in (("TRUE", True), ("FALSE", False), ("NULL", None)):
            if self.accept("kw", word):
                return Lit(value)
        if self.accept("kw", "CASE"):
            whens = []
            while self.accept("kw", "WHEN"):
                condition = self.or_()
                self.take("kw", "THEN")
                whens.append((condition, self.or_()))
            if not whens:
                raise DefinitionError("CASE needs at least one WHEN ... THEN ...")
            otherwise = self.or_() if self.accept("kw", "ELSE") else None
            self.take("kw", "END")
            return Case(tuple(whens), otherwise)
        if self.peek("id"):
            name = self.take("id")
            if name.upper() == "TIMESTAMP" and self.peek("str"):
                return Lit(_time_literal(self.take("str")[1:-1]))
            if not self.accept("op", "("):
                return Col(name)
            function = name.lower()
            if function not in FUNCTIONS:
                raise DefinitionError(f"unsupported function {name!r}; supported: {', '.join(FUNCTIONS)}")
            args = [self.or_()]
            while self.accept("op", ","):
                args.append(self.or_())
            self.take("op", ")")
            if function == "ln":
                function = "log"
            if function != "coalesce" and len(args) != 1:
                raise DefinitionError(f"{function}() takes one argument, got {len(args)}")
            return Call(function, tuple(args))
        found = repr(self.tokens[self.i][1]) if self.i < len(self.tokens) else "the end"
        raise DefinitionError(f"expected a value, a column or a function but found {found}")


def parse_expression(text: str) -> Expr:
    """The expression tree of ``text``; ``DefinitionError`` (saying what and where) if ``text``
    is not in the grammar of this module."""
    if not isinstance(text, str) or not text.strip():
        raise DefinitionError(f"an expression must be a non-empty string, got {text!r}")
    return _Parser(text).parse()


def columns_of(expr: Expr) -> list[str]:
    """Column names the expression reads, in first-use order."""
    out: list[str] = []

    def walk(node: Expr) -> None:
        match node:
            case Col(name):
                out.append(name)
            case Lit():
                pass
            case Unary(operand=operand) | InList(operand=operand) | IsNull(operand=operand):
                walk(operand)
            case Binary(_, left, right):
                walk(left)
                walk(right)
            case Case(whens, otherwise):
                for condition, value in whens:
                    walk(condition)
                    walk(value)
                if otherwise is not None:
                    walk(otherwise)
            case Call(_, args):
                for arg in args:
                    walk(arg)

    walk(expr)
    return list(dict.fromkeys(out))


def to_sql(expr: Expr) -> str:
    """A canonical text of the tree (fully parenthesised, keywords upper case): what the
    definition hash reads, so spacing and keyword case never change a hash."""
    match expr:
        case Col(name):
            return '"' + name.replace('"', '""') + '"'
        case Lit(None):
            return "NULL"
        case Lit(bool() as value):
            return "TRUE" if value else "FALSE"
        case Lit(float() as value):
            return repr(value)
        case Lit(datetime() as value):
            return f"TIMESTAMP '{value.strftime('%Y-%m-%d %H:%M:%S.%f')}'"
        case Lit(value):
            return "'" + value.replace("'", "''") + "'"
        case Unary(op, operand):
            return f"({op} {to_sql(operand)})"
        case Binary(op, left, right):
            return f"({to_sql(left)} {op} {to_sql(right)})"
        case InList(operand, values, negated):
            listed = ", ".join(to_sql(v) for v in values)
            return f"({to_sql(operand)} {'NOT IN' if negated else 'IN'} ({listed}))"
        case IsNull(operand, negated):
            return f"({to_sql(operand)} IS {'NOT NULL' if negated else 'NULL'})"
        case Case(whens, otherwise):
            branches = " ".join(f"WHEN {to_sql(c)} THEN {to_sql(v)}" for c, v in whens)
            other = f" ELSE {to_sql(otherwise)}" if otherwise is not None else ""
            return f"(CASE {branches}{other} END)"
        case Call(name, args):
            return f"{name}({', '.join(to_sql(a) for a in args)})"


# ---------------------------------------------------------------------------------------------
# types


def _unify(types: list[Type], what: str) -> Type:
    known = sorted(set(types) - {"null"})
    if len(known) > 1:
        raise SchemaMismatch(f"{what} mixes types {', '.join(known)}")
    return known[0] if known else "null"


def infer_type(expr: Expr, kinds: Mapping[str, str]) -> Type:
    """The expression's type given column kinds (name → kind). A column that is missing raises
    ``DefinitionError`` naming it; a column or operand of the wrong type raises
    ``SchemaMismatch`` naming the column or the operator."""
    def of(node: Expr) -> Type:
        return infer_type(node, kinds)

    def need(node: Expr, allowed: tuple[Type, ...], where: str) -> Type:
        found = of(node)
        if found != "null" and found not in allowed:
            named = f"column {node.name!r}" if isinstance(node, Col) else f"operand {to_sql(node)}"
            raise SchemaMismatch(f"{where} needs {' or '.join(allowed)}, but {named} is {found}")
        return found

    match expr:
        case Col(name):
            if name not in kinds:
                raise DefinitionError(f"unknown column {name!r}; known columns: "
                                      f"{', '.join(sorted(kinds)) or 'none'}")
            if kinds[name] not in KIND_TYPES:
                raise SchemaMismatch(f"column {name!r} is {kinds[name]}, which expressions cannot read; "
                                     f"cast it to a number, string, boolean or timestamp")
            return KIND_TYPES[kinds[name]]
        case Lit(None):
            return "null"
        case Lit(bool()):
            return "bool"
        case Lit(float()):
            return "num"
        case Lit(datetime()):
            return "time"
        case Lit():
            return "str"
        case Unary("NOT", operand):
            need(operand, ("bool",), "NOT")
            return "bool"
        case Unary(_, operand):
            need(operand, ("num",), "unary -")
            return "num"
        case Binary("AND" | "OR" as op, left, right):
            need(left, ("bool",), op)
            need(right, ("bool",), op)
            return "bool"
        case Binary("-", left, right) if "time" in (of(left), of(right)):
            _unify([need(left, ("time",), "timestamp difference"),
                    need(right, ("time",), "timestamp difference")],
                   f"timestamp difference {to_sql(expr)} (only time - time, in seconds, is supported)")
            return "num"
        case Binary("+" | "-" | "*" | "/" | "%" as op, left, right):
            need(left, ("num",), f"operator {op}")
            need(right, ("num",), f"operator {op}")
            return "num"
        case Binary(op, left, right):
            allowed: tuple[Type, ...] = (("num", "str", "bool", "time") if op in ("=", "!=")
                                         else ("num", "str", "time"))
            _unify([need(left, allowed, f"comparison {op}"),
                    need(right, allowed, f"comparison {op}")], f"comparison {to_sql(expr)}")
            return "bool"
        case InList(operand, values, _):
            _unify([need(operand, ("num", "str"), "IN"), *(of(v) for v in values)],
                   f"IN list {to_sql(expr)}")
            return "bool"
        case IsNull(operand, _):
            of(operand)
            return "bool"
        case Case(whens, otherwise):
            for condition, _ in whens:
                need(condition, ("bool",), "CASE WHEN")
            branches = [of(v) for _, v in whens] + ([of(otherwise)] if otherwise is not None else [])
            return _unify(branches, f"CASE {to_sql(expr)}")
        case Call("coalesce", args):
            return _unify([of(a) for a in args], f"coalesce {to_sql(expr)}")
        case Call(name, args) if name in DATE_PARTS:
            need(args[0], ("time",), f"{name}()")
            return "num"
        case Call(name, args):
            need(args[0], ("num",), f"{name}()")
            return "num"


# ---------------------------------------------------------------------------------------------
# pandas / NumPy


@dataclass(frozen=True)
class _Value:
    """One evaluated expression: ``data`` (float64 with NaN for num, object for str, bool for
    bool, int64 microseconds for time) and ``valid`` (False where null)."""

    type: Type
    data: np.ndarray
    valid: np.ndarray


def pandas_input(column: pd.Series, kind: str) -> _Value:
    """A pandas column as expressions read it (see ``to_spark``'s inputs)."""
    import pandas as pd

    kind_type = KIND_TYPES.get(kind, "str")
    if kind_type == "num":
        data = pd.to_numeric(column, errors="raise").astype("float64").to_numpy(na_value=np.nan)
        return _Value("num", data, ~np.isnan(data))
    if kind_type == "time":
        utc = pd.to_datetime(column, utc=True)
        valid = utc.notna().to_numpy()
        micros = utc.dt.as_unit("us").array.asi8.copy()
        return _Value("time", micros, valid)
    valid = column.notna().to_numpy()
    if kind_type == "bool":
        return _Value("bool", column.fillna(False).astype(bool).to_numpy(), valid)
    data = column.astype(object).to_numpy()
    data[~valid] = ""  # nulls are in ``valid``; a plain placeholder keeps comparisons total
    return _Value("str", data, valid)


def _broadcast(value: Any, n: int) -> _Value:
    if value is None:
        return _Value("null", np.full(n, np.nan), np.zeros(n, dtype=bool))
    if isinstance(value, datetime):
        return _Value("time", np.full(n, time_micros(value), dtype="int64"), np.ones(n, dtype=bool))
    if isinstance(value, bool):
        return _Value("bool", np.full(n, value), np.ones(n, dtype=bool))
    if isinstance(value, float):
        return _Value("num", np.full(n, value), np.ones(n, dtype=bool))
    return _Value("str", np.full(n, value, dtype=object), np.ones(n, dtype=bool))


def _num(data: np.ndarray, valid: np.ndarray) -> _Value:
    valid = valid & ~np.isnan(data)
    return _Value("num", np.where(valid, data, np.nan), valid)


def evaluate(expr: Expr, inputs: Mapping[str, _Value], n: int) -> _Value:
    """Evaluate ``expr`` over ``n`` rows whose columns are ``inputs`` (see ``pandas_input``)."""
    def go(node: Expr) -> _Value:
        if isinstance(node, Col):
            return inputs[node.name]
        if isinstance(node, Lit):
            return _broadcast(node.value, n)
        if isinstance(node, Unary):
            v = go(node.operand)
            if node.op == "NOT":
                return _Value("bool", ~v.data.astype(bool), v.valid)
            return _num(-v.data.astype("float64"), v.valid)
        if isinstance(node, Binary):
            return binary(node.op, go(node.left), go(node.right))
        if isinstance(node, InList):
            v = go(node.operand)
            values = [x.value for x in node.values]
            if v.type == "num":
                found = np.isin(v.data, np.asarray(values, dtype="float64"))
            else:
                found = np.isin(v.data.astype(object), np.asarray(values, dtype=object))
            return _Value("bool", ~found if node.negated else found, v.valid.copy())
        if isinstance(node, IsNull):
            v = go(node.operand)
            return _Value("bool", v.valid.copy() if node.negated else ~v.valid, np.ones(n, dtype=bool))
        if isinstance(node, Case):
            branches = [(go(c), go(v)) for c, v in node.whens]
            out = go(node.otherwise) if node.otherwise is not None else _broadcast(None, n)
            for condition, value in reversed(branches):
                out = choose(condition.data.astype(bool) & condition.valid, value, out)
            return out
        args = [go(a) for a in node.args]
        if node.name == "coalesce":
            out = args[-1]
            for value in reversed(args[:-1]):
                out = choose(value.valid, value, out)
            return out
        x = args[0]
        if node.name == "abs":
            return _num(np.abs(x.data.astype("float64")), x.valid)
        if node.name == "log":
            data = x.data.astype("float64")
            positive = x.valid & (data > 0)
            with np.errstate(all="ignore"):
                return _num(np.log(np.where(positive, data, 1.0)), positive)
        import pandas as pd

        times = pd.to_datetime(np.where(x.valid, x.data, 0), unit="us", utc=True)
        parts = {"year": times.year, "month": times.month, "day": times.day, "hour": times.hour,
                 "minute": times.minute, "dayofweek": times.dayofweek + 1}
        return _num(np.asarray(parts[node.name], dtype="float64"), x.valid)

    def choose(mask: np.ndarray, when: _Value, otherwise: _Value) -> _Value:
        kind = when.type if when.type != "null" else otherwise.type
        if kind == "null":
            return otherwise
        fill = {"num": np.nan, "str": None, "bool": False, "time": 0}[kind]
        a = when.data if when.type != "null" else np.full(n, fill, dtype=object if kind == "str" else None)
        b = otherwise.data if otherwise.type != "null" else np.full(n, fill, dtype=object if kind == "str" else None)
        return _Value(kind, np.where(mask, a, b), np.where(mask, when.valid, otherwise.valid))

    def binary(op: str, a: _Value, b: _Value) -> _Value:
        if op in ("AND", "OR"):
            x, y = a.data.astype(bool), b.data.astype(bool)
            if op == "AND":
                false = (a.valid & ~x) | (b.valid & ~y)
                valid = false | (a.valid & b.valid)
                return _Value("bool", ~false & x & y, valid)
            true = (a.valid & x) | (b.valid & y)
            valid = true | (a.valid & b.valid)
            return _Value("bool", true, valid)
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
            return _Value("bool", np.zeros(n, dtype=bool), np.zeros(n, dtype=bool))
        x, y = a.data, b.data
        if a.type == "str":
            x, y = np.where(valid, x, ""), np.where(valid, y, "")
        elif a.type == "num":
            x, y = np.where(valid, x, 0.0), np.where(valid, y, 0.0)
        compare = {"=": np.equal, "!=": np.not_equal, "<": np.less, "<=": np.less_equal,
                   ">": np.greater, ">=": np.greater_equal}[op]
        return _Value("bool", np.asarray(compare(x, y), dtype=bool), valid)

    return go(expr)


def to_pandas(value: _Value, index: Any = None) -> pd.Series:
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
