"""lakescore: point-in-time features, validation, training and batch scoring into Delta Lake,
on Spark and on Dask.

Importing ``engine`` imports neither Spark, Dask nor H2O: each is loaded the first time a
backend that needs it is used.
"""

__version__ = "0.1.0"


def score_batch(model, rows, **kwargs):  # noqa: ANN001, ANN201 - see engine.model_scoring
    """Score a Spark or Dask frame by model name alone (``engine.model_scoring.score_batch``)."""
    from engine.model_scoring import score_batch as _score_batch

    return _score_batch(model, rows, **kwargs)
