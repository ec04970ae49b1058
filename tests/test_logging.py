"""A job's log: lakescore's own lines, and the libraries' only when they matter or --verbose."""

from __future__ import annotations

import logging

import pytest

from engine.cli import QuietThirdParty, job_parser


def record(name: str, level: int) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, "message", None, None)


@pytest.mark.parametrize(("name", "level", "shown"), [
    ("lakescore", logging.INFO, True),                    # one line per stage, the summary
    ("engine.training.registry", logging.INFO, True),
    ("jobs.replay", logging.DEBUG, True),
    ("great_expectations.data_context.types.base", logging.INFO, False),  # GE re-raises its level
    ("root", logging.INFO, False),                        # py4j's retried "Exception while sending"
    ("distributed.scheduler", logging.INFO, False),
    ("py4j.clientserver", logging.INFO, False),
    ("distributed.nanny", logging.WARNING, True),         # e.g. a worker restarted for memory
    ("distributed.shuffle._scheduler_plugin", logging.WARNING, False),  # one per shuffle
    ("distributed.shuffle._scheduler_plugin", logging.ERROR, True),
    ("h2o", logging.ERROR, True),
])
def test_the_libraries_info_lines_are_off_and_their_warnings_on(name, level, shown):
    assert QuietThirdParty().filter(record(name, level)) is shown


def test_every_job_takes_verbose():
    args = job_parser("a job").parse_args(["--verbose"])
    assert args.verbose and not job_parser("a job").parse_args([]).verbose
