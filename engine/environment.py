"""What every side of a run must agree on, checked before any work: the driver (or client) and
every executor (or worker) report their facts, the driver compares them, and a mismatch is an
``EnvironmentProblem`` (exit 7) naming the host, the check, the expected and the found value.

Facts are gathered by ``local_facts`` in whichever process runs it (the driver, a Spark Python
worker on an executor, a Dask worker), so one function describes every side. ``jobs.doctor``
prints all of them as a table; jobs run the cheap part (``check_java`` before a JVM starts, the
workers' package versions when a Dask client connects) before they read anything.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from engine.errors import EnvironmentProblem

JAVA_MAJOR = 17
"""Spark 4 needs Java >= 17 and H2O 3.46 refuses newer than 17: every JVM of a run is a 17."""

PACKAGES = ("pyarrow", "numpy", "pandas", "deltalake", "jpype")
"""Python packages whose versions must agree between the driver and its workers."""

AGREEMENT = {"python": 2, "pyarrow": 1, "numpy": 1, "pandas": 2, "deltalake": 2, "jpype": 1,
             "lakescore": 3}
"""How many leading parts of a version must be equal across the sides of a run: Arrow data and
pickled numpy/pandas objects cross between them, and a major version changes their formats."""


@dataclass(frozen=True)
class Finding:
    """One check on one side of a run: ``ok`` when ``found`` meets ``expected``."""

    host: str
    check: str
    expected: str
    found: str
    ok: bool

    def describe(self) -> str:
        return f"{self.host}: {self.check} expected {self.expected}, found {self.found}"


def _version(module: str) -> str:
    try:
        imported = __import__(module)
    except ImportError:
        return "missing"
    if module == "jpype":
        return getattr(imported, "__version__", "?")
    return str(getattr(imported, "__version__", "?"))


def java_executable() -> tuple[str | None, str]:
    """The ``java`` a JVM started from this process would run, and where that choice came
    from: ``$JAVA_HOME/bin/java`` when ``JAVA_HOME`` is set (Spark's launcher, JPype and
    ``h2o.init`` all prefer it), else the first ``java`` on ``PATH``."""
    home = os.environ.get("JAVA_HOME")
    if home:
        return str(Path(home) / "bin" / "java"), f"JAVA_HOME={home}"
    found = shutil.which("java")
    return found, "PATH"


def java_version() -> tuple[str, str]:
    """(version or a description of what is wrong, where the java came from)."""
    java, source = java_executable()
    if java is None:
        return "no java on PATH and JAVA_HOME is not set", source
    if not os.access(java, os.X_OK):
        return f"no executable {java}", source
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{java} -version failed: {exc}", source
    match = re.search(r'version "([^"]+)"', out.stderr + out.stdout)
    if out.returncode != 0 or match is None:
        first = (out.stderr or out.stdout).strip().splitlines()[:1]
        return f"{java} -version failed: {first[0] if first else 'exit ' + str(out.returncode)}", source
    return match.group(1), f"{java} ({source})"


def java_major(version: str) -> int | None:
    match = re.match(r"(?:1\.)?(\d+)", version)
    return int(match.group(1)) if match else None


def check_java(host: str = "driver") -> Finding:
    """The Java a new JVM would use here, as a finding (``JAVA_MAJOR`` expected)."""
    version, source = java_version()
    major = java_major(version)
    found = f"{version} at {source}" if major is not None else f"{version} ({source})"
    return Finding(host, "java", f"{JAVA_MAJOR} (Spark 4 needs >= 17, H2O 3.46 <= 17)", found,
                   major == JAVA_MAJOR)


def require_java(what: str) -> None:
    """Raise ``EnvironmentProblem`` before starting ``what`` (a JVM) with a Java it cannot use,
    naming the java found and where it came from, instead of the JVM launcher's own error."""
    finding = check_java()
    if not finding.ok:
        raise EnvironmentProblem(
            f"cannot start {what}: Java {JAVA_MAJOR} is needed, found {finding.found}; set "
            f"JAVA_HOME to a Java {JAVA_MAJOR} (e.g. the one `make setup` found, in build/env.sh) "
            "or unset it to use the java on PATH")


def host_name() -> str:
    return socket.gethostname()


