"""`make notebook`: JupyterLab (an optional extra, installed on first use) on 127.0.0.1 only,
behind a token."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_make_notebook_serves_jupyterlab_on_loopback_behind_a_token(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    token = os.urandom(12).hex()
    log = (tmp_path / "jupyter.log").open("w")
    server = subprocess.Popen(["make", "-s", "notebook"], cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                              env=dict(os.environ, PORT=str(port), TOKEN=token), start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and server.poll() is None:
            try:
                if _status(f"{base}/api/status?token={token}") == 200:
                    break
                time.sleep(1)
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(1)
        else:
            raise AssertionError((tmp_path / "jupyter.log").read_text()[-3000:])
        assert _status(f"{base}/api/status") == 403  # no token, no access
        assert _status(f"{base}/api/contents/notebooks?token={token}") == 200
        listening = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True).stdout
        if listening.strip():  # ss is there: every socket on the port is loopback
            assert all("127.0.0.1:" in line for line in listening.strip().splitlines()), listening
    finally:
        os.killpg(server.pid, 15)
        server.wait(30)
        log.close()
