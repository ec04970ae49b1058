"""Great Expectations' Data Docs HTML for a ``ValidationReport``, on either engine.

GE renders Data Docs from an ``ExpectationSuiteValidationResult``; Dask has no GE engine, so the
report (whose outcomes are GE's verdicts, counts and observed values on both engines) is turned
back into the equivalent GE result and rendered with GE's own page renderer and Jinja view
(``ValidationResultsPageRenderer`` + ``DefaultJinjaPageView``, what GE's site builder uses for a
validation page). Spark reports are rendered the same way, so the two engines' pages of the same
data show the same figures. No GE data context or site is needed: one self-contained page per
report, next to its JSON.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.validation.suite import Outcome, ValidationReport, report_stem

if TYPE_CHECKING:
    from great_expectations.core.expectation_validation_result import (
        ExpectationSuiteValidationResult,
    )


def ge_validation_result(report: ValidationReport, run_name: str,
                         run_time: datetime | None = None) -> ExpectationSuiteValidationResult:
    """The GE validation result equivalent to ``report`` (one GE result per outcome, in order)."""
    from great_expectations.core.expectation_validation_result import (
        ExpectationSuiteValidationResult,
        ExpectationValidationResult,
    )
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    results = [ExpectationValidationResult(
        success=o.success,
        expectation_config=ExpectationConfiguration(type=o.expectation_type, kwargs=dict(o.kwargs)),
        result=_ge_result(o),
        exception_info=({"raised_exception": True, "exception_message": o.exception,
                         "exception_traceback": ""} if o.exception else None))
        for o in report.outcomes]
    met = sum(o.success for o in report.outcomes)
    evaluated = len(report.outcomes)
    run_time = run_time or datetime.now(timezone.utc)
    return ExpectationSuiteValidationResult(
        success=report.success, results=results, suite_name=report.suite, id=report.result_id,
        statistics={"evaluated_expectations": evaluated, "successful_expectations": met,
                    "unsuccessful_expectations": evaluated - met,
                    "success_percent": 100.0 * met / evaluated if evaluated else None},
        meta={"run_id": {"run_name": run_name, "run_time": run_time.isoformat()},
              "batch_spec": {"data_asset_name": report.table, "engine": report.engine,
                             "lakescore_result_id": report.result_id}})


def render_data_docs(report: ValidationReport, run_name: str) -> str:
    """The Data Docs HTML page of ``report``."""
    from great_expectations.render.renderer import ValidationResultsPageRenderer
    from great_expectations.render.view import DefaultJinjaPageView

    document = ValidationResultsPageRenderer().render(ge_validation_result(report, run_name))
    return DefaultJinjaPageView().render(document)


def write_data_docs(report: ValidationReport, directory: str | Path, run_name: str,
                    storage_options: dict[str, str] | None = None) -> Path | str:
    """Write the Data Docs page of ``report`` under ``directory`` (a local directory, created,
    or an object store URI), named like its JSON."""
    from engine.storage.files import join, write_text

    return write_text(join(str(directory), f"{report_stem(report)}.html"),
                      render_data_docs(report, run_name), storage_options)


def _ge_result(outcome: Outcome) -> dict[str, Any]:
    result: dict[str, Any] = {}
    if outcome.element_count is not None:
        result["element_count"] = outcome.element_count
    if outcome.unexpected_count is not None:
        result["unexpected_count"] = outcome.unexpected_count
        result["partial_unexpected_list"] = []
        if outcome.element_count:
            result["unexpected_percent"] = 100.0 * outcome.unexpected_count / outcome.element_count
    if outcome.observed_value is not None or outcome.unexpected_count is None:
        result["observed_value"] = outcome.observed_value
    return result
