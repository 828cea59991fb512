"""Character-level language modelling: the corpus, its windows, and the LM metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from workers.catalog import CatalogError, corpus, get_dataset_spec, validate_dataset_params
from workers.training import evaluate, load_dataset, train
from workers.training.datasets import load_python_docs

TINY = {"d_model": 32, "layers": 1, "heads": 2, "context_length": 32}
SHORT = {"max_chars": 20_000}


def test_spec_matches_the_corpus() -> None:
    spec = get_dataset_spec("python_docs")
    ids = load_python_docs(max_chars=None)
    assert spec.n_examples == len(ids) > 400_000
    assert spec.n_features == spec.n_classes == corpus.VOCAB_SIZE == 97
    assert ids.max() < corpus.VOCAB_SIZE
    # Almost everything is in the alphabet: the "other" id is rare.
    assert (ids == corpus.OTHER).mean() < 0.01
    assert corpus.encode("a\n") == [corpus.ALPHABET.index("a") + 1, 1]


def test_max_chars_is_validated() -> None:
    assert validate_dataset_params("python_docs", {})["max_chars"] is None
    with pytest.raises(CatalogError) as info:
        validate_dataset_params("python_docs", {"max_chars": 10})
    assert info.value.field == "max_chars"


def test_windows_are_shifted_and_the_tail_is_held_out() -> None:
    data = load_dataset("python_docs", SHORT, seed=0, context_length=32)
    ids = torch.as_tensor(load_python_docs(max_chars=20_000).astype(np.int64))
    assert data.X_train.shape[1] == data.y_train.shape[1] == 32
    assert data.X_train.dtype == torch.int64 and data.task_type == "language_modeling"
    # Targets are the inputs shifted by one character; windows follow each other.
    assert torch.equal(data.X_train[0], ids[:32]) and torch.equal(data.y_train[0], ids[1:33])
    assert torch.equal(data.X_train[1], ids[32:64])
    # The validation windows come from the last 10%, after every training character.
    assert torch.equal(data.X_val[0], ids[18_000:18_032])
    assert len(data.X_train) * 32 + 1 <= 18_000 < (len(data.X_train) + 1) * 32 + 1
    # The split does not depend on the seed (it is a held-out tail, not a draw).
    assert torch.equal(load_dataset("python_docs", SHORT, seed=5, context_length=32).X_val,
                       data.X_val)  # fmt: skip


def test_long_context_still_has_a_validation_window() -> None:
    data = load_dataset("python_docs", {"max_chars": 10_000}, seed=0, context_length=1024)
    assert len(data.X_val) == 1 and len(data.X_train) >= 1


def test_metrics_are_consistent() -> None:
    data = load_dataset("python_docs", SHORT, seed=0, context_length=16)
    uniform = torch.nn.Sequential(torch.nn.Embedding(97, 1), torch.nn.Linear(1, 97))
    torch.nn.init.zeros_(uniform[1].weight)
    torch.nn.init.zeros_(uniform[1].bias)
    m = evaluate(uniform, data.X_val, data.y_val, task_type="language_modeling")
    # A uniform prediction costs log(V) nats per character: log2(97) bits.
    assert m["val_loss"] == pytest.approx(math.log(97), rel=1e-5)
    assert m["val_bpc"] == pytest.approx(math.log2(97), rel=1e-5)
    assert m["val_perplexity"] == pytest.approx(97, rel=1e-4)


def test_transformer_learns_characters() -> None:
    def adamw(lr: float):  # type: ignore[no-untyped-def]
        return lambda params, total_steps: torch.optim.AdamW(params, lr=lr)

    common = {"model": "transformer", "model_params": TINY, "dataset": "python_docs",
              "dataset_params": SHORT, "epochs": 2, "batch_size": 16, "seed": 0,
              "on_epoch": lambda point: None}  # fmt: skip
    before = train(**common, make_optimizer=adamw(0.0)).epochs[0]
    result = train(**common, make_optimizer=adamw(3e-3))
    last = result.epochs[-1]
    assert before.metrics["val_bpc"] == pytest.approx(math.log2(97), abs=0.1)
    assert last.metrics["val_bpc"] < before.metrics["val_bpc"] - 1.0
    assert last.examples == 2 * len(load_dataset("python_docs", SHORT, seed=0,
                                                 context_length=32).X_train)  # fmt: skip
    assert all(math.isfinite(v) for v in last.metrics.values())
