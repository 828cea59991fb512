"""The search-space language: Optuna's range rules and the registry, each error at its field."""

from __future__ import annotations

import copy
import json
from dataclasses import asdict
from typing import Any

import pytest
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from api_schemas import (
    STORED_CONTEXT,
    CategoricalParam,
    FixedParam,
    FloatParam,
    IntParam,
    JobCreate,
    ResolvedSpace,
    ScheduleSpace,
    SearchSpace,
    distribution_name,
    schedule_distribution_name,
)
from api_schemas.search_space import param_from_space
from optimizers.registry import OPTIMIZERS, SCHEDULES, get_spec, list_specs
from tests.factories import example_job

SS = ("search_space", "optimizers")

BODY: dict[str, Any] = example_job()  # the example body


def job_with(optimizers: Any) -> dict[str, Any]:
    body = copy.deepcopy(BODY)
    body["search_space"] = {"optimizers": optimizers}
    return body


def errors(data: Any, *, json_text: str | None = None) -> list[ErrorDetails]:
    with pytest.raises(ValidationError) as info:
        if json_text is not None:
            JobCreate.model_validate_json(json_text)
        else:
            JobCreate.model_validate(data)
    return info.value.errors(include_url=False)


def one_error(data: Any) -> ErrorDetails:
    found = errors(data)
    assert len(found) == 1, found
    return found[0]


def lr(**space: Any) -> dict[str, Any]:
    return job_with({"sgd": {"lr": space}})


# -- Optuna's range rules ---------------------------------------------------------------------
def test_v1_high_below_low_is_reported_on_high() -> None:
    error = one_error(lr(type="float", low=1.0, high=0.1))
    assert error["loc"] == (*SS, "sgd", "lr", "float", "high")
    assert error["type"] == "range_order"
    assert "low" in error["msg"]


def test_v1_int_high_below_low_is_reported_on_high() -> None:
    body = job_with({"lookahead+sgd": {"lookahead_k": {"type": "int", "low": 9, "high": 3}}})
    error = one_error(body)
    assert error["loc"] == (*SS, "lookahead+sgd", "lookahead_k", "int", "high")
    assert error["type"] == "range_order"


def test_v2_float_log_needs_positive_low() -> None:
    error = one_error(lr(type="float", low=0, high=1, log=True))
    assert error["loc"] == (*SS, "sgd", "lr", "float", "low")
    assert error["type"] == "log_low"
    assert "> 0" in error["msg"]


def test_v3_int_log_needs_low_of_at_least_one() -> None:
    space = {"type": "int", "low": 0, "high": 8, "log": True}
    error = one_error(job_with({"lookahead+adamw": {"lookahead_k": space}}))
    assert error["loc"] == (*SS, "lookahead+adamw", "lookahead_k", "int", "low")
    assert error["type"] == "log_low"


@pytest.mark.parametrize(
    ("hp", "space"),
    [
        ("lr", {"type": "float", "low": 0.01, "high": 1.0, "log": True, "step": 0.01}),
        ("lookahead_k", {"type": "int", "low": 1, "high": 8, "log": True, "step": 2}),
    ],
)
def test_v3_step_with_log_is_reported_on_step(hp: str, space: dict[str, Any]) -> None:
    error = one_error(job_with({"lookahead+sgd": {hp: space}}))
    assert error["loc"] == (*SS, "lookahead+sgd", hp, space["type"], "step")
    assert error["type"] == "step_with_log"


@pytest.mark.parametrize(
    ("hp", "space", "error_type"),
    [
        ("lr", {"type": "float", "low": 0.1, "high": 1.0, "step": 0}, "greater_than"),
        ("lookahead_k", {"type": "int", "low": 1, "high": 8, "step": 0}, "greater_than_equal"),
    ],
)
def test_step_must_be_positive(hp: str, space: dict[str, Any], error_type: str) -> None:
    error = one_error(job_with({"lookahead+sgd": {hp: space}}))
    assert error["loc"] == (*SS, "lookahead+sgd", hp, space["type"], "step")
    assert error["type"] == error_type


