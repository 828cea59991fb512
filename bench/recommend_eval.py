"""Recommendations, leave-one-task-out over the seed suite: zero-trial regret and warm starts.

For each task of the seed suite (a model on a dataset, see ``service.history.suite``)
held out in turn, the recommender (``service.recommend.engine.recommend``, the real
engine on a temporary SQLite database filled by ``service.history.transfer.
import_history`` from a history file) sees every *other* task's job
(``exclude_job_ids``) and proposes configurations for the held-out one. Then:

* **(a) zero-trial regret**: the top recommendation is trained once, as the job would
  train it, and compared with the best value ever seen on that task (its own seed job,
  which the recommender never saw, plus every trial of this run): the raw metric gap,
  and the normalised regret: the share of every value seen on the task that beats it
  (0 = as good as the best, 1 = the worst).
* **(b) trials to 95 %**: per seed, a cold job (the service's TPE, as the seed jobs run
  it) and a warm one each run ``--trials`` trials. The warm job is what the service's
  ``warm_start: {from: similar, k: --top-k, method: --method}`` gives: the engine's
  ranking, fitted into the job's space by ``service.jobs.warm_start.configurations``,
  enqueued first with ``study.enqueue_trial`` (with ``--narrow``, the ranges are also
  shrunk around them by ``service.jobs.warm_space.narrow``), then the same TPE; we count
  the trials each needs until its best-so-far reaches 95 % of the cold job's final
  best (``>= 0.95 * best`` when maximising, ``<= best / 0.95`` when minimising). A warm
  job that never gets there counts ``trials + 1`` (shown ``>N``). The ratio warm/cold
  is taken per (task, seed); the headline is its median.
  Accuracy on these small datasets makes "95 % of the best" a low bar (many random
  configurations clear it), so a stricter reading is printed beside it: 95 % of the
  way from the task's median trial value to the cold job's best ("gap 95 %").

Everything runs in this process on the service's own pieces: the job body is the
suite's (validated by ``api_schemas.JobCreate``), ``workers.objective.suggest`` samples
from its resolved space, ``workers.training.train`` trains (deterministic per seed, so
a configuration trained twice is looked up, not retrained), the sampler comes from
``workers.samplers``; Optuna studies are in memory. No service process is used.

Usage: python bench/recommend_eval.py [--history FILE] [--seeds 0,1,2] [--trials 16]
[--top-k 5] [--method nearest|portfolio] [--narrow] [--workers 1] [--quick]
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import optimizers
from api_schemas.jobs import JobCreate
from service.history.suite import SeedTask, Suite, get_suite
from workers.objective import suggest
from workers.samplers import SamplerContext, build_sampler
from workers.training import EpochMetrics, train
from workers.training.loop import Diverged

SHIPPED = Path(__file__).resolve().parents[1] / "service/history/data/seed_history.json.gz"
FRACTION = 0.95


# -- one task ----------------------------------------------------------------------------
@dataclass
class Task:
    """A held-out task: its suite entry, job body, space and the values seen on it."""

    seed_task: SeedTask
    body: dict[str, Any]
    history_job_ids: list[uuid.UUID]
    history_values: list[float]
    cache: dict[tuple[Any, ...], float | None] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return self.seed_task.key

    @property
    def maximize(self) -> bool:
        return bool(self.body["task"]["direction"] == "maximize")

    @property
    def metric(self) -> str:
        return str(self.body["task"]["metric"])

    @property
    def space(self) -> dict[str, Any]:
        return JobCreate.model_validate(self.body).resolved_space().model_dump(mode="json")

    def better(self, a: float, b: float) -> bool:
        return a > b if self.maximize else a < b


def train_value(task: Task, params: Mapping[str, Any], config: Any) -> float | None:
    """The job's value for one configuration: the metric at the last epoch.

    A diverged run is ``None`` (the service prunes it: it has no final value).
    Training is deterministic for a seed, so each configuration is trained once.
    """
    key = tuple(sorted(params.items()))
    if key in task.cache:
        return task.cache[key]
    spec = task.body["task"]
    last: list[float] = []

    def on_epoch(m: EpochMetrics) -> None:
        last.append(m.metrics[task.metric])

    try:
        train(
            model=spec["model"]["name"],
            model_params=spec["model"]["params"],
            dataset=spec["dataset"]["name"],
            dataset_params=spec["dataset"]["params"],
            epochs=spec["epochs"],
            batch_size=spec["batch_size"],
            seed=spec["seed"],
            make_optimizer=lambda groups, steps: optimizers.build(
                config.optimizer, groups, total_steps=steps, **config.hyperparameters
            ),
            on_epoch=on_epoch,
        )
        value = last[-1] if last and math.isfinite(last[-1]) else None
    except Diverged:
        value = None
    task.cache[key] = value
    return value


def run_job(
    task: Task,
    seed: int,
    n_trials: int,
    enqueued: Sequence[Mapping[str, Any]] = (),
    space: dict[str, Any] | None = None,
) -> list[float | None]:
    """One job of ``n_trials`` trials (the service's TPE), ``enqueued`` tried first."""
    space = space or task.space
    sampler_spec = task.body["sampler"]
    ctx = SamplerContext(seed=seed, job_seed=seed, slot=0, resolved_space=space)
    study = optuna.create_study(
        direction="maximize" if task.maximize else "minimize",
        sampler=build_sampler(sampler_spec, ctx),
    )
    for params in enqueued:
        study.enqueue_trial(dict(params), skip_if_exists=False)
    values: list[float | None] = []

    def objective(trial: optuna.Trial) -> float:
        config = suggest(trial, space)
        value = train_value(task, trial.params, config)
        values.append(value)
        if value is None:
            trial.report(math.nan, 1)
            raise optuna.TrialPruned
        return value

    study.optimize(objective, n_trials=n_trials, catch=())
    return values


# -- the history -------------------------------------------------------------------------
def load_tasks(history: Path, suite: Suite) -> tuple[list[Task], uuid.UUID]:
    """Import ``history`` into a fresh temporary database; the suite's tasks found in it."""
    from sqlalchemy import select

    from service.db import session_scope
    from service.history.transfer import import_history, read_file
    from service.migrate import upgrade
    from service.models import Job, TrialRun, TrialState
    from service.tenants.service import get_or_create_tenant

    os.environ["OPTSERVE_DATA_DIR"] = tempfile.mkdtemp(prefix="optserve-recommend-eval-")
    os.environ["OPTSERVE_ENV"] = "testing"
    os.environ.pop("OPTSERVE_DATABASE_URL", None)
    upgrade()
    with session_scope() as session:
        tenant_id = get_or_create_tenant(session, "bench").id
        import_history(session, read_file(history), tenant_id=tenant_id, shared=False)
    tasks = []
    with session_scope() as session:
        for seed_task in suite.tasks:
            jobs = list(session.scalars(select(Job).where(Job.name == seed_task.job_name)))
            if not jobs:
                continue
            ids = [j.id for j in jobs]
            values = session.scalars(
                select(TrialRun.value).where(
                    TrialRun.job_id.in_(ids),
                    TrialRun.state == TrialState.COMPLETE,
                    TrialRun.value.is_not(None),
                )
            )
            body = suite.job_body(seed_task)
            body["task"]["direction"] = jobs[0].spec["task"]["direction"]
            tasks.append(Task(seed_task, body, ids, [float(v) for v in values if v is not None]))
    return tasks, tenant_id


def warm_start(
    task: Task, tenant_id: uuid.UUID, top_k: int, method: str, narrow: bool
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """What the service's ``warm_start`` would give the held-out task, the task's own job
    left out of the history: the configurations to enqueue and the (narrowed) space.

    The same steps as ``service.jobs.warm_start.resolve``: the engine's ranking for the
    task's fingerprint, fitted into the job's space and deduplicated, cut to ``top_k``.
    """
    from service.db import session_scope
    from service.jobs import warm_space
    from service.jobs.warm_start import configurations
    from service.recommend.engine import recommend
    from service.recommend.fingerprint import fingerprint_for_spec

    job = JobCreate.model_validate(task.body)
    resolved = job.resolved_space()
    with session_scope() as session:
        fingerprint = fingerprint_for_spec(session, tenant_id, job.model_dump(mode="json"))
        recs = recommend(
            session,
            tenant_id,
            fingerprint,
            method=method,  # type: ignore[arg-type]
            k=top_k,
            optimizers=sorted(resolved.optimizers),
            exclude_job_ids=task.history_job_ids,
        )
        chosen = [dict(c.params) for c in configurations(session, resolved, recs, top_k)]
    if narrow:
        warm_space.narrow(resolved, chosen)
    return chosen, resolved.model_dump(mode="json")


# -- scoring -----------------------------------------------------------------------------
def best_so_far(task: Task, values: Sequence[float | None]) -> list[float | None]:
    out: list[float | None] = []
    best: float | None = None
    for v in values:
        if v is not None and (best is None or task.better(v, best)):
            best = v
        out.append(best)
    return out


def trials_to(task: Task, values: Sequence[float | None], reached: Callable[[float], bool]) -> int:
    """1-based trial at which the best-so-far first satisfies ``reached``; len+1 if never."""
    for i, best in enumerate(best_so_far(task, values), start=1):
        if best is not None and reached(best):
            return i
    return len(values) + 1


def literal_target(task: Task, cold_best: float) -> Callable[[float], bool]:
    if task.maximize:
        return lambda v: v >= FRACTION * cold_best
    return lambda v: v <= cold_best / FRACTION


def gap_target(task: Task, cold_best: float, reference: float) -> Callable[[float], bool]:
    threshold = reference + FRACTION * (cold_best - reference)
    return (lambda v: v >= threshold) if task.maximize else (lambda v: v <= threshold)


def normalised_regret(task: Task, value: float | None, seen: Sequence[float]) -> float:
    """The share of the values seen on the task that beat ``value``: 0 when it ties the
    best, 1 when everything beats it (a diverged recommendation counts 1)."""
    if value is None:
        return 1.0
    return sum(task.better(v, value) for v in seen) / len(seen)


@dataclass
class Row:
    task: str
    metric: str
    top1: float | None
    best: float
    raw_gap: float | None
    regret: float
    literal: list[tuple[int, int]]  # (cold, warm) per seed
    gap: list[tuple[int, int]]
    seconds: float


def evaluate(
    task: Task,
    tenant_id: uuid.UUID,
    seeds: Sequence[int],
    n_trials: int,
    top_k: int,
    method: str,
    narrow: bool,
) -> Row:
    started = time.perf_counter()
    enqueued, warm_space = warm_start(task, tenant_id, top_k, method, narrow)
    cold = {s: run_job(task, s, n_trials) for s in seeds}
    warm = {s: run_job(task, s, n_trials, enqueued, warm_space) for s in seeds}
    runs = [*cold.values(), *warm.values()]
    seen = task.history_values + [v for values in runs for v in values if v is not None]
    best = (max if task.maximize else min)(seen)
    reference = statistics.median(seen)
    top1 = warm[seeds[0]][0] if enqueued else None
    literal: list[tuple[int, int]] = []
    gap: list[tuple[int, int]] = []
    for s in seeds:
        cold_best = best_so_far(task, cold[s])[-1]
        assert cold_best is not None, f"{task.key}: every cold trial diverged"
        for out, reached in (
            (literal, literal_target(task, cold_best)),
            (gap, gap_target(task, cold_best, reference)),
        ):
            out.append((trials_to(task, cold[s], reached), trials_to(task, warm[s], reached)))
    print(f"  {task.key}: {time.perf_counter() - started:.0f}s", flush=True)
    return Row(
        task=task.key,
        metric=task.metric,
        top1=top1,
        best=best,
        raw_gap=None if top1 is None else abs(best - top1),
        regret=normalised_regret(task, top1, seen),
        literal=literal,
        gap=gap,
        seconds=time.perf_counter() - started,
    )


# -- report ------------------------------------------------------------------------------
def _pairs(pairs: Sequence[tuple[int, int]], n_trials: int) -> str:
    def shown(n: int) -> str:
        return f">{n_trials}" if n > n_trials else str(n)

    return " ".join(f"{shown(c)}/{shown(w)}" for c, w in pairs)


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.4g}"


def report(rows: Sequence[Row], n_trials: int, seeds: Sequence[int]) -> None:
    print(
        f"\n{'task':<32} {'metric':<13} {'top-1':>8} {'best':>8} {'gap':>8} {'regret':>6}  "
        f"{'95% cold/warm per seed':<24} {'gap-95% cold/warm':<24} {'s':>4}"
    )
    for r in rows:
        print(
            f"{r.task:<32} {r.metric:<13} {_fmt(r.top1):>8} {_fmt(r.best):>8} "
            f"{_fmt(r.raw_gap):>8} {r.regret:>6.2f}  {_pairs(r.literal, n_trials):<24} "
            f"{_pairs(r.gap, n_trials):<24} {r.seconds:>4.0f}"
        )
    print(
        f"\n{len(rows)} held-out tasks x {len(seeds)} seeds, {n_trials} trials per job "
        f"(>N: not reached within the job's N trials, counted N+1)"
    )
    regret = _median([r.regret for r in rows])
    by_metric: dict[str, list[float]] = {}
    for r in rows:
        if r.raw_gap is not None:
            by_metric.setdefault(r.metric, []).append(r.raw_gap)
    raw = ", ".join(f"{m} {_median(g):.4g} ({len(g)} tasks)" for m, g in sorted(by_metric.items()))
    print(
        f"zero-trial regret of the top recommendation: median {regret:.3f} "
        f"(normalised: 0 = as good as the best seen); raw gap medians: {raw}"
    )
    for label, attr in (("95 % of the cold best", "literal"), ("gap 95 %", "gap")):
        ratios = [w / c for r in rows for c, w in getattr(r, attr)]
        print(
            f"trials warm/cold to {label}: median ratio {_median(ratios):.2f} "
            f"(mean {statistics.fmean(ratios):.2f}, {sum(x <= 0.5 for x in ratios)}/{len(ratios)} "
            f"runs <= 0.5, {sum(x > 1 for x in ratios)} > 1)"
        )


def _median(xs: Sequence[float]) -> float:
    return statistics.median(xs) if xs else math.nan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--history", type=Path, default=SHIPPED, help="history file to learn from")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--trials", type=int, default=16, help="trials per job (the seed jobs')")
    parser.add_argument("--top-k", type=int, default=5, help="recommendations enqueued")
    parser.add_argument("--method", default="nearest", choices=("nearest", "portfolio"))
    parser.add_argument("--narrow", action="store_true", help="warm_start.narrow: shrink ranges")
    parser.add_argument("--tasks", default="", help="comma-separated task keys (default: all)")
    parser.add_argument("--quick", action="store_true", help="4 tasks, 1 seed, 10 trials")
    parser.add_argument("--workers", type=int, default=1, help="tasks evaluated at once")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    import torch

    torch.set_num_threads(1)  # small models; the machine is shared
    seeds = [int(s) for s in args.seeds.split(",")]
    n_trials = args.trials
    suite = get_suite("small")
    tasks, tenant_id = load_tasks(args.history, suite)
    if args.tasks:
        wanted = set(args.tasks.split(","))
        tasks = [t for t in tasks if t.key in wanted]
    if args.quick:
        tasks, seeds, n_trials = tasks[:: max(1, len(tasks) // 4)][:4], seeds[:1], 10
    print(
        f"history {args.history.name}: {len(tasks)} tasks; method {args.method}, "
        f"top-{args.top_k} enqueued{' narrowed' if args.narrow else ''}, seeds {seeds}, "
        f"{n_trials} trials per job"
    )
    work = [
        (task, tenant_id, seeds, n_trials, args.top_k, args.method, args.narrow) for task in tasks
    ]
    if args.workers > 1:
        with multiprocessing.get_context("fork").Pool(args.workers) as pool:
            rows = pool.starmap(evaluate, work)
    else:
        rows = [evaluate(*item) for item in work]
    report(rows, n_trials, seeds)


if __name__ == "__main__":
    main()
