"""Real clusters of separate processes for the cluster tests, on 127.0.0.1 and free ports.

Every server runs in a directory of its own (not the checkout) with the Python of
``build/cluster-env`` (``scripts/cluster_env.sh``: lakescore installed from its wheel, no
``build/jars``), so whatever a job needs there must be shipped by the job itself. Each process
is started in a session of its own and stopped by its process group, children included (the
executors of a Spark worker, the worker under a Dask nanny).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
CLUSTER_ENV_SCRIPT = REPO / "scripts" / "cluster_env.sh"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}: {tail(log)}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s: {tail(log)}")


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def cluster_python() -> str:
    """The cluster env's python, created or refreshed by the project's own script."""
    out = subprocess.run(["bash", str(CLUSTER_ENV_SCRIPT)], capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        raise RuntimeError(f"scripts/cluster_env.sh failed: {out.stderr[-3000:]}")
    return out.stdout.strip().splitlines()[-1]


def server_env(python: str) -> dict[str, str]:
    """The environment of a cluster process: the repo's Java, loopback binding, and nothing
    that points at the checkout (no PYTHONPATH, no LAKESCORE_HOME)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "LAKESCORE_HOME", "PYSPARK_GATEWAY_PORT", "PYSPARK_GATEWAY_SECRET",
                        "SPARK_HOME", "PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON", "VIRTUAL_ENV")}
    env.update(SPARK_LOCAL_IP="127.0.0.1", PYSPARK_PYTHON=python,
               PATH=f"{Path(python).parent}:{env.get('PATH', '')}")
    return env


