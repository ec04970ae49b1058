"""Guards against garbage in: inputs that every suite would pass row by row, but that can only
give meaningless features (and then one identical score for everyone).

* ``check_spine_columns``: a labels table without the label column (``train.label``) would
  replace the training set with one that has no label → ``SchemaMismatch`` (exit 3).
* ``check_as_of_fresh``: no events at all, or spine as-of times later than the newest event by
  more than ``validation.max_as_of_lag`` (default: the feature set's longest window, the lag
  beyond which no window can see any event) → ``ValidationFailed`` (exit 4). Both read only
  the Delta logs' file statistics, so they cost nothing and run before any feature is computed
  or any table written.
* ``check_default_share``: a feature table in which more than ``validation.max_default_share``
  of the rows have every aggregated feature at its no-event value (the ``default`` of
  ``engine.features.definitions``: 0 for count and sum, null for the rest unless declared),
  e.g. rows to score whose keys match no events → ``ValidationFailed`` (exit 4). Counted exactly
  by the engine (``CanCountDefaults``); it runs in the validate stage of the feature table, so
  nothing downstream (model, scores) is written.

Duplicated (keys, as-of) spine rows are left to the suites (``expect_compound_columns_to_be_
unique`` in ``expectations/labels.json`` and ``to_score.json``), so that the table's
validation policy decides: ``fail`` refuses them, ``quarantine`` sets every row of a duplicated
key aside.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from engine.errors import SchemaMismatch, ValidationFailed

if TYPE_CHECKING:
    from engine.features.definitions import FeatureSet
    from engine.storage.table import TableRef

log = logging.getLogger("lakescore")


def check_spine_columns(spine: TableRef, version: int, required: Mapping[str, str]) -> None:
    """Refuse a spine without one of ``required`` (column → what it is for), naming the table,
    its version, the column and the columns it has."""
    from engine.storage.snapshots import arrow_schema

    columns = arrow_schema(spine, version).names
    for column, role in required.items():
        if column not in columns:
            raise SchemaMismatch(
                f"table {spine} version {version} has no {role} column {column!r}; its columns "
                f"are {', '.join(columns)}. Nothing was written: add the column, or point "
                f"{'train.label' if role == 'label' else 'the feature definition'} at the right one")


def newest(table: TableRef, version: int, column: str) -> tuple[int | None, datetime | None]:
    """Rows of the table version and the largest value of ``column`` (a timestamp), from the log's
    file statistics; each None when some file lacks the statistic (unknown, not checked)."""
    from engine.storage.snapshots import snapshot

    snap = snapshot(table, version)
    if any(f.rows is None for f in snap.files):
        return None, None
    rows = sum(f.rows for f in snap.files)
    values = [f.maxs.get(column) for f in snap.files if f.rows]
    if not values or any(v is None for v in values):
        return rows, None
    return rows, max(_instant(v) for v in values)


def check_as_of_fresh(definition: FeatureSet, events: TableRef, events_version: int,
                      spine: TableRef, spine_version: int, max_lag: timedelta | None) -> None:
    """Refuse to build features from an empty events table, or for as-of times later than the
    newest event by more than ``max_lag`` (None: the longest window of ``definition``)."""
    rows, newest_event = newest(events, events_version, definition.timestamp)
    if rows == 0:
        raise ValidationFailed(
            f"table {events} version {events_version} has no events: every feature would take its "
            f"default and every row the same score. Nothing was written; load the events first")
    spine_rows, latest_as_of = newest(spine, spine_version, definition.as_of)
    if newest_event is None or latest_as_of is None or spine_rows is None:
        log.info("as-of freshness not checked: %s or %s has files without statistics", events, spine)
        return
    lag = max_lag if max_lag is not None else max(a.window for a in definition.aggregations)
    limit = newest_event + lag
    if latest_as_of <= limit:
        return
    beyond = _rows_after(spine, spine_version, definition.as_of, limit)
    raise ValidationFailed(
        f"table {spine} version {spine_version}: {beyond:,} of {spine_rows:,} rows have "
        f"{definition.as_of!r} after {limit.isoformat()} (up to {latest_as_of.isoformat()}), more "
        f"than {_days(lag)} after the newest event in {events} version {events_version} "
        f"({newest_event.isoformat()}): their features would see no events. Nothing was written; "
        "fix the as-of times or load the missing events (validation.max_as_of_lag sets the "
        "allowed lag)")


def defaults_of(definition: FeatureSet) -> dict[str, Any]:
    """Aggregated feature → its value when no event is in its window (None: null)."""
    return {a.name: a.default for a in definition.aggregations}


def check_default_share(count: tuple[int, int], table: str, max_share: float | None,
                        features: list[str]) -> str:
    """``count`` is (rows, rows with every feature at its default). Raise when their share is
    above ``max_share``; return a note for the run summary."""
    rows, defaulted = count
    share = defaulted / rows if rows else 0.0
    note = f"{defaulted:,} of {rows:,} rows with no events in any window ({share:.1%})"
    if max_share is not None and rows and share > max_share:
        raise ValidationFailed(
            f"table {table}: {defaulted:,} of {rows:,} rows ({share:.1%}) have every feature at "
            f"its no-event default ({', '.join(features[:6])}{', ...' if len(features) > 6 else ''}), "
            f"more than validation.max_default_share {max_share:.0%}: the keys or as-of times "
            "of the spine do not match the events. Nothing downstream was written")
    return note


def _rows_after(table: TableRef, version: int, column: str, limit: datetime) -> int:
    """Rows whose ``column`` is after ``limit``: one column read with deltalake (error path only)."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    from engine.storage.snapshots import require_table

    dataset = require_table(table, version).to_pyarrow_dataset()
    return dataset.count_rows(filter=ds.field(column) > pa.scalar(limit, pa.timestamp("us", tz="UTC")))


def _instant(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    import pandas as pd

    stamp = pd.Timestamp(value)
    return (stamp if stamp.tzinfo else stamp.tz_localize("UTC")).to_pydatetime()


def _days(lag: timedelta) -> str:
    return f"{lag.total_seconds() / 86400:g} days"
