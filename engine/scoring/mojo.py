"""What a MOJO needs and gives, read from its zip without a JVM, so a job can check its input
and know its output schema up front.

Shared by the Spark and the Dask scorers: both check a frame with ``check_scorable`` before any
job runs (a mistyped feature column fails fast with a ``ModelMismatch`` naming it) and name
their outputs with ``output_columns``, so both engines give the same columns.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from engine.errors import DefinitionError, ModelMismatch

log = logging.getLogger(__name__)

ColumnKind = Literal["numeric", "string", "null", "other"]
"""How a backend's column type reaches the scorer: as doubles, as level strings, as missing
values only (a column typed "null", fit for any feature), or not at all."""

SUPPORTED_CATEGORIES = ("Binomial", "Multinomial", "Regression")
# Encodings under which score0 takes one value per original column (others expand columns).
SUPPORTED_ENCODINGS = ("AUTO", "Enum")

_LINE_BREAK = re.compile(r"\r\n|\r|\n")  # Java's BufferedReader.readLine, not str.splitlines
_UNSAFE_IN_NAME = re.compile(r"[^0-9A-Za-z_]")

MissingColumns = Literal["na", "error"]
"""What a scorer does with a feature column the frame lacks: score it as all-missing with a
warning, as H2O's ``predict`` does (``"na"``), or refuse the frame (``"error"``)."""

PREDICTION = "prediction"
"""The predicted label's column (classifiers): the response level, as H2O's ``predict`` gives it."""


@dataclass(frozen=True)
class MojoInfo:
    """A MOJO's contract: the feature columns it reads and the levels of the categorical ones.

    ``feature_names`` are in the model's own order (GLM puts categoricals first); scorers bind
    columns by name, so the frame's column order does not matter. ``domains`` holds only
    categorical features, each level list in domain-index order. ``response_domain`` is the
    classes of a classifier in H2O's order (P(second class) is a binomial model's score);
    ``default_threshold`` is the cut at which H2O's ``predict`` labels a binomial row.
    """

    path: str
    category: str
    feature_names: tuple[str, ...]
    domains: dict[str, tuple[str, ...]]
    response: str
    algo: str = "?"
    encoding: str = "AUTO"
    response_domain: tuple[str, ...] = ()
    default_threshold: float | None = None


@dataclass(frozen=True)
class OutputColumn:
    """One column a scorer adds: its name and its type (``"double"`` or ``"string"``)."""

    name: str
    type: Literal["double", "string"]


def probability_column(level: str) -> str:
    """``p_`` + the class level with every character outside ``[0-9A-Za-z_]`` replaced by ``_``
    (``"high risk"`` → ``p_high_risk``), a name every engine and table format accepts."""
    return "p_" + _UNSAFE_IN_NAME.sub("_", level)


