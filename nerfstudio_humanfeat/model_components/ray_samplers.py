"""Depth-guided ray sampling (ENeRF) and ray / bounding-box intersection."""

from __future__ import annotations

from typing import Literal, Optional, Tuple

import torch
from jaxtyping import Bool, Float
from nerfstudio.cameras.rays import RayBundle, RaySamples
from nerfstudio.model_components.ray_samplers import Sampler
from torch import Tensor

AXIS_EPS = 1e-6


def _axis_terms(
    origins: Float[Tensor, "*bs 3"], directions: Float[Tensor, "*bs 3"], world_to_camera: Float[Tensor, "3 4"]
) -> Tuple[Float[Tensor, "*bs 1"], Float[Tensor, "*bs 1"]]:
    """Camera z of the origin and z-rate along the direction: z(t) = z0 + t * rate."""
    world_to_camera = world_to_camera.to(origins)
    axis = world_to_camera[2, :3]
    z0 = (origins * axis).sum(dim=-1, keepdim=True) + world_to_camera[2, 3]
    rate = (directions * axis).sum(dim=-1, keepdim=True)
    rate = torch.where(rate.abs() < AXIS_EPS, torch.full_like(rate, AXIS_EPS), rate)
    return z0, rate


def z_depth_to_ray_distance(
    z_depth: Float[Tensor, "*bs 1"],
    origins: Float[Tensor, "*bs 3"],
    directions: Float[Tensor, "*bs 3"],
    world_to_camera: Float[Tensor, "3 4"],
) -> Float[Tensor, "*bs 1"]:
    """Distance t along each ray (o + t d) at which the point has camera z-depth ``z_depth`` in the given camera.

    For rays from that camera's centre with unit directions this is z / (d . z_axis).
    """
    z0, rate = _axis_terms(origins, directions, world_to_camera)
    return (z_depth - z0) / rate


def ray_distance_to_z_depth(
    distance: Float[Tensor, "*bs 1"],
    origins: Float[Tensor, "*bs 3"],
    directions: Float[Tensor, "*bs 3"],
    world_to_camera: Float[Tensor, "3 4"],
) -> Float[Tensor, "*bs 1"]:
    """Camera z-depth of o + t d in the given camera."""
    z0, rate = _axis_terms(origins, directions, world_to_camera)
    return z0 + distance * rate


def ray_aabb_near_far(
    origins: Float[Tensor, "*bs 3"], directions: Float[Tensor, "*bs 3"], aabb: Float[Tensor, "2 3"]
) -> Tuple[Float[Tensor, "*bs 1"], Float[Tensor, "*bs 1"], Bool[Tensor, "*bs"]]:
    """Slab-method entry / exit distances of rays with an axis-aligned box [min corner, max corner].

    ``near`` is clamped at 0 (origins inside the box get near = 0). Missed rays get far = near (an empty interval).
    """
    aabb = aabb.to(origins)
    small = directions.abs() < AXIS_EPS
    safe = torch.where(small, torch.where(directions < 0, -AXIS_EPS, AXIS_EPS), directions)
    inv = 1.0 / safe
    t_a = (aabb[0] - origins) * inv
    t_b = (aabb[1] - origins) * inv
    t_min = torch.minimum(t_a, t_b).amax(dim=-1, keepdim=True)
    t_max = torch.maximum(t_a, t_b).amin(dim=-1, keepdim=True)
    near = t_min.clamp_min(0.0)
    hit = (t_max > near)[..., 0]
    far = torch.where(hit[..., None], t_max, near)
    return near, far, hit


class DepthGuidedSampler(Sampler):
    """ENeRF's depth-guided sampler: ``num_samples`` bins covering [mean - std, mean + std] of camera z-depth.

    The z-interval is converted to ray distance in the target camera and clamped to the rays' [near, far]. Bins are
    equal in depth; with ``train_stratified`` the bin edges are jittered in training (as nerfstudio's samplers do).

    Args:
        num_samples: samples per ray (ENeRF: 8 at level 0, 2 at level 1; GHNeRF: 8 and 4).
        train_stratified: jitter bin edges in training mode.
        min_std: lower bound on std (metres), keeping intervals non-empty when the depth is very confident.
    """

    def __init__(self, num_samples: int, train_stratified: bool = True, min_std: float = 0.0) -> None:
        super().__init__(num_samples=num_samples)
        self.train_stratified = train_stratified
        self.min_std = min_std

    def generate_ray_samples(
        self,
        ray_bundle: RayBundle,
        depth_mean: Float[Tensor, "*bs 1"],
        depth_std: Float[Tensor, "*bs 1"],
        world_to_camera: Float[Tensor, "3 4"],
        near: Optional[Float[Tensor, "*bs 1"]] = None,
        far: Optional[Float[Tensor, "*bs 1"]] = None,
    ) -> RaySamples:
        """Samples for rays of the target camera ``world_to_camera``.

        ``near`` / ``far`` are ray distances; they default to ``ray_bundle.nears`` / ``fars`` (no clamp if absent).
        """
        assert self.num_samples is not None
        origins, directions = ray_bundle.origins, ray_bundle.directions
        std = depth_std.clamp_min(self.min_std)
        t_lo = z_depth_to_ray_distance(depth_mean - std, origins, directions, world_to_camera)
        t_hi = z_depth_to_ray_distance(depth_mean + std, origins, directions, world_to_camera)
        t_lo, t_hi = torch.minimum(t_lo, t_hi), torch.maximum(t_lo, t_hi)
        near = ray_bundle.nears if near is None else near
        far = ray_bundle.fars if far is None else far
        if near is not None:
            t_lo, t_hi = t_lo.clamp_min(0.0).maximum(near), t_hi.maximum(near)
        if far is not None:
            t_lo, t_hi = t_lo.minimum(far), t_hi.minimum(far)
        t_lo = t_lo.clamp_min(0.0)
        t_hi = t_hi.maximum(t_lo)

        bins = torch.linspace(0.0, 1.0, self.num_samples + 1, device=origins.device, dtype=origins.dtype)
        bins = bins.expand(*t_lo.shape[:-1], self.num_samples + 1)
        if self.train_stratified and self.training:
            centres = (bins[..., 1:] + bins[..., :-1]) / 2.0
            upper = torch.cat([centres, bins[..., -1:]], dim=-1)
            lower = torch.cat([bins[..., :1], centres], dim=-1)
            bins = lower + (upper - lower) * torch.rand_like(bins)
        distances = t_lo + (t_hi - t_lo) * bins
        return ray_bundle.get_ray_samples(
            bin_starts=distances[..., :-1, None],
            bin_ends=distances[..., 1:, None],
            spacing_starts=bins[..., :-1, None],
            spacing_ends=bins[..., 1:, None],
        )


def sample_weights(
    ray_samples: RaySamples, densities: Float[Tensor, "*bs S 1"], opacity: Literal["enerf", "interval"] = "interval"
) -> Float[Tensor, "*bs S 1"]:
    """Volume-rendering weights of samples: opacity 1 - exp(-sigma * delta) ('interval', NeRF's quadrature) or
    1 - exp(-sigma) ('enerf', ENeRF's depth-guided samples, independent of their spacing)."""
    if opacity == "interval":
        return ray_samples.get_weights(densities)
    if opacity != "enerf":
        raise ValueError(f"opacity must be 'enerf' or 'interval', got {opacity!r}")
    alphas = 1.0 - torch.exp(-densities)
    return RaySamples.get_weights_and_transmittance_from_alphas(alphas, weights_only=True)
