"""What every benchmark in ``bench/`` uses, once: the child runner, timing, checksums, the header, results.

Each contender runs in its own child process (``run_child``) so that one engine's JVM, caches and
threads never slow another's; the parent only generates data, starts children, checks their
answers and prints. A child reports one JSON object on a line starting with ``RESULT `` (``report``);
all its output also goes to a log file, so a failing child leaves its traceback where the report
can point to it. A script run by another (``bench/run.py``) ends the same way, with its results.
Each script writes its table and JSON with ``write_results`` under ``bench/results/``."""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "bench" / "results"
RESULT_PREFIX = "RESULT "
LIBRARIES = ("pyspark", "dask", "distributed", "deltalake", "pyarrow", "pandas", "numpy", "duckdb",
             "h2o", "JPype1", "polars")


def child_env() -> dict[str, str]:
    """The parent's environment with loopback binding and this venv's Python on Spark's workers.

    ``LAKESCORE_DELTA_JARS`` is dropped so every run measures the same (deltalake) write path.
    """
    env = {k: v for k, v in os.environ.items() if k != "LAKESCORE_DELTA_JARS"}
    env.update({"SPARK_LOCAL_IP": "127.0.0.1", "PYSPARK_PYTHON": sys.executable,
                "PYSPARK_DRIVER_PYTHON": sys.executable, "PYTHONPATH": str(REPO)})
    return env


def run_child(argv: Sequence[str], log: Path, timeout: float, echo: str | None = None) -> dict[str, Any]:
    """Run ``argv`` (a Python script and its options) and return its ``RESULT`` object.

    The child's stderr and stdout go to ``log`` as they come (and its stdout to this process's
    too, each line after ``echo``, unless ``echo`` is None). The returned object always carries
    ``wall_s`` (measured here, around the whole process: interpreter, imports, engine start-up
    and work) and ``ok``; a child that exits non-zero, reports nothing or outlives ``timeout``
    (it is killed) gets ``ok`` False and an ``error`` with the tail of its log instead of an
    exception, so one broken contender never costs the rest of the run.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_bytes(b"")
    prefix = RESULT_PREFIX.encode()
    found: bytes | None = None
    start = time.perf_counter()
    with log.open("ab") as out:  # append mode: the child's stderr and our copy of its stdout interleave
        proc = subprocess.Popen([sys.executable, *argv], stdout=subprocess.PIPE, stderr=out,
                                env=child_env(), cwd=REPO)
        watchdog = threading.Timer(timeout, proc.kill)  # a silent hang ends too
        watchdog.start()
        try:
            assert proc.stdout is not None
            for line in proc.stdout:  # bytes: Dask's progress bar redraws with '\r'
                out.write(line)
                out.flush()
                if line.startswith(prefix):
                    found = line
                elif echo is not None:
                    sys.stdout.buffer.write(echo.encode() + line)
                    sys.stdout.flush()
            code = proc.wait()
        finally:
            watchdog.cancel()
    wall = time.perf_counter() - start
    result = json.loads(found[len(prefix):]) if found else {}
    if code != 0 or found is None:
        reason = f"timed out after {timeout:.0f} s" if code < 0 and wall >= timeout else f"exit {code}"
        result.update(ok=False, error=f"{reason}; log {log}: " + tail(log))
    result.setdefault("ok", True)
    result["wall_s"] = wall
    return result


def tail(path: Path, lines: int = 12) -> str:
    text = path.read_text(errors="replace").strip().splitlines()
    return " | ".join(text[-lines:])


def report(result: dict[str, Any]) -> None:
    """A child's last word: the one line its parent reads."""
    print(RESULT_PREFIX + json.dumps(result, default=float), flush=True)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """(seconds ``fn()`` took, what it returned)."""
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def spread(seconds: Sequence[float]) -> dict[str, Any]:
    """Min and median of repetitions (the figures every table uses), with every value kept."""
    return {"min": min(seconds), "median": statistics.median(seconds), "all": list(seconds)}


def exact_sum(values: Any) -> float:
    """The correctly rounded sum (``math.fsum``): independent of order and of how an engine
    split the rows, so two engines that computed the same scores report the same checksum."""
    import numpy as np

    return math.fsum(np.asarray(values, dtype="float64").tolist())


