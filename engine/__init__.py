"""lakescore: point-in-time features, validation, training and batch scoring into Delta Lake,
on Spark and on Dask.

Importing ``engine`` imports neither Spark, Dask nor H2O: each is loaded the first time a
backend that needs it is used.
"""

__version__ = "0.1.0"
