"""KeypointNeRF's relative spatial keypoint encoding (paper 003, Eq. 3), shared by every method that uses it.

For a query point X, 3D keypoints p_k and a source camera n:

    s_n(X) = [ exp(-||X - p_k||^2 / (2 sigma^2)) * gamma(z_n(p_k) - z_n(X)) ]_{k=1..K}

z_n is the camera z-depth in view n, gamma(d) = [d, sin(pi 2^l d), cos(pi 2^l d)]_{l<L} (the reference code's
frequencies pi * 2^l; L = 3 gives 7 values per keypoint, 24 SMPL joints -> 168 dims per view) and sigma = 0.1 m for
bodies (0.05 m for faces). Keypoints marked missing contribute zeros. The layout is keypoint-major: the 2L + 1
values of keypoint 0, then those of keypoint 1, ...
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from jaxtyping import Bool, Float
from torch import Tensor, nn

from nerfstudio_humanfeat.model_components.projection import transform_points


def depth_positional_encoding(delta: Float[Tensor, "*bs"], num_frequencies: int) -> Float[Tensor, "*bs F"]:
    """gamma(d) = [d, sin(pi 2^0 d), cos(pi 2^0 d), ..., sin(pi 2^(L-1) d), cos(pi 2^(L-1) d)], F = 2L + 1."""
    if num_frequencies <= 0:
        return delta[..., None]
    freqs = math.pi * 2.0 ** torch.arange(num_frequencies, device=delta.device, dtype=delta.dtype)
    angles = delta[..., None] * freqs
    pairs = torch.stack([torch.sin(angles), torch.cos(angles)], dim=-1).flatten(-2)
    return torch.cat([delta[..., None], pairs], dim=-1)


def gaussian_keypoint_weights(
    points: Float[Tensor, "*bs 3"], keypoints: Float[Tensor, "K 3"], sigma: float
) -> Float[Tensor, "*bs K"]:
    """exp(-||X - p_k||^2 / (2 sigma^2)) for every point and keypoint; sigma = inf gives 1 (the unweighted ablation)."""
    squared = ((points[..., None, :] - keypoints) ** 2).sum(dim=-1)
    if math.isinf(sigma):
        return torch.ones_like(squared)
    return torch.exp(-squared / (2.0 * sigma**2))


def relative_keypoint_encoding(
    points: Float[Tensor, "*bs 3"],
    keypoints: Float[Tensor, "K 3"],
    world_to_camera: Float[Tensor, "V 3 4"],
    num_frequencies: int = 3,
    sigma: float = 0.1,
    keypoint_valid: Optional[Bool[Tensor, " K"]] = None,
) -> Float[Tensor, "V *bs E"]:
    """s_n(X) of Eq. 3 for every source view n: E = K (2 num_frequencies + 1) values per point and view."""
    point_depth = transform_points(points, world_to_camera)[..., 2]  # (V, *bs)
    keypoint_depth = transform_points(keypoints, world_to_camera)[..., 2]  # (V, K)
    shape = (keypoint_depth.shape[0],) + (1,) * (points.dim() - 1) + (keypoint_depth.shape[1],)
    delta = keypoint_depth.reshape(shape) - point_depth[..., None]  # (V, *bs, K)
    weights = gaussian_keypoint_weights(points, keypoints, sigma)  # (*bs, K)
    if keypoint_valid is not None:
        weights = weights * keypoint_valid.to(weights.dtype)
    encoded = depth_positional_encoding(delta, num_frequencies) * weights[..., None]  # (V, *bs, K, F)
    return encoded.flatten(-2)


class RelativeKeypointEncoding(nn.Module):
    """``relative_keypoint_encoding`` with its settings; ``out_dim`` = K (2 num_frequencies + 1).

    Args:
        num_keypoints: K (24 SMPL joints in KeypointNeRF's body setting, 25 for BODY_25 keypoints).
        num_frequencies: L of the positional encoding (KeypointNeRF: 3).
        sigma: width (m) of the Gaussian weighting (bodies 0.1, faces 0.05; inf: no weighting).
    """

    def __init__(self, num_keypoints: int = 24, num_frequencies: int = 3, sigma: float = 0.1) -> None:
        super().__init__()
        self.num_keypoints = num_keypoints
        self.num_frequencies = num_frequencies
        self.sigma = sigma
        self.out_dim = num_keypoints * (2 * max(num_frequencies, 0) + 1)

    def forward(
        self,
        points: Float[Tensor, "*bs 3"],
        keypoints: Float[Tensor, "K 3"],
        world_to_camera: Float[Tensor, "V 3 4"],
        keypoint_valid: Optional[Bool[Tensor, " K"]] = None,
    ) -> Float[Tensor, "V *bs E"]:
        if keypoints.shape[0] != self.num_keypoints:
            raise ValueError(f"expected {self.num_keypoints} keypoints, got {keypoints.shape[0]}")
        return relative_keypoint_encoding(
            points, keypoints, world_to_camera, self.num_frequencies, self.sigma, keypoint_valid
        )
