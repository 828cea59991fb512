"""A fork from the worker's main process never copies the heartbeat's SQLite write lock.

SQLite keeps its lock bookkeeping per process; ``fork`` copies it. A pool child forked
while the heartbeat thread held the write lock could never write (every transaction
ended in "database is locked"). The control case shows that with plain SQLite; the
other shows that the heartbeat's fork guard prevents it.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import pytest

from workers import presence


def _child_can_write(db: Path) -> bool:
    """Fork; the child opens its own connection and tries one write transaction."""
    pid = os.fork()
    if pid == 0:  # the child: report through the exit code, never return into pytest
        code = 1
        try:
            conn = sqlite3.connect(db, timeout=1.0, isolation_level=None)
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO t VALUES (2)")
            conn.execute("COMMIT")
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


def _fork_during_a_write(db: Path, guard: Callable[[], AbstractContextManager[object]]) -> bool:
    """A thread holds a write transaction (inside ``guard``) while the main thread forks."""
    conn = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE IF NOT EXISTS t (x INTEGER)")
    inside, done = threading.Event(), threading.Event()

    def heartbeat() -> None:
        with guard():
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO t VALUES (1)")
            inside.set()
            done.wait(0.5)  # the main thread forks meanwhile (or waits, with the guard)
            conn.execute("COMMIT")

    thread = threading.Thread(target=heartbeat)
    thread.start()
    inside.wait(5)
    try:
        return _child_can_write(db)
    finally:
        done.set()
        thread.join()
        conn.close()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork with threads running
def test_control_a_child_forked_during_a_write_cannot_write(tmp_path: Path) -> None:
    assert not _fork_during_a_write(tmp_path / "control.db", nullcontext)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_the_fork_guard_makes_the_fork_wait_for_the_heartbeat(tmp_path: Path) -> None:
    assert _fork_during_a_write(tmp_path / "guarded.db", lambda: presence._FORK_GUARD)
