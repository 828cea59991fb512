"""Our tables. Optuna's live elsewhere (own schema or file) and are never mapped here."""

from service.models.dataset import UploadedDataset
from service.models.job import Job, JobEvent, JobStatus
from service.models.tenant import ApiKey, Tenant
from service.models.trial import CurvePoint, SlotStatus, TrialRun, TrialSlot, TrialState
from service.models.worker import WorkerPresence

__all__ = [
    "ApiKey",
    "CurvePoint",
    "Job",
    "JobEvent",
    "JobStatus",
    "SlotStatus",
    "Tenant",
    "TrialRun",
    "TrialSlot",
    "TrialState",
    "UploadedDataset",
    "WorkerPresence",
]
