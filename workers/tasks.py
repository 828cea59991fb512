"""Thin Celery tasks: IDs in, the logic lives in ``trial_runner`` (Celery testing guide)."""

from __future__ import annotations

import os
import socket

from workers.celery_app import app
from workers.trial_runner import run_trial


@app.task(name="trials.run", acks_late=True, reject_on_worker_lost=True)
def run(job_id: str, slot: int) -> str:
    return run_trial(job_id, int(slot), worker=f"{socket.gethostname()}:{os.getpid()}")
