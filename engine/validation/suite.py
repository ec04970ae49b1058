"""Great Expectations suites as plain data, and the engine-free report every backend returns.

A suite is loaded once from a GE 1.x suite JSON file (``{"name": ..., "expectations": [{"type":
..., "kwargs": {...}}]}``) and checked against Great Expectations' own registry and argument
models at load, so a typo fails before any job runs, naming the file and the expectation.
Backends turn a suite into a ``ValidationReport`` of one ``Outcome`` per expectation, in suite
order; Spark and Dask reports of the same data carry the same success flags, counts and observed
values.

Great Expectations is imported only inside the functions that need it (``import
great_expectations`` takes seconds).
"""

from __future__ import annotations

import json
import logging
import math
import re
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from engine.errors import DefinitionError, NotSupportedByBackend, ValidationFailed

if TYPE_CHECKING:
    from great_expectations.core.expectation_suite import ExpectationSuite

log = logging.getLogger(__name__)

# Row-level expectations: each row is judged alone, so per-partition counts add up exactly.
MAP_EXPECTATIONS = frozenset({
    "expect_column_values_to_not_be_null",
    "expect_column_values_to_be_null",
    "expect_column_values_to_be_between",
    "expect_column_values_to_be_in_set",
    "expect_column_values_to_not_be_in_set",
})
# Judged on the frame's schema alone (no rows needed).
SCHEMA_EXPECTATIONS = frozenset({
    "expect_column_to_exist",
    "expect_table_columns_to_match_set",
    "expect_table_columns_to_match_ordered_list",
    "expect_table_column_count_to_equal",
    "expect_table_column_count_to_be_between",
})
# Need the whole frame at once; the Dask backend computes their metric exactly across partitions.
AGGREGATE_EXPECTATIONS = frozenset({
    "expect_table_row_count_to_be_between",
    "expect_table_row_count_to_equal",
    "expect_column_values_to_be_unique",
    "expect_compound_columns_to_be_unique",
    "expect_column_mean_to_be_between",
    "expect_column_min_to_be_between",
    "expect_column_max_to_be_between",
    "expect_column_sum_to_be_between",
    "expect_column_proportion_of_non_null_values_to_be_between",
    "expect_column_unique_value_count_to_be_between",
})
# Judged by GE's pandas engine in every partition: by the partition's dtype (the same in every
# partition, so exact), or value by value for object columns (exact for the AND of the
# partitions' verdicts, hence no ``mostly`` on Dask). Observed type names are the engine's own
# (``LongType`` on Spark, ``int64`` on Dask): list both engines' names in ``type_list``.
TYPE_EXPECTATIONS = frozenset({"expect_column_values_to_be_in_type_list"})
# Row-level failures that identify the rows to set aside under policy ``quarantine``: every
# row-level expectation, and uniqueness (every row of a duplicated key, as GE counts them).
ROW_LEVEL_EXPECTATIONS = MAP_EXPECTATIONS | frozenset({
    "expect_column_values_to_be_unique",
    "expect_compound_columns_to_be_unique",
})

# The column a quarantined row carries its reasons in (the labels of the rules it breaks, "; ").
QUARANTINE_REASONS = "quarantine_reasons"

# Counts only: no example values. On Spark each example list is a separate job that scans the
# whole frame when the data is clean (``limit(20)`` over a filter that finds nothing).
RESULT_FORMAT: dict[str, Any] = {"result_format": "BASIC", "partial_unexpected_count": 0}

# The index of an expectation in its suite, carried through GE in ``meta`` so results can be
# matched back (GE normalises kwargs and does not keep suite order in its results).
INDEX_META_KEY = "lakescore_index"


@dataclass(frozen=True)
class ExpectationSpec:
    """One expectation: its GE type name and its keyword arguments, as written in the file."""

    type: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    @property
    def column(self) -> str | None:
        column = self.kwargs.get("column")
        return str(column) if column is not None else None

    @property
    def columns(self) -> tuple[str, ...]:
        """Every column the expectation reads (``column``, or ``column_list`` for compound ones)."""
        if self.column is not None:
            return (self.column,)
        return tuple(str(c) for c in self.kwargs.get("column_list") or ())

    @property
    def column_label(self) -> str | None:
        """The column, or the compound columns joined by ``,``, as shown in reports."""
        return ",".join(self.columns) or None

    def label(self) -> str:
        """``type(column)`` or ``type``, as used in messages."""
        return f"{self.type}({self.column_label})" if self.column_label else self.type