def local_facts(jars: Iterable[str] = ()) -> dict[str, str]:
    """This process's facts: Python, the packages of ``PACKAGES``, lakescore's version and
    location, the Java a JVM would use, the scorer jars (``engine.scoring.jars``) and the host.
    Runs on any side: it imports nothing that a worker might lack."""
    facts = {"host": host_name(), "pid": str(os.getpid()), "cwd": os.getcwd(),
             "python": platform.python_version(), "executable": sys.executable}
    for name in PACKAGES:
        facts[name] = _version(name)
    try:
        from importlib.metadata import version as dist_version

        facts["lakescore"] = dist_version("lakescore")
    except Exception:  # noqa: BLE001 - a checkout on sys.path without a dist-info
        facts["lakescore"] = "checkout"
    import engine

    facts["lakescore_at"] = str(Path(engine.__file__).parent)
    version, source = java_version()
    facts["java"] = version
    facts["java_from"] = source
    try:
        from engine.scoring.jars import JARS_PROBLEM_ENV, scorer_jars

        found = scorer_jars(required=False)
        problem = os.environ.get(JARS_PROBLEM_ENV)
        facts["scorer_jars"] = (",".join(str(j) for j in found) if found
                                else f"error: {problem}" if problem else "missing")
    except Exception as exc:  # noqa: BLE001 - reported, not raised: this is a report
        facts["scorer_jars"] = f"error: {exc}"
    for jar in jars:
        facts[f"file {Path(jar).name}"] = "readable" if os.access(jar, os.R_OK) else f"cannot read {jar}"
    return facts


def compare(reference: Mapping[str, str], facts: Mapping[str, str], host: str,
            java: bool = True, jars: bool = False) -> list[Finding]:
    """Findings of one side against the driver's ``reference``: versions agree on their
    ``AGREEMENT`` leading parts; Java is ``JAVA_MAJOR`` (when ``java``); the scorer jars are
    there (when ``jars``); every ``file …`` fact says readable."""
    findings = []
    for check, parts in AGREEMENT.items():
        expected, found = reference.get(check, "?"), facts.get(check, "?")
        if check == "lakescore" and "checkout" in (expected, found):
            # A checkout has no version to compare: say where the code comes from instead.
            findings.append(Finding(host, "lakescore", "importable", f"{found} at {facts.get('lakescore_at')}", True))
            continue
        cut = lambda v: ".".join(v.split(".")[:parts])  # noqa: E731
        findings.append(Finding(host, check, f"{cut(expected)}.x (as on the driver: {expected})",
                                found, found != "missing" and cut(found) == cut(expected)))
    if java:
        major = java_major(facts.get("java", ""))
        findings.append(Finding(host, "java", str(JAVA_MAJOR),
                                f"{facts.get('java')} at {facts.get('java_from')}", major == JAVA_MAJOR))
    if jars:
        findings.append(Finding(host, "scorer jars", "lakescore-scorer.jar + h2o-genmodel.jar",
                                facts.get("scorer_jars", "?"), _jars_found(facts.get("scorer_jars"))))
    for key, value in facts.items():
        if key.startswith("file "):
            findings.append(Finding(host, key, "readable", value, value == "readable"))
    return findings


def _jars_found(fact: str | None) -> bool:
    return fact is not None and fact != "missing" and not fact.startswith("error:")


def probe_lakehouse(root: str, storage_options: Mapping[str, str], host: str) -> Finding:
    """Write, read back and delete a small file under the lakehouse root from this process,
    through the storage layer's filesystem (the same credentials deltalake gets)."""
    name = f"_lakescore_doctor/{host.replace('/', '_').replace(':', '_')}-{uuid.uuid4().hex[:8]}"
    payload = f"lakescore doctor from {host}".encode()
    try:
        from engine.storage.layout import filesystem
        from engine.storage.table import TableRef

        local = root.removeprefix("file://")
        fs, base = filesystem(TableRef("lakehouse", local if "://" in local else str(Path(local).resolve()),
                                       storage_options=dict(storage_options)))
        path = f"{base.rstrip('/')}/{name}"
        fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        with fs.open_output_stream(path) as out:
            out.write(payload)
        with fs.open_input_stream(path) as src:
            ok = src.read() == payload
        fs.delete_file(path)
        found = "read and written" if ok else "read back other bytes than written"
    except Exception as exc:  # noqa: BLE001 - the finding reports it
        ok, found = False, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return Finding(host, "lakehouse", f"{root} readable and writable", found, ok)


VERSIONS_ADVICE = "Install the same versions on every side (the driver's are expected)"
SCORER_ADVICE = ("Give each side named what it lacks (Java 17, room on its disk for the scorer jars "
                 "and the MOJO, the jars on its classpath)")


def raise_on_problems(findings: Iterable[Finding], what: str, advice: str = VERSIONS_ADVICE) -> None:
    """``EnvironmentProblem`` listing every failed finding (host, check, expected, found)."""
    failed = [f for f in findings if not f.ok]
    if failed:
        raise EnvironmentProblem(
            f"{what}: {len(failed)} check(s) failed: " + "; ".join(f.describe() for f in failed)
            + f". {advice}, or run `python -m jobs.doctor` for the full table")


def render(findings: Iterable[Finding]) -> str:
    """A fixed-width table: host, check, expected, found, ok/MISMATCH."""
    rows = [("host", "check", "expected", "found", "status")]
    rows += [(f.host, f.check, f.expected, f.found, "ok" if f.ok else "MISMATCH") for f in findings]
    widths = [min(max(len(r[i]) for r in rows), 60) for i in range(5)]
    return "\n".join("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows)
