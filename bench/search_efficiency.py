"""Search efficiency: epochs of training until a target accuracy, random search vs TPE + ASHA.

On one fixed task (the ``mlp`` on ``digits``), over a search space that includes bad
learning rates (SGD and AdamW, LR log-uniform over five decades), each search runs
trials one after another and counts every epoch trained, until some trial reports a
validation accuracy of at least ``--target`` at any epoch. Two searches:

* ``random``: ``RandomSampler``, no pruning: every trial trains all its epochs;
* ``tpe+asha``: the service's default TPE (multivariate, grouped, constant liar) with
  ``SuccessiveHalvingPruner`` (one epoch = one step of resource).

Both use the service's own pieces in-process (no database, no broker): the job is
validated by ``api_schemas.JobCreate``, sampled by ``workers.objective.suggest``,
trained by ``workers.training.train``, with the sampler and pruner from the
``workers.samplers`` registries. A search that never reaches the target within
``--max-trials`` trials is shown as ``>N``, and its ratio as a lower bound.

Usage: python bench/search_efficiency.py [--seeds 0,1,2 --target 0.975 --epochs 8
--max-trials 40]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import optimizers
from api_schemas.jobs import JobCreate
from workers.objective import suggest
from workers.samplers import SamplerContext, build_pruner, build_sampler
from workers.training import EpochMetrics, train

SEARCHES: dict[str, dict[str, Any]] = {
    "random": {"sampler": {"name": "random"}, "pruner": {"name": "none"}},
    "tpe+asha": {
        "sampler": {"name": "tpe"},
        "pruner": {"name": "successive_halving", "options": {"min_resource": 1}},
    },
}


def job_spec(search: str, epochs: int, seed: int) -> JobCreate:
    return JobCreate.model_validate(
        {
            "task": {
                "model": {"name": "mlp", "params": {"width": 64}},
                "dataset": {"name": "digits"},
                "epochs": epochs,
                "batch_size": 64,
                "metric": "val_accuracy",
                "direction": "maximize",
                "seed": seed,
            },
            "search_space": {
                "optimizers": {
                    "sgd": {"lr": {"type": "float", "low": 1e-4, "high": 10.0, "log": True}},
                    "adamw": {"lr": {"type": "float", "low": 1e-6, "high": 0.1, "log": True}},
                }
            },
            "n_trials": 1,
            **SEARCHES[search],
        }
    )


class TargetReached(Exception):
    pass


@dataclass
class Count:
    epochs: int = 0
    trials: int = 0
    reached: bool = False


def run_search(search: str, seed: int, target: float, epochs: int, max_trials: int) -> Count:
    """Trials one after another until an epoch reaches ``target``; every epoch counted."""
    job = job_spec(search, epochs, seed)
    space = job.resolved_space().model_dump(mode="json")
    spec = job.model_dump(mode="json")
    ctx = SamplerContext(seed=seed, job_seed=seed, slot=0, resolved_space=space)
    study = optuna.create_study(
        direction="maximize",
        sampler=build_sampler(spec["sampler"], ctx),
        pruner=build_pruner(spec["pruner"], epochs),
    )
    count = Count()

    def objective(trial: optuna.Trial) -> float:
        config = suggest(trial, space)
        count.trials += 1
        last: list[float] = []

        def on_epoch(m: EpochMetrics) -> None:
            count.epochs += 1
            last.append(m.metrics["val_accuracy"])
            if last[-1] >= target:
                count.reached = True
                raise TargetReached
            trial.report(last[-1], m.epoch)
            if trial.should_prune():
                raise optuna.TrialPruned

        try:
            train(
                model="mlp",
                model_params={"width": 64},
                dataset="digits",
                dataset_params={},
                epochs=epochs,
                batch_size=64,
                seed=seed,
                make_optimizer=lambda params, steps: optimizers.build(
                    config.optimizer, params, total_steps=steps, **config.hyperparameters
                ),
                on_epoch=on_epoch,
            )
        except (optuna.TrialPruned, TargetReached):
            raise
        except Exception:  # diverged: Optuna's rule for a lost trial is PRUNED
            raise optuna.TrialPruned from None
        return last[-1]

    with contextlib.suppress(TargetReached):
        study.optimize(objective, n_trials=max_trials, catch=())
    return count


def _shown(c: Count) -> str:
    return f"{c.epochs}" if c.reached else f">{c.epochs}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--target", type=float, default=0.975)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--max-trials", type=int, default=40)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    seeds = [int(s) for s in args.seeds.split(",")]
    print(
        f"mlp/digits, target val_accuracy >= {args.target}, {args.epochs} epochs per trial, "
        f"at most {args.max_trials} trials per search\n"
    )
    print(f"{'seed':>4}  {'random epochs':>13}  {'tpe+asha epochs':>15}  {'ratio':>6}  seconds")
    ratios = []
    for seed in seeds:
        start = time.perf_counter()
        rnd, tpe = (
            run_search(s, seed, args.target, args.epochs, args.max_trials) for s in SEARCHES
        )
        ratio = rnd.epochs / max(tpe.epochs, 1)
        ratios.append(ratio)
        bound = "" if rnd.reached and tpe.reached else "*"
        print(
            f"{seed:>4}  {_shown(rnd):>13}  {_shown(tpe):>15}  {ratio:>5.2f}{bound or ' '}  "
            f"{time.perf_counter() - start:.0f}  (trials {rnd.trials} vs {tpe.trials})"
        )
    print(
        f"\nrandom / (tpe+asha) epochs: geometric mean {statistics.geometric_mean(ratios):.2f} "
        "(* = a search hit --max-trials: a bound, not a measurement)"
    )


if __name__ == "__main__":
    main()