@dataclass(frozen=True)
class RowRule:
    """A failed row-level expectation: which rows it blames, and the reason they carry.

    What policy ``quarantine`` (``engine.policies.quarantine``) asks an engine to set aside: each
    engine compiles it into a predicate over its own frame, and a set-aside row carries the
    reasons of every rule it breaks in ``QUARANTINE_REASONS``."""

    expectation_type: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    reason: str = ""

    @property
    def column(self) -> str | None:
        column = self.kwargs.get("column")
        return None if column is None else str(column)

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.column,) if self.column else tuple(self.kwargs.get("column_list") or ())


@dataclass(frozen=True)
class Suite:
    """A named list of expectations loaded from ``path``."""

    name: str
    path: str
    expectations: tuple[ExpectationSpec, ...]


@dataclass(frozen=True)
class Outcome:
    """The verdict on one expectation over the whole frame.

    ``unexpected_count`` and ``element_count`` are set for row-level and uniqueness checks
    (``element_count`` counts every row, nulls included); ``observed_value`` for aggregate and
    schema checks. ``exception`` holds GE's message when the check could not be evaluated (e.g.
    a missing column); such an outcome is a failure.
    """

    expectation_type: str
    column: str | None
    success: bool
    unexpected_count: int | None
    element_count: int | None
    observed_value: Any
    kwargs: Mapping[str, Any]
    exception: str | None = None

    def describe(self) -> str:
        """One line a user can act on: what failed, on which column, by how much."""
        label = f"{self.expectation_type}({self.column})" if self.column else self.expectation_type
        if self.exception:
            return f"{label}: could not be evaluated: {self.exception}"
        if self.unexpected_count is not None and self.element_count is not None:
            return f"{label}: {self.unexpected_count} unexpected of {self.element_count} rows"
        bounds = {k: self.kwargs[k] for k in ("min_value", "max_value", "column_set", "value_set")
                  if k in self.kwargs}
        expected = f" (expected {_compact(bounds)})" if bounds else ""
        return f"{label}: observed {_compact(self.observed_value)}{expected}"


@dataclass(frozen=True)
class ValidationReport:
    """All outcomes of one suite over one table version on one engine; ``success`` is their AND."""

    table: str
    suite: str
    success: bool
    outcomes: tuple[Outcome, ...]
    result_id: str
    engine: str

    def failures(self) -> tuple[Outcome, ...]:
        return tuple(o for o in self.outcomes if not o.success)

    def summary_lines(self) -> list[str]:
        """A headline, then one line per expectation (``ok``/``FAILED``)."""
        failed = self.failures()
        head = (f"{self.table}: suite {self.suite} on {self.engine}: "
                f"{len(self.outcomes) - len(failed)} of {len(self.outcomes)} expectations met")
        return [head] + [f"  {'ok    ' if o.success else 'FAILED'} {o.describe()}"
                         for o in self.outcomes]

    def to_dict(self) -> dict[str, Any]:
        return {
            "table": self.table, "suite": self.suite, "success": self.success,
            "engine": self.engine, "result_id": self.result_id,
            "outcomes": [{**asdict(o), "kwargs": dict(o.kwargs)} for o in self.outcomes],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=_json_default, allow_nan=False)


