"""A job's event stream (``GET /v1/jobs/{id}/events``): the ``data:`` of each message.

Every message carries the envelope (``seq``, ``type``, ``job_id``, ``at``) and, next to it,
the fields of its type:

- ``job.started`` {}
- ``trial.started`` {trial, slot, attempt, optimizer, params, hyperparameters, source}
- ``trial.epoch`` {trial, epoch, step, examples, wall_time, train_loss, val_loss, value, lr,
  metrics}
- ``trial.finished`` {trial, state, value, reason, diverged, duration_s}
- ``job.updated`` {n_trials, max_parallel}
- ``job.cancel_requested`` {}
- ``job.finished`` {status, error, best_value}

Non-finite floats are ``null`` (JSON has no NaN). ``seq`` counts from 1 per job with no
gaps, so ``Last-Event-ID: n`` resumes exactly after event ``n``.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

EventType = Literal[
    "job.started",
    "trial.started",
    "trial.epoch",
    "trial.finished",
    "job.updated",
    "job.cancel_requested",
    "job.finished",
]
EVENT_TYPES: frozenset[str] = frozenset(get_args(EventType))

JOB_FINISHED: EventType = "job.finished"
"""The last event of a job: a following stream closes after sending it."""

EventCursor = Annotated[int, Field(ge=0, le=2**31 - 1)]
"""A ``Last-Event-ID``: the ``seq`` of the last event the client has (0 = none yet)."""


class EventRead(BaseModel):
    """The JSON ``data:`` of one event: the envelope plus its type's fields (see above).

    Extra fields are allowed (they are the payload), unlike request models: a client
    built against this version keeps working when an event gains a field.
    """

    model_config = ConfigDict(extra="allow")

    seq: int = Field(ge=1)
    type: EventType
    job_id: uuid.UUID
    at: dt.datetime

    @property
    def payload(self) -> dict[str, Any]:
        """The type's fields, without the envelope."""
        return dict(self.model_extra or {})
