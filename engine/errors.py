"""The whole public exception surface of lakescore.

Every error a user can meet is one of these types; each message says what failed, where
(definition, table, column, file, key) and what to do about it. Jobs map them to exit codes,
so a scheduler can tell bad data from a bad configuration from a crash.
"""

from __future__ import annotations


class LakescoreError(Exception):
    """Base of every lakescore error. ``exit_code`` is what a job exits with."""

    exit_code = 1


class ConfError(LakescoreError):
    """A configuration file or key is missing, unknown or of the wrong type."""

    exit_code = 2


class DefinitionError(LakescoreError):
    """A feature, suite or model definition is invalid; raised before any job is submitted."""

    exit_code = 2


class SchemaMismatch(LakescoreError):
    """A batch's columns or types do not match the table (or definition) it meets."""

    exit_code = 3


class ValidationFailed(LakescoreError):
    """A data-quality gate failed; nothing downstream was written."""

    exit_code = 4

    def __init__(self, message: str, report: object | None = None) -> None:
        super().__init__(message)
        self.report = report


class TableNotFound(LakescoreError):
    """A job's input table does not exist (yet) at the configured path."""

    exit_code = 2


class ManifestMismatch(ConfError):
    """A run manifest that this lakescore cannot replay faithfully (another version or format)."""


class InputVersionGone(TableNotFound):
    """A table version a replay needs can no longer be read (its files were vacuumed)."""


class CommitConflict(LakescoreError):
    """A concurrent writer changed the same data first; the table is unchanged by this job."""

    exit_code = 5


class NotSupportedByBackend(LakescoreError):
    """The chosen engine cannot do what was asked (e.g. Spark MLlib on Dask)."""

    exit_code = 2

    def __init__(self, backend: str, feature: str) -> None:
        super().__init__(f"{feature} is not supported by the {backend!r} backend")
        self.backend = backend
        self.feature = feature


class ModelMismatch(LakescoreError):
    """A model does not fit the data it is asked to score (feature hash or columns differ)."""

    exit_code = 6


class EnvironmentProblem(LakescoreError):
    """The machine lacks something the job needs (Java version, the scoring jar, a jar path)."""

    exit_code = 7


class UnreadableFile(LakescoreError):
    """A data file a table's Delta log lists is missing, truncated or not Parquet: the table
    is damaged (restore the file, or time-travel to a version without it)."""

    exit_code = 8


class StorageUnavailable(LakescoreError):
    """The object store (or filesystem) holding the lakehouse refused or could not be reached:
    endpoint, credentials, bucket or permissions. Nothing was written; retry once it is fixed."""

    exit_code = 9


class ReplayDiffers(LakescoreError):
    """A replay (``jobs.replay``) made different rows or values than the run it replays."""

    exit_code = 10


EXIT_CODES = {
    0: "ok",
    1: "unexpected error (traceback logged; the run summary is still written)",
    2: "conf or definition error, or a missing input table",
    3: "schema mismatch (a table, file or column of the wrong type or missing)",
    4: "validation failed (a suite, or a guard on the input: empty, stale, all-default or duplicated rows)",
    5: "commit conflict",
    6: "model mismatch",
    7: "environment problem (Java, jars, scheduler)",
    8: "unreadable file (a data file listed in a table's log is missing, truncated or not Parquet)",
    9: "storage unavailable (object store endpoint, credentials, bucket or permissions)",
    10: "a replay differs from the run it replays (`jobs.replay`)",
}
"""What each exit code means; README's exit-code table is this table (tests check it)."""
