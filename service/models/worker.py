"""Worker presence: each Celery worker process says it is alive, busy or not.

Trial slots only show workers that are running a trial; this table also shows the idle
ones, so ``/metrics`` can report capacity next to load. A worker writes its row when it
is ready, refreshes ``heartbeat_at`` every ``OPTSERVE_HEARTBEAT_INTERVAL_S`` and deletes
it on a clean shutdown; a killed worker's row goes stale and stops counting.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from service.db import Base
from service.models._types import timestamp


class WorkerPresence(Base):
    __tablename__ = "workers"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)  # Celery node name
    hostname: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    concurrency: Mapped[int] = mapped_column(Integer)  # trials it runs at once
    started_at: Mapped[dt.datetime] = timestamp(nullable=False)
    heartbeat_at: Mapped[dt.datetime] = timestamp(nullable=False)
