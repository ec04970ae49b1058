"""Test hooks just before a commit, after the batch's files are written (atomicity and
deterministic race tests). Unset, they cost one environment lookup per commit.

``LAKESCORE_TEST_KILL_BEFORE_COMMIT=<table>``: SIGKILL this process (a dead writer leaves the
table unchanged). ``LAKESCORE_TEST_COMMIT_GATE=<table>:<dir>``: create
``<dir>/ready-<pid>-<thread name>`` and wait until ``<dir>/go-<pid>-<thread name>`` exists, so a
test can hold one writer after it computed its batch from a version until a rival has
committed: the conflict then happens every time, without sleeping and hoping.
"""

from __future__ import annotations

import os
import signal
import threading
import time

from engine.storage.table import TableRef

KILL_BEFORE_COMMIT_ENV = "LAKESCORE_TEST_KILL_BEFORE_COMMIT"
COMMIT_GATE_ENV = "LAKESCORE_TEST_COMMIT_GATE"
COMMIT_GATE_TIMEOUT_S = 600


def before_commit(table: TableRef) -> None:
    """Run the hooks set for ``table`` (see the module's docstring); nothing when unset."""
    if os.environ.get(KILL_BEFORE_COMMIT_ENV) == table.name:
        os.kill(os.getpid(), signal.SIGKILL)
    name, _, gate = os.environ.get(COMMIT_GATE_ENV, "").partition(":")
    if gate and name == table.name:
        _wait_at_gate(gate)


def _wait_at_gate(gate: str) -> None:
    me = f"{os.getpid()}-{threading.current_thread().name}"
    with open(os.path.join(gate, f"ready-{me}"), "w"):
        pass
    deadline = time.monotonic() + COMMIT_GATE_TIMEOUT_S
    while not os.path.exists(os.path.join(gate, f"go-{me}")):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{COMMIT_GATE_ENV}: nobody opened the gate {gate} for {me}")
        time.sleep(0.05)
