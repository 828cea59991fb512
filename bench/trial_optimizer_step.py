"""Optimizer step time on the catalogue's models: the default path against a trial's.

A trial builds its optimizer through ``workers.trial_runner`` (on the CPU: the fused
path where the optimizer has one, i.e. our native kernels or torch's fused CPU
kernels). This script measures, for each catalogue model with its default parameters
and each registry optimizer with its default hyperparameters, the median time of one
``optimizer.step()`` (random gradients, learning rate 1e-9 so the weights stay put)
on the default path (``optimizers.build`` without ``fused``: foreach where the class
has it) and on the trial's path, and the ratio default / trial (> 1: the trial's path
is faster). Both are timed in the same run, one after the other. Exits 0.

Usage: python bench/trial_optimizer_step.py [--repeat 100 --only mlp,transformer
--optimizers adamw,lamb]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import optimizers
from optimizers.registry import list_specs
from workers.catalog import compatible_datasets, list_model_specs
from workers.catalog.estimate import model_io
from workers.objective import Configuration
from workers.training.loop import param_groups
from workers.training.models import build_model
from workers.trial_runner import _optimizer_factory


def _model(name: str) -> torch.nn.Module:
    """The catalogue model ``name`` with its defaults, shaped for its first dataset."""
    spec = next(s for s in list_model_specs() if s.name == name)
    io = model_io(compatible_datasets(spec)[0])
    return build_model(name, None, io.n_features, io.n_outputs, input_shape=io.input_shape)


def _step_us(optimizer: torch.optim.Optimizer, repeat: int) -> float:
    for _ in range(3):
        optimizer.step()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=100)
    parser.add_argument("--only", type=lambda s: set(s.split(",")), default=None)
    parser.add_argument("--optimizers", type=lambda s: s.split(","), default=None)
    args = parser.parse_args(argv)
    names = args.optimizers or [s.name for s in list_specs() if s.kind == "base"]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device cpu")
    print(
        f"{'model':12} {'params':>8} {'tensors':>7} {'optimizer':10} {'default us':>10}"
        f" {'trial us':>9} {'ratio':>7}"
    )
    for spec in list_model_specs():
        if args.only is not None and spec.name not in args.only:
            continue
        model = _model(spec.name)
        tensors = [p for p in model.parameters() if p.requires_grad]
        for p in tensors:
            p.grad = torch.randn_like(p)
        for name in names:
            # Fresh groups for each optimizer: torch writes its defaults into the dicts.
            default = optimizers.build(name, param_groups(model), total_steps=10**6, lr=1e-9)
            trial = _optimizer_factory(Configuration(name, {"lr": 1e-9}))(
                param_groups(model), 10**6
            )
            default_us, trial_us = _step_us(default, args.repeat), _step_us(trial, args.repeat)
            print(
                f"{spec.name:12} {sum(p.numel() for p in tensors):>8} {len(tensors):>7}"
                f" {name:10} {default_us:>10.0f} {trial_us:>9.0f} {default_us / trial_us:>6.2f}x",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
