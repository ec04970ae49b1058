"""Small run files (``summary.json``, manifests, validation reports, Data Docs) written and read
where the lakehouse is: a local directory, or an object store through the same pyarrow
filesystem and ``storage_options`` as the tables' data files, so an ``s3://`` run directory never
becomes a local ``./s3:/…`` folder."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from engine.errors import StorageUnavailable, TableNotFound


def is_remote(location: str) -> bool:
    """Whether ``location`` is an object-store URI (``s3://``, ``abfss://``, ...), not a local path."""
    return "://" in location and not location.startswith("file://")


def join(location: str, *parts: str) -> str:
    """``location`` and ``parts`` joined with ``/`` (a URI stays a URI)."""
    return "/".join([str(location).rstrip("/"), *parts])


def write_text(location: str, text: str, storage_options: Mapping[str, str] | None = None) -> Path | str:
    """Write ``text`` to the file ``location`` whole or not at all (parent directories created):
    a local file is written beside and renamed over, an object store's single PUT is atomic.
    Returns a ``Path`` for a local file, the URI for an object store. A store that refuses
    raises ``StorageUnavailable`` naming the location."""
    if not is_remote(location):
        path = Path(location.removeprefix("file://"))
        path.parent.mkdir(parents=True, exist_ok=True)
        staged = path.with_name(path.name + ".partial")
        staged.write_text(text)
        staged.replace(path)
        return path
    fs, path = _filesystem(location, storage_options)
    try:
        with fs.open_output_stream(path) as out:
            out.write(text.encode("utf-8"))
    except OSError as exc:
        raise storage_error(location, exc) from exc
    return location


def read_text(location: str, storage_options: Mapping[str, str] | None = None) -> str:
    """The text of the file ``location``; ``TableNotFound`` (exit 2) naming it when there is none."""
    if not is_remote(location):
        try:
            return Path(location.removeprefix("file://")).read_text()
        except FileNotFoundError as exc:
            raise TableNotFound(f"no file at {location}") from exc
    fs, path = _filesystem(location, storage_options)
    try:
        with fs.open_input_stream(path) as stream:
            return stream.read().decode("utf-8")
    except FileNotFoundError as exc:
        raise TableNotFound(f"no file at {location}") from exc
    except OSError as exc:
        raise storage_error(location, exc) from exc


def check_reachable(location: str, storage_options: Mapping[str, str] | None = None) -> None:
    """Fail early, with ``StorageUnavailable``, when an object-store ``location`` cannot be
    listed (endpoint down, credentials refused, no such bucket); local paths are not checked."""
    if not is_remote(location):
        return
    from pyarrow import fs as pafs

    fs, path = _filesystem(location, storage_options)
    bucket = path.split("/", 1)[0]
    try:
        info = fs.get_file_info(bucket)
        if info.type == pafs.FileType.NotFound:
            raise OSError(f"bucket or container {bucket!r} does not exist")
        fs.get_file_info(path)
    except OSError as exc:
        raise storage_error(location, exc) from exc


def storage_error(location: str, exc: BaseException) -> StorageUnavailable:
    """The object store's own message, first line only, with where and what to check."""
    cause = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return StorageUnavailable(
        f"object store at {location} cannot be used: {cause}. Check the endpoint, credentials, "
        "bucket and permissions in storage_options (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, "
        "AWS_REGION, ...) or the environment")


def _filesystem(location: str, storage_options: Mapping[str, str] | None) -> tuple[Any, str]:
    from engine.storage.layout import filesystem
    from engine.storage.table import TableRef

    return filesystem(TableRef.at(location, storage_options))
