"""The ``device`` fixture: the fast paths are checked on CPU here and on CUDA where
there is a GPU.

CI has no GPU, so the ``cuda`` cases skip there, with the reason; on a GPU machine
``pytest tests/optimizers -k cuda`` is the proof that the compiled kernels run (and
compute the reference's numbers) on CUDA.
"""

from __future__ import annotations

import pytest
import torch

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
