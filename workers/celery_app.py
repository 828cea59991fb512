"""The Celery worker application: the shared broker config plus our tasks.

Engines (ours and Optuna's) are keyed by process ID and created lazily, so a prefork
child never reuses a connection inherited from its parent (RELIABILITY D4). On SQLite
the worker refuses more than one concurrent trial, since SQLite does not take parallel
writers well (D3).
"""

from __future__ import annotations

from typing import Any

from celery.signals import worker_init

from service.broker import make_celery
from service.config import get_settings
from workers import (
    log_context,  # noqa: F401  (our log format, each task's log context)
    presence,  # noqa: F401  (the worker's row in ``workers``, for /metrics)
)

app = make_celery()
app.conf.include = ["workers.tasks"]


@worker_init.connect
def _refuse_parallel_sqlite(**_: Any) -> None:
    settings = get_settings()
    if settings.is_sqlite and settings.WORKER_CONCURRENCY > 1:
        raise SystemExit(
            "SQLite mode requires OPTSERVE_WORKER_CONCURRENCY=1; "
            "use PostgreSQL (OPTSERVE_DATABASE_URL) for parallel trials"
        )
