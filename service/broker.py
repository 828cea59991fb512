"""The Celery client shared by the API (publisher) and the workers (consumer).

One configuration for both sides, so the API can publish ``trials.run`` by name
without importing any worker code (or torch). Reliability choices, from
RELIABILITY.md: JSON only (nothing is unpickled), late acks and re-queue on worker
loss, prefetch 1 (a trial is long; a prefetched one would wait behind it), a
visibility timeout longer than the longest trial.

The embedded default is kombu's file-system transport: real Celery/kombu, works
across processes on one machine, needs no server. The database, not the broker, is
the source of truth: a message lost with the broker is published again by the
reconciler.
"""

from __future__ import annotations

import functools
from typing import Any

from celery import Celery

from service.config import Settings, get_settings

RUN_TRIAL = "trials.run"


def celery_config(settings: Settings) -> dict[str, Any]:
    transport: dict[str, Any] = {"visibility_timeout": settings.VISIBILITY_TIMEOUT_S}
    if settings.broker_url.startswith("filesystem"):
        folder = settings.broker_dir
        for sub in ("queue", "processed", "control"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        transport = {
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "processed_folder": str(folder / "processed"),
            # kombu's default is ./control, relative to wherever the process started
            "control_folder": str(folder / "control"),
            "store_processed": False,
        }
    return {
        "broker_url": settings.broker_url,
        "broker_transport_options": transport,
        "broker_connection_retry_on_startup": True,
        "broker_connection_timeout": 3,
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_serializer": "json",
        "task_ignore_result": True,
        "result_backend": None,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_default_queue": settings.QUEUE,
        "task_soft_time_limit": settings.TRIAL_SOFT_TIME_LIMIT_S,
        "task_time_limit": settings.TRIAL_SOFT_TIME_LIMIT_S + 300,
        "worker_prefetch_multiplier": 1,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "worker_hijack_root_logger": False,
        "worker_send_task_events": False,
    }


def make_celery(settings: Settings | None = None) -> Celery:
    settings = settings or get_settings()
    app = Celery("optserve")
    app.conf.update(celery_config(settings))
    return app


@functools.cache
def get_celery() -> Celery:
    return make_celery()


def publish_trial(job_id: str, slot: int) -> None:
    """Publish one ``trials.run`` message; raises when the broker is unreachable."""
    get_celery().send_task(
        RUN_TRIAL,
        args=[job_id, slot],
        retry=True,
        retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5},
    )


def broker_reachable() -> bool:
    try:
        with get_celery().connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        return True
    except Exception:
        return False
