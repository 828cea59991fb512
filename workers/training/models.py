"""Built-in model builders, named by the catalogue's ``builder_path``.

Every builder has the signature ``(n_features, n_outputs, **params) -> nn.Module``;
parameters arrive validated by the catalogue. What one example looks like follows the
spec's ``input_kind``:

* ``"flat"``: a ``(batch, n_features)`` float tensor to ``(batch, n_outputs)`` logits
  (or one regression output);
* ``"image"``: ``(batch, C, H, W)`` floats; the builder also gets
  ``input_shape=(C, H, W)``;
* ``"tokens"``: ``(batch, T)`` int64 ids in ``[0, n_features)`` to ``(batch, T,
  n_outputs)`` next-token logits.

``workers.catalog.estimate`` counts each model's parameters without torch; keep its
formulas in step with the builders here (a test compares them).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from workers.catalog import CatalogError, get_model_spec, import_object, validate_model_params

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


def build_cnn(
    _n_features: int,
    n_outputs: int,
    *,
    input_shape: tuple[int, ...],
    channels: int = 32,
    depth: int = 2,
) -> nn.Module:
    """``depth`` x (3x3 conv → ReLU → 2x2 max-pool while the map is ≥ 2 wide), pool, head.

    Pooling stops at 1x1 so that any depth works on 8x8 digits; the global average
    pool makes the head independent of the image size.
    """
    c_in, height, width = input_shape
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Conv2d(c_in, channels, 3, padding=1), nn.ReLU()]
        if min(height, width) >= 2:
            layers.append(nn.MaxPool2d(2))
            height, width = height // 2, width // 2
        c_in = channels
    return nn.Sequential(*layers, *_pooled_head(channels, n_outputs))


class _BasicBlock(nn.Module):
    """He et al.'s basic block: two 3x3 conv + batch norm, identity shortcut."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(x + self.bn2(self.conv2(out)))


def build_resnet(
    _n_features: int,
    n_outputs: int,
    *,
    input_shape: tuple[int, ...],
    width: int = 32,
    blocks: int = 2,
) -> nn.Module:
    """A 3x3 stem, ``blocks`` residual blocks at full resolution, pool, linear head.

    No downsampling: the images this serves are small (8x8), and keeping one width
    makes the parameter count a simple function of ``width`` and ``blocks``.
    """
    stem: list[nn.Module] = [nn.Conv2d(input_shape[0], width, 3, padding=1, bias=False)]
    stem += [nn.BatchNorm2d(width), nn.ReLU()]
    body = [_BasicBlock(width) for _ in range(blocks)]
    return nn.Sequential(*stem, *body, *_pooled_head(width, n_outputs))


def _pooled_head(channels: int, n_outputs: int) -> list[nn.Module]:
    return [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, n_outputs)]


class _CausalBlock(nn.Module):
    """Pre-norm Transformer block: causal self-attention, then a 4x GELU MLP."""

    def __init__(self, d_model: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.ln1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, 4 * d_model),
            nn.GELU(),
            nn.Linear(4 * d_model, d_model),
            nn.Dropout(dropout),
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, d_model = x.shape
        qkv = self.qkv(self.ln1(x)).view(batch, length, 3, self.heads, d_model // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=p)
        x = x + self.drop(self.proj(y.transpose(1, 2).reshape(batch, length, d_model)))
        out: torch.Tensor = x + self.mlp(self.ln2(x))
        return out


class CharTransformer(nn.Module):
    """A small GPT: token and learned position embeddings, causal blocks, final norm, head."""

    def __init__(
        self, vocab: int, n_outputs: int, d_model: int, layers: int, heads: int, context: int,
        dropout: float,
    ) -> None:  # fmt: skip
        super().__init__()
        self.context = context
        self.tokens = nn.Embedding(vocab, d_model)
        self.positions = nn.Embedding(context, d_model)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.Sequential(*(_CausalBlock(d_model, heads, dropout) for _ in range(layers)))
        self.ln = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, n_outputs)
        self.apply(_gpt_init)
        # GPT-2: scale the residual projections by 1/sqrt(2 * layers) so that the
        # residual stream's variance does not grow with depth.
        for name, param in self.blocks.named_parameters():
            if name.endswith(("proj.weight", "mlp.2.weight")):
                nn.init.normal_(param, std=0.02 / math.sqrt(2 * layers))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(idx.shape[1], device=idx.device)
        x = self.drop(self.tokens(idx) + self.positions(positions))
        return self.head(self.ln(self.blocks(x)))  # type: ignore[no-any-return]


def _gpt_init(module: nn.Module) -> None:
    """N(0, 0.02) weights and zero biases: PyTorch's N(0, 1) embeddings start far too loud."""
    if isinstance(module, nn.Linear | nn.Embedding):
        nn.init.normal_(module.weight, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)


def build_transformer(
    n_features: int,
    n_outputs: int,
    *,
    d_model: int = 128,
    layers: int = 2,
    heads: int = 4,
    context_length: int = 64,
    dropout: float = 0.0,
) -> nn.Module:
    """A causal character model over a vocabulary of ``n_features`` symbols."""
    return CharTransformer(n_features, n_outputs, d_model, layers, heads, context_length, dropout)


def build_model(
    name: str,
    params: Mapping[str, object] | None,
    n_features: int,
    n_outputs: int,
    *,
    input_shape: tuple[int, ...] | None = None,
) -> nn.Module:
    """Validate ``params`` against the catalogue and call the model's builder.

    ``input_shape`` (``(C, H, W)``) is required by the image models only.
    Initialisation draws from torch's global RNG (as every ``nn.Module`` does); the
    training loop forks and seeds it around this call, which keeps init reproducible.
    """
    spec = get_model_spec(name)
    resolved: dict[str, object] = dict(validate_model_params(name, params))
    if spec.input_kind == "image":
        if input_shape is None or len(input_shape) != 3:
            raise CatalogError(f"model {name!r} needs images of shape (C, H, W), got {input_shape}")
        resolved["input_shape"] = tuple(input_shape)
    module: nn.Module = import_object(spec.builder_path)(n_features, n_outputs, **resolved)
    return module


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters (``requires_grad``), the size recommendations compare."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
