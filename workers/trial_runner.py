"""One trial, start to finish: claim the slot, ask Optuna, train, tell, record, dispatch.

The slot claim is a conditional UPDATE, so a duplicate delivery of the message does
nothing. A heartbeat thread keeps the slot's ``heartbeat_at`` fresh; when the worker
dies, the reconciler sees the stale heartbeat, fails the run and queues the slot
again. Every way a run can end is written exactly once (conditional updates): a
zombie worker whose run was already failed by the reconciler changes nothing.

Failure policy: only a lost worker is retried. A deterministic error (bad
hyperparameters, out of memory, a bug, a timeout) fails the slot for good, with its
reason, and the job goes on.

At each epoch boundary the trial checks its job: cancelled, or stopped by a budget
(job ``timeout``, ``target`` reached), it ends CANCELLED with the reason; past the
job's ``trial_timeout`` it FAILs with reason ``timeout``. A multi-objective trial is
told every objective's last-epoch value; it is pruned on its first objective through a
shadow study (``workers.pruning``), since Optuna prunes single-objective studies only.
"""

from __future__ import annotations

import logging
import math
import platform
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import optuna
import torch
from celery.exceptions import SoftTimeLimitExceeded

import optimizers
from api_schemas.search_space import OPTIMIZER_PARAM
from service import logs
from service.config import get_settings
from service.db import session_scope
from service.dispatch import dispatch
from service.events import recorder
from service.jobs import lifecycle
from service.models import CurvePoint, Job, SlotStatus, TrialRun, TrialState
from service.models._types import utcnow
from service.trials import repository as trials
from workers import warm_start
from workers.objective import Configuration, suggest
from workers.optuna_storage import get_storage, study_name
from workers.pruning import Reporter, ShadowReporter, shadow_study
from workers.samplers import (
    CompareRole,
    PinnedSampler,
    PointSampler,
    SamplerContext,
    build_pruner,
    build_sampler,
    compare_role,
    sweep_role,
    trial_seed,
)
from workers.training.loop import Diverged, EpochMetrics, train

log = logging.getLogger(__name__)


class JobCancelled(Exception):
    """Raised at an epoch boundary when the job was cancelled or stopped by a budget."""

    def __init__(self, reason: str = "job cancelled") -> None:
        super().__init__(reason)
        self.reason = reason


class TrialTimedOut(Exception):
    """Raised at an epoch boundary once the trial has run past the job's ``trial_timeout``."""


@dataclass(frozen=True)
class Claim:
    job_id: uuid.UUID
    slot: int
    attempt: int
    spec: Mapping[str, Any]
    resolved_space: Mapping[str, Any]
    n_trials: int

    @property
    def role(self) -> CompareRole | None:
        return compare_role(self.spec, self.resolved_space, self.slot, self.n_trials)

    @property
    def sweep(self) -> tuple[dict[str, Any], int] | None:
        return sweep_role(self.spec, self.resolved_space, self.slot)

    @property
    def task_seed(self) -> int:
        """The seed this trial trains with: a confirmation rerun takes seed + 1 + its index,
        a sweep slot seed + its seed index."""
        base = int(self.spec["task"].get("seed", 0))
        if (sweep := self.sweep) is not None:
            return base + sweep[1]
        role = self.role
        return base if role is None or role.confirmation is None else base + 1 + role.confirmation


@dataclass(frozen=True)
class Outcome:
    run_state: TrialState
    slot_status: SlotStatus
    value: float | None = None
    reason: str | None = None
    diverged: bool = False
    values: tuple[float, ...] = ()  # every objective's value (COMPLETE only)


def run_trial(job_id: str, slot: int, worker: str) -> str:
    """The body of the ``trials.run`` task. Returns a short status for the logs."""
    with logs.bind(job_id=job_id, slot=slot):  # every line of this trial says which it is
        claim = _claim(uuid.UUID(job_id), slot, worker)
        if isinstance(claim, str):
            return claim
        logs.annotate(attempt=claim.attempt)
        with _heartbeat(claim):
            outcome = _execute(claim, worker)
        _after(claim, outcome)
        log.info(
            "trial ended",
            extra={"state": outcome.run_state, "value": outcome.value, "reason": outcome.reason},
        )
        return f"slot {slot} attempt {claim.attempt}: {outcome.run_state}"


