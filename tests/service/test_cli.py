"""CLI pieces that need no running stack."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
import torch
import typer

from service import cli


def test_gpu_ids_parse() -> None:
    assert cli._gpu_ids("0,1") == ["0", "1"]
    assert cli._gpu_ids(" 2 ") == ["2"]
    assert cli._gpu_ids("all") == [str(i) for i in range(torch.cuda.device_count())]
    with pytest.raises(typer.BadParameter):
        cli._gpu_ids("cuda:0")


def test_one_worker_process_per_gpu_sees_only_its_device(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[dict[str, Any]] = []

    class Recorder:
        def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
            started.append({"args": args, "env": env or {}})
            self.returncode = 0

        def poll(self) -> int:
            return 0

        def wait(self, timeout: float | None = None) -> int:
            return 0

    monkeypatch.setattr(subprocess, "Popen", Recorder)
    with pytest.raises(typer.Exit):  # the supervisor exits once its (fake) children have
        cli._worker_per_gpu(["0", "3"])
    assert [p["env"]["CUDA_VISIBLE_DEVICES"] for p in started] == ["0", "3"]
    assert all(
        p["args"][-4:-2] == ["--concurrency", "1"] or "--concurrency" in p["args"] for p in started
    )