@pytest.mark.parametrize(
    ("fragment", "field"),
    [
        ('{"type": "float", "low": NaN, "high": 1.0}', "low"),
        ('{"type": "float", "low": 0.1, "high": Infinity}', "high"),
        ('{"type": "float", "low": -Infinity, "high": 0.5}', "low"),
    ],
)
def test_v4_non_finite_bounds_from_json(fragment: str, field: str) -> None:
    text = json.dumps(lr(type="float", low=0.5, high=0.75)).replace(
        '{"type": "float", "low": 0.5, "high": 0.75}', fragment
    )
    found = errors(None, json_text=text)
    assert [(e["loc"], e["type"]) for e in found] == [
        ((*SS, "sgd", "lr", "float", field), "finite_number")
    ]


def test_v4_non_finite_fixed_value_and_choice() -> None:
    text = json.dumps(
        job_with({"sgd": {"lr": 0.25, "momentum": {"type": "categorical", "choices": [0.5, 0.75]}}})
    )
    text = text.replace('"lr": 0.25', '"lr": NaN').replace("[0.5, 0.75]", "[0.5, Infinity]")
    found = {(e["loc"], e["type"]) for e in errors(None, json_text=text)}
    assert found == {
        ((*SS, "sgd", "lr", "fixed", "value"), "finite_number"),
        ((*SS, "sgd", "momentum", "categorical", "choices", 1), "finite_number"),
    }


@pytest.mark.parametrize("bad", [True, "0.1"])
def test_bounds_are_numbers_not_booleans_or_strings(bad: Any) -> None:
    error = one_error(lr(type="float", low=bad, high=1.0))
    assert error["loc"] == (*SS, "sgd", "lr", "float", "low")
    assert error["type"] == "float_type"


def test_int_bounds_are_strict() -> None:
    space = {"type": "int", "low": 1.0, "high": 8}
    error = one_error(job_with({"lookahead+sgd": {"lookahead_k": space}}))
    assert error["loc"] == (*SS, "lookahead+sgd", "lookahead_k", "int", "low")
    assert error["type"] == "int_type"


def test_v7_misspelt_field_of_a_space() -> None:
    error = one_error(lr(type="float", low=0.1, high=1.0, logg=True))
    assert error["loc"] == (*SS, "sgd", "lr", "float", "logg")
    assert error["type"] == "extra_forbidden"


def test_unknown_space_type_names_the_expected_tags() -> None:
    error = one_error(lr(type="floatt", low=0.1, high=1.0))
    assert error["loc"] == (*SS, "sgd", "lr")
    assert error["type"] == "union_tag_invalid"
    assert "'categorical'" in error["msg"] and "'fixed'" in error["msg"]


def test_categorical_needs_choices() -> None:
    error = one_error(job_with({"sgd": {"nesterov": {"type": "categorical", "choices": []}}}))
    assert error["loc"] == (*SS, "sgd", "nesterov", "categorical", "choices")
    assert error["type"] == "too_short"


def test_categorical_choices_are_unique_by_equality() -> None:
    # Optuna finds a choice with ``list.index``: 1, 1.0 and true would be one choice.
    space = {"type": "categorical", "choices": [0.5, 1, 0.5, True]}
    found = errors(job_with({"sgd": {"dampening": space}}))
    assert [(e["loc"][-1], e["type"]) for e in found] == [
        (2, "duplicate_choice"),
        (3, "duplicate_choice"),
    ]
    assert found[0]["loc"] == (*SS, "sgd", "dampening", "categorical", "choices", 2)


def test_one_minus_needs_high_below_one() -> None:
    space = {"type": "float", "low": 0.9, "high": 1.0, "log": True, "one_minus": True}
    error = one_error(job_with({"adam": {"beta2": space}}))
    assert error["loc"] == (*SS, "adam", "beta2", "float", "high")
    assert error["type"] == "one_minus_range"


def test_one_minus_has_no_step() -> None:
    space = {"type": "float", "low": 0.9, "high": 0.99, "step": 0.01, "one_minus": True}
    error = one_error(job_with({"adam": {"beta1": space}}))
    assert error["loc"] == (*SS, "adam", "beta1", "float", "step")
    assert error["type"] == "step_with_one_minus"


