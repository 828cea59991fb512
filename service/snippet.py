"""The best configuration of a job as Python code a user pastes into a training script.

The snippet builds exactly what the worker built for that trial (``workers/
trial_runner.py``): ``optimizers.build(name, params, total_steps=..., **hyperparameters)``
(a wrapper such as ``lookahead+adamw`` composes by name) and, when the job tuned a
schedule, ``optimizers.build_schedule(name, optimizer, total_steps, **schedule_params)``.
A schedule's parameters are read back from the trial's Optuna parameters and the job's
resolved space: fixed ones are not Optuna parameters, and ``one_minus`` ones are stored
as ``1 - x``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from api_schemas import SCHEDULE_PARAM, BestRead, FixedParam, FloatParam, JobRead, ResolvedSpace
from api_schemas.search_space import schedule_distribution_name


@dataclass(frozen=True)
class BestConfiguration:
    optimizer: str
    hyperparameters: dict[str, Any]
    schedule: str | None = None
    schedule_params: dict[str, Any] = field(default_factory=dict)


def schedule_of(
    params: Mapping[str, Any], resolved: ResolvedSpace
) -> tuple[str | None, dict[str, Any]]:
    """The schedule a trial trained with, and its parameters (``None``: no scheduler).

    As in the worker, ``constant`` with no parameter means no scheduler at all.
    """
    if not resolved.schedules:
        return None, {}
    name = str(params[SCHEDULE_PARAM])
    values: dict[str, Any] = {}
    for hp, space in resolved.schedules[name].items():
        if isinstance(space, FixedParam):
            values[hp] = space.value
            continue
        value = params[schedule_distribution_name(name, hp, space)]
        values[hp] = 1.0 - value if isinstance(space, FloatParam) and space.one_minus else value
    if name == "constant" and not values:
        return None, {}
    return name, values


def best_configuration(best: BestRead, job: JobRead) -> BestConfiguration:
    schedule, schedule_params = schedule_of(best.params, job.resolved_space)
    return BestConfiguration(best.optimizer, dict(best.hyperparameters), schedule, schedule_params)


def _kwargs(values: Mapping[str, Any], indent: str) -> str:
    for name in values:
        if not name.isidentifier():  # registry names are identifiers; refuse to print bad code
            raise ValueError(f"hyperparameter {name!r} is not a Python identifier")
    return "".join(f"{indent}{name}={value!r},\n" for name, value in values.items())


def python_snippet(best: BestRead, job: JobRead) -> str:
    """Code defining ``make_optimizer(params, total_steps) -> (optimizer, scheduler)``."""
    config = best_configuration(best, job)
    metric = job.spec.objectives[0].metric if job.spec.objectives else job.spec.task.metric
    lines = [
        f"# optserve job {job.id}: best trial {best.trial}, {metric} = {best.value!r}",
        "import optimizers",
        "",
        "",
        "def make_optimizer(params, total_steps):",
        '    """The tuned optimizer over ``params`` and its learning-rate scheduler (or None)',
        "    for a run of ``total_steps`` optimizer steps; call ``scheduler.step()`` after",
        '    every ``optimizer.step()``."""',
        "    optimizer = optimizers.build(\n"
        f"        {config.optimizer!r},\n"
        "        params,\n"
        "        total_steps=total_steps,\n"
        f"{_kwargs(config.hyperparameters, ' ' * 8)}"
        "    )",
    ]
    if config.schedule is None:
        lines.append("    scheduler = None")
    else:
        lines.append(
            "    scheduler = optimizers.build_schedule(\n"
            f"        {config.schedule!r},\n"
            "        optimizer,\n"
            "        total_steps,\n"
            f"{_kwargs(config.schedule_params, ' ' * 8)}"
            "    )"
        )
    lines += [
        "    return optimizer, scheduler",
        "",
        "",
        "# optimizer, scheduler = make_optimizer(model.parameters(), epochs * len(train_loader))",
    ]
    return "\n".join(lines) + "\n"


__all__ = ["BestConfiguration", "best_configuration", "python_snippet", "schedule_of"]
