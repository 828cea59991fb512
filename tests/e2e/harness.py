"""Start the real stack as subprocesses (API, Celery workers, reconciler) for e2e tests.

Logs go to files in the test's temp folder and are printed when a test fails, so a
red CI run says why.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

FAST_RELIABILITY = {
    "OPTSERVE_HEARTBEAT_INTERVAL_S": "0.5",
    "OPTSERVE_HEARTBEAT_GRACE_S": "4",
    "OPTSERVE_RECONCILE_INTERVAL_S": "0.5",
    "OPTSERVE_DISPATCH_REPUBLISH_S": "15",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Stack:
    workdir: Path
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPTSERVE_")}
        env.update(FAST_RELIABILITY)
        env.update(self.env)
        env["OPTSERVE_API_PORT"] = str(self.port)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = open(self.workdir / f"{name}.log", "wb")  # noqa: SIM115 (closed with the process)
        proc = subprocess.Popen(
            [sys.executable, "-m", "service.cli", *args],
            env=self._env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs[name] = proc
        return proc

    def run(self, *args: str) -> str:
        out = subprocess.run(
            [sys.executable, "-m", "service.cli", *args],
            env=self._env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return out.stdout

    def wait_healthy(self, timeout: float = 60) -> None:
        wait_for(lambda: _healthy(self.url), timeout, "API health", self)

    def wait_log(self, name: str, text: str, timeout: float = 90) -> None:
        """Wait until a process has printed ``text`` (e.g. a Celery worker's "ready.")."""
        path = self.workdir / f"{name}.log"
        wait_for(lambda: text in path.read_text(errors="replace"), timeout, f"{name}: {text}", self)

    def logs(self) -> str:
        parts = []
        for path in sorted(self.workdir.glob("*.log")):
            parts.append(f"==== {path.name} ====\n{path.read_text(errors='replace')[-6000:]}")
        return "\n".join(parts)

    def stop(self, sig: int = signal.SIGINT) -> None:
        """Stop every process group as a terminal's Ctrl-C would (SIGINT to the group)."""
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, sig)
        deadline = time.monotonic() + 60
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/v1/health", timeout=2).json().get("status") == "ok"
    except (httpx.HTTPError, ValueError):
        return False


def wait_for(
    predicate: Callable[[], Any], timeout: float, what: str, stack: Stack | None = None
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    logs = stack.logs() if stack is not None else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{logs}")


@contextmanager
def embedded_up(tmp_path: Path, **env: str) -> Iterator[tuple[Stack, str]]:
    """``optserve up`` on the embedded default (data in ``tmp_path / "data"``) with a fresh
    bootstrap key, healthy on entry and stopped with Ctrl-C on exit; yields (stack, key)."""
    from service.auth.keys import generate_key

    key = generate_key()
    base = {"OPTSERVE_DATA_DIR": str(tmp_path / "data"), "OPTSERVE_BOOTSTRAP_KEY": key}
    stack = Stack(tmp_path, {**base, **env})
    stack.start("up", "up")
    try:
        stack.wait_healthy(timeout=90)
        yield stack, key
    finally:
        stack.stop()
