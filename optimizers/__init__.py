"""optserve's optimizer library: usable on its own, ``from optimizers import AdEMAMix``.

Importing this package does not import torch: the classes load on first access
(PEP 562), so the service can read the registry of specs without the cost of torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from optimizers.registry import (
    OPTIMIZERS,
    SCHEDULES,
    get_schedule_spec,
    get_spec,
    list_specs,
)

if TYPE_CHECKING:
    from optimizers._build import build
    from optimizers.ademamix import AdEMAMix
    from optimizers.eve import EVE
    from optimizers.lamb import LAMB
    from optimizers.lookahead import Lookahead
    from optimizers.radam import RAdam
    from optimizers.schedules import build_schedule
    from optimizers.set_adam import SETAdam
    from optimizers.swats import SWATS

_LAZY = {
    "build": "optimizers._build",
    "AdEMAMix": "optimizers.ademamix",
    "EVE": "optimizers.eve",
    "LAMB": "optimizers.lamb",
    "Lookahead": "optimizers.lookahead",
    "RAdam": "optimizers.radam",
    "SETAdam": "optimizers.set_adam",
    "SWATS": "optimizers.swats",
    "build_schedule": "optimizers.schedules",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'optimizers' has no attribute {name!r}")


__all__ = [
    "EVE",
    "LAMB",
    "OPTIMIZERS",
    "SCHEDULES",
    "SWATS",
    "AdEMAMix",
    "Lookahead",
    "RAdam",
    "SETAdam",
    "build",
    "build_schedule",
    "get_schedule_spec",
    "get_spec",
    "list_specs",
]