def output_columns(info: MojoInfo, score: str = "score") -> tuple[OutputColumn, ...]:
    """The columns that scoring with ``info``'s model adds, in order, known without scoring.

    Regression: ``score``, the predicted value. Binomial: ``score`` = P(second class of
    ``response_domain``), then ``prediction``, the label H2O's ``predict`` gives (at the model's
    ``default_threshold``). Multinomial: ``score`` = the probability of the predicted label,
    ``prediction``, then one probability per class named by ``probability_column``; levels
    that give the same name get their domain index appended (``p_a_b_0``, ``p_a_b_1``).
    """
    if info.category == "Regression":
        return (OutputColumn(score, "double"),)
    columns = [OutputColumn(score, "double"), OutputColumn(PREDICTION, "string")]
    if info.category == "Multinomial":
        names = [probability_column(level) for level in info.response_domain]
        clashing = {name for name in names if names.count(name) > 1}
        names = [f"{name}_{k}" if name in clashing else name for k, name in enumerate(names)]
        columns += [OutputColumn(name, "double") for name in names]
    taken = [c.name for c in columns]
    clashes = sorted({name for name in taken if taken.count(name) > 1})
    if clashes:
        raise ModelMismatch(f"the outputs of the model {info.path} would have the same name twice "
                            f"({clashes}); choose another score column name than {score!r}")
    return tuple(columns)


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
        domains: dict[str, tuple[str, ...]] = {}
        for i, (count, file_name) in domain_files.items():
            text = archive.read(f"domains/{file_name}").decode("utf-8")
            levels = _LINE_BREAK.split(text)[:count]
            domains[columns[i]] = tuple(_unescape(v) for v in levels) if escaped else tuple(levels)
    supervised = info.get("supervised", "true") == "true"
    n_features = int(info.get("n_features", len(columns) - int(supervised)))
    features = tuple(columns[:n_features])
    response = columns[-1] if supervised else ""
    threshold = info.get("default_threshold")
    return MojoInfo(path=str(path), category=info.get("category", "?"), feature_names=features,
                    domains={k: v for k, v in domains.items() if k in features},
                    response=response, algo=info.get("algo", "?"),
                    encoding=info.get("_genmodel_encoding", "AUTO"),
                    response_domain=domains.get(response, ()) if response else (),
                    default_threshold=float(threshold) if threshold not in (None, "null") else None)


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
                   output: str = "score", table: str = "the frame to score",
                   missing_columns: MissingColumns = "na") -> tuple[str, ...]:
    """Raise before any job runs when the model cannot score ``columns``; return the features
    the frame lacks, which the scorers score as missing in every row.

    Guarantees on return: the model is binomial, multinomial or regression with a supported
    encoding; numeric features are numeric columns; categorical features are string columns
    (numbers are refused, as H2O's ``predict`` and genmodel refuse them: cast integer codes to
    strings, ``3`` → ``"3"``); ``keep`` columns exist and none is named as an output column.
    A feature with no column is, as in H2O's ``predict``, scored as all-missing and logged as
    a warning naming it and the model; with ``missing_columns="error"`` it is a ``ModelMismatch``.
    """
    if info.category not in SUPPORTED_CATEGORIES:
        raise ModelMismatch(f"the model {info.path} is a {info.category} model; lakescore scores "
                            f"{', '.join(SUPPORTED_CATEGORIES)} models")
    if info.encoding not in SUPPORTED_ENCODINGS:
        raise ModelMismatch(f"the model {info.path} was trained with categorical_encoding="
                            f"{info.encoding!r}; retrain with 'AUTO' or 'Enum'")
    if missing_columns not in ("na", "error"):
        raise DefinitionError(f"missing_columns must be 'na' or 'error', not {missing_columns!r}")
    missing = tuple(name for name in info.feature_names if name not in columns)
    if missing and missing_columns == "error":
        raise ModelMismatch(f"{table} lacks the column(s) {list(missing)} that the model {info.path} "
                            f"scores on (it has {sorted(columns)}); add them, or pass "
                            "missing_columns='na' to score them as missing as H2O's predict does")
    wrong = [f"{name} ({columns[name]}, the model wants "
             f"{'strings' if name in info.domains else 'numbers'})"
             for name in info.feature_names if name in columns
             and columns[name] not in ("string" if name in info.domains else "numeric", "null")]
    if wrong:
        raise ModelMismatch(f"{table} has feature column(s) of a type the model {info.path} cannot "
                            f"take: {', '.join(wrong)}; cast them before scoring")
    absent = [name for name in keep if name not in columns]
    if absent:
        raise DefinitionError(f"columns to keep {absent} are not in {table} (it has {sorted(columns)})")
    outputs = [c.name for c in output_columns(info, output)]
    kept = [name for name in outputs if name in keep]
    if kept:
        raise DefinitionError(f"the output column(s) {kept} of the model {info.path} are also columns "
                              f"to keep; choose another score column name than {output!r} or rename "
                              "the kept column")
    if missing:
        log.warning("%s lacks the feature column(s) %s of the model %s: they are scored as missing "
                    "values in every row, as H2O's predict does (missing_columns='error' refuses "
                    "such a frame)", table, list(missing), info.path)
    return missing


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
