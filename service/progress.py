"""Following a running job in a terminal: a live progress bar and the top trials.

``JobProgress`` is the state the display draws, built either from the job's event
stream (``apply`` one event at a time; the stream's backlog replays the job from its
start) or, when the stream is not available, from a poll of the job and its trials
(``from_reads``). ``follow_job`` drives it with the events, falls back to polling when
the stream fails, and returns the final job. ``Client.wait(progress=True)`` and the
CLI's ``submit --watch`` / ``watch`` both use it.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
from pydantic import ValidationError
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from api_schemas import JobRead, TrialRead
from service.client_events import (
    Event,
    JobFinished,
    JobUpdated,
    TrialEpoch,
    TrialFinished,
    TrialStarted,
)

if TYPE_CHECKING:
    from service.client import Client

TOP_TRIALS = 5
FINISHED = ("complete", "pruned")


@dataclass
class TrialRow:
    number: int
    optimizer: str | None = None
    state: str = "running"
    value: float | None = None
    epochs: int = 0
    params: dict[str, Any] = field(default_factory=dict)
    duration_s: float | None = None


@dataclass
class JobProgress:
    """Counts, best so far and ETA of one job, as the display shows them."""

    job_id: str
    n_trials: int
    max_parallel: int
    metric: str
    maximize: bool
    status: str = "queued"
    trials: dict[int, TrialRow] = field(default_factory=dict)

    @classmethod
    def for_job(cls, job: JobRead) -> JobProgress:
        spec = job.spec
        metric, direction = (
            (spec.objectives[0].metric, spec.objectives[0].direction)
            if spec.objectives
            else (spec.task.metric, spec.task.direction)
        )
        return cls(
            job_id=str(job.id),
            n_trials=spec.n_trials,
            max_parallel=spec.max_parallel,
            metric=metric,
            maximize=direction == "maximize",
            status=job.status,
        )

    @classmethod
    def from_reads(cls, job: JobRead, trials: Iterable[TrialRead]) -> JobProgress:
        """The state from a poll: the job and every trial."""
        progress = cls.for_job(job)
        for t in trials:
            progress.trials[t.number] = TrialRow(
                number=t.number,
                optimizer=t.optimizer,
                state=t.state,
                value=t.value,
                params=dict(t.params),
                duration_s=t.duration_s,
            )
        return progress

    def apply(self, event: Event) -> None:
        """Fold one event into the state."""
        if isinstance(event, TrialStarted):
            self.status = "running"
            self.trials[event.trial] = TrialRow(
                number=event.trial, optimizer=event.optimizer, params=dict(event.params)
            )
        elif isinstance(event, TrialEpoch):
            row = self.trials.setdefault(event.trial, TrialRow(number=event.trial))
            row.epochs = max(row.epochs, event.epoch)
        elif isinstance(event, TrialFinished):
            row = self.trials.setdefault(event.trial, TrialRow(number=event.trial))
            row.state, row.value, row.duration_s = event.state, event.value, event.duration_s
        elif isinstance(event, JobUpdated):
            self.n_trials = event.n_trials or self.n_trials
            self.max_parallel = event.max_parallel or self.max_parallel
        elif isinstance(event, JobFinished):
            self.status = event.status
        elif event.type == "job.started":
            self.status = "running"

    # -- what the display shows -----------------------------------------------------------
    def count(self, *states: str) -> int:
        return sum(1 for t in self.trials.values() if t.state in states)

    @property
    def finished(self) -> int:
        """COMPLETE + PRUNED, as the job's ``n_finished`` (a failure does not use budget)."""
        return self.count(*FINISHED)

    def ranked(self) -> list[TrialRow]:
        """Completed trials with a finite value, best first."""
        done = [
            t
            for t in self.trials.values()
            if t.state == "complete" and t.value is not None and math.isfinite(t.value)
        ]
        return sorted(done, key=lambda t: (-t.value if self.maximize else t.value, t.number))  # type: ignore[operator]

    def eta_s(self) -> float | None:
        """Mean finished-trial duration x remaining trials / trials run at once."""
        durations = [
            t.duration_s for t in self.trials.values() if t.state in FINISHED and t.duration_s
        ]
        remaining = max(0, self.n_trials - self.finished)
        if not durations:
            return None if remaining else 0.0
        at_once = max(1, min(self.max_parallel, remaining or 1))
        return sum(durations) / len(durations) * remaining / at_once

    def render(self) -> RenderableType:
        best = self.ranked()[:1]
        best_text = f"{best[0].value:.4g} (trial {best[0].number})" if best else "-"
        eta = self.eta_s()
        eta_text = "-" if eta is None else time.strftime("%H:%M:%S", time.gmtime(eta))
        bar = Table.grid(padding=(0, 1))
        bar.add_row(
            Text(f"job {self.job_id} {self.status}", style="bold"),
            ProgressBar(total=max(self.n_trials, 1), completed=self.finished, width=30),
            Text(f"{self.finished}/{self.n_trials}"),
        )
        counts = Text(
            f"finished {self.finished} · running {self.count('running', 'waiting')} · "
            f"pruned {self.count('pruned')} · failed {self.count('fail')} · "
            f"best {self.metric} {best_text} · ETA {eta_text}"
        )
        return Group(bar, counts, self._top_table())

    def _top_table(self) -> Table:
        table = Table("trial", "optimizer", self.metric, "epochs", "params", title="top trials")
        for t in self.ranked()[:TOP_TRIALS]:
            prefix = f"{t.optimizer}."
            params = ", ".join(
                f"{k.removeprefix(prefix)}={_short(v)}"
                for k, v in t.params.items()
                if k != "optimizer"
            )
            epochs = str(t.epochs) if t.epochs else ""
            table.add_row(str(t.number), t.optimizer or "", f"{t.value:.4g}", epochs, params)
        return table


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def follow_job(
    client: Client,
    job_id: uuid.UUID | str,
    *,
    console: Console | None = None,
    poll_s: float = 1.0,
    timeout_s: float | None = None,
) -> JobRead:
    """Show the job live until it ends and return its final state.

    The event stream drives the display; if it cannot be read (an older server without
    it, a proxy that buffers, a connection that keeps failing) the display polls instead.
    """
    from service.client import TERMINAL, ApiError

    console = console or Console()
    job = client.job(job_id)
    started = time.monotonic()
    state = JobProgress.for_job(job)
    with Live(state.render(), console=console, refresh_per_second=4) as live:
        if job.status not in TERMINAL:
            try:
                for event in client.events(job_id):
                    state.apply(event)
                    live.update(state.render())
                    _check_timeout(job_id, started, timeout_s)
                job = client.job(job_id)
                if job.status in TERMINAL:
                    state.status = job.status
                    live.update(state.render())
                    return job
            except (ApiError, httpx.TransportError, ValidationError, ValueError) as exc:
                console.log(f"event stream unavailable ({exc}); polling every {poll_s:g}s")
        while True:
            job = client.job(job_id)
            state = JobProgress.from_reads(job, client.trials(job_id))
            live.update(state.render())
            if job.status in TERMINAL:
                return job
            _check_timeout(job_id, started, timeout_s)
            time.sleep(poll_s)


def _check_timeout(job_id: uuid.UUID | str, started: float, timeout_s: float | None) -> None:
    if timeout_s is not None and time.monotonic() - started > timeout_s:
        raise TimeoutError(f"job {job_id} still running after {timeout_s}s")


__all__ = ["JobProgress", "TrialRow", "follow_job"]
