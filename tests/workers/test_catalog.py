"""The model/dataset catalogue: torch-free, consistent, and errors that name the field."""

from __future__ import annotations

import pickle
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from workers.catalog import (
    DATASETS,
    MODELS,
    CatalogError,
    check_compatible,
    compatible_datasets,
    default_direction,
    get_dataset_spec,
    get_model_spec,
    import_object,
    list_dataset_specs,
    list_model_specs,
    metrics_for,
    validate_dataset_params,
    validate_model_params,
)

ROOT = Path(__file__).resolve().parents[2]


def test_import_is_torch_free() -> None:
    # A fresh interpreter: this test process has imported torch already.
    code = (
        "import sys, workers.catalog\n"
        "heavy = {'torch', 'sklearn', 'numpy'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


class TestRegistry:
    def test_keys_are_names(self) -> None:
        assert [s.name for s in list_model_specs()] == list(MODELS)
        assert [s.name for s in list_dataset_specs()] == list(DATASETS)
        assert {"logreg", "mlp"} <= set(MODELS)
        builtin = {"digits", "iris", "wine", "breast_cancer", "diabetes"}
        assert builtin | {"synthetic_classification", "synthetic_regression"} <= set(DATASETS)

    @pytest.mark.parametrize("spec", list_model_specs(), ids=lambda s: s.name)
    def test_builder_path_resolves(self, spec) -> None:
        assert callable(import_object(spec.builder_path))

    @pytest.mark.parametrize("spec", list_dataset_specs(), ids=lambda s: s.name)
    def test_loader_path_resolves(self, spec) -> None:
        assert callable(import_object(spec.loader_path))

    @pytest.mark.parametrize(
        "spec", [*list_model_specs(), *list_dataset_specs()], ids=lambda s: s.name
    )
    def test_defaults_lie_in_their_domains(self, spec) -> None:
        for name, hp in spec.params.items():
            assert hp.domain.contains(hp.default), name

    @pytest.mark.parametrize(
        "spec",
        [s for s in list_dataset_specs() if s.task_type != "language_modeling"],
        ids=lambda s: s.name,
    )
    def test_metadata_matches_the_data(self, spec) -> None:
        X, y = import_object(spec.loader_path)(**spec.defaults())
        assert X.shape == (spec.n_examples, spec.n_features)
        assert y.shape == (spec.n_examples,)
        if spec.task_type == "classification":
            assert spec.n_classes == len(np.unique(y))
            assert set(np.unique(y)) == set(range(spec.n_classes))
        else:
            assert spec.n_classes is None
        if spec.class_balance is not None:
            counts = np.bincount(y) / len(y)
            np.testing.assert_allclose(spec.class_balance, counts, atol=1e-4)
        if spec.input_shape is not None:
            assert int(np.prod(spec.input_shape)) == spec.n_features

    def test_every_dataset_has_a_model(self) -> None:
        covered = {d.name for m in list_model_specs() for d in compatible_datasets(m)}
        assert covered == set(DATASETS)


class TestValidation:
    def test_defaults_are_filled(self) -> None:
        assert validate_model_params("mlp", {}) == {
            "width": 128,
            "depth": 2,
            "activation": "relu",
            "dropout": 0.0,
        }
        assert validate_model_params("logreg", None) == {}
        assert validate_dataset_params("synthetic_regression", {"noise": 0})["noise"] == 0.0
        assert isinstance(validate_model_params("mlp", {"dropout": 0})["dropout"], float)

    @pytest.mark.parametrize(
        ("params", "field", "reason"),
        [
            ({"width": 3}, "width", "an integer in [4, 4096]"),
            ({"width": 5000}, "width", "an integer in [4, 4096]"),
            ({"width": 64.0}, "width", "an integer"),
            ({"width": True}, "width", "an integer"),
            ({"depth": 9}, "depth", "[1, 8]"),
            ({"activation": "elu"}, "activation", "one of 'relu', 'gelu', 'tanh'"),
            ({"dropout": 0.95}, "dropout", "[0, 0.9]"),
            ({"dropout": float("nan")}, "dropout", "[0, 0.9]"),
            ({"layers": 3}, "layers", "Unknown parameter"),
        ],
    )
    def test_model_errors_name_the_field(self, params, field, reason) -> None:
        with pytest.raises(CatalogError) as info:
            validate_model_params("mlp", params)
        assert info.value.field == field
        assert repr(field) in str(info.value) and reason in str(info.value)

    @pytest.mark.parametrize(
        ("params", "field"),
        [
            ({"n_examples": 99}, "n_examples"),
            ({"n_examples": 200_001}, "n_examples"),
            ({"n_features": 1}, "n_features"),
            ({"noise": 1.5}, "noise"),
            ({"seed": -1}, "seed"),
            ({"n_classes": 3}, "n_classes"),
        ],
    )
    def test_dataset_errors_name_the_field(self, params, field) -> None:
        with pytest.raises(CatalogError) as info:
            validate_dataset_params("synthetic_classification", params)
        assert info.value.field == field
        assert repr(field) in str(info.value)

    def test_builtin_dataset_takes_no_params(self) -> None:
        with pytest.raises(CatalogError, match="no parameters") as info:
            validate_dataset_params("digits", {"n_examples": 100})
        assert info.value.field == "n_examples"

    @pytest.mark.parametrize(
        "call",
        [
            lambda: get_model_spec("resnet9000"),
            lambda: get_dataset_spec("mnist_but_not"),
            lambda: validate_model_params("nope", {}),
            lambda: validate_dataset_params("nope", {}),
        ],
    )
    def test_unknown_names_have_no_field(self, call) -> None:
        with pytest.raises(CatalogError, match="expected one of") as info:
            call()
        assert info.value.field is None

    def test_params_must_be_a_mapping(self) -> None:
        with pytest.raises(CatalogError, match="mapping"):
            validate_model_params("mlp", [("width", 4)])  # type: ignore[arg-type]

    def test_error_is_a_value_error_and_pickles(self) -> None:
        error = CatalogError("bad width", field="width")
        assert isinstance(error, ValueError)
        again = pickle.loads(pickle.dumps(error))
        assert (str(again), again.field) == ("bad width", "width")


class TestCompatibility:
    def test_builtins_are_compatible(self) -> None:
        for model, dataset in [("logreg", "iris"), ("mlp", "digits"), ("cnn", "digits"),
                               ("resnet", "digits"), ("transformer", "python_docs")]:  # fmt: skip
            check_compatible(model, dataset)
        flat = {"logreg", "mlp"}
        tabular = [d for d in DATASETS if get_dataset_spec(d).modality == "tabular"]
        for model in flat:
            for dataset in (*tabular, "digits"):
                check_compatible(model, dataset)
        assert [d.name for d in compatible_datasets("cnn")] == ["digits"]
        assert [d.name for d in compatible_datasets("transformer")] == ["python_docs"]

    @pytest.mark.parametrize(
        ("model", "dataset"),
        [("cnn", "iris"), ("resnet", "diabetes"), ("transformer", "digits"),
         ("mlp", "python_docs")],
    )  # fmt: skip
    def test_models_refuse_other_modalities(self, model, dataset) -> None:
        with pytest.raises(CatalogError, match="cannot train on"):
            check_compatible(model, dataset)

    def test_modality_mismatch(self) -> None:
        text_only = replace(get_model_spec("mlp"), name="tiny_lm", modalities=("text",))
        with pytest.raises(CatalogError, match="cannot train on dataset 'digits'") as info:
            check_compatible(text_only, "digits")
        assert info.value.field is None
        assert compatible_datasets(text_only) == []

    def test_task_mismatch(self) -> None:
        classifier = replace(get_model_spec("logreg"), task_types=("classification",))
        with pytest.raises(CatalogError, match="no head for regression"):
            check_compatible(classifier, get_dataset_spec("diabetes"))


class TestMetrics:
    def test_metrics_for(self) -> None:
        costs = ["train_time", "peak_memory"]  # every task, for multi-objective jobs
        classification = ["val_accuracy", "val_loss", "train_loss", *costs]
        assert metrics_for("classification") == classification
        assert metrics_for("regression") == ["val_rmse", "val_r2", "val_loss", "train_loss", *costs]
        lm = ["val_loss", "val_bpc", "val_perplexity", "train_loss", *costs]
        assert metrics_for("language_modeling") == lm
        assert all(default_direction(m) == "minimize" for m in lm)
        with pytest.raises(CatalogError) as info:
            metrics_for("ranking")
        assert info.value.field == "task_type"

    def test_directions(self) -> None:
        assert default_direction("val_accuracy") == "maximize"
        assert default_direction("val_r2") == "maximize"
        for metric in ("val_rmse", "val_loss", "train_loss", "train_time", "peak_memory"):
            assert default_direction(metric) == "minimize"
        with pytest.raises(CatalogError, match="Unknown metric"):
            default_direction("val_f1")

    def test_meta_features(self) -> None:
        digits = get_dataset_spec("digits").meta_features()
        assert digits["modality"] == "image" and digits["n_classes"] == 10
        assert digits["n_examples"] == 1797 and digits["n_features"] == 64
        assert sum(digits["class_balance"]) == pytest.approx(1.0, abs=1e-3)
        synthetic = get_dataset_spec("synthetic_regression")
        assert synthetic.meta_features()["n_examples"] == 2000
        assert synthetic.meta_features({"n_examples": 500})["n_examples"] == 500
        assert synthetic.meta_features()["class_balance"] is None
