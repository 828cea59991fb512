"""``POST /v1/recommendations``."""

from __future__ import annotations

from fastapi import APIRouter

from api_schemas.recommendations import RecommendationCreate, RecommendationList
from service.auth import Authenticated
from service.deps import SessionDep
from service.recommend import service as recommend_service

router = APIRouter(prefix="/v1/recommendations", tags=["recommendations"])


@router.post("")
def create_recommendations(
    body: RecommendationCreate, session: SessionDep, subject: Authenticated
) -> RecommendationList:
    """Ranked (optimizer, hyperparameters, schedule) for a task, learnt from past jobs.

    Only the caller's own completed jobs and jobs an admin marked shared are used.
    Read-only: a ``jobs:read`` key suffices.
    """
    subject.require("jobs:read")
    return recommend_service.recommend(session, subject, body)
