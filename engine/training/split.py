"""The out-of-time split every trainer uses: the model is judged on rows later than it saw.

A random split would let a model learn from a customer's future and flatter its metrics; an
out-of-time split mirrors how the model is used (trained on the past, scoring what comes next).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from engine.errors import DefinitionError

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
UNITS_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}


@dataclass(frozen=True)
class OutOfTimeSplit:
    """Training rows have ``time < valid_from``; validation rows ``time >= valid_from``.

    ``valid_from`` is an instant: a naive datetime is read as UTC. A row exactly at the
    boundary is a validation row.
    """

    valid_from: datetime

    def __post_init__(self) -> None:
        if self.valid_from.tzinfo is None:
            object.__setattr__(self, "valid_from", self.valid_from.replace(tzinfo=timezone.utc))

    def boundary_epoch(self, unit: str) -> int:
        """``valid_from`` as an integer count of ``unit`` ("s", "ms", "us", "ns") since the Unix
        epoch, exactly (no float rounding), rounded up: for an integer time ``t`` in that unit,
        ``t < boundary_epoch(unit)`` exactly when ``t``'s instant is before ``valid_from``."""
        per_second = UNITS_PER_SECOND[unit]
        delta = self.valid_from - EPOCH
        micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
        return -(-micros * per_second // 1_000_000)

    def check_sides(self, train_rows: int, valid_rows: int, table: str, time_column: str) -> None:
        """Raise ``DefinitionError`` when either side of the split is empty, naming the boundary,
        the column and both counts, so the user can move ``train.valid_from``."""
        if train_rows > 0 and valid_rows > 0:
            return
        empty = "training" if train_rows == 0 else "validation"
        raise DefinitionError(
            f"out-of-time split of {table} at {time_column} = {self.valid_from.isoformat()} leaves the "
            f"{empty} side empty ({train_rows} rows before, {valid_rows} rows from the boundary); "
            f"set train.valid_from to a time inside the range of {time_column}")
