"""Batch scoring: MOJOs inside Spark's JVM (Java UDF) and on Dask workers (JPype), MLlib natively."""
