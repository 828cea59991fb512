"""Built-in model builders, named by the catalogue's ``builder_path``.

Every builder has the signature ``(n_features, n_outputs, **params) -> nn.Module``
and maps a ``(batch, n_features)`` float tensor to ``(batch, n_outputs)`` logits (or
one regression output). Parameters arrive validated by the catalogue.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn

from workers.catalog import get_model_spec, import_object, validate_model_params

_ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}


def build_logreg(n_features: int, n_outputs: int) -> nn.Module:
    """One linear layer: with cross-entropy it is multinomial logistic regression."""
    return nn.Linear(n_features, n_outputs)


def build_mlp(
    n_features: int,
    n_outputs: int,
    *,
    width: int = 128,
    depth: int = 2,
    activation: str = "relu",
    dropout: float = 0.0,
) -> nn.Module:
    """``depth`` blocks of Linear → activation (→ Dropout), then a linear head."""
    layers: list[nn.Module] = []
    fan_in = n_features
    for _ in range(depth):
        layers += [nn.Linear(fan_in, width), _ACTIVATIONS[activation]()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        fan_in = width
    layers.append(nn.Linear(fan_in, n_outputs))
    return nn.Sequential(*layers)


def build_model(
    name: str, params: Mapping[str, object] | None, n_features: int, n_outputs: int
) -> nn.Module:
    """Validate ``params`` against the catalogue and call the model's builder.

    Initialisation draws from torch's global RNG (as every ``nn.Module`` does); the
    training loop forks and seeds it around this call, which keeps init reproducible.
    """
    spec = get_model_spec(name)
    resolved = validate_model_params(name, params)
    module: nn.Module = import_object(spec.builder_path)(n_features, n_outputs, **resolved)
    return module


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters (``requires_grad``), the size recommendations compare."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
