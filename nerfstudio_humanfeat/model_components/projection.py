"""Pinhole projection of world points and pixel-aligned feature sampling.

Conventions: OpenCV cameras (x right, y down, z forward), ``intrinsics`` in pixels of the full-resolution image,
``world_to_camera`` = [R | t] in metres. Pixel (x, y) = (0, 0) covers [0, 1) x [0, 1), so pixel centres sit at
integer + 0.5. Feature maps of any resolution are assumed to span the whole image and are sampled with normalised
coordinates (``grid_sample``, ``align_corners=False``), so callers always pass full-resolution pixels and image size.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float
from torch import Tensor

DEPTH_EPS = 1e-6


def transform_points(
    points: Float[Tensor, "*bs 3"], world_to_camera: Float[Tensor, "V 3 4"]
) -> Float[Tensor, "V *bs 3"]:
    """World points expressed in each camera frame."""
    flat = points.reshape(-1, 3)
    cam = torch.einsum("vij,nj->vni", world_to_camera[:, :, :3], flat) + world_to_camera[:, None, :, 3]
    return cam.reshape(world_to_camera.shape[0], *points.shape[:-1], 3)


def camera_centres(world_to_camera: Float[Tensor, "V 3 4"]) -> Float[Tensor, "V 3"]:
    """Camera centres in world coordinates, -R^T t."""
    rot = world_to_camera[:, :, :3]
    return -torch.einsum("vji,vj->vi", rot, world_to_camera[:, :, 3])


def project_points(
    points: Float[Tensor, "*bs 3"], intrinsics: Float[Tensor, "V 3 3"], world_to_camera: Float[Tensor, "V 3 4"]
) -> Tuple[Float[Tensor, "V *bs 2"], Float[Tensor, " V *bs"]]:
    """Projects world points into every view: pixel coordinates (x, y) and camera z-depth.

    Points with depth <= 0 get a meaningless uv; ``sample_pixel_aligned(..., depth=depth)`` marks them invalid.
    """
    cam = transform_points(points, world_to_camera)
    depth = cam[..., 2]
    safe = torch.where(depth.abs() < DEPTH_EPS, torch.full_like(depth, DEPTH_EPS), depth)
    xy = cam[..., :2] / safe[..., None]
    view_shape = (intrinsics.shape[0],) + (1,) * (points.dim() - 1)
    fx = intrinsics[:, 0, 0].reshape(view_shape)
    fy = intrinsics[:, 1, 1].reshape(view_shape)
    skew = intrinsics[:, 0, 1].reshape(view_shape)
    cx = intrinsics[:, 0, 2].reshape(view_shape)
    cy = intrinsics[:, 1, 2].reshape(view_shape)
    u = fx * xy[..., 0] + skew * xy[..., 1] + cx
    v = fy * xy[..., 1] + cy
    return torch.stack([u, v], dim=-1), depth


def pixels_to_grid(uv: Float[Tensor, "*bs 2"], image_size: Tuple[int, int]) -> Float[Tensor, "*bs 2"]:
    """Pixel coordinates to ``grid_sample`` coordinates in [-1, 1] (``align_corners=False``)."""
    height, width = image_size
    scale = uv.new_tensor([2.0 / width, 2.0 / height])
    return uv * scale - 1.0


def pixel_centres(
    height: int, width: int, image_size: Tuple[int, int], device: Optional[torch.device] = None
) -> Float[Tensor, "height width 2"]:
    """Full-resolution pixel coordinates of the cell centres of a (height, width) grid spanning the image."""
    full_h, full_w = image_size
    ys = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) * (full_h / height)
    xs = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) * (full_w / width)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x, grid_y], dim=-1)


def inside_image(uv: Float[Tensor, "*bs 2"], image_size: Tuple[int, int]) -> Bool[Tensor, "*bs"]:
    """Whether pixel coordinates fall inside [0, W] x [0, H]."""
    height, width = image_size
    return (uv[..., 0] >= 0) & (uv[..., 0] <= width) & (uv[..., 1] >= 0) & (uv[..., 1] <= height)


def grid_sample_pixels(
    feature_maps: Float[Tensor, "V C h w"], uv: Float[Tensor, "V P 2"], image_size: Tuple[int, int]
) -> Float[Tensor, "V C P"]:
    """Bilinear samples at full-resolution pixel coordinates, border-clamped (no masking)."""
    grid = pixels_to_grid(uv, image_size).to(feature_maps.dtype)[:, None]
    sampled = F.grid_sample(feature_maps, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return sampled[:, :, 0]


def sample_pixel_aligned(
    feature_maps: Float[Tensor, "V C h w"],
    uv: Float[Tensor, "V *bs 2"],
    image_size: Tuple[int, int],
    depth: Optional[Float[Tensor, " V *bs"]] = None,
) -> Tuple[Float[Tensor, "V *bs C"], Bool[Tensor, " V *bs"]]:
    """Bilinear pixel-aligned features per view; zeros where invalid.

    ``valid`` = inside the image and, when ``depth`` (from ``project_points``) is given, in front of the camera.
    Pass ``depth`` whenever points may lie behind a camera.
    """
    num_views = feature_maps.shape[0]
    batch_shape = uv.shape[1:-1]
    flat_uv = uv.reshape(num_views, -1, 2)
    sampled = grid_sample_pixels(feature_maps, flat_uv, image_size).transpose(1, 2)
    valid = inside_image(flat_uv, image_size)
    if depth is not None:
        valid = valid & (depth.reshape(num_views, -1) > DEPTH_EPS)
    sampled = sampled * valid[..., None].to(sampled.dtype)
    return (
        sampled.reshape(num_views, *batch_shape, feature_maps.shape[1]),
        valid.reshape(num_views, *batch_shape),
    )
