"""Open the configured backend for a job and close it when the job ends."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from engine.backend import Backend, open_backend
from engine.conf import Conf


@contextmanager
def backend_for(conf: Conf, engine: str | None = None) -> Iterator[Backend]:
    backend = open_backend(engine or conf.engine, conf)
    try:
        yield backend
    finally:
        backend.close()
