"""What a MOJO needs, read from its zip without a JVM, so a job can check its input up front.

Shared by the Spark and the Dask scorers: both check a frame with ``check_scorable`` before any
job runs, so a missing or mistyped feature column fails fast with a ``ModelMismatch`` naming it.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from engine.errors import DefinitionError, ModelMismatch

ColumnKind = Literal["numeric", "string", "null", "other"]
"""How a backend's column type reaches the scorer: as doubles, as level strings, as missing
values only (a column typed "null", fit for any feature), or not at all."""

SUPPORTED_CATEGORIES = ("Binomial", "Regression")
# Encodings under which score0 takes one value per original column (others expand columns).
SUPPORTED_ENCODINGS = ("AUTO", "Enum")

_LINE_BREAK = re.compile(r"\r\n|\r|\n")  # Java's BufferedReader.readLine, not str.splitlines


@dataclass(frozen=True)
class MojoInfo:
    """A MOJO's contract: the feature columns it reads and the levels of the categorical ones.

    ``feature_names`` are in the model's own order (GLM puts categoricals first); scorers bind
    columns by name, so the frame's column order does not matter. ``domains`` holds only
    categorical features, each level list in domain-index order.
    """

    path: str
    category: str
    feature_names: tuple[str, ...]
    domains: dict[str, tuple[str, ...]]
    response: str
    algo: str = "?"
    encoding: str = "AUTO"


def read_mojo_info(path: str | Path) -> MojoInfo:
    """Parse ``model.ini`` (``[info]``, ``[columns]``, ``[domains]``) and the domain files.

    Domain values are unescaped as genmodel does (``escape_domain_values``), so a level read
    here is the exact string the scorer compares against.
    """
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise ModelMismatch(f"cannot read the MOJO {path}: {exc}; pass a file written by "
                            "H2O's model.download_mojo()") from exc
    with archive:
        try:
            lines = archive.read("model.ini").decode("utf-8").splitlines()
        except KeyError as exc:
            raise ModelMismatch(f"{path} is a zip without model.ini, not an H2O MOJO") from exc
        section, info, columns, domain_files = "", {}, [], {}
        for line in lines:
            line = line.strip()
            if not line:
                continue
            if line.startswith("[") and line.endswith("]"):
                section = line[1:-1]
            elif section == "info" and "=" in line:
                key, value = (part.strip() for part in line.split("=", 1))
                info[key] = value
            elif section == "columns":
                columns.append(line)
            elif section == "domains":
                index, rest = line.split(":", 1)
                count, file_name = rest.split()
                domain_files[int(index)] = (int(count), file_name)
        escaped = info.get("escape_domain_values", "false") == "true"
        domains = {}
        for i, (count, file_name) in domain_files.items():
            text = archive.read(f"domains/{file_name}").decode("utf-8")
            levels = _LINE_BREAK.split(text)[:count]
            domains[columns[i]] = tuple(_unescape(v) for v in levels) if escaped else tuple(levels)
    supervised = info.get("supervised", "true") == "true"
    n_features = int(info.get("n_features", len(columns) - int(supervised)))
    features = tuple(columns[:n_features])
    return MojoInfo(path=str(path), category=info.get("category", "?"), feature_names=features,
                    domains={k: v for k, v in domains.items() if k in features},
                    response=columns[-1] if supervised else "", algo=info.get("algo", "?"),
                    encoding=info.get("_genmodel_encoding", "AUTO"))


def _unescape(value: str) -> str:
    r"""genmodel's ``StringEscapeUtils.unescapeNewlines``: ``\n``, ``\r``, ``\\``; ``\x`` → ``x``."""
    if "\\" not in value:
        return value
    out, escaping = [], False
    for ch in value:
        if escaping:
            out.append({"n": "\n", "r": "\r"}.get(ch, ch))
            escaping = False
        elif ch == "\\":
            escaping = True
        else:
            out.append(ch)
    return "".join(out)


def check_scorable(info: MojoInfo, columns: Mapping[str, ColumnKind], keep: Sequence[str],
                   output: str, table: str = "the frame to score") -> None:
    """Raise before any job runs when the model cannot score ``columns``.

    Guarantees on return: the model is binomial or regression with a supported encoding; every
    feature is a column; numeric features are numeric columns; categorical features are string
    columns (numbers are refused, as H2O's ``predict`` and genmodel refuse them: cast integer
    codes to strings, ``3`` → ``"3"``); ``keep`` columns exist and ``output`` is not one of them.
    """
    if info.category not in SUPPORTED_CATEGORIES:
        raise ModelMismatch(f"the model {info.path} is a {info.category} model; lakescore scores "
                            f"{' and '.join(SUPPORTED_CATEGORIES)} models")
    if info.encoding not in SUPPORTED_ENCODINGS:
        raise ModelMismatch(f"the model {info.path} was trained with categorical_encoding="
                            f"{info.encoding!r}; retrain with 'AUTO' or 'Enum'")
    missing = [name for name in info.feature_names if name not in columns]
    if missing:
        raise ModelMismatch(f"{table} lacks the column(s) {missing} that the model {info.path} scores "
                            f"on (it has {sorted(columns)})")
    wrong = [f"{name} ({columns[name]}, the model wants "
             f"{'strings' if name in info.domains else 'numbers'})"
             for name in info.feature_names
             if columns[name] not in ("string" if name in info.domains else "numeric", "null")]
    if wrong:
        raise ModelMismatch(f"{table} has feature column(s) of a type the model {info.path} cannot "
                            f"take: {', '.join(wrong)}; cast them before scoring")
    absent = [name for name in keep if name not in columns]
    if absent:
        raise DefinitionError(f"columns to keep {absent} are not in {table} (it has {sorted(columns)})")
    if output in keep:
        raise DefinitionError(f"the score column {output!r} is also a column to keep; choose another "
                              "output name")


def content_named_copy(path: str | Path) -> Path:
    """A copy of the MOJO named by its content hash, so that two models that are both called
    ``model.mojo`` can be shipped to executors side by side (Spark's ``addFile`` keys by name)."""
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:20]
    target = Path(tempfile.gettempdir()) / "lakescore-mojo" / f"{digest}.mojo"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(f".{digest}.tmp")
        shutil.copyfile(path, tmp)
        tmp.replace(target)
    return target
