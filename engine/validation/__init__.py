"""Great Expectations suites over Spark and Dask frames, with one engine-free report type.

``suite`` holds the definitions and the report (no engine imports); ``spark`` and ``dask`` are
imported only by the backend that uses them.
"""