@dataclass
class Processes:
    """Processes this test session started, stopped by their own process group."""

    root: Path
    started: list[tuple[str, subprocess.Popen]] = field(default_factory=list)

    def start(self, name: str, argv: list[str], env: dict[str, str], cwd: Path | None = None) -> subprocess.Popen:
        log = self.root / f"{name}.log"
        workdir = cwd or (self.root / name)
        workdir.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            proc = subprocess.Popen(argv, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        self.started.append((name, proc))
        return proc

    def log(self, name: str) -> Path:
        return self.root / f"{name}.log"

    def stop(self) -> None:
        for _, proc in reversed(self.started):
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
        for _, proc in reversed(self.started):
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(10)
            # Children that outlived their parent in the same group (executors, workers).
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@dataclass
class SparkCluster:
    """A standalone master and workers (1 core, 1 GiB each) from the cluster env's pyspark."""

    master_url: str
    master: subprocess.Popen
    workers: list[subprocess.Popen]
    python: str
    ui_ports: list[int]

    def executors(self) -> list[psutil.Process]:
        """The executor JVMs the workers launched (``CoarseGrainedExecutorBackend``)."""
        found = []
        for worker in self.workers:
            for child in psutil.Process(worker.pid).children(recursive=True):
                try:
                    if any("CoarseGrainedExecutorBackend" in part for part in child.cmdline()):
                        found.append(child)
                except psutil.NoSuchProcess:
                    continue
        return found

    def submit_args(self) -> list[str]:
        """spark-submit options that run a job on this cluster with the cluster env's Python."""
        import sys

        return ["--master", self.master_url, "--conf", f"spark.pyspark.python={self.python}",
                "--conf", f"spark.pyspark.driver.python={sys.executable}",
                "--conf", "spark.executor.memory=900m", "--conf", "spark.cores.max=2",
                "--conf", "spark.executor.cores=1", "--conf", "spark.task.maxFailures=4"]


def start_spark_cluster(procs: Processes, python: str, workers: int = 2) -> SparkCluster:
    spark_home = subprocess.run([python, "-c", "import os, pyspark; print(os.path.dirname(pyspark.__file__))"],
                                capture_output=True, text=True, check=True).stdout.strip()
    env = server_env(python)
    env["SPARK_HOME"] = spark_home
    spark_class = f"{spark_home}/bin/spark-class"
    port, ui = free_port(), free_port()
    master = procs.start("spark-master", [spark_class, "org.apache.spark.deploy.master.Master",
                                          "--host", "127.0.0.1", "--port", str(port), "--webui-port", str(ui)], env)
    wait_for_port(port, master, procs.log("spark-master"))
    url = f"spark://127.0.0.1:{port}"
    started, ui_ports = [], [ui]
    for k in range(workers):
        name = f"spark-worker-{k}"
        worker_ui = free_port()
        work_dir = procs.root / name / "work"
        work_dir.mkdir(parents=True, exist_ok=True)
        started.append(procs.start(name, [spark_class, "org.apache.spark.deploy.worker.Worker", url,
                                          "--host", "127.0.0.1", "--cores", "1", "--memory", "1g",
                                          "--work-dir", str(work_dir), "--webui-port", str(worker_ui)], env))
        ui_ports.append(worker_ui)
    for k, worker in enumerate(started):
        wait_for_port(ui_ports[k + 1], worker, procs.log(f"spark-worker-{k}"))
    return SparkCluster(url, master, started, python, ui_ports)


@dataclass
class DaskCluster:
    address: str
    scheduler: subprocess.Popen
    workers: list[subprocess.Popen]
    python: str


def dask_worker(procs: Processes, python: str, address: str, name: str,
                env: dict[str, str] | None = None, max_file_bytes: int | None = None) -> subprocess.Popen:
    """A ``dask worker`` process (with its nanny); ``max_file_bytes`` caps the size of every file
    it writes (``prlimit --fsize``: a full or quota-limited disk, which root's permissions cannot
    stand in for)."""
    local = procs.root / name / "local"
    local.mkdir(parents=True, exist_ok=True)
    limit = ["prlimit", f"--fsize={max_file_bytes}"] if max_file_bytes else []
    return procs.start(name, [*limit, python, "-m", "dask", "worker", address, "--host", "127.0.0.1", "--nthreads", "1",
                              "--memory-limit", "1GiB", "--name", name, "--local-directory", str(local),
                              "--dashboard-address", "127.0.0.1:0"], env or server_env(python))


def start_dask_cluster(procs: Processes, python: str, workers: int = 2) -> DaskCluster:
    from distributed import Client

    port = free_port()
    env = server_env(python)
    scheduler = procs.start("dask-scheduler", [python, "-m", "dask", "scheduler", "--host", "127.0.0.1", "--port", str(port),
                                               "--dashboard-address", "127.0.0.1:0"], env)
    wait_for_port(port, scheduler, procs.log("dask-scheduler"))
    address = f"tcp://127.0.0.1:{port}"
    started = [dask_worker(procs, python, address, f"dask-worker-{k}", env) for k in range(workers)]
    with Client(address, timeout="60s") as client:
        client.wait_for_workers(workers, timeout=120)
    return DaskCluster(address, scheduler, started, python)


def start_h2o(procs: Processes, python: str, port: int) -> str:
    """H2O as its own JVM (the wheel's h2o.jar), bound to 127.0.0.1; its URL."""
    jar = subprocess.run([python, "-c", "import os, h2o; print(os.path.join(os.path.dirname(h2o.__file__), "
                                        "'backend', 'bin', 'h2o.jar'))"],
                         capture_output=True, text=True, check=True).stdout.strip()
    java = str(Path(os.environ["JAVA_HOME"]) / "bin" / "java") if os.environ.get("JAVA_HOME") else "java"
    proc = procs.start("h2o", [java, "-Xmx1g", "-jar", jar, "-ip", "127.0.0.1", "-port", str(port),
                               "-name", f"lakescore-test-{os.getpid()}", "-nthreads", "1",
                               "-log_dir", str(procs.root / "h2o" / "logs")], server_env(python))
    wait_for_port(port, proc, procs.log("h2o"), timeout=120)
    return f"http://127.0.0.1:{port}"


def listening_addresses(pids: list[int]) -> dict[str, set[str]]:
    """Every listening TCP socket of the processes ``pids`` and their descendants:
    ``{"<name> <pid>": {"ip:port", ...}}``."""
    out: dict[str, set[str]] = {}
    seen = set()
    for pid in pids:
        try:
            root = psutil.Process(pid)
            family = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        for proc in family:
            if proc.pid in seen:
                continue
            seen.add(proc.pid)
            try:
                conns = proc.net_connections(kind="inet")
                name = proc.name()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            listening = {f"{c.laddr.ip}:{c.laddr.port}" for c in conns if c.status == psutil.CONN_LISTEN}
            if listening:
                out[f"{name} {proc.pid}"] = listening
    return out
