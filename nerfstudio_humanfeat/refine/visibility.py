"""Z-buffer joint visibility (NeuHMR equation 8) and the registration of joint features on anchor frames (eq. 9)."""

from __future__ import annotations

from typing import Tuple

import torch
from jaxtyping import Bool, Float
from torch import Tensor

VISIBILITY_EPS = 0.2
"""The paper's tolerance epsilon (metres of camera z)."""


def depth_at(depth_map: Float[Tensor, "H W"], uv: Float[Tensor, "J 2"]) -> Float[Tensor, " J"]:
    """The depth map at the pixels containing each point (pixel (0, 0) covers [0, 1)^2); inf outside the image."""
    height, width = depth_map.shape
    x = torch.floor(uv[:, 0]).long()
    y = torch.floor(uv[:, 1]).long()
    inside = (x >= 0) & (x < width) & (y >= 0) & (y < height)
    values = torch.full_like(uv[:, 0], float("inf"))
    values[inside] = depth_map[y[inside], x[inside]].to(values)
    return values


def joint_visibility(
    surface_depth: Float[Tensor, "*bs J"], joint_depth: Float[Tensor, "*bs J"], eps: float = VISIBILITY_EPS
) -> Bool[Tensor, "*bs J"]:
    """V = 1(|D_J - z_J| < eps): the surface seen through the joint's pixel is near the joint, i.e. no other body
    part lies in front of it (no surface there at all: inf, not visible)."""
    return (surface_depth - joint_depth).abs() < eps


def register_joint_features(
    features: Float[Tensor, "N J C"], visible: Bool[Tensor, "N J"]
) -> Tuple[Float[Tensor, "J C"], Bool[Tensor, " J"]]:
    """Equation 9: each joint's feature averaged over the anchor frames where it is visible, and which joints were
    visible at least once (the others get zeros and must not be matched)."""
    weights = visible.to(features.dtype)
    count = weights.sum(0)
    registered = (features * weights[..., None]).sum(0) / count.clamp_min(1.0)[:, None]
    return registered, count > 0