# -- the registry -----------------------------------------------------------------------------
def test_v8_unknown_optimizer_lists_the_valid_names() -> None:
    error = one_error(job_with({"adamw2": {}}))
    assert error["loc"] == (*SS, "adamw2")
    assert error["type"] == "unknown_optimizer"
    for name in ("adamw", "sgd", "ademamix", "lookahead+"):
        assert name in error["msg"]


@pytest.mark.parametrize("name", ["lookahead", "adamw+sgd", "lookahead+lookahead", "ADAMW"])
def test_v8_names_that_cannot_be_built(name: str) -> None:
    error = one_error(job_with({name: {}}))
    assert error["loc"] == (*SS, name)
    assert error["type"] == "unknown_optimizer"


def test_composed_optimizer_takes_the_prefixed_wrapper_hyperparameters() -> None:
    body = job_with({"lookahead+radam": {"lookahead_alpha": 0.5, "lr": 1e-3}})
    resolved = JobCreate.model_validate(body).resolved_space()
    assert set(resolved.optimizers["lookahead+radam"]) == set(get_spec("lookahead+radam").hparams)


def test_v9_hyperparameter_not_in_the_spec() -> None:
    error = one_error(job_with({"lamb": {"momentum": 0.9}}))
    assert error["loc"] == (*SS, "lamb", "momentum")
    assert error["type"] == "unknown_hyperparameter"
    assert "'momentum'" in error["msg"] and "'lamb'" in error["msg"]
    assert "weight_decay" in error["msg"]


def test_v9_packed_argument_points_to_its_scalars() -> None:
    error = one_error(job_with({"adam": {"betas": {"type": "fixed", "value": 0.9}}}))
    assert error["loc"] == (*SS, "adam", "betas")
    assert "beta1, beta2" in error["msg"]


@pytest.mark.parametrize("space", [1.0, {"type": "fixed", "value": 1.0}])
def test_v10_fixed_value_outside_the_domain(space: Any) -> None:
    error = one_error(job_with({"adam": {"beta1": space}}))
    assert error["loc"] == (*SS, "adam", "beta1", "fixed", "value")
    assert error["type"] == "outside_domain"
    domain = get_spec("adam").hparams["beta1"].domain
    assert "beta1" in error["msg"] and domain.describe() in error["msg"]


def test_v10_range_bound_outside_the_domain() -> None:
    error = one_error(job_with({"sgd": {"momentum": {"type": "float", "low": 0.5, "high": 1.0}}}))
    assert error["loc"] == (*SS, "sgd", "momentum", "float", "high")
    assert error["type"] == "outside_domain"
    assert "[0, 1)" in error["msg"]


def test_v10_choice_outside_the_domain() -> None:
    space = {"type": "categorical", "choices": ["root", "sqrt"]}
    error = one_error(job_with({"set_adam": {"eps_mode": space}}))
    assert error["loc"] == (*SS, "set_adam", "eps_mode", "categorical", "choices", 1)
    assert error["type"] == "outside_domain"
    assert "'accumulate'" in error["msg"]


def test_null_only_for_nullable_hyperparameters() -> None:
    ok = job_with({"ademamix": {"alpha_warmup": None}, "lamb": {"max_weight_norm": None}})
    JobCreate.model_validate(ok)
    error = one_error(job_with({"sgd": {"lr": None}}))
    assert error["loc"] == (*SS, "sgd", "lr", "fixed", "value")
    assert error["type"] == "outside_domain"


@pytest.mark.parametrize(
    ("optimizer", "hp", "space"),
    [
        ("lookahead+sgd", "lookahead_k", {"type": "float", "low": 2.0, "high": 8.0}),
        ("sgd", "nesterov", {"type": "float", "low": 0.0, "high": 1.0}),
        ("set_adam", "eps_mode", {"type": "int", "low": 0, "high": 1}),
        ("sgd", "lr", {"type": "int", "low": 1, "high": 2}),
    ],
)
def test_space_kind_must_suit_the_hyperparameter(
    optimizer: str, hp: str, space: dict[str, Any]
) -> None:
    error = one_error(job_with({optimizer: {hp: space}}))
    assert error["loc"] == (*SS, optimizer, hp, space["type"], "type")
    assert error["type"] == "space_type"
    assert hp in error["msg"]


