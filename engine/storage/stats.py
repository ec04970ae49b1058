"""Delta's per-file statistics (``numRecords``, ``minValues``, ``maxValues``, ``nullCount``),
computed from Arrow data and spelled as the log wants them, so readers can skip files safely.
"""

from __future__ import annotations

import json
import math
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

STRING_STATS_PREFIX = 32  # Delta's default: longer strings get a prefix min and no max


class ColumnStats:
    """Running min/max/null count of one file's columns, merged batch by batch."""

    def __init__(self) -> None:
        self.mins: dict[str, Any] = {}
        self.maxs: dict[str, Any] = {}
        self.nulls: dict[str, int] = {}
        self.rows = 0

    def update(self, data: pa.Table) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc

        self.rows += data.num_rows
        for name in data.column_names:
            column = data.column(name)
            kind = column.type
            if pa.types.is_nested(kind):
                continue
            self.nulls[name] = self.nulls.get(name, 0) + column.null_count
            if not _has_stats(kind) or column.null_count == len(column):
                continue
            if name in self.mins and self.mins[name] is None:
                continue
            result = pc.min_max(column)
            low, high = result["min"].as_py(), result["max"].as_py()
            if pa.types.is_floating(kind) and (
                    not (math.isfinite(low) and math.isfinite(high))
                    or pc.any(pc.is_nan(column)).as_py()):
                # min_max skips NaN, but engines order NaN above everything: no safe bound.
                self.mins[name] = self.maxs[name] = None
                continue
            self.mins[name] = low if name not in self.mins else min(self.mins[name], low)
            self.maxs[name] = high if name not in self.maxs else max(self.maxs[name], high)

    def to_json(self) -> str:
        return stats_json(self.rows, self.mins, self.maxs, self.nulls)


def stats_json(rows: int, mins: dict[str, Any], maxs: dict[str, Any], nulls: dict[str, int]) -> str:
    """Delta's per-file stats JSON from Python min/max values (spelled by :func:`_stat_value`)."""
    low = {k: v for k, v in ((k, _stat_value(v, "min")) for k, v in mins.items()) if v is not None}
    high = {k: v for k, v in ((k, _stat_value(v, "max")) for k, v in maxs.items()) if v is not None}
    return json.dumps({"numRecords": rows, "minValues": low, "maxValues": high,
                       "nullCount": nulls}, separators=(",", ":"))


def file_stats(data: pa.Table) -> str:
    """Delta's per-file statistics JSON (numRecords, minValues, maxValues, nullCount)."""
    stats = ColumnStats()
    stats.update(data)
    return stats.to_json()


def _has_stats(kind: pa.DataType) -> bool:
    import pyarrow as pa

    return (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)
            or pa.types.is_date(kind) or pa.types.is_timestamp(kind) or pa.types.is_string(kind))


def _stat_value(value: Any, side: str) -> Any:
    """A min/max as Delta's stats JSON spells it.

    Timestamps are kept at millisecond precision rounded outwards (min down, max up), so data
    skipping never drops a matching file; strings longer than 32 characters get a prefix min
    and no max, as Delta does.
    """
    if value is None:
        return None
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        value = value.astimezone(timezone.utc)
        extra = value.microsecond % 1000
        if extra:
            value -= timedelta(microseconds=extra)
            if side == "max":
                value += timedelta(milliseconds=1)
        return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str) and len(value) > STRING_STATS_PREFIX:
        return value[:STRING_STATS_PREFIX] if side == "min" else None
    return value
