"""The job body and the responses: one test per rule, each asserting ``loc`` and ``type``."""

from __future__ import annotations

import copy
import datetime as dt
import json
import math
import uuid
from typing import Any

import pytest
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from api_schemas import (
    BestRead,
    CurvePoint,
    CurveRead,
    ErrorBody,
    JobCreate,
    JobList,
    JobRead,
    TrialList,
    TrialRead,
    decode_float,
    encode_float,
    limits,
)
from api_schemas.jobs import OptimizerComparison
from api_schemas.limits import MAX_BATCH_SIZE, MAX_EPOCHS, MAX_PARALLEL, MAX_TRIALS

BODY: dict[str, Any] = {
    "name": "digits-mlp",
    "task": {
        "model": {"name": "mlp", "params": {"width": 128}},
        "dataset": {"name": "digits"},
        "epochs": 3,
        "batch_size": 64,
        "metric": "val_accuracy",
        "direction": "maximize",
        "seed": 0,
    },
    "search_space": {
        "optimizers": {
            "sgd": {
                "lr": {"type": "float", "low": 0.001, "high": 1.0, "log": True},
                "momentum": {"type": "float", "low": 0.0, "high": 0.99},
            },
            "adamw": {},
        }
    },
    "n_trials": 6,
    "max_parallel": 2,
    "sampler": {"name": "tpe"},
    "pruner": {"name": "none"},
}


def body_with(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    body = copy.deepcopy(BODY)
    node = body
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return body


def one_error(body: dict[str, Any]) -> ErrorDetails:
    with pytest.raises(ValidationError) as info:
        JobCreate.model_validate(body)
    found = info.value.errors(include_url=False)
    assert len(found) == 1, found
    return found[0]


def test_example_body_is_accepted_and_echoed() -> None:
    job = JobCreate.model_validate_json(json.dumps(BODY))
    assert job.task.metric == "val_accuracy" and job.max_parallel == 2
    dumped = job.model_dump(mode="json")
    assert dumped["task"] == BODY["task"] | {
        "model": {"name": "mlp", "params": {"width": 128}},
        "dataset": {"name": "digits", "params": {}},
        "grad_clip": None,
    }
    assert dumped["sampler"] == {"name": "tpe", "options": {}, "seed": None}
    assert JobCreate.model_validate(dumped) == job


def test_defaults_of_a_minimal_body() -> None:
    minimal = {
        "task": {"model": {"name": "mlp"}, "dataset": {"name": "digits"}, "epochs": 1},
        "search_space": {"optimizers": ["adamw"]},
        "n_trials": 1,
    }
    job = JobCreate.model_validate(minimal)
    assert job.name is None and job.schedule is None and job.max_failed_trials is None
    assert (job.task.batch_size, job.task.metric, job.task.direction, job.task.seed) == (
        64,
        "val_loss",
        "minimize",
        0,
    )
    assert (job.max_parallel, job.sampler.name, job.pruner.name) == (1, "tpe", "none")


# -- V5: strict counts ---------------------------------------------------------------------
@pytest.mark.parametrize("value", [True, "10", 10.0])
def test_v5_n_trials_is_a_strict_int(value: Any) -> None:
    error = one_error(body_with(("n_trials",), value))
    assert error["loc"] == ("n_trials",)
    assert error["type"] == "int_type"


@pytest.mark.parametrize("raw", ["true", '"10"', "10.0"])
def test_v5_n_trials_is_a_strict_int_from_json(raw: str) -> None:
    text = json.dumps(BODY).replace('"n_trials": 6', f'"n_trials": {raw}')
    with pytest.raises(ValidationError) as info:
        JobCreate.model_validate_json(text)
    assert [(e["loc"], e["type"]) for e in info.value.errors()] == [(("n_trials",), "int_type")]


@pytest.mark.parametrize(
    "path",
    [("task", "epochs"), ("task", "batch_size"), ("task", "seed"), ("max_parallel",)],
)
def test_other_counts_are_strict(path: tuple[str, ...]) -> None:
    error = one_error(body_with(path, "2"))
    assert error["loc"] == path
    assert error["type"] == "int_type"


# -- V6: caps and the cross-field rule ---------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "cap"),
    [
        (("n_trials",), MAX_TRIALS),
        (("task", "epochs"), MAX_EPOCHS),
        (("task", "batch_size"), MAX_BATCH_SIZE),
    ],
)
def test_v6_caps_name_the_field(path: tuple[str, ...], cap: int) -> None:
    error = one_error(body_with(path, cap + 1))
    assert error["loc"] == path
    assert error["type"] == "less_than_equal"
    assert str(cap) in error["msg"]
    JobCreate.model_validate(body_with(path, cap) | {"max_parallel": 1})


