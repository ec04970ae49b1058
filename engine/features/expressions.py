"""Row-level expressions: a small SQL subset, parsed once, compiled for Spark and for pandas.

A feature definition writes expressions as strings (``"category = 'travel'"``,
``"CASE WHEN amount > 100 THEN log(amount) ELSE 0 END"``). ``parse_expression`` turns one into
a tree of frozen nodes with a recursive-descent parser of our own, so nothing is ever handed to
``eval`` or to an engine's SQL parser, and anything outside the grammar is rejected when the
definition is loaded. This module holds the tree, the parser and the type rules; the tree is
compiled to a Spark ``Column`` by ``engine.features.spark_expressions.to_spark`` and evaluated
with NumPy on a pandas partition by ``engine.features.dask_expressions.evaluate``. Both follow
the rules below, which the parity tests check against DuckDB.

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
from typing import Any, Union

from engine.errors import DefinitionError, SchemaMismatch

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