def test_int_hyperparameter_rejects_a_float_fixed_value() -> None:
    error = one_error(job_with({"lookahead+sgd": {"lookahead_k": 5.0}}))
    assert error["loc"] == (*SS, "lookahead+sgd", "lookahead_k", "fixed", "value")
    assert error["type"] == "outside_domain"


def test_registry_errors_are_reported_together() -> None:
    found = errors(job_with({"adamw2": {}, "lamb": {"momentum": 0.9}, "adam": {"beta1": 1.0}}))
    assert {e["loc"] for e in found} == {
        (*SS, "adamw2"),
        (*SS, "lamb", "momentum"),
        (*SS, "adam", "beta1", "fixed", "value"),
    }


def test_stored_specs_skip_the_registry_checks() -> None:
    # A job accepted before a registry change must still read back.
    body = job_with({"retired_optimizer": {"old_hp": 0.5}})
    job = JobCreate.model_validate(body, context=STORED_CONTEXT)
    assert "retired_optimizer" in job.search_space.optimizers


# -- forms, fixed values, resolution -------------------------------------------------------------
def _default_space(name: str) -> dict[str, Any]:
    spec = get_spec(name)
    return {
        hp: param_from_space(p.search) if p.search else FixedParam(value=p.default)
        for hp, p in spec.hparams.items()
    }


def test_list_form_and_empty_dict_mean_the_default_space() -> None:
    from_list = JobCreate.model_validate(job_with(["adamw", "ademamix"])).resolved_space()
    from_dict = JobCreate.model_validate(job_with({"adamw": {}, "ademamix": {}})).resolved_space()
    assert from_list == from_dict
    assert from_list.optimizers == {n: _default_space(n) for n in ("adamw", "ademamix")}


def test_list_form_errors_name_the_item() -> None:
    found = errors(job_with(["adamw", 3, "adamw"]))
    assert [(e["loc"], e["type"]) for e in found] == [
        ((*SS, 1), "string_type"),
        ((*SS, 2), "duplicate_name"),
    ]
    assert one_error(job_with(["adamw9"]))["loc"] == (*SS, "adamw9")


@pytest.mark.parametrize("empty", [[], {}])
def test_at_least_one_optimizer(empty: Any) -> None:
    error = one_error(job_with(empty))
    assert error["loc"] == SS
    assert error["type"] == "too_short"


def test_bare_scalars_are_fixed_values() -> None:
    body = job_with({"sgd": {"nesterov": True, "lr": 0.1}, "set_adam": {"eps_mode": "accumulate"}})
    spaces = JobCreate.model_validate(body).search_space.optimizers
    assert spaces["sgd"]["nesterov"] == FixedParam(value=True)
    assert spaces["sgd"]["lr"] == FixedParam(value=0.1)
    assert spaces["set_adam"]["eps_mode"] == FixedParam(value="accumulate")
    # serialized in the canonical form
    dumped = JobCreate.model_validate(body).model_dump(mode="json")
    assert dumped["search_space"]["optimizers"]["sgd"]["nesterov"] == {
        "type": "fixed",
        "value": True,
    }


def test_resolved_space_of_the_example_body() -> None:
    resolved = JobCreate.model_validate(BODY).resolved_space()
    sgd = get_spec("sgd")
    assert resolved.optimizers["sgd"] == {
        "lr": FloatParam(low=0.001, high=1.0, log=True),
        "momentum": FloatParam(low=0.0, high=0.99),
        **{
            hp: FixedParam(value=p.default)
            for hp, p in sgd.hparams.items()
            if hp not in ("lr", "momentum")
        },
    }
    assert resolved.optimizers["adamw"] == _default_space("adamw")
    assert list(resolved.optimizers["adamw"]) == list(get_spec("adamw").hparams)
    assert resolved.schedules == {}
    assert set(resolved.tuned_parameters()) == {
        "sgd.lr",
        "sgd.momentum",
        "adamw.lr",
        "adamw.weight_decay",
    }


def test_resolved_space_round_trips_through_json() -> None:
    body = {**BODY, "schedule": ["cosine"]}
    resolved = JobCreate.model_validate(body).resolved_space()
    again = ResolvedSpace.model_validate_json(resolved.model_dump_json())
    assert again == resolved
    assert again.schedules["cosine"]["final_frac"] == FixedParam(value=0.0)