def test_v6_epochs_far_above_the_cap() -> None:
    assert one_error(body_with(("task", "epochs"), 10**6))["loc"] == ("task", "epochs")


def test_v6_max_parallel_cap() -> None:
    body = body_with(("n_trials",), MAX_TRIALS) | {"max_parallel": MAX_PARALLEL + 1}
    error = one_error(body)
    assert error["loc"] == ("max_parallel",)
    assert error["type"] == "less_than_equal"


def test_v6_max_parallel_above_n_trials_is_reported_on_max_parallel() -> None:
    error = one_error(body_with(("max_parallel",), 7))
    assert error["loc"] == ("max_parallel",)
    assert error["type"] == "max_parallel_above_n_trials"
    assert "n_trials" in error["msg"]


@pytest.mark.parametrize(("path", "value"), [(("n_trials",), 0), (("max_parallel",), 0)])
def test_counts_are_positive(path: tuple[str, ...], value: int) -> None:
    error = one_error(body_with(path, value))
    assert error["loc"] == path
    assert error["type"] == "greater_than_equal"


def test_negative_seed_and_max_failed_trials() -> None:
    assert one_error(body_with(("task", "seed"), -1))["loc"] == ("task", "seed")
    assert one_error(body_with(("max_failed_trials",), -1))["loc"] == ("max_failed_trials",)


# -- V7: unknown fields ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "path",
    [("optimzer",), ("task", "optimzer"), ("task", "model", "optimzer"), ("sampler", "seeed")],
)
def test_v7_unknown_field(path: tuple[str, ...]) -> None:
    error = one_error(body_with(path, "adamw"))
    assert error["loc"] == path
    assert error["type"] == "extra_forbidden"


# -- task ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["os.system", "Mlp", "__import__", "", "a" * 65])
def test_model_name_is_a_catalogue_key_never_code(name: str) -> None:
    error = one_error(body_with(("task", "model", "name"), name))
    assert error["loc"] == ("task", "model", "name")
    assert error["type"] in ("string_pattern_mismatch", "string_too_short", "string_too_long")


def test_dataset_may_be_an_uploaded_id() -> None:
    upload = str(uuid.uuid4())
    job = JobCreate.model_validate(body_with(("task", "dataset", "name"), upload))
    assert job.task.dataset.name == upload
    error = one_error(body_with(("task", "dataset", "name"), "../etc/passwd"))
    assert error["loc"] == ("task", "dataset", "name")


def test_model_params_are_scalars() -> None:
    error = one_error(body_with(("task", "model", "params"), {"width": [128, 64]}))
    assert error["loc"] == ("task", "model", "params", "width")
    assert error["type"] == "scalar_type"


def test_direction_is_one_of_two() -> None:
    error = one_error(body_with(("task", "direction"), "max"))
    assert error["loc"] == ("task", "direction")
    assert error["type"] == "literal_error"


def test_name_length() -> None:
    assert one_error(body_with(("name",), ""))["type"] == "string_too_short"
    assert one_error(body_with(("name",), "x" * 129))["type"] == "string_too_long"


# -- sampler and pruner ------------------------------------------------------------------------
def test_unknown_sampler() -> None:
    error = one_error(body_with(("sampler",), {"name": "anneal"}))
    assert error["loc"] == ("sampler", "name")
    assert error["type"] == "literal_error"


def test_sampler_options_are_checked() -> None:
    sampler = {"name": "tpe", "options": {"n_startup_trials": 5, "bogus": 1, "prior_weight": 0}}
    with pytest.raises(ValidationError) as info:
        JobCreate.model_validate(body_with(("sampler",), sampler))
    found = [(e["loc"], e["type"]) for e in info.value.errors()]
    assert found == [
        (("sampler", "options", "bogus"), "unknown_option"),
        (("sampler", "options", "prior_weight"), "invalid_option"),
    ]


def test_multivariate_off_needs_group_off() -> None:
    options: dict[str, Any] = {"multivariate": False}
    error = one_error(body_with(("sampler",), {"name": "tpe", "options": options}))
    assert error["loc"] == ("sampler", "options", "multivariate")
    options["group"] = False
    JobCreate.model_validate(body_with(("sampler",), {"name": "tpe", "options": options}))


