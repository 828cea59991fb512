"""Alembic migrations of optserve's own tables (Optuna migrates its own)."""
