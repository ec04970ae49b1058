"""A real Prometheus pushgateway for tests, on 127.0.0.1 and a free port, and its series."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def pushgateway() -> Iterator[str]:
    """Start ``prometheus-pushgateway`` (Debian package; `make setup-ops` installs it), yield its
    ``host:port``, stop it. Each starts empty: Debian's build persists to, and loads from,
    /var/lib/prometheus/pushgateway.data by default, which would hand one test (or the other
    test process) the series another pushed."""
    binary = shutil.which("prometheus-pushgateway") or shutil.which("pushgateway")
    if binary is None:
        pytest.fail("prometheus-pushgateway is not installed: run `make setup-ops`")
    address = f"127.0.0.1:{free_port()}"
    store = Path(tempfile.mkdtemp(prefix="pushgateway-")) / "metrics.data"
    process = subprocess.Popen([binary, f"--web.listen-address={address}", f"--persistence.file={store}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://{address}/-/ready", timeout=2).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"pushgateway did not start on {address}: "
                                       f"{process.stderr.read().decode()[-2000:]}") from None
                time.sleep(0.2)
        yield address
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(store.parent, ignore_errors=True)


def series(address: str) -> list[tuple[str, dict[str, str], float]]:
    """Every sample the gateway serves on /metrics as (name, labels, value), lakescore's only."""
    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(f"http://{address}/metrics", timeout=10).read().decode()
    return [(s.name, dict(s.labels), s.value) for family in text_string_to_metric_families(text)
            for s in family.samples if s.name.startswith("lakescore_")]
