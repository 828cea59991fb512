"""JSON has no NaN or Infinity: one walk that replaces them, for events and log lines."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any


def replace_nonfinite(value: Any, by: Callable[[float], Any] = lambda _: None) -> Any:
    """The value with every non-finite float (NaN, ±inf), at any depth, replaced by
    ``by(x)``: ``None`` by default (stored events), ``str`` in log lines."""
    if isinstance(value, float):
        return value if math.isfinite(value) else by(value)
    if isinstance(value, Mapping):
        return {str(k): replace_nonfinite(v, by) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [replace_nonfinite(v, by) for v in value]
    return value