def test_pruner_options_are_checked() -> None:
    pruner = {"name": "median", "options": {"n_warmup_steps": 2, "interval_steps": 0}}
    error = one_error(body_with(("pruner",), pruner))
    assert error["loc"] == ("pruner", "options", "interval_steps")
    assert error["type"] == "invalid_option"
    error = one_error(body_with(("pruner",), {"name": "none", "options": {"n_warmup_steps": 1}}))
    assert error["type"] == "unknown_option"


# -- N2: non-finite values in responses ---------------------------------------------------------
@pytest.mark.parametrize(
    ("x", "expected"),
    [
        (0.5, (0.5, "finite")),
        (math.inf, (None, "inf")),
        (-math.inf, (None, "-inf")),
        (math.nan, (None, "nan")),
        (None, (None, None)),
    ],
)
def test_encode_float(x: float | None, expected: tuple[Any, Any]) -> None:
    assert encode_float(x) == expected
    back = decode_float(*encode_float(x))
    assert back == x or (x is not None and math.isnan(x) and back is not None and math.isnan(back))


def test_n2_best_and_trial_values_are_json_safe() -> None:
    best = BestRead(value=math.inf, trial=3, optimizer="adamw", params={"adamw.lr": 1e-3})
    assert (best.value, best.value_kind) == (None, "inf")
    trial = TrialRead(number=1, state="complete", value=math.nan)
    assert (trial.value, trial.value_kind) == (None, "nan")
    assert TrialRead(number=2, state="complete", value=0.25).value_kind == "finite"
    assert TrialRead(number=3, state="running").value_kind is None
    for model in (best, trial):
        json.loads(model.model_dump_json())
        json.dumps(model.model_dump(mode="json"), allow_nan=False)


def test_curve_points_send_non_finite_losses_as_null() -> None:
    point = CurvePoint(
        epoch=3,
        step=30,
        wall_time=1.5,
        train_loss=math.nan,
        val_loss=math.inf,
        val_metric=0.5,
        metrics={"val_accuracy": 0.5, "val_loss": math.inf},
    )
    assert (point.train_loss, point.val_loss, point.val_metric) == (None, None, 0.5)
    assert point.metrics == {"val_accuracy": 0.5, "val_loss": None}
    curve = CurveRead(job_id=uuid.uuid4(), trial=0, metric="val_loss", points=[point])
    json.dumps(curve.model_dump(mode="json"), allow_nan=False)


def _job_read(**overrides: Any) -> JobRead:
    spec = JobCreate.model_validate(BODY)
    fields: dict[str, Any] = {
        "id": uuid.uuid4(),
        "name": spec.name,
        "status": "running",
        "spec": spec,
        "resolved_space": spec.resolved_space(),
        "counts": {"complete": 2, "pruned": 1, "running": 2},
        "n_finished": 3,
        "best": BestRead(value=0.91, trial=1, optimizer="sgd"),
        "created_at": dt.datetime(2025, 1, 1, tzinfo=dt.UTC),
    }
    return JobRead(**(fields | overrides))


def test_job_read_round_trips_through_json() -> None:
    job = _job_read()
    text = job.model_dump_json()
    assert JobRead.model_validate_json(text) == job
    data = json.loads(text)
    assert data["resolved_space"]["optimizers"]["adamw"]["beta1"] == {
        "type": "fixed",
        "value": 0.9,
    }
    assert data["best"]["value_kind"] == "finite"


def test_job_read_reads_a_stored_row() -> None:
    # What the service stores (JSON) reads back into the response model.
    job = _job_read()
    stored = json.loads(job.model_dump_json())
    assert JobRead.model_validate(stored) == job


def test_job_read_rejects_unknown_states_and_statuses() -> None:
    with pytest.raises(ValidationError) as info:
        _job_read(status="done", counts={"finished": 1})
    assert {e["loc"][0] for e in info.value.errors()} == {"status", "counts"}


def test_pages() -> None:
    page = JobList(items=[_job_read()], total=1, limit=50, offset=0)
    assert JobList.model_validate_json(page.model_dump_json()) == page
    trials = TrialList(
        items=[TrialRead(number=0, state="fail", failure_reason="oom")], total=1, limit=50, offset=0
    )
    assert trials.items[0].failure_reason == "oom"