def delta_files(path: str | Path) -> list[str]:
    """The data files of a Delta table's current version (local paths)."""
    from deltalake import DeltaTable

    return [u.removeprefix("file://") for u in DeltaTable(str(path)).file_uris()]


def peak_rss_mib(pid: int) -> float | None:
    """A process's peak resident memory (``VmHWM``), None if it is gone. Not ``ru_maxrss``:
    Linux carries a parent's peak across fork + exec into it, so a child would report the
    generating parent's peak as its own."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def own_peak_mib() -> float | None:
    """This process's peak resident memory: what ``Client.run`` asks each Dask worker."""
    return peak_rss_mib(os.getpid())


def engine_peaks_mib(kind: str, engine: Any) -> dict[str, Any]:
    """Peak resident memory (MiB) of every process an engine runs in: this Python process, plus
    Spark's JVM (the driver and, in local mode, the executors) or each Dask worker."""
    peaks: dict[str, Any] = {"python": own_peak_mib()}
    if kind == "spark":
        proc = getattr(engine.sparkContext._gateway, "proc", None)
        peaks["jvm"] = peak_rss_mib(proc.pid) if proc is not None else None
    elif kind == "dask":
        peaks["workers"] = sorted(engine.run(own_peak_mib).values())
    return peaks


def tree_cpu_seconds() -> float:
    """CPU seconds (user + system) this process and every live descendant have used so far:
    Spark's JVM, Dask's nannies and workers (and the in-process scheduler), DuckDB's threads.
    The difference around a run is what the run cost the machine, which a busy machine's
    queueing does not inflate as it does the wall time."""
    import psutil

    me = psutil.Process()
    total = 0.0
    for proc in [me, *me.children(recursive=True)]:
        try:
            used = proc.cpu_times()
        except psutil.Error:  # gone between the listing and the read
            continue
        total += used.user + used.system
    return total


def close(a: float, b: float, rel: float) -> bool:
    return abs(a - b) <= rel * max(abs(a), abs(b), 1.0)


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def _ram_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return float("nan")


def _java_version() -> str:
    from engine.environment import java_version

    return java_version()[0]


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short=8", "HEAD"], capture_output=True,
                             text=True, cwd=REPO, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, cwd=REPO, timeout=10).stdout.strip()
        return (out.stdout.strip() or "?") + ("+" if dirty else "")
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def machine() -> dict[str, Any]:
    """What a reader needs to compare a result with another machine's."""
    from engine.manifest import library_versions

    versions = library_versions(LIBRARIES)
    return {"cpu": _cpu_model(), "cores": os.cpu_count(), "ram_gib": round(_ram_gib(), 1),
            "java": _java_version(), "python": platform.python_version(),
            "platform": platform.platform(), "versions": versions, "lakescore": _git_commit(),
            "load_average_start": load_average()}


def header_lines(facts: dict[str, Any]) -> list[str]:
    versions = ", ".join(f"{k} {v}" for k, v in facts["versions"].items())
    return [f"CPU {facts['cpu']}, {facts['cores']} cores, {facts['ram_gib']} GiB RAM; "
            f"{facts['platform']}",
            f"Java: {facts['java']}; Python {facts['python']}; lakescore {facts['lakescore']}",
            f"Libraries: {versions}",
            f"Load average at start (1/5/15 min): {facts['load_average_start']}"]


def fmt(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_results(name: str, stamp: str, text: str, facts: dict[str, Any], result: dict[str, Any]) -> Path:
    """``bench/results/<name>-<stamp>.md`` (the printed table) and ``.json`` (machine + result)."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    base = RESULTS_DIR / f"{name}-{stamp}"
    base.with_suffix(".md").write_text(text + "\n")
    base.with_suffix(".json").write_text(json.dumps({"machine": facts, **result}, indent=1, default=str))
    print(f"wrote {base}.md and .json")
    return base


def begin(workdir: Path | None, prefix: str) -> tuple[Path, dict[str, Any], str]:
    """A script's work directory (a new temporary one unless given), the machine's facts
    (printed as the header) and the UTC stamp that names its results."""
    import tempfile
    from datetime import datetime, timezone

    work = workdir or Path(tempfile.mkdtemp(prefix=prefix))
    facts = machine()
    print("\n".join("# " + line for line in header_lines(facts)), flush=True)
    return work, facts, datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
