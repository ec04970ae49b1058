"""Delta tables: what a table is, how a write is committed, and the engines' readers/writers.

``table`` holds the plain types shared by every engine; ``snapshots`` reads the Delta log
(versions, time travel, live files), ``schema`` the stored schemas and their checks,
``layout`` where files lie, ``data_files`` and ``stats`` the uncommitted Parquet files and their
statistics, ``commit`` the single-commit protocol (idempotency, guards); ``spark`` and ``dask``
the engine-specific readers and writers built on them.
"""

from engine.storage.table import CommitInfo, ReadResult, TableRef, WriteMode, WriteResult

__all__ = ["CommitInfo", "ReadResult", "TableRef", "WriteMode", "WriteResult"]
