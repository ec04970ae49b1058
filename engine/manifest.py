"""The run manifest: what a job needs to be made again, written to ``runs/<run_id>/manifest.json``.

Lineage (in each Delta commit) answers "how was this table made?"; the manifest answers "can
you make it again?". It holds the merged conf (secrets redacted), every input table at the exact
version read, the feature definitions (their YAML text and hash), the model versions used, the
engine and its settings, and the versions of lakescore and of the libraries that change numbers.
``jobs.replay`` reads it back (``engine.replay``).

Inputs are taken from the lineage of the table versions the run wrote (every lakescore commit
records what it read): a table that the run itself computed is not an input, so a pipeline's
inputs are its source tables, and a score job's are the events and rows to score. The demo tables
a pipeline generates (stage ``generate``) and then reads are inputs of its other stages, not
outputs: a replay reads them at the versions the run read, it does not generate them again.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from typing import TYPE_CHECKING, Any

from engine.errors import ConfError

if TYPE_CHECKING:
    from engine.conf import Conf
    from engine.run_context import RunContext

MANIFEST_FORMAT = 1
MANIFEST_NAME = "manifest.json"
REDACTED = "***redacted***"

# Libraries whose version can change a number lakescore writes (arithmetic, parsing, scoring).
NUMERIC_LIBRARIES = ("pyspark", "delta-spark", "pyarrow", "numpy", "pandas", "deltalake", "dask",
                     "distributed", "h2o", "great-expectations", "mlflow-skinny", "mlflow", "jpype1",
                     "scikit-learn")

_SECRET_KEY = re.compile(r"secret|password|passwd|token|credential|access[_.-]?key|account[_.-]?key"
                         r"|sas|private|session[_.-]?key|\bauth", re.I)
_URI_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^/:@\s]*:)(?P<password>[^@/\s]+)(?P<at>@)", re.I)


def redact(value: Any, path: str = "") -> tuple[Any, list[str]]:
    """``value`` with every secret replaced by ``REDACTED``, and the dotted keys replaced.

    A secret is the value of a key whose name says so (``*secret*``, ``*password*``, ``*token*``,
    ``*access_key*``, ``*account_key*``, ...) or the password of a ``scheme://user:pass@host``
    URI anywhere in a string. Redaction is by name, not by value: a secret under an innocent key
    name is not found, so keep secrets in ``storage_options`` or the environment."""
    if isinstance(value, dict):
        out, found = {}, []
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if _SECRET_KEY.search(str(key)) and item not in (None, "", {}, []):
                out[key] = REDACTED
                found.append(where)
            else:
                out[key], inner = redact(item, where)
                found += inner
        return out, found
    if isinstance(value, list):
        out_list, found = [], []
        for i, item in enumerate(value):
            redacted, inner = redact(item, f"{path}[{i}]")
            out_list.append(redacted)
            found += inner
        return out_list, found
    if isinstance(value, str) and _URI_PASSWORD.search(value):
        return _URI_PASSWORD.sub(lambda m: f"{m['head']}{REDACTED}{m['at']}", value), [path]
    return value, []


def redact_argument(argument: str) -> str:
    """A command-line argument with its secret redacted (``--set storage_options.X_SECRET=...``)."""
    key, equals, value = argument.partition("=")
    if equals and _SECRET_KEY.search(key) and value:
        return f"{key}={REDACTED}"
    return redact(argument)[0]


@dataclass(frozen=True)
class InputVersion:
    """One table a run read, by the name its lineage uses, at the exact version read."""

    name: str
    path: str
    version: int


@dataclass(frozen=True)
class Manifest:
    """Everything ``jobs.replay`` needs to run a job again, plus what to compare it with."""

    run_id: str
    job: str
    argv: list[str]
    created: str
    conf: dict[str, Any]
    redacted: list[str]
    inputs: list[InputVersion]
    outputs: dict[str, dict[str, Any]]
    """Table name → ``{"path", "version", "engine"}`` of what the run committed (``engine``: the
    one that wrote it; a pipeline on several engines writes ``scores_spark``, ``scores_dask``)."""
    features: dict[str, Any]
    """``name``, ``hash``, ``path`` and ``yaml`` (the definition file's text)."""
    models: list[dict[str, str]]
    engine: dict[str, Any]
    """``name`` and ``settings`` of the conf's engine; ``engines``: those the run's stages ran on,
    in order (a pipeline may run several)."""
    lakescore: dict[str, str]
    runtime: dict[str, Any]
    format: int = MANIFEST_FORMAT

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True, default=str)

    @classmethod
    def from_json(cls, text: str, source: str = "manifest") -> Manifest:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfError(f"{source} is not JSON ({exc}); give the manifest.json of a run "
                            "(runs/<run_id>/manifest.json under the lakehouse)") from exc
        if not isinstance(raw, dict) or "format" not in raw or "lakescore" not in raw:
            raise ConfError(f"{source} is not a lakescore run manifest (no 'format'/'lakescore' keys)")
        known = {f.name for f in dataclasses.fields(cls)}
        missing = sorted(known - set(raw) - {"format"})
        if raw["format"] != MANIFEST_FORMAT or missing:
            from engine.errors import ManifestMismatch

            what = f"manifest format {raw['format']}" + (f" without {missing}" if missing else "")
            raise ManifestMismatch(f"{source} has {what}; this lakescore ({lakescore_version()}) "
                                   f"reads manifest format {MANIFEST_FORMAT}: replay it with the "
                                   f"lakescore version that wrote it ({raw['lakescore']})")
        raw = {k: v for k, v in raw.items() if k in known}
        raw["inputs"] = [InputVersion(**i) for i in raw["inputs"]]
        return cls(**raw)


