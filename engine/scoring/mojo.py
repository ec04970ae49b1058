"""What a MOJO needs, read from its zip without a JVM, so a job can check its input up front."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from engine.errors import ModelMismatch


@dataclass(frozen=True)
class MojoInfo:
    path: str
    algo: str
    category: str
    feature_names: tuple[str, ...]
    domains: dict[str, tuple[str, ...]]
    response: str

    def check_columns(self, columns: list[str] | tuple[str, ...], table: str) -> None:
        """Raise ``ModelMismatch`` naming the model's features that ``columns`` lacks."""
        missing = [name for name in self.feature_names if name not in columns]
        if missing:
            raise ModelMismatch(
                f"{table} lacks the column(s) {missing} that the model {self.path} scores on "
                f"(it has {sorted(columns)})")


def read_mojo_info(path: str | Path) -> MojoInfo:
    """Parse ``model.ini`` (``[info]``, ``[columns]``, ``[domains]``) of a MOJO zip."""
    with zipfile.ZipFile(path) as archive:
        lines = archive.read("model.ini").decode().splitlines()
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
                domain_files[int(index)] = rest.split()[-1]
        domains = {columns[i]: tuple(archive.read(f"domains/{name}").decode().splitlines())
                   for i, name in domain_files.items()}
    supervised = info.get("supervised", "true") == "true"
    n_features = int(info.get("n_features", len(columns) - int(supervised)))
    return MojoInfo(path=str(path), algo=info.get("algo", "?"), category=info.get("category", "?"),
                    feature_names=tuple(columns[:n_features]),
                    domains={k: v for k, v in domains.items() if k in columns[:n_features]},
                    response=columns[-1] if supervised else "")


def content_named_copy(path: str | Path) -> Path:
    """A copy of the MOJO named by its content hash, so that two models that are both called
    ``model.mojo`` can be shipped to executors side by side (Spark's ``addFile`` keys by name)."""
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:20]
    target = Path(tempfile.gettempdir()) / "lakescore-mojo" / f"{digest}.mojo"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        shutil.copyfile(path, tmp)
        tmp.replace(target)
    return target
