"""KeypointNeRF's field (paper 003, Sec. 4.3-4.4 and supplementary B) with this plugin's feature heads.

Per source view n: s_n (relative keypoint encoding) -> one layer (128) -> with Phi_n(F^gl) two layers (128, 128)
-> with Phi_n(F^gh) two layers (120, 64), Softplus throughout; mean and variance over the views that see the
point give G_X (128). Density: four layers of 64 (Softplus). Colour: IBRNet-style blending of the sampled source
colours Phi_n(I), weights from a nine-layer residual ELU MLP on [G_X compressed to 24, Phi_n(F^a), Phi_n(I), view
direction difference] plus their mean and variance over views. Heatmaps and dense pose (this plugin) come from
G_X, and optionally the point's Gaussian proximity to each 3D keypoint, through GHNeRF's g_h architecture.
"""

from __future__ import annotations

from typing import Dict, Optional

import torch
from jaxtyping import Bool, Float
from torch import Tensor, nn

from nerfstudio_humanfeat.model_components.heads import DensePoseHead, HeatmapHead, IBRBlendingHead
from nerfstudio_humanfeat.model_components.pooling import weighted_mean_variance

FUSION_DIMS = (128, 128, 128, 120, 64)
"""Widths of the per-view fusion layers: spatial, two blending with F^gl, two after appending F^gh."""


def softplus_mlp(dims: tuple, final_activation: bool = True) -> nn.Sequential:
    layers = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(a, b))
        if final_activation or i < len(dims) - 2:
            layers.append(nn.Softplus())
    return nn.Sequential(*layers)


class KeypointNeRFField(nn.Module):
    """Geometry feature G_X, density, blended colour and (optionally) heatmaps and dense pose of sample points.

    Args:
        encoding_dim: channels of the relative keypoint encoding per view (168 for 24 keypoints).
        geometry_dim: channels of F^gl (64).
        high_dim: channels of F^gh (8).
        texture_dim: channels of F^a (8).
        num_joints: heatmap channels (0: no heatmap head).
        densepose_dim: dense-pose channels (0: no dense-pose head).
        compressed_dim: G_X's channels in the blending network's input (the reference code: 24).
        proximity_dim: channels of the heads' second input, the keypoint proximity (0: the heads see G_X only).
    """

    def __init__(
        self,
        encoding_dim: int,
        geometry_dim: int = 64,
        high_dim: int = 8,
        texture_dim: int = 8,
        num_joints: int = 25,
        densepose_dim: int = 3,
        compressed_dim: int = 24,
        proximity_dim: int = 0,
    ) -> None:
        super().__init__()
        d0, d1, d2, d3, d4 = FUSION_DIMS
        self.spatial = softplus_mlp((encoding_dim, d0))
        self.blend = softplus_mlp((d0 + geometry_dim, d1, d2))
        self.fuse = softplus_mlp((d2 + high_dim, d3, d4))
        self.geometry_dim = 2 * d4
        self.density = softplus_mlp((self.geometry_dim, 64, 64, 64, 1))
        self.compress = nn.Linear(self.geometry_dim, compressed_dim)
        self.blending = IBRBlendingHead(
            3 + texture_dim, context_dim=compressed_dim, hidden_dim=64, num_layers=9, activation="elu",
            view_statistics=True,
        )  # fmt: skip
        self.heatmap = HeatmapHead(self.geometry_dim, proximity_dim, num_joints, 64) if num_joints > 0 else None
        self.densepose = (
            DensePoseHead(self.geometry_dim, proximity_dim, densepose_dim, 64) if densepose_dim > 0 else None
        )

    def geometry(
        self,
        encoding: Float[Tensor, "V *bs E"],
        low: Float[Tensor, "V *bs Cl"],
        high: Float[Tensor, "V *bs Ch"],
        valid: Bool[Tensor, " V *bs"],
    ) -> Float[Tensor, "*bs G"]:
        """G_X: the per-view fusion MLP, mean and variance pooled over the views that see the point."""
        per_view = self.blend(torch.cat([self.spatial(encoding), low], dim=-1))
        per_view = self.fuse(torch.cat([per_view, high], dim=-1))
        mean, var = weighted_mean_variance(per_view, valid[..., None].to(per_view.dtype))
        return torch.cat([mean, var], dim=-1)

    def fields(
        self, geometry: Float[Tensor, "*bs G"], proximity: Optional[Float[Tensor, "*bs K"]] = None
    ) -> Dict[str, Tensor]:
        """Density and, where the heads exist, heatmaps and dense pose from G_X (and the keypoint proximity when the
        heads were built with ``proximity_dim``)."""
        out = {"density": self.density(geometry)}
        if self.heatmap is not None:
            out["heatmap"] = self.heatmap(geometry, proximity)
        if self.densepose is not None:
            out["densepose"] = self.densepose(geometry, proximity)
        return out

    def color(
        self,
        geometry: Float[Tensor, "*bs G"],
        texture: Float[Tensor, "V *bs Ct"],
        source_rgb: Float[Tensor, "V *bs 3"],
        directions: Float[Tensor, "V *bs 4"],
        valid: Optional[Bool[Tensor, " V *bs"]],
    ) -> Float[Tensor, "*bs 3"]:
        """Eq. 4: source colours blended with softmax weights over the views that see the point."""
        view_features = torch.cat([texture, source_rgb], dim=-1)
        return self.blending(view_features, directions, source_rgb, valid, context=self.compress(geometry))
