"""A Celery worker's presence row (``workers`` table): written when the worker is ready,
refreshed by a heartbeat thread, deleted on a clean shutdown.

It runs in the worker's main process, not in the pool children, so an idle worker is
seen too (trial slots only show busy ones). A killed worker's row stops being
refreshed: ``/metrics`` counts rows with a fresh heartbeat only, and the heartbeat of
any live worker deletes rows that have been stale for a day.

Because the heartbeat writes from the process that forks the pool children, no fork
may happen while it is in a transaction: SQLite keeps its lock bookkeeping per process
and ``fork`` copies it, so a child forked while the heartbeat held the write lock got
"database is locked" on every write, for good (seen in CI: the child that replaced a
killed trial process failed every retry). Forks wait for the beat to finish, and the
forking process closes its pooled connections first (:func:`_before_fork`).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
from typing import Any

from celery.signals import worker_ready, worker_shutdown
from sqlalchemy import delete, update
from sqlalchemy.orm import Session

from service.config import get_settings
from service.db import dispose_engines, session_scope
from service.models import WorkerPresence
from service.models._types import utcnow

log = logging.getLogger(__name__)

FORGET_AFTER = dt.timedelta(days=1)

# Held by the heartbeat for each transaction, and across every fork of this process.
_FORK_GUARD = threading.Lock()


def beat(session: Session, name: str, concurrency: int) -> None:
    """Refresh this worker's row (create it the first time) and forget long-dead ones."""
    now = utcnow()
    updated = session.execute(
        update(WorkerPresence)
        .where(WorkerPresence.name == name)
        .values(heartbeat_at=now, concurrency=concurrency)
    )
    if updated.rowcount == 0:  # type: ignore[attr-defined]
        session.add(
            WorkerPresence(
                name=name,
                hostname=socket.gethostname(),
                pid=os.getpid(),
                concurrency=concurrency,
                started_at=now,
                heartbeat_at=now,
            )
        )
    session.execute(delete(WorkerPresence).where(WorkerPresence.heartbeat_at < now - FORGET_AFTER))


def leave(session: Session, name: str) -> None:
    session.execute(delete(WorkerPresence).where(WorkerPresence.name == name))


class Presence:
    """The heartbeat thread of one worker process."""

    def __init__(self, name: str, concurrency: int, interval_s: float) -> None:
        self.name, self.concurrency, self.interval_s = name, concurrency, interval_s
        self.pid = os.getpid()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="optserve-presence", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval_s + 5)
        with _FORK_GUARD, session_scope() as session:
            leave(session, self.name)

    def _run(self) -> None:
        while True:
            try:
                with _FORK_GUARD, session_scope() as session:
                    beat(session, self.name, self.concurrency)
            except Exception:
                log.warning("worker presence heartbeat failed; retrying", exc_info=True)
            if self._stop.wait(self.interval_s):
                return


_current: list[Presence] = []


@worker_ready.connect
def _arrive(sender: Any = None, **_: Any) -> None:
    settings = get_settings()
    name = str(getattr(sender, "hostname", None) or f"{socket.gethostname()}:{os.getpid()}")
    controller = getattr(sender, "controller", None)
    concurrency = int(getattr(controller, "concurrency", None) or settings.WORKER_CONCURRENCY)
    presence = Presence(name, concurrency, settings.HEARTBEAT_INTERVAL_S)
    presence.start()
    _current.append(presence)


@worker_shutdown.connect
def _leave(**_: Any) -> None:
    while _current:
        try:
            _current.pop().stop()
        except Exception:
            log.warning("could not remove this worker's presence row", exc_info=True)


def _before_fork() -> None:
    """Wait for the heartbeat's transaction; in the heartbeat's process, close the
    pooled connections, so that no SQLite state crosses the fork."""
    _FORK_GUARD.acquire()
    if any(presence.pid == os.getpid() for presence in _current):
        dispose_engines()


def _after_fork() -> None:
    _FORK_GUARD.release()


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork, after_in_child=_after_fork)
