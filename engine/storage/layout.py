"""Where a table's files lie and how their partitions are spelled.

The table's root as workers must see it, the pyarrow filesystem for its location (object stores
with the table's own credentials), a file's path under the root, and partition values and
directories as the Delta log and delta-rs spell them. Knows no log and no engine.
"""

from __future__ import annotations

import os
from datetime import date, datetime, timezone
from typing import Any
from urllib.parse import quote

from engine.storage.table import TableRef

HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"


def table_root(table: TableRef) -> str:
    """The table's location as workers must see it: local paths made absolute, URIs as given."""
    if "://" in table.path:
        return table.path.rstrip("/")
    return os.path.abspath(table.path)


def as_uri(root: str) -> str:
    return root if "://" in root else f"file://{root}"


def filesystem(table: TableRef) -> tuple[Any, str]:
    """The pyarrow filesystem and root path for the table's location.

    Object stores take their credentials and endpoint from the table's ``storage_options``
    (the delta-rs keys: ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``,
    ``AWS_REGION``, ``AWS_ENDPOINT_URL``; ``AZURE_STORAGE_ACCOUNT_NAME``,
    ``AZURE_STORAGE_ACCOUNT_KEY``), so that the Parquet files and the Delta log are written
    with the same identity; without options, the environment's (instance roles, env vars).
    """
    from pyarrow import fs as pafs

    root = table_root(table)
    options = {k.upper(): v for k, v in (table.storage_options or {}).items()}
    scheme = root.split("://", 1)[0] if "://" in root else "file"
    if scheme in ("s3", "s3a") and options:
        kwargs: dict[str, Any] = {}
        for key, arg in (("AWS_ACCESS_KEY_ID", "access_key"), ("AWS_SECRET_ACCESS_KEY", "secret_key"),
                         ("AWS_SESSION_TOKEN", "session_token"), ("AWS_REGION", "region")):
            if key in options:
                kwargs[arg] = options[key]
        endpoint = options.get("AWS_ENDPOINT_URL") or options.get("AWS_ENDPOINT")
        if endpoint:
            scheme_part, _, host = endpoint.partition("://")
            kwargs["endpoint_override"] = host or endpoint
            kwargs["scheme"] = scheme_part if host else "https"
        return pafs.S3FileSystem(**kwargs), root.split("://", 1)[1]
    if scheme in ("abfss", "abfs", "az") and options:
        account = options.get("AZURE_STORAGE_ACCOUNT_NAME") or options.get("ACCOUNT_NAME")
        key = options.get("AZURE_STORAGE_ACCOUNT_KEY") or options.get("ACCOUNT_KEY")
        rest = root.split("://", 1)[1]  # container@account.dfs.core.windows.net/path
        container, _, tail = rest.partition("@")
        path = tail.split("/", 1)[1] if "/" in tail else ""
        return (pafs.AzureFileSystem(account_name=account, account_key=key),
                f"{container}/{path}".rstrip("/"))
    return pafs.FileSystem.from_uri(as_uri(root))


def file_path(table: TableRef, uri: str) -> tuple[Any, str]:
    """The filesystem and path of one of the table's files, given its URI under the root."""
    fs, root_path = filesystem(table)
    return fs, root_path + uri[len(table_root(table)):]


def partition_value(value: Any) -> str | None:
    """A partition value as the Delta log spells it (None for null)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        value = value.astimezone(timezone.utc) if value.tzinfo else value
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def partition_dir(values: dict[str, str | None]) -> str:
    """``col=value/...`` as delta-rs lays it out (percent-encoded; Spark decodes the same)."""
    return "/".join(f"{quote(c, safe='')}={HIVE_NULL if v is None else quote(v, safe='')}"
                    for c, v in values.items())