def _claim(job_id: uuid.UUID, slot: int, worker: str) -> Claim | str:
    with session_scope() as session:
        # the job first, then the slot: the lock order of every writer (mark_running emits)
        job = trials.lock_job(session, job_id)
        if job is None:
            return "skipped: unknown job"
        if lifecycle.stopping(job):
            lifecycle.refresh_status(session, job_id)  # an expired timeout ends the job here
            return "skipped: job has ended"
        attempt = trials.claim_slot(session, job_id, slot, worker)
        if attempt is None:
            return "skipped: already claimed"
        lifecycle.mark_running(session, job_id)
        return Claim(job_id, slot, attempt, job.spec, job.resolved_space, job.n_trials)


@contextmanager
def _heartbeat(claim: Claim) -> Iterator[None]:
    stop = threading.Event()
    interval = get_settings().HEARTBEAT_INTERVAL_S

    def beat() -> None:
        while not stop.wait(interval):
            try:
                with session_scope() as session:
                    if not trials.beat(session, claim.job_id, claim.slot, claim.attempt):
                        return  # the slot moved on (reaped or finished): stop beating
            except Exception:
                log.warning("heartbeat write failed; retrying", exc_info=True)

    thread = threading.Thread(target=beat, name="optserve-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=interval + 1)


def _load_study(claim: Claim) -> tuple[optuna.Study, str | None]:
    """The job's study with this trial's sampler and pruner, and why it cannot run, if so."""
    spec = claim.spec
    sampler, pruner, problem = _sampler_and_pruner(claim)
    study = optuna.create_study(
        study_name=study_name(str(claim.job_id)),
        storage=get_storage(),
        sampler=sampler,
        pruner=pruner,
        directions=[direction for _, direction in lifecycle.objectives(spec)],
        load_if_exists=True,
    )
    return study, problem


def _sampler_and_pruner(
    claim: Claim,
) -> tuple[optuna.samplers.BaseSampler, optuna.pruners.BasePruner, str | None]:
    spec = claim.spec
    sampler_spec = spec.get("sampler") or {}
    base_seed = sampler_spec.get("seed")
    if base_seed is None:
        base_seed = spec["task"].get("seed", 0)
    ctx = SamplerContext(
        seed=trial_seed(int(base_seed), claim.slot, claim.attempt),
        job_seed=int(base_seed),
        slot=claim.slot,
        resolved_space=claim.resolved_space,
    )
    sampler = build_sampler(sampler_spec, ctx)
    pruner = build_pruner(spec.get("pruner") or {}, int(spec["task"]["epochs"]))
    if (sweep := claim.sweep) is not None:
        # a sweep point: its optimizer and lr, every other hyperparameter fixed
        return PointSampler(sweep[0], ctx.seed), optuna.pruners.NopPruner(), None
    role = claim.role
    if role is None:
        return sampler, pruner, None
    if role.confirmation is None:
        return PinnedSampler(sampler, {OPTIMIZER_PARAM: role.optimizer}), pruner, None
    # a confirmation rerun: the optimizer's best configuration, never pruned
    point = _best_params(claim, role.optimizer)
    problem = None if point else f"no completed trial of {role.optimizer!r} to confirm"
    point = point or {OPTIMIZER_PARAM: role.optimizer}
    return PointSampler(point, ctx.seed), optuna.pruners.NopPruner(), problem


def _best_params(claim: Claim, optimizer: str) -> dict[str, Any] | None:
    maximize = lifecycle.objectives(claim.spec)[0][1] == "maximize"
    with session_scope() as session:
        run = trials.best_completed_run(
            session, claim.job_id, maximize=maximize, optimizer=optimizer, below_slot=claim.n_trials
        )
        return dict(run.params) if run is not None else None


def _execute(claim: Claim, worker: str) -> Outcome:
    study, problem = _load_study(claim)
    warm_start.enqueue_for_slot(study, claim.resolved_space, claim.slot)
    otrial = study.ask()
    logs.annotate(trial=otrial.number)
    otrial.set_user_attr("optserve.slot", claim.slot)
    otrial.set_user_attr("optserve.attempt", claim.attempt)
    config = suggest(otrial, claim.resolved_space)
    run_id = _create_run(claim, otrial, config, worker)
    try:
        if problem is not None:
            raise ValueError(problem)
        outcome = _train(claim, otrial, config, run_id)
    except Exception as exc:  # deterministic failures: recorded, not retried
        outcome = _failure(exc)
    _record(claim, study, otrial, run_id, outcome)
    return outcome


def _create_run(
    claim: Claim, otrial: optuna.Trial, config: Configuration, worker: str
) -> uuid.UUID:
    run = TrialRun(
        job_id=claim.job_id,
        slot=claim.slot,
        attempt=claim.attempt,
        number=otrial.number,
        state=TrialState.RUNNING,
        optimizer=config.optimizer,
        params=dict(otrial.params),
        hyperparameters=config.hyperparameters,
        seed=claim.task_seed,
        worker=worker,
        versions=_versions(),
        source=warm_start.source_of(otrial),
        started_at=utcnow(),
    )
    with session_scope() as session:
        trials.lock_job(session, claim.job_id)  # the job first: the lock order of every writer
        session.add(run)
        session.flush()
        recorder.trial_started(session, run)
        return run.id


def _versions() -> dict[str, str]:
    import service

    return {
        "optserve": service.__version__,
        "torch": torch.__version__,
        "optuna": optuna.__version__,
        "python": platform.python_version(),
    }


def _train(claim: Claim, otrial: optuna.Trial, config: Configuration, run_id: uuid.UUID) -> Outcome:
    """Train and score the trial. Per-epoch values go to the Optuna trial itself with one
    objective, to a shadow trial of the first objective with several objectives and a
    pruner (``workers.pruning``), and nowhere otherwise."""
    shadow = _shadow_reporter(claim)
    reporter: Reporter | None = otrial if len(lifecycle.objectives(claim.spec)) == 1 else shadow
    try:
        outcome = _fit(claim, reporter, config, run_id)
    except BaseException:
        _finish_shadow(shadow, TrialState.FAIL, None)
        raise
    _finish_shadow(shadow, outcome.run_state, outcome.value)
    return outcome


def _shadow_reporter(claim: Claim) -> ShadowReporter | None:
    """The shadow trial of a multi-objective job that has a pruner, else None."""
    spec = claim.spec
    objectives = lifecycle.objectives(spec)
    if len(objectives) == 1:
        return None
    pruner = build_pruner(spec.get("pruner") or {}, int(spec["task"]["epochs"]))
    if isinstance(pruner, optuna.pruners.NopPruner):
        return None
    name = study_name(str(claim.job_id))
    return ShadowReporter(shadow_study(name, get_storage(), pruner, objectives[0][1]))


_OPTUNA_STATES = {
    TrialState.COMPLETE: optuna.trial.TrialState.COMPLETE,
    TrialState.PRUNED: optuna.trial.TrialState.PRUNED,
}


def _finish_shadow(shadow: ShadowReporter | None, state: TrialState, value: float | None) -> None:
    if shadow is None:
        return
    try:
        shadow.finish(_OPTUNA_STATES.get(state, optuna.trial.TrialState.FAIL), value)
    except Exception:  # the shadow only steers pruning: never fail the trial for it
        log.warning("could not end the shadow pruning trial", exc_info=True)


def _fit(
    claim: Claim, reporter: Reporter | None, config: Configuration, run_id: uuid.UUID
) -> Outcome:
    task = claim.spec["task"]
    metrics = [metric for metric, _ in lifecycle.objectives(claim.spec)]
    last: list[float] = []
    final: dict[str, float] = {}  # the last epoch's metrics
    trial_timeout = claim.spec.get("trial_timeout")
    started = time.monotonic()

    def on_epoch(m: EpochMetrics) -> None:
        value = m.metrics.get(metrics[0], math.nan)
        last.append(value)
        final.update(m.metrics)
        _save_point(run_id, m, value)
        if reporter is not None:
            reporter.report(value, m.epoch)
        _check_job(claim.job_id)
        if trial_timeout is not None and time.monotonic() - started > trial_timeout:
            raise TrialTimedOut(f"timeout: trial ran past trial_timeout={trial_timeout:g}s")
        if reporter is not None and reporter.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {m.epoch}")

    try:
        result = train(
            model=task["model"]["name"],
            model_params=task["model"].get("params") or {},
            dataset=task["dataset"]["name"],
            dataset_params=task["dataset"].get("params") or {},
            epochs=int(task["epochs"]),
            batch_size=int(config.task_overrides.get("batch_size", task.get("batch_size", 64))),
            seed=claim.task_seed,
            grad_clip=config.task_overrides.get("grad_clip", task.get("grad_clip")),
            make_optimizer=_optimizer_factory(config),
            make_schedule=_schedule_factory(config),
            on_epoch=on_epoch,
        )
    except optuna.TrialPruned as exc:
        return Outcome(TrialState.PRUNED, SlotStatus.DONE, last[-1] if last else None, str(exc))
    except Diverged as exc:
        if reporter is not None:
            reporter.report(math.nan, exc.epoch)
        return Outcome(
            TrialState.PRUNED,
            SlotStatus.DONE,
            None,
            f"diverged: non-finite loss at step {exc.step}",
            True,
        )
    except JobCancelled as exc:
        return Outcome(TrialState.CANCELLED, SlotStatus.CANCELLED, None, exc.reason)
    _set_device(run_id, result.device, result.n_parameters)
    values = tuple(final.get(metric, math.nan) for metric in metrics)
    if not all(math.isfinite(v) for v in values):
        reason = f"non-finite objective: {', '.join(f'{v}' for v in values)}"
        return Outcome(TrialState.FAIL, SlotStatus.FAILED, None, reason)
    return Outcome(TrialState.COMPLETE, SlotStatus.DONE, values[0], values=values)


def _optimizer_factory(config: Configuration) -> Callable[[Any, int], torch.optim.Optimizer]:
    """The trial's optimizer, on its fused path where it has one and runs on the CPU.

    On the CPU the fused paths are native kernels (``optimizers._native``) or torch's
    fused CPU kernels: the same update to rounding, up to 9x faster steps than the
    default path on the catalogue's models, and never more than tens of microseconds
    slower on the smallest (``bench/trial_optimizer_step.py``). On CUDA they are
    compiled on a trial's first step, which this project has not measured against
    short trials yet, so GPU trials keep the default.
    """

    def make(params: Any, total_steps: int) -> torch.optim.Optimizer:
        groups = list(params)
        return optimizers.build(
            config.optimizer,
            groups,
            total_steps=total_steps,
            fused=_on_cpu(groups),
            **config.hyperparameters,
        )

    return make


def _on_cpu(params: list[Any]) -> bool:
    """Whether the first tensor of ``params`` (tensors or param groups) is on the CPU."""
    for item in params:
        tensors = item["params"] if isinstance(item, dict) else [item]
        for tensor in tensors:
            return bool(tensor.device.type == "cpu")
    return True


def _schedule_factory(
    config: Configuration,
) -> Callable[[torch.optim.Optimizer, int], Any] | None:
    if config.schedule == "constant" and not config.schedule_params:
        return None

    def make(optimizer: torch.optim.Optimizer, total_steps: int) -> Any:
        return optimizers.build_schedule(
            config.schedule, optimizer, total_steps, **config.schedule_params
        )

    return make


def _failure(exc: BaseException) -> Outcome:
    if isinstance(exc, TrialTimedOut):
        reason = str(exc)
    elif isinstance(exc, SoftTimeLimitExceeded):
        reason = "timeout: trial exceeded its time limit"
    elif isinstance(exc, torch.OutOfMemoryError):
        reason = f"oom: {exc}"
    elif isinstance(exc, ValueError | KeyError):
        reason = f"invalid configuration: {exc}"
    else:
        reason = f"error: {type(exc).__name__}: {exc}"
    log.warning("trial failed: %s", reason, exc_info=exc)
    return Outcome(TrialState.FAIL, SlotStatus.FAILED, None, reason[:2000])


def _save_point(run_id: uuid.UUID, m: EpochMetrics, value: float) -> None:
    point = CurvePoint(
        trial_id=run_id,
        epoch=m.epoch,
        step=m.step,
        examples=m.examples,
        wall_time=m.wall_time,
        train_loss=_finite(m.train_loss),
        val_loss=_finite(m.val_loss),
        val_metric=_finite(value),
        lr=_finite(m.lr),
        metrics={k: _finite(v) for k, v in m.metrics.items()},
    )
    with session_scope() as session:
        run = session.get(TrialRun, run_id)
        if run is not None:  # the job first: the lock order of every writer
            trials.lock_job(session, run.job_id)
            session.refresh(run)
        trials.upsert_curve_point(session, point)
        if run is not None and run.state == TrialState.RUNNING:  # not after a reaper's end
            recorder.trial_epoch(session, run, point)


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def _check_job(job_id: uuid.UUID) -> None:
    """Raise ``JobCancelled`` when the job was cancelled, stopped or ended meanwhile."""
    with session_scope() as session:
        job = session.get(Job, job_id)
        if not lifecycle.stopping(job):
            return
        if job is None or job.cancel_requested:
            raise JobCancelled
        raise JobCancelled(
            f"job stopped: {job.stop_reason or lifecycle.timeout_reason(job) or job.status}"
        )


def _set_device(run_id: uuid.UUID, device: str, n_parameters: int) -> None:
    with session_scope() as session:
        run = session.get(TrialRun, run_id)
        if run is not None:
            run.device = device
            run.n_parameters = n_parameters


def _record(
    claim: Claim, study: optuna.Study, otrial: optuna.Trial, run_id: uuid.UUID, outcome: Outcome
) -> None:
    """Tell Optuna, then write our run and slot, each only if still ours to write."""
    _tell(study, otrial, outcome)
    with session_scope() as session:
        trials.lock_job(session, claim.job_id)  # the job first: the lock order of every writer
        mine = trials.finish_run(
            session,
            run_id,
            outcome.run_state,
            value=outcome.value,
            reason=outcome.reason,
            diverged=outcome.diverged,
        )
        if not mine:
            log.warning("run %s was already finished elsewhere; keeping that result", run_id)
            return
        trials.set_slot_status(
            session,
            claim.job_id,
            claim.slot,
            outcome.slot_status,
            expect=[SlotStatus.RUNNING],
            attempt=claim.attempt,
        )
        run = session.get(TrialRun, run_id)
        if run is not None:
            recorder.trial_finished(session, run)


def _tell(study: optuna.Study, otrial: optuna.Trial, outcome: Outcome) -> None:
    try:
        if outcome.run_state == TrialState.COMPLETE:
            study.tell(otrial, list(outcome.values) if len(outcome.values) > 1 else outcome.value)
        elif outcome.run_state == TrialState.PRUNED:
            otrial.set_user_attr("optserve.diverged", outcome.diverged)
            study.tell(otrial, state=optuna.trial.TrialState.PRUNED)
        else:
            otrial.set_user_attr("optserve.reason", outcome.reason or "")
            study.tell(otrial, state=optuna.trial.TrialState.FAIL)
    except Exception:
        # the reconciler may have failed this trial already (zombie worker): keep theirs
        log.warning("could not tell trial %s: already finished?", otrial.number, exc_info=True)


def _after(claim: Claim, outcome: Outcome) -> None:
    with session_scope() as session:
        if (reason := _target_reached(claim.spec, outcome)) is not None:
            lifecycle.request_stop(session, claim.job_id, reason)
        lifecycle.refresh_status(session, claim.job_id)
    dispatch([claim.job_id])


def _target_reached(spec: Mapping[str, Any], outcome: Outcome) -> str | None:
    target = spec.get("target")
    if target is None or outcome.run_state != TrialState.COMPLETE or outcome.value is None:
        return None
    maximize = spec["task"].get("direction", "minimize") == "maximize"
    reached = outcome.value >= target if maximize else outcome.value <= target
    return (
        f"target reached: a trial scored {outcome.value:.6g} (target {target:g})"
        if reached
        else None
    )
