"""The API process never trains: building the app must not import torch or optuna."""

from __future__ import annotations

import subprocess
import sys


def test_api_process_stays_light() -> None:
    code = (
        "import sys, service.app; service.app.create_app(); "
        "heavy = [m for m in ('torch', 'optuna', 'sklearn', 'pyarrow') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"the API imported {out.stdout.strip()}"