# -- error envelope ----------------------------------------------------------------------------
def test_error_body_from_validation_errors_is_json_safe() -> None:
    text = json.dumps(BODY).replace('"low": 0.0,', '"low": NaN,')
    with pytest.raises(ValidationError) as info:
        JobCreate.model_validate_json(text)
    envelope = ErrorBody.from_errors(info.value.errors())
    loc = ["search_space", "optimizers", "sgd", "momentum", "float", "low"]
    assert envelope.model_dump() == {
        "detail": [{"loc": loc, "msg": "Input should be a finite number", "type": "finite_number"}]
    }
    json.dumps(envelope.model_dump(mode="json"), allow_nan=False)


def test_error_body_parses_fastapi_422_items() -> None:
    item = {"loc": ["body", "n_trials"], "msg": "m", "type": "int_type", "input": "10", "url": "u"}
    assert ErrorBody.model_validate({"detail": [item]}).detail[0].loc == ["body", "n_trials"]


# -- schemas for OpenAPI ----------------------------------------------------------------------
def test_json_schemas_build() -> None:
    schema = JobCreate.model_json_schema()
    assert schema["properties"]["n_trials"]["maximum"] == MAX_TRIALS
    JobRead.model_json_schema(mode="serialization")
    JobList.model_json_schema()


# -- limits --------------------------------------------------------------------------------------
def test_limits_read_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPTSERVE_MAX_TRIALS", "50")
    assert limits._env_int("OPTSERVE_MAX_TRIALS", 1000) == 50
    monkeypatch.setenv("OPTSERVE_MAX_TRIALS", "")
    assert limits._env_int("OPTSERVE_MAX_TRIALS", 1000) == 1000
    for bad in ("ten", "0"):
        monkeypatch.setenv("OPTSERVE_MAX_TRIALS", bad)
        with pytest.raises(ValueError, match="OPTSERVE_MAX_TRIALS"):
            limits._env_int("OPTSERVE_MAX_TRIALS", 1000)


# -- samplers, pruners, budgets, lookahead and grids (issue 4) -----------------------------
@pytest.mark.parametrize(
    ("pruner", "loc", "type_"),
    [
        ({"name": "percentile"}, ("pruner", "options", "percentile"), "missing"),
        (
            {"name": "percentile", "options": {"percentile": 120}},
            ("pruner", "options", "percentile"),
            "invalid_option",
        ),
        ({"name": "threshold"}, ("pruner", "options"), "missing_threshold"),
        (
            {"name": "threshold", "options": {"lower": 0.9, "upper": 0.1}},
            ("pruner", "options", "upper"),
            "range_order",
        ),
        (
            {"name": "successive_halving", "options": {"reduction_factor": 1}},
            ("pruner", "options", "reduction_factor"),
            "invalid_option",
        ),
        (
            {"name": "hyperband", "options": {"max_resource": "all"}},
            ("pruner", "options", "max_resource"),
            "invalid_option",
        ),
    ],
)
def test_pruner_rules(pruner: dict[str, Any], loc: tuple[str, ...], type_: str) -> None:
    error = one_error(body_with(("pruner",), pruner))
    assert (error["loc"], error["type"]) == (loc, type_)


@pytest.mark.parametrize(
    "sampler",
    [
        {"name": "qmc", "options": {"qmc_type": "halton", "scramble": True}},
        {"name": "cmaes", "options": {"sigma0": 0.5, "n_startup_trials": 2}},
        {"name": "gp", "options": {"deterministic_objective": True}},
        {"name": "random"},
    ],
)
def test_samplers_with_options_are_accepted(sampler: dict[str, Any]) -> None:
    assert (
        JobCreate.model_validate(body_with(("sampler",), sampler)).sampler.name == sampler["name"]
    )


def test_qmc_type_is_checked() -> None:
    error = one_error(body_with(("sampler",), {"name": "qmc", "options": {"qmc_type": "lhs"}}))
    assert error["loc"] == ("sampler", "options", "qmc_type")


@pytest.mark.parametrize(
    ("field", "value", "type_"),
    [
        ("timeout", 0, "greater_than"),
        ("timeout", "60", "float_type"),
        ("trial_timeout", -1.0, "greater_than"),
        ("target", float("nan"), "finite_number"),
    ],
)
def test_budgets_are_checked(field: str, value: Any, type_: str) -> None:
    error = one_error(body_with((field,), value))
    assert (error["loc"], error["type"]) == ((field,), type_)


