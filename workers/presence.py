"""A Celery worker's presence row (``workers`` table): written when the worker is ready,
refreshed by a heartbeat thread, deleted on a clean shutdown.

It runs in the worker's main process, not in the pool children, so an idle worker is
seen too (trial slots only show busy ones). A killed worker's row stops being
refreshed: ``/metrics`` counts rows with a fresh heartbeat only, and the heartbeat of
any live worker deletes rows that have been stale for a day.
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
from service.db import session_scope
from service.models import WorkerPresence
from service.models._types import utcnow

log = logging.getLogger(__name__)

FORGET_AFTER = dt.timedelta(days=1)


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
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="optserve-presence", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval_s + 5)
        with session_scope() as session:
            leave(session, self.name)

    def _run(self) -> None:
        while True:
            try:
                with session_scope() as session:
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
