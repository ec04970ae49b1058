"""Batch scoring: MOJOs inside Spark's executor JVMs (Catalyst rows read by ordinal) and on Dask
workers (column batches through JPype), MLlib natively. How and why: docs/scoring.md."""
