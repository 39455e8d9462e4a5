"""ENeRF's two-level cascaded cost volume: plane sweep, homography warping, variance cost, 3D U-Net, depth.

A cost volume lives in the target camera frustum: D fronto-parallel depth planes (per-pixel depths allowed) over an
(h, w) grid spanning the full target image. Cell (i, j) looks through full-resolution pixel
((j + 0.5) W / w, (i + 0.5) H / h). All cameras use full-resolution intrinsics; see ``projection``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float
from torch import Tensor, nn

from nerfstudio_humanfeat.model_components.pooling import weighted_mean_variance
from nerfstudio_humanfeat.model_components.projection import (
    DEPTH_EPS,
    grid_sample_pixels,
    inside_image,
    pixel_centres,
    pixels_to_grid,
    project_points,
)

RANGE_EPS = 1e-6
Scalar = Union[float, Tensor]


def plane_sweep_depths(near: Scalar, far: Scalar, num: int, inverse: bool) -> Float[Tensor, " num *bs"]:
    """``num`` depths from near to far inclusive, uniform in inverse depth (``inverse``) or in depth.

    ``near`` / ``far`` may be floats or tensors of any (broadcastable) shape, e.g. per-pixel (h, w) ranges.
    """
    ref = near if isinstance(near, Tensor) else far if isinstance(far, Tensor) else torch.zeros(())
    dtype = ref.dtype if ref.is_floating_point() else torch.float32
    near_t = torch.as_tensor(near, dtype=dtype, device=ref.device)
    far_t = torch.as_tensor(far, dtype=dtype, device=ref.device)
    near_t, far_t = torch.broadcast_tensors(near_t, far_t)
    steps = torch.linspace(0.0, 1.0, num, device=near_t.device, dtype=near_t.dtype)
    steps = steps.reshape(num, *([1] * near_t.dim()))
    if inverse:
        inv_near = 1.0 / near_t.clamp_min(DEPTH_EPS)
        inv_far = 1.0 / far_t.clamp_min(DEPTH_EPS)
        return 1.0 / (inv_near + (inv_far - inv_near) * steps)
    return near_t + (far_t - near_t) * steps


def depth_to_plane_coordinate(
    depth: Float[Tensor, "*bs"], near: Float[Tensor, "*bs"], far: Float[Tensor, "*bs"], inverse: bool
) -> Float[Tensor, "*bs"]:
    """Position of a depth within [near, far] in plane-index units normalised to [0, 1] (0 = near, 1 = far)."""
    if inverse:
        inv_near = 1.0 / near.clamp_min(DEPTH_EPS)
        inv_far = 1.0 / far.clamp_min(DEPTH_EPS)
        span = inv_far - inv_near
        span = torch.where(span.abs() < RANGE_EPS, torch.full_like(span, -RANGE_EPS), span)
        return (1.0 / depth.clamp_min(DEPTH_EPS) - inv_near) / span
    return (depth - near) / (far - near).clamp_min(RANGE_EPS)


def backproject_grid(
    depth_planes: Float[Tensor, "D h w"],
    target_K: Float[Tensor, "3 3"],
    target_w2c: Float[Tensor, "3 4"],
    image_size: Tuple[int, int],
) -> Float[Tensor, "D h w 3"]:
    """World points of the target cost-volume cells at their plane depths (camera z)."""
    _, height, width = depth_planes.shape
    uv = pixel_centres(height, width, image_size, device=depth_planes.device).to(depth_planes.dtype)
    ones = torch.ones_like(uv[..., :1])
    rays = torch.cat([uv, ones], dim=-1) @ torch.linalg.inv(target_K).T.to(uv.dtype)
    cam = rays[None] * depth_planes[..., None]
    rot, trans = target_w2c[:, :3], target_w2c[:, 3]
    return (cam - trans) @ rot


def homography_warp_with_valid(
    source_features: Float[Tensor, "V C hs ws"],
    source_K: Float[Tensor, "V 3 3"],
    source_w2c: Float[Tensor, "V 3 4"],
    target_K: Float[Tensor, "3 3"],
    target_w2c: Float[Tensor, "3 4"],
    depth_planes: Float[Tensor, "D h w"],
    image_size: Tuple[int, int],
    target_image_size: Optional[Tuple[int, int]] = None,
) -> Tuple[Float[Tensor, "V C D h w"], Bool[Tensor, "V D h w"]]:
    """``homography_warp`` plus the mask of cells that land inside each source image, in front of it."""
    target_size = image_size if target_image_size is None else target_image_size
    num_planes, height, width = depth_planes.shape
    points = backproject_grid(depth_planes, target_K, target_w2c, target_size)
    uv, depth = project_points(points.reshape(-1, 3), source_K, source_w2c)
    warped = grid_sample_pixels(source_features, uv, image_size)
    valid = inside_image(uv, image_size) & (depth > DEPTH_EPS)
    warped = warped * valid[:, None].to(warped.dtype)
    num_views, channels = source_features.shape[:2]
    return (
        warped.reshape(num_views, channels, num_planes, height, width),
        valid.reshape(num_views, num_planes, height, width),
    )


def homography_warp(
    source_features: Float[Tensor, "V C hs ws"],
    source_K: Float[Tensor, "V 3 3"],
    source_w2c: Float[Tensor, "V 3 4"],
    target_K: Float[Tensor, "3 3"],
    target_w2c: Float[Tensor, "3 4"],
    depth_planes: Float[Tensor, "D h w"],
    image_size: Tuple[int, int],
    target_image_size: Optional[Tuple[int, int]] = None,
) -> Float[Tensor, "V C D h w"]:
    """Source features warped into the target frustum at each (per-pixel) depth plane; zeros outside a source.

    Each target cell is back-projected to its plane depth and projected into every source view, which for constant
    depth planes is exactly the plane-induced homography K_s (R - t n^T / d) K_t^-1. ``image_size`` is the
    full-resolution size of the source images (``target_image_size`` defaults to it).
    """
    return homography_warp_with_valid(
        source_features, source_K, source_w2c, target_K, target_w2c, depth_planes, image_size, target_image_size
    )[0]


def variance_cost_volume(
    warped: Float[Tensor, "V C D h w"], valid: Optional[Bool[Tensor, "V D h w"]] = None
) -> Float[Tensor, "C D h w"]:
    """Variance of the warped features over source views (ENeRF / MVSNet); ``valid`` optionally restricts views."""
    weights = None if valid is None else valid[:, None].to(warped.dtype)
    return weighted_mean_variance(warped, weights)[1]


class _ConvBnReLU3d(nn.Sequential):
    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__(
            nn.Conv3d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm3d(out_ch),
            nn.ReLU(inplace=True),
        )


class _UpBn3d(nn.Sequential):
    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__(
            nn.ConvTranspose3d(in_ch, out_ch, 3, stride=2, padding=1, output_padding=1, bias=False),
            nn.BatchNorm3d(out_ch),
        )


class CostRegNet(nn.Module):
    """ENeRF's 3D U-Net cost regulariser: (feature volume, depth logits) from a cost volume.

    Args:
        in_channels: cost-volume channels.
        channels: encoder widths; the first is the full-resolution width, each further one halves D, h, w
            (ENeRF level 0: (8, 16, 32); level 1: (8, 16, 32, 64)).
        out_channels: channels of the output feature volume (level 0: 32; level 1: 8).
    Volumes whose D, h, w are not multiples of 2^(len(channels) - 1) are zero-padded and cropped back.
    """

    def __init__(self, in_channels: int, channels: Sequence[int] = (8, 16, 32), out_channels: int = 8) -> None:
        super().__init__()
        if len(channels) < 1:
            raise ValueError("channels needs at least one width")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.channels = tuple(channels)
        self.stem = _ConvBnReLU3d(in_channels, channels[0])
        self.down = nn.ModuleList(
            nn.Sequential(_ConvBnReLU3d(c_in, c_out, stride=2), _ConvBnReLU3d(c_out, c_out))
            for c_in, c_out in zip(channels[:-1], channels[1:])
        )
        self.up = nn.ModuleList(_UpBn3d(c_in, c_out) for c_in, c_out in zip(channels[:0:-1], channels[-2::-1]))
        self.depth_head = nn.Conv3d(channels[0], 1, 3, padding=1, bias=False)
        self.feature_head = nn.Conv3d(channels[0], out_channels, 3, padding=1, bias=False)

    def forward(self, cost: Float[Tensor, "C D h w"]) -> Tuple[Float[Tensor, "F D h w"], Float[Tensor, "D h w"]]:
        """Feature volume and depth logits."""
        size = cost.shape[1:]
        multiple = 2 ** len(self.down)
        pads = [(-s) % multiple for s in size]
        x = cost[None]
        if any(pads):
            x = F.pad(x, (0, pads[2], 0, pads[1], 0, pads[0]))
        skips = [self.stem(x)]
        for stage in self.down:
            skips.append(stage(skips[-1]))
        x = skips.pop()
        for stage in self.up:
            x = skips.pop() + stage(x)
        depth_d, height, width = size
        features = self.feature_head(x)[0, :, :depth_d, :height, :width]
        logits = self.depth_head(x)[0, 0, :depth_d, :height, :width]
        return features, logits


def depth_distribution(
    logits: Float[Tensor, "D h w"], depths: Float[Tensor, "D h w"]
) -> Tuple[Float[Tensor, "h w"], Float[Tensor, "h w"]]:
    """Mean and standard deviation of depth under softmax(logits) over the plane axis."""
    _, mean, std = _distribution(logits, depths)
    return mean, std


def _distribution(logits: Tensor, depths: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    probs = torch.softmax(logits, dim=0)
    mean = (probs * depths).sum(dim=0)
    var = (probs * (depths - mean) ** 2).sum(dim=0)
    return probs, mean, var.clamp_min(0.0).sqrt()


def next_level_range(
    mean: Float[Tensor, "*bs"], std: Float[Tensor, "*bs"], near: Scalar, far: Scalar
) -> Tuple[Float[Tensor, "*bs"], Float[Tensor, "*bs"]]:
    """[mean - std, mean + std] clamped to the previous level's [near, far]."""
    near_t = torch.as_tensor(near, dtype=mean.dtype, device=mean.device)
    far_t = torch.as_tensor(far, dtype=mean.dtype, device=mean.device)
    new_near = torch.minimum(torch.maximum(mean - std, near_t), far_t)
    new_far = torch.minimum(torch.maximum(mean + std, near_t), far_t)
    return new_near, new_far


