"""Training throughput of every catalogue model on this machine, through ``train()``.

Each model is trained with its default parameters on its first compatible built-in
dataset (the transformer on ``python_docs``) with AdamW built as a trial builds it (on
the CPU: its fused path), through the same ``train()`` every trial runs, so the number
includes batching, the loss, the optimizer step and the per-step divergence check. An
epoch is run first as warm-up (one-off kernel selection, allocator growth), then
``--epochs`` epochs are timed; the validation pass at the end of each epoch is inside
the time, as it is in a trial.

Columns: trainable parameters, examples (windows, for the transformer) per second,
positions per second (examples x context length: characters for the LM), and the
ratio of examples/s to the MLP's in the same run. Exits 0.

Usage: python bench/train_throughput.py [--epochs 2 --batch-size 64 --device cpu
--only cnn,transformer --lm-chars 100000]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workers.catalog import compatible_datasets, list_model_specs
from workers.objective import Configuration
from workers.training import EpochMetrics, resolve_device, train
from workers.trial_runner import _optimizer_factory


@dataclass(frozen=True)
class Row:
    model: str
    dataset: str
    parameters: int
    examples_per_s: float
    positions_per_s: float


def measure(model: str, args: argparse.Namespace) -> Row:
    spec = next(s for s in list_model_specs() if s.name == model)
    dataset = compatible_datasets(spec)[0].name
    dataset_params = {"max_chars": args.lm_chars} if dataset == "python_docs" else {}
    context = int(spec.defaults().get("context_length") or 1)
    seen: list[EpochMetrics] = []
    result = train(
        model=model,
        model_params={},
        dataset=dataset,
        dataset_params=dataset_params,
        epochs=args.epochs + 1,
        batch_size=args.batch_size,
        seed=0,
        make_optimizer=_optimizer_factory(Configuration("adamw", {"lr": 1e-3})),
        on_epoch=seen.append,
        device=args.device,
    )
    warm, last = seen[0], seen[-1]
    examples = last.examples - warm.examples
    seconds = max(last.wall_time - warm.wall_time, 1e-9)
    rate = examples / seconds
    return Row(model, dataset, result.n_parameters, rate, rate * context)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default=None)
    parser.add_argument("--only", default="")
    parser.add_argument("--lm-chars", type=int, default=100_000)
    args = parser.parse_args(argv)
    names = [s.name for s in list_model_specs()]
    if args.only:
        names = [n for n in names if n in args.only.split(",")]
    device = resolve_device(args.device)
    print(f"device={device} threads={torch.get_num_threads()} torch={torch.__version__} "
          f"batch_size={args.batch_size} timed_epochs={args.epochs}")  # fmt: skip
    rows = [measure(name, args) for name in names]
    base = next((r.examples_per_s for r in rows if r.model == "mlp"), None)
    print(_table(rows, base))
    return 0


def _table(rows: list[Row], base: float | None) -> str:
    header = f"{'model':<12} {'dataset':<14} {'params':>10} {'examples/s':>12} "
    header += f"{'positions/s':>12} {'vs mlp':>8}"
    lines = [header, "-" * len(header)]
    for r in rows:
        ratio = f"{r.examples_per_s / base:8.3f}" if base else f"{'-':>8}"
        lines.append(
            f"{r.model:<12} {r.dataset:<14} {r.parameters:>10,} {r.examples_per_s:>12,.0f} "
            f"{r.positions_per_s:>12,.0f} {ratio}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