def test_grad_clip_must_be_positive() -> None:
    error = one_error(body_with(("task", "grad_clip"), 0.0))
    assert error["loc"] == ("task", "grad_clip")
    job = JobCreate.model_validate(body_with(("task", "grad_clip"), 1.0))
    assert job.task.grad_clip == 1.0


def test_lookahead_resolves_over_every_optimizer() -> None:
    job = JobCreate.model_validate(body_with(("lookahead",), {"k": 5}))
    resolved = job.resolved_space()
    assert set(resolved.optimizers) == {"lookahead+sgd", "lookahead+adamw"}
    wrapped = resolved.optimizers["lookahead+sgd"]
    assert wrapped["lookahead_k"].model_dump() == {"type": "fixed", "value": 5}
    assert wrapped["lookahead_alpha"].type == "float"  # the wrapper's default prior
    assert wrapped["lr"] == job.search_space.optimizers["sgd"]["lr"]


def test_lookahead_hyperparameters_are_checked_against_the_registry() -> None:
    error = one_error(body_with(("lookahead",), {"k": 0}))
    assert error["loc"] == ("lookahead", "k", "fixed", "value")
    error = one_error(body_with(("lookahead",), {"beta": 0.5}))
    assert error["loc"] == ("lookahead", "beta")


def test_grid_takes_listed_values_and_fixes_the_rest() -> None:
    space = {"optimizers": {"sgd": {"lr": {"type": "categorical", "choices": [0.1, 0.01]}}}}
    body = body_with(("search_space",), space) | {"sampler": {"name": "grid"}, "n_trials": 2}
    body["max_parallel"] = 1
    resolved = JobCreate.model_validate(body).resolved_space()
    tuned = resolved.tuned_parameters()
    assert set(tuned) == {"sgd.lr"}
    error = one_error(body | {"n_trials": 3})
    assert error["loc"] == ("n_trials",) and error["type"] == "grid_too_small"


def test_grid_refuses_ranges_naming_them() -> None:
    with pytest.raises(ValidationError) as info:
        JobCreate.model_validate(body_with(("sampler",), {"name": "grid"}))
    found = [(e["loc"], e["type"]) for e in info.value.errors()]
    assert found == [
        (("search_space", "optimizers", "sgd", "lr", "float"), "grid_range"),
        (("search_space", "optimizers", "sgd", "momentum", "float"), "grid_range"),
    ]


def test_grid_points_cover_optimizers_and_schedules_without_repeats() -> None:
    from api_schemas.search_space import grid_points, grid_size

    space = {
        "optimizers": {
            "sgd": {"lr": {"type": "categorical", "choices": [0.1, 0.01]}},
            "adamw": {"lr": {"type": "categorical", "choices": [0.001]}},
        }
    }
    body = body_with(("search_space",), space) | {"sampler": {"name": "grid"}, "n_trials": 6}
    body["schedule"] = {"constant": {}, "cosine": {}}
    resolved = JobCreate.model_validate(body).resolved_space()
    points = list(grid_points(resolved))
    assert grid_size(resolved) == len(points) == 6
    assert points[0] == {"optimizer": "adamw", "adamw.lr": 0.001, "schedule": "constant"}
    assert len({tuple(sorted(p.items())) for p in points}) == 6


OBJECTIVES = [
    {"metric": "val_accuracy", "direction": "maximize"},
    {"metric": "val_loss", "direction": "minimize"},
]


@pytest.mark.parametrize(
    ("change", "loc"),
    [
        ({"sampler": {"name": "cmaes"}}, ("sampler", "name")),
        ({"target": 0.9}, ("target",)),
        ({"objectives": [OBJECTIVES[0], OBJECTIVES[0]]}, ("objectives", 1, "metric")),
    ],
)
def test_multi_objective_rules(change: dict[str, Any], loc: tuple[Any, ...]) -> None:
    error = one_error(BODY | {"objectives": OBJECTIVES} | change)
    assert error["loc"] == loc


def test_nsga2_needs_several_objectives() -> None:
    error = one_error(body_with(("sampler",), {"name": "nsga2"}))
    assert error["loc"] == ("sampler", "name") and error["type"] == "single_objective"
    job = JobCreate.model_validate(BODY | {"objectives": OBJECTIVES, "sampler": {"name": "nsga2"}})
    assert job.objectives is not None and len(job.objectives) == 2


