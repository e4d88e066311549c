"""Plain torch networks behind the built-in models: what a saved artifact needs to predict.

Kept apart from the LightningModules (`flows.training.models`) so the serving side rebuilds a network
from its JSON config with torch alone — no Lightning import in a BentoML worker.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh}


class MLP(nn.Module):
    """Tabular MLP: [Linear → activation → dropout] × len(hidden) → Linear."""

    def __init__(self, input_dim: int, output_dim: int, hidden: Sequence[int] = (64, 32), dropout: float = 0.0,
                 activation: str = "relu"):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose from {sorted(ACTIVATIONS)}")
        layers: list[nn.Module] = []
        width = input_dim
        for size in hidden:
            layers += [nn.Linear(width, int(size)), ACTIVATIONS[activation]()]
            if dropout:
                layers.append(nn.Dropout(float(dropout)))
            width = int(size)
        layers.append(nn.Linear(width, output_dim))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class Linear(nn.Module):
    """Linear/logistic baseline: one affine map (logits for classification, values for regression)."""

    def __init__(self, input_dim: int, output_dim: int):
        super().__init__()
        self.linear = nn.Linear(input_dim, output_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


NETWORKS = {"MLP": MLP, "Linear": Linear}


def build_network(name: str, input_dim: int, output_dim: int, params: dict) -> nn.Module:
    if name not in NETWORKS:
        raise ValueError(f"unknown network {name!r}; known: {sorted(NETWORKS)}")
    return NETWORKS[name](input_dim, output_dim, **params)
