"""``shared``: batch size, one weight decay and gradient clipping as per-trial knobs."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from api_schemas import JobCreate
from api_schemas.search_space import grid_points, grid_size

BODY: dict[str, Any] = {
    "task": {
        "model": {"name": "mlp"},
        "dataset": {"name": "digits"},
        "epochs": 2,
    },
    "search_space": {"optimizers": ["sgd", "adamw"]},
    "n_trials": 4,
}
SHARED = {
    "batch_size": {"type": "categorical", "choices": [32, 128]},
    "weight_decay": {"type": "float", "low": 1e-5, "high": 1e-2, "log": True},
    "grad_clip": {"type": "float", "low": 0.1, "high": 10.0, "log": True},
}


def errors(body: dict[str, Any]) -> list[dict[str, Any]]:
    with pytest.raises(ValidationError) as info:
        JobCreate.model_validate(body)
    return [dict(e) for e in info.value.errors()]


def test_shared_knobs_resolve_to_one_dimension_each() -> None:
    resolved = JobCreate.model_validate(BODY | {"shared": SHARED}).resolved_space()
    assert set(resolved.shared) == set(SHARED)
    # the shared weight decay replaces each optimizer's own space
    assert all("weight_decay" not in spaces for spaces in resolved.optimizers.values())
    tuned = resolved.tuned_parameters()
    assert {"batch_size", "weight_decay", "grad_clip"} <= set(tuned)
    assert not any(name.endswith(".weight_decay") for name in tuned)
    stored = resolved.model_dump(mode="json")
    assert stored["shared"]["batch_size"] == {"type": "categorical", "choices": [32, 128]}


def test_without_shared_knobs_each_optimizer_keeps_its_weight_decay() -> None:
    resolved = JobCreate.model_validate(BODY).resolved_space()
    assert resolved.shared == {}
    assert "adamw.weight_decay" in resolved.tuned_parameters()


def test_a_fixed_shared_value_is_not_sampled() -> None:
    resolved = JobCreate.model_validate(BODY | {"shared": {"batch_size": 256}}).resolved_space()
    assert resolved.shared["batch_size"].type == "fixed"
    assert "batch_size" not in resolved.tuned_parameters()


@pytest.mark.parametrize(
    ("shared", "loc"),
    [
        ({"momentum": 0.9}, ("shared", "momentum")),
        ({"batch_size": 0}, ("shared", "batch_size", "fixed", "value")),
        (
            {"batch_size": {"type": "float", "low": 8.0, "high": 64.0}},
            ("shared", "batch_size", "float", "type"),
        ),
        (
            {"weight_decay": {"type": "float", "low": -1.0, "high": 0.1}},
            ("shared", "weight_decay", "float", "low"),
        ),
        ({"grad_clip": 0.0}, ("shared", "grad_clip", "fixed", "value")),
    ],
)
def test_shared_knobs_are_checked_against_their_domain(
    shared: dict[str, Any], loc: tuple[Any, ...]
) -> None:
    (error,) = errors(BODY | {"shared": shared})
    assert error["loc"] == loc, error


def test_a_shared_weight_decay_refuses_an_optimizers_own() -> None:
    body = BODY | {
        "shared": {"weight_decay": 0.01},
        "search_space": {"optimizers": {"sgd": {}, "adamw": {"weight_decay": 0.1}}},
    }
    (error,) = errors(body)
    assert error["loc"] == ("search_space", "optimizers", "adamw", "weight_decay")
    assert error["type"] == "shared_knob"


def test_a_sweep_refuses_shared_knobs() -> None:
    body = BODY | {"mode": "sweep", "shared": {"batch_size": 32}}
    body.pop("n_trials")
    assert [e["loc"] for e in errors(body)] == [("shared",)]


def test_a_grid_varies_the_shared_knobs_too() -> None:
    space = {"optimizers": {"sgd": {"lr": {"type": "categorical", "choices": [0.1, 0.01]}}}}
    body = BODY | {
        "search_space": space,
        "sampler": {"name": "grid"},
        "shared": {"batch_size": {"type": "categorical", "choices": [32, 64, 128]}},
        "n_trials": 6,
    }
    resolved = JobCreate.model_validate(body).resolved_space()
    points = list(grid_points(resolved))
    assert grid_size(resolved) == len(points) == 6
    assert {(p["sgd.lr"], p["batch_size"]) for p in points} == {
        (lr, bs) for lr in (0.1, 0.01) for bs in (32, 64, 128)
    }
    ranged = body | {"shared": {"batch_size": {"type": "int", "low": 8, "high": 64}}}
    assert [e["loc"] for e in errors(ranged)] == [("shared", "batch_size", "int")]


def test_multi_objective_jobs_take_a_pruner() -> None:
    objectives = [
        {"metric": "val_accuracy", "direction": "maximize"},
        {"metric": "train_time", "direction": "minimize"},
    ]
    job = JobCreate.model_validate(BODY | {"objectives": objectives, "pruner": {"name": "median"}})
    assert job.pruner.name == "median"


def test_the_readme_shared_example_resolves_to_its_distributions() -> None:
    import re
    from pathlib import Path

    import yaml

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    block = re.search(r"```yaml\n(shared:\n.*?)```", readme, re.S)
    assert block is not None, "the README's shared-knobs example is gone"
    shared = yaml.safe_load(block.group(1))["shared"]
    tuned = JobCreate.model_validate(BODY | {"shared": shared}).resolved_space().tuned_parameters()
    assert tuned["batch_size"].model_dump() == {"type": "categorical", "choices": [32, 64, 128]}
    assert tuned["weight_decay"].model_dump()["log"] is True
    assert (tuned["grad_clip"].model_dump()["low"], tuned["grad_clip"].model_dump()["high"]) == (
        0.1,
        10,
    )
