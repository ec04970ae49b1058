"""Policy ``quarantine``: set aside the rows that fail row-level expectations, let the rest go on.

A failed expectation is *row-level* when Great Expectations judges it row by row (a null, a
value out of range or outside its set) or by key (every row of a duplicated key, as GE counts
uniqueness), so the rows it blames can be named exactly; ``row_rules`` turns those failures into
``RowRule``s that each backend compiles into a predicate over its own frame
(``engine.validation.spark.quarantine_split_spark``, ``engine.validation.dask``'s twin). Every other
failure (row count, mean, a missing column, a row-level check under a ``row_condition``) blames
no row in particular: it still fails the job (``enforce_quarantine``).

Only expectations that *failed* blame rows: rows tolerated by a passing ``mostly`` stay.
A quarantined row carries ``QUARANTINE_REASONS``: the labels of every failed expectation it
breaks, joined by ``"; "``. The predicates follow GE's rules: nulls are never unexpected except
for ``expect_column_values_to_not_be_null``; ``strict_min``/``strict_max`` exclude the bound.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.errors import ValidationFailed
from engine.lineage import Lineage
from engine.storage.table import WriteMode, WriteResult
from engine.validation.suite import ROW_LEVEL_EXPECTATIONS, Outcome, RowRule, ValidationReport

QUARANTINE_RUN_ID = "quarantine_run_id"
QUARANTINE_SOURCE = "quarantine_source"


def blames_rows(outcome: Outcome) -> bool:
    """Whether a failed outcome names the rows that broke it (so they can be quarantined)."""
    return (not outcome.success and outcome.exception is None
            and outcome.expectation_type in ROW_LEVEL_EXPECTATIONS
            and not outcome.kwargs.get("row_condition"))


def row_rules(reports: Sequence[ValidationReport]) -> tuple[RowRule, ...]:
    """The failed row-level expectations of ``reports``, one rule per distinct expectation."""
    rules: dict[str, RowRule] = {}
    for report in reports:
        for outcome in report.failures():
            if blames_rows(outcome):
                label = (f"{outcome.expectation_type}({outcome.column})" if outcome.column
                         else outcome.expectation_type)
                rules.setdefault(label, RowRule(outcome.expectation_type, dict(outcome.kwargs), label))
    return tuple(rules.values())


def enforce_quarantine(reports: Sequence[ValidationReport]) -> None:
    """Raise ``ValidationFailed`` when a failure cannot be settled by setting rows aside.

    The message names each such failure (expectation, column, observed value or count) and the
    row-level ones that would have been quarantined."""
    for report in reports:
        blocking = [o for o in report.failures() if not blames_rows(o)]
        if not blocking:
            continue
        quarantinable = [o for o in report.failures() if blames_rows(o)]
        also = (f" (the row-level failures {'; '.join(o.describe() for o in quarantinable)} "
                "would have been quarantined)" if quarantinable else "")
        raise ValidationFailed(
            f"{report.table}: {len(blocking)} of {len(report.outcomes)} expectations failed "
            f"that quarantine cannot settle (suite {report.suite}, {report.engine}, result "
            f"{report.result_id}): " + "; ".join(o.describe() for o in blocking) + also
            + ". Nothing was written. Fix the data (or the suite).", report)


@dataclass(frozen=True)
class QuarantineResult:
    """Rows set aside and rows kept, with the Delta versions written."""

    quarantined: int
    kept: int
    quarantine_table: str
    quarantine_version: int | None
    kept_version: int | None
    reasons: tuple[str, ...]
    # the two writes as the backend returned them (what the run context records)
    quarantine_write: WriteResult | None = None
    kept_write: WriteResult | None = None


def quarantine_rows(backend: Any, read: Any, reports: Sequence[ValidationReport],
                    quarantine_table: Any, commit_for: Callable[[str, Any, Lineage], Any],
                    revalidate: Callable[[Any], Sequence[ValidationReport]],
                    constants: Mapping[str, str]) -> QuarantineResult | None:
    """Apply policy ``quarantine`` to the table ``read`` (a ``ReadResult``) that ``reports`` judged.

    1. A failure no row can be blamed for raises ``ValidationFailed`` before anything is written.
    2. The rows the failed row-level expectations blame go, with their reasons and
       ``constants``, to ``quarantine_table`` (append, one commit).
    3. The kept rows are validated again (``revalidate``; any failure raises, so what goes on
       passes the whole suite) and replace the table's contents in one commit whose lineage
       names the version they were taken from and the validations, so the stages after this
       one read exactly the good rows.

    Returns None when nothing failed."""
    from engine.backend import CanQuarantine, require
    from engine.validation.suite import enforce

    enforce_quarantine(reports)
    rules = row_rules(reports)
    if not rules:
        return None
    splitter = require(backend, CanQuarantine, "policy quarantine")
    kept, quarantined = splitter.quarantine_split(read.frame, rules, dict(constants))
    for report in revalidate(kept):
        enforce(report, "fail")
    ids = [r.result_id for r in reports]
    source = Lineage(inputs={read.table.name: read.version},
                     input_paths={read.table.name: read.table.path}, validation_ids=ids)
    bad = backend.write(quarantined, quarantine_table, WriteMode.APPEND,
                        commit_for("quarantine", quarantine_table, source))
    good = backend.write(kept, read.table, WriteMode.OVERWRITE,
                         commit_for("quarantine", read.table, source))
    return QuarantineResult(quarantined=bad.rows, kept=good.rows,
                            quarantine_table=quarantine_table.path,
                            quarantine_version=None if bad.skipped else bad.version,
                            kept_version=None if good.skipped else good.version,
                            reasons=tuple(rule.reason for rule in rules),
                            quarantine_write=bad, kept_write=good)
