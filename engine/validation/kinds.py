"""Column kinds: what a Delta column holds, named the same on every engine.

Read from the table's Arrow schema (the Delta log), never from an engine's frame, so both
engines profile and measure a column the same way (``engine.policies.profile``,
``engine.policies.drift``, and the engines' statistics in ``engine.validation.spark``/``dask``).
"""

from __future__ import annotations

from typing import Any

INTEGER, FLOAT, STRING, BOOLEAN, TIMESTAMP, OTHER = (
    "integer", "float", "string", "boolean", "timestamp", "other")


def column_kinds(schema: Any) -> dict[str, str]:
    """Column name → kind, from the table's Arrow schema."""
    import pyarrow as pa

    kinds = {}
    for f in schema:
        t = f.type
        kinds[f.name] = (INTEGER if pa.types.is_integer(t) else FLOAT if pa.types.is_floating(t)
                         else STRING if pa.types.is_string(t) or pa.types.is_large_string(t)
                         else BOOLEAN if pa.types.is_boolean(t)
                         else TIMESTAMP if pa.types.is_timestamp(t) else OTHER)
    return kinds
