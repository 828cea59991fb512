"""The model catalogue: analytic sizes equal the built modules, limits name the field."""

from __future__ import annotations

import pytest
import torch

from workers.catalog import (
    MODELS,
    CatalogError,
    check_task_limits,
    compatible_datasets,
    estimate_parameters,
    get_dataset_spec,
    model_io,
    validate_model_params,
)
from workers.training import build_model, count_parameters

# Several settings per model, corners of each domain included (kept small to build).
SETTINGS: dict[str, list[dict[str, object]]] = {
    "logreg": [{}],
    "mlp": [{}, {"width": 4, "depth": 1}, {"width": 33, "depth": 5, "dropout": 0.5}],
    "cnn": [{}, {"channels": 4, "depth": 1}, {"channels": 17, "depth": 4}],
    "resnet": [{}, {"width": 4, "blocks": 1}, {"width": 12, "blocks": 3}],
    "transformer": [
        {},
        {"d_model": 16, "layers": 1, "heads": 1, "context_length": 8},
        {"d_model": 48, "layers": 3, "heads": 6, "context_length": 100, "dropout": 0.1},
    ],
}
CASES = [
    (model, params, dataset.name)
    for model, settings in SETTINGS.items()
    for params in settings
    for dataset in compatible_datasets(model)
]


def test_every_model_has_settings() -> None:
    assert set(SETTINGS) == set(MODELS)


@pytest.mark.parametrize(("model", "params", "dataset"), CASES)
def test_estimate_equals_the_built_model(model, params, dataset) -> None:
    io = model_io(get_dataset_spec(dataset))
    net = build_model(model, params, io.n_features, io.n_outputs, input_shape=io.input_shape)
    assert estimate_parameters(model, params, dataset, None) == count_parameters(net)


def test_estimate_follows_dataset_params() -> None:
    small = estimate_parameters("mlp", {}, "synthetic_classification", {"n_features": 5})
    large = estimate_parameters("mlp", {}, "synthetic_classification", {"n_features": 500})
    assert large - small == 495 * 128


@pytest.mark.parametrize(
    ("model", "dataset", "shape"),
    [("cnn", "digits", (5, 1, 8, 8)), ("resnet", "digits", (5, 1, 8, 8))],
)
def test_image_models_map_images_to_logits(model, dataset, shape) -> None:
    net = build_model(model, {"depth": 4} if model == "cnn" else {}, 64, 10, input_shape=(1, 8, 8))
    assert net(torch.randn(shape)).shape == (5, 10)


def test_image_model_needs_an_input_shape() -> None:
    with pytest.raises(CatalogError, match=r"\(C, H, W\)"):
        build_model("cnn", {}, 64, 10)


def test_transformer_is_causal() -> None:
    torch.manual_seed(0)
    net = build_model("transformer", {"d_model": 32, "heads": 4, "context_length": 16}, 97, 97)
    net.eval()
    idx = torch.randint(0, 97, (2, 16))
    changed = idx.clone()
    changed[:, 10:] = (changed[:, 10:] + 1) % 97
    # Changing characters from position 10 on cannot change the predictions before it.
    torch.testing.assert_close(net(idx)[:, :10], net(changed)[:, :10])
    assert not torch.allclose(net(idx)[:, 10:], net(changed)[:, 10:])


class TestParams:
    def test_defaults(self) -> None:
        assert validate_model_params("cnn", {}) == {"channels": 32, "depth": 2}
        assert validate_model_params("resnet", None) == {"width": 32, "blocks": 2}
        assert validate_model_params("transformer", {})["context_length"] == 64

    @pytest.mark.parametrize(
        ("model", "params", "field"),
        [
            ("cnn", {"channels": 3}, "channels"),
            ("cnn", {"depth": 5}, "depth"),
            ("resnet", {"blocks": 0}, "blocks"),
            ("resnet", {"width": 1.5}, "width"),
            ("transformer", {"heads": 17}, "heads"),
            ("transformer", {"context_length": 4}, "context_length"),
            ("transformer", {"d_model": 100, "heads": 8}, "heads"),  # 100 % 8 != 0
            ("transformer", {"model": "os.system"}, "model"),
        ],
    )
    def test_errors_name_the_field(self, model, params, field) -> None:
        with pytest.raises(CatalogError) as info:
            validate_model_params(model, params)
        assert info.value.field == field


class TestLimits:
    def test_within_limits_returns_the_estimate(self) -> None:
        n = check_task_limits("mlp", {}, "digits", None, 3, max_parameters=10**6, max_epochs=10)
        assert n == estimate_parameters("mlp", {}, "digits", None)

    def test_too_many_parameters(self) -> None:
        big = {"d_model": 1024, "layers": 12, "heads": 16}
        with pytest.raises(CatalogError, match="over the limit of 10,000,000") as info:
            check_task_limits(
                "transformer", big, "python_docs", None, 1, max_parameters=10**7, max_epochs=10
            )
        assert info.value.field == "params"

    def test_too_many_epochs(self) -> None:
        with pytest.raises(CatalogError) as info:
            check_task_limits("mlp", {}, "digits", None, 11, max_parameters=10**6, max_epochs=10)
        assert info.value.field == "epochs"

    def test_incompatible_pair(self) -> None:
        with pytest.raises(CatalogError, match="cannot train on"):
            check_task_limits("cnn", {}, "iris", None, 1, max_parameters=10**6, max_epochs=10)
