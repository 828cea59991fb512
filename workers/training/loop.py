"""The one training loop every trial runs.

``train`` builds the data and the model from catalogue names, lets the caller build
the optimizer (and schedule) over the model's parameters, and trains epoch by epoch,
handing an ``EpochMetrics`` to ``on_epoch`` after each epoch so the caller can report
to Optuna, store the curve point, prune or cancel (by raising: the exception leaves
``train`` unchanged).

Choices, and why:

* **Parameter groups.** ``make_optimizer`` gets two groups: group 0 holds the weight
  matrices (``ndim >= 2``) and takes the optimizer's own ``weight_decay``; group 1
  holds biases and norm scales with ``weight_decay=0.0``, the usual practice (decay
  on a bias or a norm gain only fights the normalisation). Both share every other
  hyperparameter, so ``lr`` of group 0 is the run's LR.
* **Determinism.** One seed fixes the split, the initialisation, dropout masks and the
  batch order. Batch order comes from a dedicated ``torch.Generator``. Module init and
  ``nn.Dropout`` can only draw from torch's global RNG, so that RNG is *forked* and
  seeded for the duration of the run: the caller's RNG state is left as it was, and
  the same seed on the same device gives bit-identical curves. (Forking is per
  process; a worker runs one trial at a time.)
* **Device and precision.** CUDA when available (or as asked), else the CPU. CPU runs
  in float32, with ``torch.set_num_threads(OPTSERVE_TORCH_THREADS)`` when that
  variable is set (a machine running several workers shares its cores out). On CUDA
  the forward pass runs under bf16 autocast when the model's spec allows it (matmuls
  on tensor cores; weights, gradients and optimizer state stay float32) and the loss
  is computed in float32; bf16 needs no loss scaler. Nothing below names CUDA except
  the device choice and the RNG seeding: data, model and batch order all follow
  ``device``.
* **Language modelling.** The examples are fixed-length windows of characters (the
  dataset is cut at the model's ``context_length``); the loss is the mean
  cross-entropy per character.
* **Divergence.** A non-finite training loss stops the run before its backward pass
  and raises ``Diverged``; so does a non-finite validation loss at the end of an epoch
  (the last step may have produced non-finite weights). Checking every batch costs a
  device sync per step, which these small models do not notice.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from workers.catalog import check_compatible, get_model_spec, metrics_for, validate_model_params
from workers.training.datasets import DataSplit, load_dataset, resolve_dataset_spec
from workers.training.models import build_model, count_parameters

log = logging.getLogger(__name__)

ParamsArg = list[dict[str, Any]] | Iterable[nn.Parameter]
MakeOptimizer = Callable[[ParamsArg, int], torch.optim.Optimizer]
MakeSchedule = Callable[[torch.optim.Optimizer, int], torch.optim.lr_scheduler.LRScheduler]
EVAL_BATCH = 4096
EVAL_TOKENS = 65_536  # language modelling: evaluate this many positions per chunk
THREADS_ENV = "OPTSERVE_TORCH_THREADS"
_SEED_MOD = 2**64  # torch.manual_seed / Generator.manual_seed take unsigned 64-bit seeds


@dataclass(frozen=True)
class EpochMetrics:
    """One point of a learning curve, as stored in the curves table."""

    epoch: int  # 1-based
    step: int  # optimizer steps so far
    examples: int  # training examples seen so far
    train_loss: float  # mean over the epoch's examples
    val_loss: float
    metrics: dict[str, float]  # every metric of metrics_for(task_type), in that order
    wall_time: float  # seconds since the first epoch started (setup excluded)
    lr: float  # lr of param group 0 at the end of the epoch


@dataclass(frozen=True)
class TrainResult:
    epochs: list[EpochMetrics]
    n_parameters: int
    device: str


class Diverged(Exception):
    """The loss became non-finite: the trial cannot go on.

    ``step`` is the number of optimizer steps taken when the non-finite loss was
    seen (the same count as ``EpochMetrics.step``); ``loss`` is the offending value.
    """

    def __init__(self, epoch: int, step: int, loss: float = math.nan) -> None:
        super().__init__(f"non-finite loss ({loss}) at epoch {epoch}, after {step} steps")
        self.epoch = epoch
        self.step = step
        self.loss = loss

    def __reduce__(self) -> tuple[Any, ...]:
        # Keep the attributes across pickling (Celery serialises task exceptions).
        return (Diverged, (self.epoch, self.step, self.loss))


@dataclass
class _Run:
    """The mutable state of one run, passed between the small functions below."""

    net: nn.Module
    data: DataSplit
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LRScheduler | None
    device: torch.device
    generator: torch.Generator
    batch_size: int
    grad_clip: float | None
    bf16: bool = True
    step: int = 0
    examples: int = 0


def train(
    *,
    model: str,
    model_params: dict[str, Any],
    dataset: str,
    dataset_params: dict[str, Any],
    epochs: int,
    batch_size: int,
    seed: int,
    make_optimizer: MakeOptimizer,
    on_epoch: Callable[[EpochMetrics], None],
    make_schedule: MakeSchedule | None = None,
    grad_clip: float | None = None,
    device: torch.device | str | None = None,
) -> TrainResult:
    """Train ``model`` on ``dataset`` for ``epochs`` epochs; see the module docstring.

    ``make_optimizer(param_groups, total_steps)`` and ``make_schedule(optimizer,
    total_steps)`` get the planned number of optimizer steps (epochs x batches per
    epoch, the last batch of an epoch may be short); the schedule is stepped after
    every optimizer step.

    Raises:
        CatalogError: unknown model/dataset, bad parameters, or an incompatible pair.
        ValueError: ``epochs``, ``batch_size`` or ``grad_clip`` out of range.
        Diverged: the training (or validation) loss became non-finite.
        Whatever ``on_epoch`` raises, unchanged.
    """
    _check_args(epochs, batch_size, grad_clip)
    spec = get_model_spec(model)
    check_compatible(spec, resolve_dataset_spec(dataset))
    resolved = validate_model_params(model, model_params)
    dev = resolve_device(device)
    if dev.type == "cpu":
        _configure_cpu_threads()
    context = resolved.get("context_length")
    data = load_dataset(
        dataset,
        dataset_params,
        seed=seed,
        device=dev,
        input_kind=spec.input_kind,
        context_length=int(context) if isinstance(context, int) else None,
    )
    seed %= _SEED_MOD
    with _seeded_global_rng(dev, seed):
        net = build_model(
            model, resolved, data.n_features, data.n_outputs, input_shape=data.input_shape
        ).to(dev)
        total_steps = epochs * math.ceil(data.X_train.shape[0] / batch_size)
        optimizer = make_optimizer(param_groups(net), total_steps)
        schedule = make_schedule(optimizer, total_steps) if make_schedule else None
        generator = torch.Generator().manual_seed(seed)
        run = _Run(net, data, optimizer, schedule, dev, generator, batch_size, grad_clip, spec.bf16)
        curve = _train_epochs(run, epochs, on_epoch)
    return TrainResult(epochs=curve, n_parameters=count_parameters(net), device=str(dev))


def _train_epochs(
    run: _Run, epochs: int, on_epoch: Callable[[EpochMetrics], None]
) -> list[EpochMetrics]:
    if run.device.type == "cuda":  # the peak is this trial's, not the process's
        torch.cuda.reset_peak_memory_stats(run.device)
    start = time.perf_counter()
    curve: list[EpochMetrics] = []
    for epoch in range(1, epochs + 1):
        train_loss = _train_epoch(run, epoch)
        point = _epoch_metrics(run, epoch, train_loss, time.perf_counter() - start)
        curve.append(point)
        on_epoch(point)
    return curve


def _train_epoch(run: _Run, epoch: int) -> float:
    """One pass over the training set in a seeded random order; the mean loss."""
    run.net.train()
    n = run.data.X_train.shape[0]
    order = torch.randperm(n, generator=run.generator).to(run.device)
    total = 0.0
    for start in range(0, n, run.batch_size):
        batch = order[start : start + run.batch_size]
        total += _train_step(run, batch, epoch) * batch.numel()
    return total / n


def _train_step(run: _Run, batch: torch.Tensor, epoch: int) -> float:
    run.optimizer.zero_grad(set_to_none=True)
    with _autocast(run.device, run.bf16):
        output = run.net(run.data.X_train[batch])
    loss = _loss(output, run.data.y_train[batch], run.data.task_type)
    value = loss.item()
    if not math.isfinite(value):
        raise Diverged(epoch, run.step, value)
    torch.autograd.backward(loss)
    if run.grad_clip is not None:
        nn.utils.clip_grad_norm_(run.net.parameters(), run.grad_clip)
    run.optimizer.step()
    if run.schedule is not None:
        run.schedule.step()
    run.step += 1
    run.examples += batch.numel()
    return value


def _epoch_metrics(run: _Run, epoch: int, train_loss: float, wall_time: float) -> EpochMetrics:
    data = run.data
    val = evaluate(
        run.net,
        data.X_val,
        data.y_val,
        task_type=data.task_type,
        target_scale=data.target_scale,
        bf16=run.bf16,
    )
    if not math.isfinite(val["val_loss"]):
        raise Diverged(epoch, run.step, val["val_loss"])
    found = {
        **val,
        "train_loss": train_loss,
        "train_time": wall_time,
        "peak_memory": float(_peak_memory(run)),
    }
    return EpochMetrics(
        epoch=epoch,
        step=run.step,
        examples=run.examples,
        train_loss=train_loss,
        val_loss=val["val_loss"],
        metrics={name: found[name] for name in metrics_for(data.task_type)},
        wall_time=wall_time,
        lr=float(run.optimizer.param_groups[0]["lr"]),
    )


def _peak_memory(run: _Run) -> int:
    """Bytes at the peak on CUDA; on CPU, parameters + gradients + optimizer state."""
    if run.device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(run.device))
    tensors = list(run.net.parameters())
    tensors += [p.grad for p in run.net.parameters() if p.grad is not None]
    for state in run.optimizer.state.values():
        tensors += [t for t in state.values() if isinstance(t, torch.Tensor)]
    return sum(t.numel() * t.element_size() for t in tensors)


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    *,
    task_type: str,
    target_scale: float = 1.0,
    bf16: bool = True,
) -> dict[str, float]:
    """Validation metrics of ``model`` (in eval mode, in chunks); its mode is restored.

    Classification: ``val_accuracy`` and ``val_loss`` (cross-entropy). Regression:
    ``val_loss`` (MSE of standardised targets, what training minimises), ``val_rmse``
    in the target's own units (times ``target_scale``) and ``val_r2``. Language
    modelling: ``val_loss`` (nats per character), ``val_bpc`` and ``val_perplexity``.
    """
    was_training = model.training
    model.eval()
    try:
        with _autocast(X.device, bf16):
            if task_type == "language_modeling":
                return _lm_metrics(model, X, y)
            chunks = [model(X[i : i + EVAL_BATCH]) for i in range(0, X.shape[0], EVAL_BATCH)]
        output = torch.cat(chunks).float()
    finally:
        model.train(was_training)
    loss = _loss(output, y, task_type).item()
    if task_type == "classification":
        accuracy = (output.argmax(dim=1) == y).sum().item() / max(len(y), 1)
        return {"val_accuracy": accuracy, "val_loss": loss}
    sse = (output.squeeze(-1) - y).pow(2).sum()
    sst = (y - y.mean()).pow(2).sum()
    r2 = (1.0 - sse / sst).item() if sst.item() > 0 else 0.0
    return {"val_rmse": math.sqrt(loss) * target_scale, "val_r2": r2, "val_loss": loss}


def _lm_metrics(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Summed per chunk: the logits of every position at once would not fit."""
    step = max(1, EVAL_TOKENS // max(X.shape[1], 1))
    total = torch.zeros((), device=X.device)
    for i in range(0, X.shape[0], step):
        output = model(X[i : i + step]).float()
        total += F.cross_entropy(output.flatten(0, 1), y[i : i + step].flatten(), reduction="sum")
    loss = total.item() / max(y.numel(), 1)
    perplexity = math.exp(loss) if loss < 700 else math.inf  # math.exp overflows past ~709
    return {"val_loss": loss, "val_bpc": loss / math.log(2), "val_perplexity": perplexity}


def param_groups(model: nn.Module) -> list[dict[str, Any]]:
    """Weights (decayed) in group 0, biases and norm scales (``weight_decay=0``) in group 1."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups: list[dict[str, Any]] = [
        {"params": [p for p in params if p.ndim >= 2]},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


def resolve_device(device: torch.device | str | None) -> torch.device:
    """``None`` means the GPU when there is one, else the CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _loss(output: torch.Tensor, target: torch.Tensor, task_type: str) -> torch.Tensor:
    output = output.float()
    if task_type == "language_modeling":
        return F.cross_entropy(output.flatten(0, 1), target.flatten())
    if task_type == "classification":
        return F.cross_entropy(output, target)
    return F.mse_loss(output.squeeze(-1), target)


def _autocast(device: torch.device, bf16: bool = True) -> AbstractContextManager[Any]:
    """bf16 autocast on CUDA where the model allows it (module docstring); else a no-op."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16 and device.type == "cuda")


def _configure_cpu_threads() -> None:
    """Apply ``OPTSERVE_TORCH_THREADS``; a bad value is logged and ignored, not fatal.

    A typo in the deployment should not fail every trial as "invalid configuration".
    """
    raw = os.environ.get(THREADS_ENV, "").strip()
    if not raw:
        return
    if not raw.isdigit() or int(raw) < 1:
        log.warning("ignoring %s=%r: expected an integer >= 1", THREADS_ENV, raw)
        return
    if torch.get_num_threads() != int(raw):
        torch.set_num_threads(int(raw))


@contextmanager
def _seeded_global_rng(device: torch.device, seed: int) -> Iterator[None]:
    """Fork torch's global RNG (CPU, and the run's GPU) and seed it; restore it after.

    Only the run's own device is seeded: ``torch.manual_seed`` would also reseed every
    GPU, outside what ``fork_rng`` saved.
    """
    gpus: list[int] = []
    if device.type == "cuda":
        gpus = [device.index if device.index is not None else torch.cuda.current_device()]
    with torch.random.fork_rng(devices=gpus):
        torch.default_generator.manual_seed(seed)
        for gpu in gpus:
            with torch.cuda.device(gpu):
                torch.cuda.manual_seed(seed)
        yield


def _check_args(epochs: int, batch_size: int, grad_clip: float | None) -> None:
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"Invalid epochs value: {epochs!r} (must be an integer >= 1)")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"Invalid batch_size value: {batch_size!r} (must be an integer >= 1)")
    if grad_clip is not None and not (math.isfinite(grad_clip) and grad_clip > 0):
        raise ValueError(f"Invalid grad_clip value: {grad_clip!r} (must be a number > 0)")
