"""Delta tables: what a table is, how a write is committed, and the engines' readers/writers.

``table`` holds the plain types shared by every engine; ``delta_log`` the single-commit
protocol over deltalake (idempotency, metadata, schema checks); ``spark`` and ``dask`` the
engine-specific readers and writers built on it.
"""

from engine.storage.table import CommitInfo, ReadResult, TableRef, WriteMode, WriteResult

__all__ = ["CommitInfo", "ReadResult", "TableRef", "WriteMode", "WriteResult"]
