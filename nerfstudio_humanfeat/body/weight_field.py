"""AniPixel's learnable forward blend-weight field (eq. 2): softmax(MLP(phi(x_c), l_idt) + log w_init(x_c))."""

from __future__ import annotations

from typing import Optional

import torch
from jaxtyping import Float
from torch import Tensor, nn

from nerfstudio_humanfeat.body.skinning import NUM_WEIGHTS, WeightGrid, sample_weights

LOG_EPS = 1e-8
"""Floor of w_init inside the log; softmax then reproduces w_init to ~1e-7."""


def frequency_encoding(x: Float[Tensor, "N D"], num_frequencies: int) -> Float[Tensor, "N E"]:
    """NeRF positional encoding [x, sin(2^k pi x), cos(2^k pi x)] for k < num_frequencies."""
    freqs = (2.0 ** torch.arange(num_frequencies, device=x.device, dtype=x.dtype)) * torch.pi
    scaled = (x[..., None] * freqs).flatten(-2)
    return torch.cat([x, torch.sin(scaled), torch.cos(scaled)], dim=-1)


class ForwardWeightField(nn.Module):
    """Canonical-space blend weights, initialised to the SMPL weights of the canonical grid (`tbw`).

    The MLP's last layer is zero-initialised, so at init the field returns exactly the canonical grid's weights.
    """

    def __init__(
        self,
        canonical_grid: WeightGrid,
        latent_dim: int = 0,
        hidden_dim: int = 128,
        num_layers: int = 4,
        num_frequencies: int = 6,
    ) -> None:
        super().__init__()
        self.register_buffer("grid_weights", canonical_grid.weights.clone(), persistent=False)
        self.register_buffer("grid_bounds", canonical_grid.bounds.clone(), persistent=False)
        self.latent_dim = latent_dim
        self.num_frequencies = num_frequencies
        dims = [3 * (1 + 2 * num_frequencies) + latent_dim] + [hidden_dim] * (num_layers - 1)
        layers: list[nn.Module] = []
        for d_in, d_out in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(d_in, d_out), nn.ReLU()]
        last = nn.Linear(dims[-1], NUM_WEIGHTS)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.mlp = nn.Sequential(*layers, last)

    def initial_weights(self, points: Float[Tensor, "N 3"], grid: Optional[WeightGrid] = None) -> Float[Tensor, "N 24"]:
        """w_init: the canonical grid's SMPL blend weights (``grid`` instead of the field's own, e.g. one canonical
        grid per subject of a multi-person model), renormalised to sum to one."""
        weights, _ = sample_weights(grid or WeightGrid(self.grid_weights, self.grid_bounds), points)
        return weights / weights.sum(-1, keepdim=True).clamp_min(LOG_EPS)

    def forward(
        self,
        points: Float[Tensor, "N 3"],
        latent: Optional[Float[Tensor, "N L"]] = None,
        background: Optional[Float[Tensor, " N"]] = None,
        grid: Optional[WeightGrid] = None,
    ) -> Float[Tensor, "N W"]:
        """24 forward blend weights of canonical points, or 25 (scaled by 1 - background, background last)."""
        features = frequency_encoding(points, self.num_frequencies)
        if self.latent_dim:
            if latent is None:
                raise ValueError("this field is conditioned on an identity latent; pass `latent`")
            features = torch.cat([features, latent.expand(points.shape[0], -1)], dim=-1)
        logits = self.mlp(features) + torch.log(self.initial_weights(points, grid) + LOG_EPS)
        weights = torch.softmax(logits, dim=-1)
        if background is None:
            return weights
        return torch.cat([weights * (1.0 - background[:, None]), background[:, None]], dim=-1)
