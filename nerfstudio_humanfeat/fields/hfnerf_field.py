"""HFNeRF's field: a PixelNeRF-style MLP over gamma(x) and pixel-aligned features, with a heatmap branch."""

from __future__ import annotations

from typing import Dict, Optional

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float
from torch import Tensor, nn


def _mlp(in_dim: int, hidden: int, out_dim: int, num_hidden_layers: int) -> nn.Sequential:
    layers = []
    dim = in_dim
    for _ in range(num_hidden_layers):
        layers += [nn.Linear(dim, hidden), nn.ReLU()]
        dim = hidden
    layers.append(nn.Linear(dim, out_dim))
    return nn.Sequential(*layers)


class HFNeRFField(nn.Module):
    """Per-view layers on [gamma(x_view), f_view], mean over the visible views, shared layers with a skip.

    The skip adds a linear map of the view-averaged input [gamma(x_view), f_view] to the skip layer's input
    (a concatenation followed by a linear layer, written as a sum of the two parts).

    Density comes from the trunk, colour from the last layer joined by the encoded view direction, and the
    heatmap (and dense-pose) features branch off the first shared layer into smaller secondary MLPs.

    Args:
        position_dim: size of gamma(x).
        feature_dim: channels of the pixel-aligned encoder feature.
        direction_dim: size of the encoded view direction.
        hidden_dim: trunk width (PixelNeRF: 512; HFNeRF does not say).
        num_view_layers: layers applied per source view before pooling (PixelNeRF: 3 of 5 blocks).
        num_shared_layers: layers after pooling.
        skip_layer: shared layer (0-based) whose input is re-joined with the pooled first-layer input.
        num_joints: heatmap channels.
        densepose_dim: dense-pose channels (0: none).
    """

    def __init__(
        self,
        position_dim: int,
        feature_dim: int,
        direction_dim: int,
        hidden_dim: int = 256,
        num_view_layers: int = 3,
        num_shared_layers: int = 3,
        skip_layer: int = 1,
        num_joints: int = 25,
        densepose_dim: int = 0,
    ) -> None:
        super().__init__()
        self.skip_layer = skip_layer
        # The first layer and the skip are split per input: their feature parts act on whole feature maps
        # (``project_features``), since a linear map commutes with bilinear sampling.
        self.position_in = nn.Linear(position_dim, hidden_dim)
        self.feature_in = nn.Linear(feature_dim, hidden_dim, bias=False)
        self.view_layers = nn.ModuleList([nn.Linear(hidden_dim, hidden_dim) for _ in range(num_view_layers - 1)])
        self.shared_layers = nn.ModuleList([nn.Linear(hidden_dim, hidden_dim) for _ in range(num_shared_layers)])
        self.skip_position = nn.Linear(position_dim, hidden_dim, bias=False)
        self.skip_feature = nn.Linear(feature_dim, hidden_dim, bias=False)
        self.density_out = nn.Linear(hidden_dim, 1)
        self.color_feature = nn.Linear(hidden_dim, hidden_dim)
        self.color_out = _mlp(hidden_dim + direction_dim, hidden_dim // 2, 3, 1)
        self.heatmap_out = _mlp(hidden_dim, hidden_dim // 2, num_joints, 1)
        self.densepose_out = _mlp(hidden_dim, hidden_dim // 2, densepose_dim, 1) if densepose_dim > 0 else None
        self.activation = nn.ReLU()

    def project_features(self, feature_maps: Float[Tensor, "V C h w"]) -> Float[Tensor, "V 2H h w"]:
        """The first layer's and the skip's linear maps of encoder features, applied per pixel of the maps.

        Sampling the projected maps equals projecting sampled features, at a fraction of the cost per point.
        """
        weight = torch.cat([self.feature_in.weight, self.skip_feature.weight], dim=0)
        return F.conv2d(feature_maps, weight[:, :, None, None])

    def forward(
        self,
        positions: Float[Tensor, " V *bs P"],
        features: Float[Tensor, " V *bs 2H"],
        valid: Bool[Tensor, " V *bs"],
        directions: Float[Tensor, "*bs D"],
    ) -> Dict[str, Tensor]:
        """Density, colour, heatmaps (and dense pose) of the points, from their per-view inputs.

        ``features`` are pixel-aligned samples of ``project_features`` maps.
        """
        feature_in, feature_skip = features.chunk(2, dim=-1)
        hidden = self.activation(self.position_in(positions) + feature_in)
        for layer in self.view_layers:
            hidden = self.activation(layer(hidden))
        weights = valid[..., None].to(hidden.dtype)
        total = weights.sum(dim=0).clamp_min(1.0)
        hidden = (hidden * weights).sum(dim=0) / total
        branch: Optional[Tensor] = None
        for i, layer in enumerate(self.shared_layers):
            if i == self.skip_layer:
                skip = self.skip_position(positions) + feature_skip
                hidden = hidden + (skip * weights).sum(dim=0) / total
            hidden = self.activation(layer(hidden))
            if branch is None:
                branch = hidden
        assert branch is not None
        outputs = {
            "density": nn.functional.softplus(self.density_out(hidden) - 1.0),
            "rgb": torch.sigmoid(self.color_out(torch.cat([self.color_feature(hidden), directions], dim=-1))),
            "heatmap": torch.sigmoid(self.heatmap_out(branch)),
        }
        if self.densepose_out is not None:
            outputs["densepose"] = torch.sigmoid(self.densepose_out(branch))
        return outputs