def lakescore_version() -> str:
    try:
        return metadata.version("lakescore")
    except metadata.PackageNotFoundError:  # a checkout that is not installed
        import tomllib

        from engine.conf import REPO_ROOT

        with open(REPO_ROOT / "pyproject.toml", "rb") as handle:
            return tomllib.load(handle)["project"]["version"]


def library_versions(names: tuple[str, ...] = NUMERIC_LIBRARIES) -> dict[str, str]:
    """Installed versions from package metadata (nothing is imported)."""
    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def java_version() -> str | None:
    """The version of the ``java`` the jobs start (Spark, H2O and JPype all use it), or None
    when there is none that runs (``engine.environment`` finds it the way the jobs do)."""
    from engine.environment import java_major
    from engine.environment import java_version as found

    version, _source = found()
    return version if java_major(version) is not None else None


def runtime_versions() -> dict[str, Any]:
    return {"python": platform.python_version(), "java": java_version(),
            "spark": metadata.version("pyspark") if "pyspark" in library_versions(("pyspark",)) else None,
            "platform": platform.platform(), "libraries": library_versions()}


GENERATE_STAGE = "generate"
"""The pipeline stage that writes the demo's source tables: what it wrote is the run's input."""


def engine_settings(conf: Conf, engines: list[str] | None = None) -> dict[str, Any]:
    """The engine of the run and the settings that shape its work (redacted like the conf);
    ``engines``: the engines the run's stages ran on (default: the conf's)."""
    settings = dataclasses.asdict(conf.spark if conf.engine == "spark" else conf.dask)
    return {"name": conf.engine, "engines": list(engines or [conf.engine]),
            "settings": redact(settings)[0]}


def run_engines(ctx: RunContext) -> list[str]:
    """The engines the run's stages ran on, in order (the demo generator's ``deltalake`` aside)."""
    found: list[str] = []
    for record in ctx.summary.stages:
        if record.stage != GENERATE_STAGE and record.engine not in found:
            found.append(record.engine)
    return found


def feature_record(conf: Conf) -> dict[str, Any]:
    """The definition file's text and its compiled hash; the text is what a replay uses, so a
    file edited since the run does not change the replay."""
    from pathlib import Path

    from engine.features.definitions import definition_hash, load_feature_set

    if conf.features is None:
        return {"path": None, "error": "features: null (no definition file)"}
    path = conf.resolve(conf.features)
    try:
        text = Path(path).read_text()
        definition = load_feature_set(path)
    except (OSError, ConfError) as exc:  # jobs that do not use features still get a manifest
        return {"path": path, "error": str(exc)}
    return {"name": definition.name, "hash": definition_hash(definition), "path": path, "yaml": text}


