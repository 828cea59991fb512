"""The Celery worker's logs: our format (``service.logs``) and each task's context.

Connecting ``setup_logging`` turns Celery's own logging setup off; ours runs instead,
in the main process and again in each prefork child. Around each task, its id (and,
for ``trials.run``, the job and slot from its arguments) is bound from
``task_prerun`` to ``task_postrun``, so Celery's "Task … succeeded" line names the
job too; ``run_trial`` adds the attempt and the Optuna trial number inside.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from celery.signals import setup_logging, task_postrun, task_prerun

from service import logs

_bound: dict[str, AbstractContextManager[None]] = {}


@setup_logging.connect
def _configure(**_: Any) -> None:
    logs.configure("worker", optuna=True)


@task_prerun.connect
def _bind_task(task_id: str, task: Any, args: Any = None, **_: Any) -> None:
    fields: dict[str, Any] = {"task_id": task_id}
    if task.name == "trials.run" and args and len(args) >= 2:
        fields.update(job_id=str(args[0]), slot=args[1])
    context = logs.bind(**fields)
    context.__enter__()
    _bound[task_id] = context


@task_postrun.connect
def _unbind_task(task_id: str, **_: Any) -> None:
    context = _bound.pop(task_id, None)
    if context is not None:
        context.__exit__(None, None, None)
