"""A per-point scalar shading factor that modulates blended colours (AniPixel 3.4, eq. 7).

alpha = F(v, theta_t, n_t, l_idt, L): a shallow MLP on the target view direction, the target pose, the target-space
normal, the identity code and a per-image global feature. The output is 2 sigmoid(z) with the last layer zero-
initialised, so alpha starts at exactly 1 (the blended colour unchanged) and stays in (0, 2).
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor, nn


class ShadingModule(nn.Module):
    """Scalar shading factor of points from concatenated conditioning vectors.

    Args:
        in_dim: channels of the concatenated inputs (view direction, pose, normal, identity, global feature).
        hidden_dim: width of the hidden layers.
        num_layers: hidden layers ("a shallow MLP").
    """

    def __init__(self, in_dim: int, hidden_dim: int = 64, num_layers: int = 2) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        dims = [in_dim] + [hidden_dim] * num_layers
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        last = nn.Linear(dims[-1], 1)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.layers = nn.Sequential(*layers, last)

    def forward(self, inputs: Float[Tensor, "*bs C"]) -> Float[Tensor, "*bs 1"]:
        return 2.0 * torch.sigmoid(self.layers(inputs))