def load_suite(path: str | Path) -> Suite:
    """Read a GE 1.x suite JSON file and check every expectation against GE's own models.

    Raises ``DefinitionError`` naming the file (and the expectation, by index and type) when
    the file is missing or not JSON, an expectation type is unknown to Great Expectations, or
    its kwargs are rejected by GE (e.g. a missing ``column``). Whether a backend can run it is
    asked of the backend (``engine.backend.require_suite``), before any data is read.
    """
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise DefinitionError(f"expectation suite {path} does not exist") from exc
    except json.JSONDecodeError as exc:
        raise DefinitionError(f"expectation suite {path} is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("expectations"), list):
        raise DefinitionError(
            f"expectation suite {path} must be an object with a 'name' and an 'expectations' "
            "list (Great Expectations 1.x suite JSON)")
    name = raw.get("name") or raw.get("expectation_suite_name") or path.stem
    specs = []
    for index, item in enumerate(raw["expectations"]):
        where = f"expectation #{index} in suite {path}"
        if not isinstance(item, dict) or not isinstance(item.get("type"), str):
            raise DefinitionError(f"{where} has no 'type': write {{\"type\": ..., \"kwargs\": {{...}}}}")
        kwargs = item.get("kwargs", {})
        if not isinstance(kwargs, dict):
            raise DefinitionError(f"{where} ({item['type']}): 'kwargs' must be an object")
        specs.append(ExpectationSpec(type=item["type"], kwargs=kwargs))
    suite = Suite(name=str(name), path=str(path), expectations=tuple(specs))
    _check_with_great_expectations(suite)
    return suite


def _check_with_great_expectations(suite: Suite) -> None:
    from great_expectations.exceptions import ExpectationNotFoundError
    from great_expectations.expectations.registry import get_expectation_impl

    for index, spec in enumerate(suite.expectations):
        where = f"expectation #{index} ({spec.label()}) in suite {suite.path}"
        try:
            impl = get_expectation_impl(spec.type)
        except ExpectationNotFoundError as exc:
            raise DefinitionError(
                f"{where}: unknown expectation type {spec.type!r}; use a Great Expectations "
                "1.x core expectation name") from exc
        try:
            impl(**dict(spec.kwargs))
        except Exception as exc:  # noqa: BLE001 - pydantic's ValidationError and GE's own
            raise DefinitionError(f"{where}: invalid kwargs: {exc}") from exc


@dataclass(frozen=True)
class ExpectationSupport:
    """The expectations an engine evaluates exactly, declared by its backend
    (``engine.backend.Capabilities``) and asked before a suite runs, never inferred from a name."""

    types: frozenset[str] | None = None
    """The types it runs; None: every type Great Expectations' own engine runs."""
    row_condition_types: frozenset[str] | None = None
    """The types it runs with a ``row_condition``; None: every type it runs."""
    without_mostly: frozenset[str] = frozenset()
    """Types it runs only without ``mostly`` (a verdict per partition cannot be a share)."""

    def unsupported(self, suite: Suite) -> str | None:
        """The first thing in ``suite`` it cannot evaluate, described for a message, or None."""
        for spec in suite.expectations:
            if self.types is not None and spec.type not in self.types:
                return (f"expectation {spec.type} (suite {suite.path}; supported there: "
                        f"{', '.join(sorted(self.types))})")
            if spec.kwargs.get("row_condition") and self.row_condition_types is not None \
                    and spec.type not in self.row_condition_types:
                return f"row_condition on {spec.label()} (suite {suite.path})"
            if spec.type in self.without_mostly and spec.kwargs.get("mostly", 1) != 1:
                return f"mostly on {spec.label()} (suite {suite.path})"
        return None


def check_supported(suite: Suite, backend: str, support: ExpectationSupport) -> None:
    """Fail before running when ``support`` lacks an expectation of ``suite``:
    ``NotSupportedByBackend`` naming ``backend`` and the expectation."""
    problem = support.unsupported(suite)
    if problem is not None:
        raise NotSupportedByBackend(backend, problem)


def enforce(report: ValidationReport, policy: Literal["fail", "warn"]) -> None:
    """Apply the gate: raise ``ValidationFailed`` (policy ``fail``) or log a warning (``warn``).

    The message names the table, the suite, and each failed expectation with its column and
    unexpected count (or observed value), e.g. ``features: 2 of 7 expectations failed:
    expect_column_values_to_not_be_null(amount_sum_7d): 3 unexpected of 1000 rows; ...``.
    """
    if policy not in ("fail", "warn"):
        raise DefinitionError(f"validation policy must be 'fail' or 'warn', not {policy!r}")
    failed = report.failures()
    if not failed:
        return
    message = (f"{report.table}: {len(failed)} of {len(report.outcomes)} expectations failed "
               f"(suite {report.suite}, {report.engine}, result {report.result_id}): "
               + "; ".join(o.describe() for o in failed))
    if policy == "fail":
        raise ValidationFailed(
            message + ". Fix the data (or the suite), or set validation.policy=warn to continue.",
            report)
    log.warning("%s", message)


def write_report(report: ValidationReport, directory: str | Path,
                 storage_options: dict[str, str] | None = None) -> Path | str:
    """Write the report as JSON under ``directory`` (a local directory, created, or an object
    store URI) and return the file's path (its URI on an object store)."""
    from engine.storage.files import join, write_text

    return write_text(join(str(directory), f"{report_stem(report)}.json"), report.to_json(),
                      storage_options)


def report_stem(report: ValidationReport) -> str:
    """``table.suite.result_id`` made safe as a file name (shared by the JSON and the HTML)."""
    return re.sub(r"[^A-Za-z0-9_.@=-]+", "_", f"{report.table}.{report.suite}.{report.result_id}")


# --- shared by the Spark and Dask implementations ---------------------------------------------

def new_result_id() -> str:
    return uuid.uuid4().hex


def ge_suite(suite: Suite, indices: list[int] | None = None) -> ExpectationSuite:
    """The GE suite for ``suite`` (or the expectations at ``indices``), each tagged with its index."""
    from great_expectations.core.expectation_suite import ExpectationSuite

    chosen = range(len(suite.expectations)) if indices is None else indices
    return ExpectationSuite(name=suite.name, expectations=[
        {"type": suite.expectations[i].type, "kwargs": dict(suite.expectations[i].kwargs),
         "meta": {INDEX_META_KEY: i}} for i in chosen])


def ge_context():
    """A fresh ephemeral GE context without progress bars (nothing is written to disk)."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context


def ge_results_by_index(validation_result: Any) -> dict[int, dict[str, Any]]:
    """GE's per-expectation results as ``{suite index: {success, result, exception}}``."""
    out = {}
    for result in validation_result.results:
        index = int(result.expectation_config.meta[INDEX_META_KEY])
        out[index] = {"success": bool(result.success), "result": dict(result.result or {}),
                      "exception": _exception_message(result.exception_info)}
    return out


def outcome_from_ge(spec: ExpectationSpec, success: bool, result: Mapping[str, Any],
                    exception: str | None = None) -> Outcome:
    """Build an ``Outcome`` from a GE result dict (BASIC/SUMMARY format).

    GE's Spark engine reports no unexpected count when no row was considered (an empty frame or
    an all-null column: Spark's SUM over nothing is NULL); that is 0 unexpected rows, as pandas
    reports it.
    """
    unexpected = result.get("unexpected_count")
    if unexpected is None and result.get("element_count") is not None:
        unexpected = 0
    return Outcome(
        expectation_type=spec.type, column=spec.column_label,
        success=bool(success) and exception is None,
        unexpected_count=_opt_int(unexpected),
        element_count=_opt_int(result.get("element_count")),
        observed_value=plain_value(result.get("observed_value")),
        kwargs=dict(spec.kwargs), exception=exception)


def build_report(table: str, suite: Suite, outcomes: list[Outcome], engine: str) -> ValidationReport:
    return ValidationReport(table=table, suite=suite.name, success=all(o.success for o in outcomes),
                            outcomes=tuple(outcomes), result_id=new_result_id(), engine=engine)


def plain_value(value: Any) -> Any:
    """numpy/pandas scalars and arrays as plain Python; NaN as None (JSON-safe, comparable)."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return [plain_value(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return plain_value(value.tolist())
    if hasattr(value, "item") and not isinstance(value, (str, bytes, datetime, date)):
        try:
            value = value.item()
        except (ValueError, TypeError):
            pass
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _exception_message(info: Any) -> str | None:
    if not info:
        return None
    if isinstance(info, dict) and info.get("raised_exception"):
        return str(info.get("exception_message"))
    if isinstance(info, dict):
        for nested in info.values():
            if isinstance(nested, dict) and nested.get("raised_exception"):
                return str(nested.get("exception_message"))
    return None


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _compact(value: Any) -> str:
    text = json.dumps(value, default=_json_default)
    return text if len(text) <= 200 else text[:197] + "..."


def _json_default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return str(value)
