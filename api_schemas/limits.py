"""Resource caps enforced at the API boundary (422 naming the field), read once from env.

The service's ``Settings`` mirror these names (``OPTSERVE_MAX_TRIALS`` ...); the schemas
read the environment themselves so that they stay importable without the service.
Changing a cap needs a restart: it is baked into the field constraints at import.
"""

from __future__ import annotations

import os
from typing import Final


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


MAX_TRIALS: Final = _env_int("OPTSERVE_MAX_TRIALS", 1000)
MAX_EPOCHS: Final = _env_int("OPTSERVE_MAX_EPOCHS", 200)
MAX_PARALLEL: Final = _env_int("OPTSERVE_MAX_PARALLEL", 64)
MAX_BATCH_SIZE: Final = _env_int("OPTSERVE_MAX_BATCH_SIZE", 8192)
MAX_CHOICES: Final = _env_int("OPTSERVE_MAX_CHOICES", 64)
"""Most choices in one categorical search space."""

__all__ = ["MAX_BATCH_SIZE", "MAX_CHOICES", "MAX_EPOCHS", "MAX_PARALLEL", "MAX_TRIALS"]
