"""An MLflow ``python_function`` flavor for lakescore's MOJO models (interop, not speed).

MLflow has no MOJO flavor (its ``h2o`` flavor stores H2O binary models that need a live H2O of
the same version, also inside ``spark_udf``). Training writes an ``MLmodel`` file beside the
MOJO in the model version's artifact directory, so any MLflow tool can load a lakescore model
version: ``mlflow.pyfunc.load_model("models:/churn/3")`` returns a model whose ``predict`` takes
a pandas frame of the model's feature columns and scores it through our JVM scorer (JPype, in
the calling process: ``engine.scoring.dask.score_pandas``), with the same numbers as
``score_batch`` and the score job. ``mlflow.pyfunc.spark_udf`` works too: each Python worker
starts its own JVM.

Use it for interop (a serving tool, a notebook, a framework that only speaks pyfunc). Do not use
it for batch scoring with Spark: rows leave the JVM for Python (Arrow) and come back, several
times slower than lakescore's in-JVM scorer (``bench/scoring.py``, docs/scoring.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import ModelMismatch

if TYPE_CHECKING:
    import pandas as pd

FLAVOR = "lakescore_mojo"
LOADER_MODULE = "engine.scoring.flavor"


def write_mlmodel(model_dir: Path, mojo_file: str, features: dict[str, str], score_columns: list[str],
                  lakescore_version: str) -> Path:
    """Write ``model_dir/MLmodel``: the pyfunc flavor (loader ``engine.scoring.flavor``, data the
    MOJO file), our own flavor entry, and a signature with the feature columns (name → MLflow
    type) so that ``spark_udf`` binds columns by name."""
    import mlflow
    from mlflow.models import Model
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import ColSpec, Schema

    model = Model()
    mlflow.pyfunc.add_to_model(model, loader_module=LOADER_MODULE, data=mojo_file)
    model.add_flavor(FLAVOR, mojo=mojo_file, lakescore_version=lakescore_version,
                     definitions="features.yaml")
    model.signature = ModelSignature(
        inputs=Schema([ColSpec(kind, name, required=False) for name, kind in features.items()]),
        outputs=Schema([ColSpec("double", name) for name in score_columns]))
    path = Path(model_dir) / "MLmodel"
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(str(path))
    return path


# pandas dtype of a feature (FeatureSet.dtypes) → MLflow column type
_MLFLOW_TYPES = {"int64": "long", "float64": "double", "string": "string", "boolean": "boolean",
                 "datetime64[us, UTC]": "datetime"}


def mlmodel_for_mojo(mojo_path: Path, out_dir: Path, dtypes: dict[str, str] | None = None) -> Path:
    """The ``MLmodel`` of a MOJO file about to be registered: its features from the MOJO, typed
    by the feature definitions' ``dtypes`` when given (counts are ``long``: MLflow's schema
    check will not cast an int64 column to double), else ``double`` or ``string``."""
    from engine.manifest import lakescore_version
    from engine.scoring.mojo import output_columns, read_mojo_info

    info = read_mojo_info(mojo_path)
    known = dtypes or {}
    features = {name: _MLFLOW_TYPES.get(known.get(name, ""), "string" if name in info.domains else "double")
                for name in info.feature_names}
    scores = [c.name for c in output_columns(info) if c.type != "string"]
    return write_mlmodel(out_dir, Path(mojo_path).name, features, scores, lakescore_version())


class MojoPyfunc:
    """What ``mlflow.pyfunc.load_model`` wraps: ``predict(frame)`` → the model's numeric outputs
    (``score``; per-class probabilities for multinomial models) as a pandas frame."""

    def __init__(self, mojo_path: str) -> None:
        from engine.scoring.mojo import read_mojo_info

        self.info = read_mojo_info(mojo_path)

    def predict(self, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        import pandas as pd

        from engine.scoring.dask import score_pandas

        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        scored = score_pandas(frame.reset_index(drop=True), self.info)
        numeric = [c for c in scored.columns if scored[c].dtype == "float64"]
        return scored[numeric]


def _load_pyfunc(data_path: str) -> MojoPyfunc:
    """MLflow's entry point: ``data_path`` is the MOJO file the ``MLmodel`` names."""
    if not Path(data_path).exists():
        raise ModelMismatch(f"the MOJO {Path(data_path).name} named by the model's MLmodel is missing "
                            f"from {Path(data_path).parent}; restore the model version's artifacts "
                            "or re-register it")
    return MojoPyfunc(data_path)