def collect_io(ctx: RunContext) -> tuple[list[InputVersion], dict[str, dict[str, Any]], list[dict[str, str]]]:
    """(inputs, outputs, models) of a run, from its summary and the lineage of what it wrote."""
    from engine.lineage import read_lineage

    outputs: dict[str, dict[str, Any]] = {}
    generated: set[str] = set()
    for record in ctx.summary.stages:
        for name, version in record.written.items():
            path = record.outputs.get(name)
            if path is not None:
                outputs[name] = {"path": path, "version": int(version), "engine": record.engine}
                if record.stage == GENERATE_STAGE:
                    generated.add(name)
    inputs: dict[str, InputVersion] = {}
    models: dict[str, dict[str, str]] = {}
    options = dict(ctx.conf.storage_options)
    computed = {name: where for name, where in outputs.items() if name not in generated}
    for name, where in computed.items():
        meta = read_lineage(where["path"], where["version"], options)
        paths = json.loads(meta.get("input_paths", "{}"))
        for table, version in json.loads(meta.get("inputs", "{}")).items():
            path = paths.get(table)
            if path is not None and path not in {o["path"] for o in computed.values()}:
                inputs.setdefault(path, InputVersion(table, path, int(version)))
        for model in json.loads(meta.get("models", "[]")):
            models.setdefault(f"{model['name']}/{model['version']}", model)
    # Demo tables the run generated and then read are its inputs, not what it computed (a
    # generate job alone keeps them as its outputs).
    read_paths = {i.path for i in inputs.values()}
    outputs = {name: where for name, where in outputs.items()
               if not (name in generated and where["path"] in read_paths)}
    for record in ctx.summary.stages:  # models a run registered (train)
        for key, value in record.outputs.items():
            if key.startswith("model "):
                name, _, version = key.removeprefix("model ").partition("/")
                models.setdefault(f"{name}/{version}", {"role": "trained", "name": name,
                                                        "version": version, "registry": value})
    return sorted(inputs.values(), key=lambda i: i.name), outputs, list(models.values())


def build_manifest(ctx: RunContext, job: str, argv: list[str]) -> Manifest:
    from engine.training.registry import git_commit
    from engine.conf import REPO_ROOT

    conf_dict, redacted = redact(dataclasses.asdict(ctx.conf))
    argv_out = [redact_argument(a) for a in argv]
    inputs, outputs, models = collect_io(ctx)
    return Manifest(
        run_id=ctx.run_id, job=job, argv=argv_out,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        conf=conf_dict, redacted=redacted, inputs=inputs, outputs=outputs,
        features=feature_record(ctx.conf), models=models,
        engine=engine_settings(ctx.conf, run_engines(ctx)),
        lakescore={"version": lakescore_version(), "git_commit": git_commit(REPO_ROOT)},
        runtime=runtime_versions())


def manifest_uri(conf: Conf, run_id: str) -> str:
    return conf.lakehouse_path("runs", run_id, MANIFEST_NAME)


def write_manifest(ctx: RunContext, job: str, argv: list[str]) -> str:
    """Write the run's manifest through the storage layer (local or object store); its URI."""
    from engine.storage.files import write_text

    manifest = build_manifest(ctx, job, argv)
    uri = manifest_uri(ctx.conf, ctx.run_id)
    return str(write_text(uri, manifest.to_json(), dict(ctx.conf.storage_options)))


def read_manifest(uri: str, storage_options: dict[str, str] | None = None) -> Manifest:
    """A manifest written by this lakescore version; ``ManifestMismatch`` (exit 2) for another's."""
    from engine.errors import ManifestMismatch
    from engine.storage.files import read_text

    manifest = Manifest.from_json(read_text(uri, storage_options), uri)
    current = lakescore_version()
    if manifest.lakescore.get("version") != current:
        raise ManifestMismatch(
            f"manifest {uri} was written by lakescore {manifest.lakescore.get('version')} "
            f"(commit {manifest.lakescore.get('git_commit', 'unknown')[:12]}), this is lakescore "
            f"{current}: a replay would not run the same code. Replay it with lakescore "
            f"{manifest.lakescore.get('version')} (pip install lakescore=={manifest.lakescore.get('version')} "
            "or a checkout of that commit).")
    return manifest
