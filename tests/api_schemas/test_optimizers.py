"""``GET /v1/optimizers`` equals the registry (RELIABILITY O9).

Each read is compared with the registry's own dataclasses, field by field, not with the
converter that produced it: changing a spec's default, domain or prior without the API
following (or the reverse) fails here.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

import pytest

from api_schemas import (
    HyperparameterRead,
    OptimizerRead,
    get_optimizer_read,
    list_optimizer_reads,
    list_schedule_reads,
)
from api_schemas.catalog import ModelParamRead
from optimizers._spec import HParam, Space
from optimizers.registry import SCHEDULES, get_spec, list_specs


def _space_dict(space: Space) -> dict[str, Any]:
    out = asdict(space)
    if "choices" in out:
        out["choices"] = list(out["choices"])
    return out


def _assert_hparam(read: HyperparameterRead, name: str, hp: HParam) -> None:
    d = hp.domain
    assert read.name == name
    assert read.default == hp.default and type(read.default) is type(hp.default)
    assert read.type == d.kind
    assert read.domain == d.describe()
    assert (read.low, read.high, read.low_open, read.high_open) == (
        d.low,
        d.high,
        d.low_open,
        d.high_open,
    )
    assert read.nullable == d.nullable
    assert read.choices == (list(d.choices) if d.kind in ("bool", "choice") else None)
    assert read.doc == hp.doc
    if hp.search is None:
        assert read.search is None
    else:
        assert read.search is not None
        assert read.search.model_dump() == _space_dict(hp.search)


def test_names_and_order_equal_the_registry() -> None:
    assert [r.name for r in list_optimizer_reads()] == [s.name for s in list_specs()]


@pytest.mark.parametrize("read", list_optimizer_reads(include_composed=True), ids=lambda r: r.name)
def test_each_optimizer_equals_its_spec(read: OptimizerRead) -> None:
    spec = get_spec(read.name)
    assert (read.kind, read.description, read.reference) == (
        spec.kind,
        spec.description,
        spec.reference,
    )
    assert [h.name for h in read.hyperparameters] == list(spec.hparams)
    for h in read.hyperparameters:
        _assert_hparam(h, h.name, spec.hparams[h.name])
    assert {n: s.model_dump() for n, s in read.default_search_space.items()} == {
        n: _space_dict(s) for n, s in spec.search_space().items()
    }
    assert read.packs == {k: list(v) for k, v in spec.packs.items()}


def test_defaults_equal_the_spec_defaults() -> None:
    for read in list_optimizer_reads():
        assert {h.name: h.default for h in read.hyperparameters} == get_spec(read.name).defaults()


def test_composed_names_cover_every_wrapper_and_base() -> None:
    plain = {r.name for r in list_optimizer_reads()}
    composed = {r.name for r in list_optimizer_reads(include_composed=True)} - plain
    wrappers = [s.name for s in list_specs() if s.kind == "wrapper"]
    bases = [s.name for s in list_specs() if s.kind == "base"]
    assert composed == {f"{w}+{b}" for w in wrappers for b in bases}
    read = get_optimizer_read("lookahead+adamw")
    assert {"lookahead_k", "lookahead_alpha", "lr"} <= {h.name for h in read.hyperparameters}


def test_unknown_optimizer_read_lists_the_valid_names() -> None:
    with pytest.raises(KeyError, match="adamw"):
        get_optimizer_read("adamw2")


def test_spot_check_of_one_entry() -> None:
    # Readable anchor for reviewers: AdamW's learning rate as the API shows it.
    lr = next(h for h in get_optimizer_read("adamw").hyperparameters if h.name == "lr")
    assert lr.type == "float" and lr.default == 1e-3 and lr.domain == "a number in [0, inf)"
    assert lr.search is not None
    assert lr.search.model_dump() == {
        "type": "float",
        "low": 1e-5,
        "high": 1e-1,
        "log": True,
        "step": None,
        "one_minus": False,
    }


def test_schedules_equal_the_registry() -> None:
    reads = list_schedule_reads()
    assert [r.name for r in reads] == list(SCHEDULES)
    for read in reads:
        spec = SCHEDULES[read.name]
        assert read.description == spec.description and read.reference == spec.reference
        for h in read.hyperparameters:
            _assert_hparam(h, h.name, spec.hparams[h.name])
        assert {n: s.model_dump() for n, s in read.default_search_space.items()} == {
            n: _space_dict(s) for n, s in spec.search_space().items()
        }


def test_reads_are_json_safe() -> None:
    payload = [r.model_dump(mode="json") for r in list_optimizer_reads(include_composed=True)]
    payload += [r.model_dump(mode="json") for r in list_schedule_reads()]
    text = json.dumps(payload, allow_nan=False)
    again = [OptimizerRead.model_validate(p) for p in json.loads(text)[: len(list_specs())]]
    assert again == list_optimizer_reads()


def test_model_params_share_the_hyperparameter_shape() -> None:
    hp = get_spec("sgd").hparams["momentum"]
    read = ModelParamRead.from_hparam("momentum", hp)
    assert isinstance(read, ModelParamRead)
    _assert_hparam(read, "momentum", hp)
