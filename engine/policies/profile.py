"""Profile a Delta table exactly and write a starting Great Expectations suite from it.

The profile is computed over every row by the backend (``CanProfile.profile_columns``: non-null
count, min, max and exact distinct count per column, and the distinct values of columns with at
most ``max_values`` of them); column kinds come from the table's Delta schema, so both engines
produce the same profile and the same suite. The suite is a starting point for a person to edit:

* the column set (exact) and a non-empty table;
* per column, its type (``expect_column_values_to_be_in_type_list`` naming Spark's and pandas'
  type names, so it holds on both engines; not for timestamps, whose tz-aware pandas dtype GE
  cannot name);
* its null rate: ``not_null`` when it has no nulls, else ``not_null`` with ``mostly`` set to the
  observed non-null share rounded down (a column with only nulls gets no check);
* its range (numbers): ``values_to_be_between`` the observed min and max;
* its value set when it has at most ``max_values`` distinct values (strings, booleans, integers).

The suite passes on the data it was profiled from, by construction (tested on both engines).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.validation.kinds import BOOLEAN, FLOAT, INTEGER, STRING, column_kinds
from engine.validation.suite import plain_value

# Type names GE compares with: Spark's type classes, pandas dtypes (an integer column holding
# nulls is float64 in pandas), Python types for object columns judged value by value.
TYPE_NAMES = {
    INTEGER: ["LongType", "IntegerType", "ShortType", "ByteType", "int64", "int32", "int16", "int8"],
    FLOAT: ["DoubleType", "FloatType", "float64", "float32"],
    STRING: ["StringType", "str"],
    BOOLEAN: ["BooleanType", "bool"],
}


@dataclass(frozen=True)
class ColumnProfile:
    """Exact statistics of one column over the whole table."""

    name: str
    kind: str
    non_null: int
    min: Any
    max: Any
    distinct: int
    values: tuple[Any, ...] | None
    """The distinct non-null values, sorted, when there are at most ``max_values``."""


@dataclass(frozen=True)
class TableProfile:
    table: str
    version: int
    rows: int
    columns: tuple[ColumnProfile, ...]


def profile_table(backend: Any, read: Any, max_values: int = 20) -> TableProfile:
    """Profile the table ``read`` (a ``ReadResult``) on ``backend``, exactly, over every row."""
    from engine.backend import CanProfile, require
    from engine.storage.snapshots import snapshot

    profiler = require(backend, CanProfile, "profiling")
    kinds = column_kinds(snapshot(read.table, read.version).schema)
    rows, stats = profiler.profile_columns(read.frame, kinds, max_values)
    columns = tuple(ColumnProfile(name=name, kind=kind, non_null=int(stats[name]["non_null"]),
                                  min=plain_value(stats[name]["min"]),
                                  max=plain_value(stats[name]["max"]),
                                  distinct=int(stats[name]["distinct"]),
                                  values=(tuple(sorted(plain_value(v) for v in stats[name]["values"]))
                                          if stats[name]["values"] is not None else None))
                    for name, kind in kinds.items())
    return TableProfile(table=read.table.name, version=read.version, rows=int(rows), columns=columns)


def suite_from_profile(profile: TableProfile, name: str, max_values: int = 20) -> dict[str, Any]:
    """A GE 1.x suite (as a JSON-ready dict) that ``profile``'s data meets."""
    expectations: list[dict[str, Any]] = [
        {"type": "expect_table_columns_to_match_set",
         "kwargs": {"column_set": [c.name for c in profile.columns], "exact_match": True}},
        {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1}},
    ]
    for column in profile.columns:
        expectations += _column_expectations(column, profile.rows, max_values)
    return {"name": name, "expectations": expectations,
            "meta": {"notes": f"Starting suite profiled from {profile.table}@v{profile.version} "
                              f"({profile.rows:,} rows) by jobs/profile_table.py: edit before use."}}


def write_suite(suite: dict[str, Any], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(suite, indent=2) + "\n")
    return path


def _column_expectations(column: ColumnProfile, rows: int, max_values: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    c = column.name
    if column.kind in TYPE_NAMES:
        names = list(TYPE_NAMES[column.kind])
        if column.kind == INTEGER and column.non_null < rows:
            names.append("float64")
        out.append({"type": "expect_column_values_to_be_in_type_list",
                    "kwargs": {"column": c, "type_list": names}})
    if rows and column.non_null == rows:
        out.append({"type": "expect_column_values_to_not_be_null", "kwargs": {"column": c}})
    elif column.non_null:
        share = math.floor(column.non_null / rows * 1000) / 1000
        out.append({"type": "expect_column_values_to_not_be_null",
                    "kwargs": {"column": c, "mostly": share}})
    if column.kind in (INTEGER, FLOAT) and column.non_null:
        out.append({"type": "expect_column_values_to_be_between",
                    "kwargs": {"column": c, "min_value": column.min, "max_value": column.max}})
    if column.kind in (STRING, BOOLEAN, INTEGER) and column.values is not None \
            and 0 < len(column.values) <= max_values:
        out.append({"type": "expect_column_values_to_be_in_set",
                    "kwargs": {"column": c, "value_set": list(column.values)}})
    return out
