"""Uploaded datasets: ``POST/GET/DELETE /v1/datasets``, parsing with limits, storage."""
