"""``optserve recommend`` and ``optserve jobs share``."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to the ``optserve`` app."""