def resize_map(values: Scalar, size: Tuple[int, int]) -> Float[Tensor, "h w"]:
    """A scalar or an (h', w') map as an (h, w) map (bilinear, cell-centre aligned)."""
    values = torch.as_tensor(values, dtype=torch.float32) if not isinstance(values, Tensor) else values
    if values.dim() == 0:
        return values.expand(size)
    if tuple(values.shape) == tuple(size):
        return values
    return F.interpolate(values[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]


def sample_volume_features(
    volume: Float[Tensor, "C D h w"],
    pixel_uv: Float[Tensor, "N 2"],
    depth: Float[Tensor, " N"],
    near: Float[Tensor, " N"],
    far: Float[Tensor, " N"],
    image_size: Tuple[int, int],
    inverse: bool = False,
) -> Float[Tensor, "N C"]:
    """Voxel-aligned features f_voxel by trilinear interpolation at (pixel, depth) in the target frustum.

    ``pixel_uv`` are full-resolution target pixels, ``depth`` target camera z, ``near`` / ``far`` the depth range of
    the volume at each point's pixel (the planes are ``plane_sweep_depths(near, far, D, inverse)``). Points outside
    the volume take the features of its border.
    """
    num_planes = volume.shape[1]
    t = depth_to_plane_coordinate(depth, near, far, inverse)
    z = (2.0 * t * (num_planes - 1) + 1.0) / num_planes - 1.0
    xy = pixels_to_grid(pixel_uv, image_size)
    grid = torch.cat([xy, z[:, None]], dim=-1).to(volume.dtype).reshape(1, 1, 1, -1, 3)
    sampled = F.grid_sample(volume[None], grid, mode="bilinear", padding_mode="border", align_corners=False)
    return sampled[0, :, 0, 0].T


@dataclass
class CostVolumeOutput:
    """Result of one cascade level, all on the level's (h, w) grid spanning the target image."""

    depth_planes: Float[Tensor, "D h w"]
    features: Float[Tensor, "F D h w"]
    probabilities: Float[Tensor, "D h w"]
    depth_mean: Float[Tensor, "h w"]
    depth_std: Float[Tensor, "h w"]
    near: Float[Tensor, "h w"]
    far: Float[Tensor, "h w"]
    inverse: bool


class CascadeCostVolume(nn.Module):
    """One level of ENeRF's cascade: warp, variance, regularise, depth distribution.

    Args:
        feature_channels: channels of the source feature maps fed to this level.
        num_planes: number of depth planes D.
        inverse_depth: planes uniform in inverse depth (level 0) or depth (level 1).
        volume_scale: cost-volume resolution relative to the target image (level 0: 1/8, level 1: 1/2).
        reg_channels: ``CostRegNet`` widths.
        out_channels: channels of the feature volume.
    """

    def __init__(
        self,
        feature_channels: int,
        num_planes: int,
        inverse_depth: bool,
        volume_scale: float,
        reg_channels: Sequence[int] = (8, 16, 32),
        out_channels: int = 32,
    ) -> None:
        super().__init__()
        self.feature_channels = feature_channels
        self.num_planes = num_planes
        self.inverse_depth = inverse_depth
        self.volume_scale = volume_scale
        self.out_channels = out_channels
        self.regulariser = CostRegNet(feature_channels, reg_channels, out_channels)

    @classmethod
    def enerf(
        cls, level: int, num_planes: Optional[int] = None, volume_channels: Optional[int] = None
    ) -> "CascadeCostVolume":
        """ENeRF's settings: level 0 on the 32-channel 1/4 FPN map, 1/8 volume, 32 inverse-depth planes; level 1 on
        the 16-channel 1/2 map, 1/2 volume, 8 depth planes; 8-channel volume features at both levels (ENeRF's code)
        unless ``volume_channels`` says otherwise."""
        if level == 0:
            return cls(32, num_planes or 32, True, 0.125, (8, 16, 32), volume_channels or 8)
        if level == 1:
            return cls(16, num_planes or 8, False, 0.5, (8, 16, 32, 64), volume_channels or 8)
        raise ValueError(f"ENeRF has cascade levels 0 and 1, got {level}")

    def volume_size(self, image_size: Tuple[int, int]) -> Tuple[int, int]:
        """(h, w) of the cost volume for a target image of ``image_size``."""
        return max(1, round(image_size[0] * self.volume_scale)), max(1, round(image_size[1] * self.volume_scale))

    def forward(
        self,
        source_features: Float[Tensor, "V C hs ws"],
        source_K: Float[Tensor, "V 3 3"],
        source_w2c: Float[Tensor, "V 3 4"],
        target_K: Float[Tensor, "3 3"],
        target_w2c: Float[Tensor, "3 4"],
        near: Scalar,
        far: Scalar,
        image_size: Tuple[int, int],
        target_image_size: Optional[Tuple[int, int]] = None,
    ) -> CostVolumeOutput:
        """Runs the level for one target view; ``near`` / ``far`` are scalars or per-pixel maps (resized to the
        level's grid if needed, e.g. the previous level's ``next_level_range``)."""
        target_size = image_size if target_image_size is None else target_image_size
        size = self.volume_size(target_size)
        near_map = resize_map(near, size).to(source_features.device, source_features.dtype)
        far_map = resize_map(far, size).to(source_features.device, source_features.dtype)
        planes = plane_sweep_depths(near_map, far_map, self.num_planes, self.inverse_depth)
        warped = homography_warp(
            source_features, source_K, source_w2c, target_K, target_w2c, planes, image_size, target_size
        )
        features, logits = self.regulariser(variance_cost_volume(warped))
        probs, mean, std = _distribution(logits, planes)
        return CostVolumeOutput(planes, features, probs, mean, std, near_map, far_map, self.inverse_depth)
