"""Settings: one ``BaseSettings`` class, env prefix ``OPTSERVE_``.

With nothing set, everything runs on one machine (the embedded default): a SQLite file
and a file-system broker under ``DATA_DIR``. Setting ``DATABASE_URL`` and ``BROKER_URL``
moves the same code onto PostgreSQL and Redis.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_SECRET = "optserve-dev-secret-changethis"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OPTSERVE_", env_ignore_empty=True, extra="ignore")

    ENV: Literal["development", "testing", "production"] = "development"
    DATA_DIR: Path = Path(".optserve")
    DATABASE_URL: str | None = None  # default: sqlite:///DATA_DIR/optserve.db
    OPTUNA_STORAGE_URL: str | None = None  # default: own file (SQLite) or own schema (PostgreSQL)
    OPTUNA_SCHEMA: str = "optuna"
    BROKER_URL: str | None = None  # default: filesystem:// under DATA_DIR/broker
    QUEUE: str = "optserve.trials"

    SECRET_KEY: str = DEV_SECRET  # HMAC key for API-key hashes
    BOOTSTRAP_KEY: str | None = None
    API_HOST: str = "127.0.0.1"
    API_PORT: int = 8000
    MAX_BODY_BYTES: int = 1_000_000
    # json: one object per line (default in production); text: one readable line (terminal)
    LOG_FORMAT: Literal["json", "text"] | None = None
    LOG_LEVEL: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    WORKER_CONCURRENCY: int = 1
    TRIAL_MAX_ATTEMPTS: int = Field(2, ge=1)
    HEARTBEAT_INTERVAL_S: float = Field(5.0, gt=0)
    HEARTBEAT_GRACE_S: float = Field(60.0, gt=0)
    DISPATCH_REPUBLISH_S: float = Field(120.0, gt=0)
    RECONCILE_INTERVAL_S: float = Field(5.0, gt=0)
    TRIAL_SOFT_TIME_LIMIT_S: int = Field(6 * 3600, gt=0)
    # GET /v1/jobs/{id}/events: a ": keep-alive" comment after this long without data (so
    # proxies keep the connection), and how often a following stream polls for new events
    EVENTS_HEARTBEAT_S: float = Field(15.0, gt=0)
    EVENTS_POLL_S: float = Field(0.5, gt=0)
    VISIBILITY_TIMEOUT_S: int = Field(8 * 3600, gt=0)

    MAX_TRIALS: int = 1000
    MAX_EPOCHS: int = 200
    MAX_PARALLEL: int = 64
    MAX_BATCH_SIZE: int = 8192

    # Uploaded datasets (POST /v1/datasets); the request body limit must allow the file.
    MAX_UPLOAD_BYTES: int = Field(100_000_000, gt=0)  # the uploaded file as sent
    MAX_UPLOAD_UNPACKED_BYTES: int = Field(1_000_000_000, gt=0)  # arrays once decompressed
    MAX_UPLOAD_COMPRESSION_RATIO: float = Field(100.0, gt=1)  # per .npz member
    MAX_UPLOAD_ROWS: int = Field(1_000_000, gt=0)
    MAX_UPLOAD_COLUMNS: int = Field(10_000, gt=0)
    MAX_UPLOAD_CLASSES: int = Field(1000, ge=2)
    # Trainable parameters of a job's model, estimated without torch
    # (workers.catalog.check_task_limits); 50M AdamW parameters need ~800 MB of state.
    MAX_MODEL_PARAMETERS: int = Field(50_000_000, gt=0)

    @property
    def database_url(self) -> str:
        return self.DATABASE_URL or f"sqlite:///{(self.DATA_DIR / 'optserve.db').resolve()}"

    @property
    def log_format(self) -> Literal["json", "text"]:
        return self.LOG_FORMAT or ("json" if self.ENV == "production" else "text")

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def optuna_storage_url(self) -> str:
        if self.OPTUNA_STORAGE_URL:
            return self.OPTUNA_STORAGE_URL
        if self.is_sqlite:
            return f"sqlite:///{(self.DATA_DIR / 'optuna.db').resolve()}"
        return self.database_url

    @property
    def broker_url(self) -> str:
        return self.BROKER_URL or "filesystem://"

    @property
    def broker_dir(self) -> Path:
        return (self.DATA_DIR / "broker").resolve()

    @model_validator(mode="after")
    def _enforce_non_default_secrets(self) -> Settings:
        if self.ENV == "production" and self.SECRET_KEY == DEV_SECRET:
            raise ValueError("OPTSERVE_SECRET_KEY must be set in production")
        if self.HEARTBEAT_GRACE_S <= self.HEARTBEAT_INTERVAL_S:
            raise ValueError("OPTSERVE_HEARTBEAT_GRACE_S must exceed OPTSERVE_HEARTBEAT_INTERVAL_S")
        return self


@functools.cache
def get_settings() -> Settings:
    return Settings()
