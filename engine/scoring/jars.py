"""Where the MOJO scoring jars are: in ``LAKESCORE_JARS`` when set (a Dask worker that received
them from its client, ``engine.backends.dask.ship_scorer_jars``), else as built by ``make setup``
(``scripts/build_scorer.sh``) under the checkout's ``build/jars``."""

from __future__ import annotations

import os
from pathlib import Path

from engine.conf import REPO_ROOT
from engine.errors import EnvironmentProblem

JAR_DIR = REPO_ROOT / "build" / "jars"
GENMODEL_JAR = JAR_DIR / "h2o-genmodel.jar"
SCORER_JAR = JAR_DIR / "lakescore-scorer.jar"
JARS_ENV = "LAKESCORE_JARS"
JARS_PROBLEM_ENV = "LAKESCORE_JARS_PROBLEM"
"""Set in a Dask worker whose copy of the shipped jars failed (a full or size-limited disk):
what went wrong, reported by ``scorer_jars`` and the worker's facts instead of a bare "missing"."""


def scorer_jars(required: bool = True) -> list[Path]:
    """The jars that MOJO scoring needs on a JVM's classpath (ours and H2O's genmodel).

    With ``required=False`` an unbuilt jar yields an empty list, so a session that never scores
    a MOJO still starts; scoring itself asks with ``required=True`` and gets a clear error.
    """
    problem = os.environ.get(JARS_PROBLEM_ENV)
    if problem:
        if not required:
            return []
        raise EnvironmentProblem(f"MOJO scoring jar(s) unusable on this worker: {problem}")
    shipped = os.environ.get(JARS_ENV)
    directory = Path(shipped) if shipped else JAR_DIR
    jars = [directory / SCORER_JAR.name, directory / GENMODEL_JAR.name]
    missing = [str(j) for j in jars if not j.exists()]
    if missing:
        if not required:
            return []
        raise EnvironmentProblem(
            f"MOJO scoring jar(s) missing: {', '.join(missing)}; run `make setup` "
            "(it extracts h2o-genmodel.jar from the h2o wheel and compiles java/ with javac)")
    return jars