@pytest.mark.parametrize(
    ("change", "loc"),
    [
        ({"n_trials": 5}, ("n_trials",)),
        ({"objectives": OBJECTIVES}, ("objectives",)),
        ({"mode": "tune", "confirm_seeds": 2}, ("confirm_seeds",)),
    ],
)
def test_compare_rules(change: dict[str, Any], loc: tuple[Any, ...]) -> None:
    error = one_error(BODY | {"mode": "compare", "confirm_seeds": 1} | change)
    assert error["loc"] == loc


def test_comparison_row_carries_expected_best_and_time_to_target() -> None:
    bare = OptimizerComparison(optimizer="sgd", finished=0, failed=0)
    dumped = bare.model_dump(mode="json")
    assert dumped["expected_best"] == []
    assert dumped["time_to_target"] == {"target": None, "trials": None, "seconds": None}
    row = OptimizerComparison.model_validate(
        {
            "optimizer": "adamw",
            "finished": 2,
            "failed": 0,
            "expected_best": [
                {"k": 1, "mean": 0.5, "low": 0.4, "high": 0.6},
                {"k": 2, "mean": None, "low": None, "high": None},
            ],
            "time_to_target": {"target": 0.9, "trials": 2, "seconds": 1.5},
        }
    )
    assert row.expected_best[0].mean == 0.5 and row.time_to_target.trials == 2
    with pytest.raises(ValidationError):  # the rows are closed, like every schema
        OptimizerComparison.model_validate(
            {"optimizer": "adamw", "finished": 0, "failed": 0, "expected_best": [{"k": 1}]}
        )


SWEEP = BODY | {"mode": "sweep", "sweep": {"lrs": [1e-3, 1e-2], "seeds": 2}, "n_trials": 8}


def test_sweep_derives_n_trials_and_stores_the_default_grid() -> None:
    body = {k: v for k, v in SWEEP.items() if k not in ("n_trials", "sweep")}
    job = JobCreate.model_validate(body)
    assert job.sweep is not None and len(job.sweep.lrs) == 7 and job.sweep.seeds == 1
    assert job.sweep.lrs[0] == 1e-4 and job.sweep.lrs[-1] == 1e-1
    assert job.n_trials == 2 * 7  # sgd, adamw
    assert JobCreate.model_validate({**body, "n_trials": 14}).n_trials == 14
    explicit = JobCreate.model_validate({k: v for k, v in SWEEP.items() if k != "n_trials"})
    assert explicit.n_trials == 8
    # stored specs round-trip, the grid explicit
    again = JobCreate.model_validate(job.model_dump(mode="json"))
    assert again.sweep == job.sweep and again.n_trials == 14


def test_sweep_space_varies_lr_only() -> None:
    resolved = JobCreate.model_validate(SWEEP).resolved_space()
    sgd = resolved.optimizers["sgd"]
    assert sgd["lr"].model_dump() == {"type": "categorical", "choices": [1e-3, 1e-2]}
    # BODY gives sgd a momentum range: a sweep ignores it, every other one is fixed
    assert all(space.type == "fixed" for hp, space in sgd.items() if hp != "lr")
    assert sgd["momentum"].model_dump() == {"type": "fixed", "value": 0.0}


@pytest.mark.parametrize(
    ("change", "loc", "kind"),
    [
        ({"n_trials": 6}, ("n_trials",), "sweep_budget"),
        ({"pruner": {"name": "median"}}, ("pruner",), "sweep_conflict"),
        ({"target": 0.9}, ("target",), "sweep_conflict"),
        ({"confirm_seeds": 1}, ("confirm_seeds",), "compare_only"),
        ({"lookahead": {}}, ("lookahead",), "sweep_conflict"),
        ({"sweep": {"lrs": [1e-3, 1e-3]}}, ("sweep", "lrs", 1), "duplicate_lr"),
        ({"sweep": {"lrs": [0.0]}}, ("sweep", "lrs", 0), "greater_than"),
        ({"sweep": {"lrs": []}}, ("sweep", "lrs"), "too_short"),
        ({"sweep": {"seeds": 0}}, ("sweep", "seeds"), "greater_than_equal"),
        ({"mode": "tune", "n_trials": 6}, ("sweep",), "sweep_only"),
    ],
)
def test_sweep_rules(change: dict[str, Any], loc: tuple[Any, ...], kind: str) -> None:
    body = SWEEP | change
    if "sweep" in change and change.get("mode") is None:
        body = {k: v for k, v in body.items() if k != "n_trials"}
    error = one_error(body)
    assert (error["loc"], error["type"]) == (loc, kind)
