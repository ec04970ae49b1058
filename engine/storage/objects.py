"""Small files beside the tables (run manifests): written and read through the same filesystems
as the Delta tables, so a lakehouse on ``s3://`` or ``abfss://`` holds them too."""

from __future__ import annotations

from engine.errors import TableNotFound
from engine.storage import delta_log
from engine.storage.table import TableRef


def _locate(uri: str, storage_options: dict[str, str] | None) -> tuple[object, str]:
    directory, _, name = uri.rstrip("/").rpartition("/")
    fs, root = delta_log.filesystem(TableRef(name=name, path=directory,
                                             storage_options=dict(storage_options or {})))
    return fs, f"{root}/{name}"


def write_text(uri: str, text: str, storage_options: dict[str, str] | None = None) -> str:
    """Write ``text`` to ``uri`` whole or not at all: an object store's single PUT is atomic;
    a local file is written beside and renamed over. Returns ``uri``."""
    from pyarrow import fs as pafs

    fs, path = _locate(uri, storage_options)
    parent = path.rpartition("/")[0]
    fs.create_dir(parent, recursive=True)
    data = text.encode()
    if isinstance(fs, pafs.LocalFileSystem):
        staged = f"{path}.partial"
        with fs.open_output_stream(staged) as out:
            out.write(data)
        fs.move(staged, path)
    else:
        with fs.open_output_stream(path) as out:
            out.write(data)
    return uri


def read_text(uri: str, storage_options: dict[str, str] | None = None) -> str:
    """The text of ``uri``; ``TableNotFound`` (exit 2) naming it when there is no such file."""
    fs, path = _locate(uri, storage_options)
    try:
        with fs.open_input_stream(path) as stream:
            return stream.read().decode()
    except FileNotFoundError as exc:
        raise TableNotFound(f"no file at {uri}") from exc


def exists(uri: str, storage_options: dict[str, str] | None = None) -> bool:
    from pyarrow import fs as pafs

    fs, path = _locate(uri, storage_options)
    return fs.get_file_info(path).type != pafs.FileType.NotFound
