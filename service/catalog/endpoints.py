"""Read-only catalogues, generated from the registries (no database)."""

from __future__ import annotations

from fastapi import APIRouter

from api_schemas import DatasetRead, ModelRead, OptimizerRead, ScheduleRead
from api_schemas.optimizers import list_optimizer_reads, list_schedule_reads
from service.auth import Authenticated
from service.catalog.reads import dataset_reads, model_reads
from service.datasets.service import upload_reads
from service.deps import SessionDep

router = APIRouter(prefix="/v1", tags=["catalogue"])


@router.get("/optimizers")
def list_optimizers(_subject: Authenticated) -> list[OptimizerRead]:
    """Optimizers with their hyperparameters, domains, defaults and default search spaces."""
    return list_optimizer_reads()


@router.get("/schedules")
def list_schedules(_subject: Authenticated) -> list[ScheduleRead]:
    """Learning-rate schedules and their parameters."""
    return list_schedule_reads()


@router.get("/models")
def list_models(_subject: Authenticated) -> list[ModelRead]:
    """Models a job may train, with their parameters."""
    return model_reads()


@router.get("/datasets")
def list_datasets(subject: Authenticated, session: SessionDep) -> list[DatasetRead]:
    """Built-in datasets, then the caller's uploads, with meta-features and metrics."""
    return dataset_reads() + upload_reads(session, subject)
