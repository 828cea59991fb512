"""The ``device`` and ``fused_device`` fixtures: the fast paths are checked on CPU
here and on CUDA where there is a GPU.

CI has no GPU, so the ``cuda`` cases skip there, with the reason; on a GPU machine
``pytest tests/optimizers -k cuda`` is the proof that the compiled kernels run (and
compute the reference's numbers) on CUDA.

A fused path on the CPU runs an optimizer's native kernel where it has one (LAMB,
SET-Adam: ``optimizers._native``) and the compiled kernels otherwise; ``fused_device``
adds ``cpu-compiled``, the CPU with the native kernels off, so that the compiled
kernels, which are what CUDA runs, are checked on CI for every optimizer too.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from optimizers import _native

DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=pytest.mark.skipif(
            not torch.cuda.is_available(),
            reason="no CUDA device on this machine: the CUDA cases run on a GPU machine",
        ),
    ),
]


@pytest.fixture(params=DEVICES)
def device(request: pytest.FixtureRequest) -> torch.device:
    return torch.device(request.param)


@pytest.fixture(params=["cpu", "cpu-compiled", *DEVICES[1:]])
def fused_device(request: pytest.FixtureRequest) -> Iterator[torch.device]:
    if request.param == "cpu-compiled":
        with _native.disabled():
            yield torch.device("cpu")
    else:
        yield torch.device(request.param)