def test_a_given_space_replaces_only_its_hyperparameter() -> None:
    body = job_with({"adamw": {"lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}}})
    resolved = JobCreate.model_validate(body).resolved_space().optimizers["adamw"]
    assert resolved["lr"] == FloatParam(low=1e-4, high=1e-2, log=True)
    assert resolved["weight_decay"] == _default_space("adamw")["weight_decay"]


# -- Optuna parameter names ------------------------------------------------------------------
def test_distribution_names() -> None:
    one_minus = FloatParam(low=0.9, high=0.999, log=True, one_minus=True)
    assert distribution_name("adamw", "lr", FloatParam(low=1e-5, high=1e-1, log=True)) == (
        "adamw.lr"
    )
    assert distribution_name("adamw", "beta2", one_minus) == "adamw.one_minus_beta2"
    # the JSON form of a stored ResolvedSpace names the same way
    assert distribution_name("adamw", "beta2", one_minus.model_dump()) == "adamw.one_minus_beta2"
    assert distribution_name("adamw", "beta2", {"type": "fixed", "value": 0.9}) == "adamw.beta2"
    assert schedule_distribution_name("cosine", "warmup_frac") == "cosine.warmup_frac"


def test_default_one_minus_priors_are_named_one_minus() -> None:
    resolved = JobCreate.model_validate(job_with(["ademamix", "radam"])).resolved_space()
    names = set(resolved.tuned_parameters())
    assert {"ademamix.one_minus_beta3", "radam.one_minus_beta2"} <= names
    assert "ademamix.beta3" not in names


def test_schedule_and_optimizer_names_are_disjoint() -> None:
    # Both name their Optuna parameters "<name>.<hp>".
    assert not set(SCHEDULES) & set(OPTIMIZERS)


# -- the registry's own priors are valid request spaces ------------------------------------------
_ALL_OPTIMIZERS = [s.name for s in list_specs() if s.kind == "base"] + [
    f"{w.name}+{b.name}"
    for w in list_specs()
    if w.kind == "wrapper"
    for b in list_specs()
    if b.kind == "base"
]


@pytest.mark.parametrize("name", _ALL_OPTIMIZERS)
def test_every_default_search_space_passes_the_api_rules(name: str) -> None:
    spec = get_spec(name)
    explicit = {hp: asdict(space) for hp, space in spec.search_space().items()}
    for space in explicit.values():
        if "choices" in space:
            space["choices"] = list(space["choices"])
    fixed = {hp: {"type": "fixed", "value": p.default} for hp, p in spec.hparams.items()}
    SearchSpace.model_validate({"optimizers": {name: {**fixed, **explicit}}})


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_every_schedule_default_space_passes_the_api_rules(name: str) -> None:
    spec = SCHEDULES[name]
    explicit = {hp: asdict(space) for hp, space in spec.search_space().items()}
    fixed = {hp: {"type": "fixed", "value": p.default} for hp, p in spec.hparams.items()}
    schedule = ScheduleSpace.model_validate({name: {**fixed, **explicit}})
    assert set(schedule.resolve()[name]) == set(spec.hparams)


# -- schedules ------------------------------------------------------------------------------
def test_unknown_schedule_and_hyperparameter() -> None:
    body = {**BODY, "schedule": {"cosinus": {}, "wsd": {"decay_shape": "cubic", "warmup": 0.1}}}
    found = {(e["loc"], e["type"]) for e in errors(body)}
    assert found == {
        (("schedule", "cosinus"), "unknown_schedule"),
        (("schedule", "wsd", "decay_shape", "fixed", "value"), "outside_domain"),
        (("schedule", "wsd", "warmup"), "unknown_hyperparameter"),
    }


def test_schedule_range_rules_apply() -> None:
    body = {
        **BODY,
        "schedule": {"cosine": {"warmup_frac": {"type": "float", "low": 0.3, "high": 0.1}}},
    }
    error = one_error(body)
    assert error["loc"] == ("schedule", "cosine", "warmup_frac", "float", "high")
    assert error["type"] == "range_order"


def test_categorical_and_int_models_round_trip() -> None:
    for space in (CategoricalParam(choices=[1, 2, 4]), IntParam(low=1, high=8, step=1)):
        assert type(space).model_validate_json(space.model_dump_json()) == space
