"""The renderer NeuHMR optimises through, and a differentiable splatting stand-in for it.

A ``PoseRenderer`` renders the person of one video frame in any (requires-grad) body pose, conditioned on anchor
frames, and gives the features F of the video's frames. ``nerf_renderer.NerfPoseRenderer`` wraps a trained
animatable model of this plugin (the paper's GHN). ``SplatRenderer`` needs no training: the posed SMPL vertices are
splatted as isotropic Gaussians into the video camera (accumulation W = 1 - exp(-sum of Gaussians)), coloured by the
colours the anchor frames show at those vertices under their initial poses (a point-based "generalizable" appearance
conditioned on the anchors). It serves the tests and the experiment when no animatable model is trained, and is
differentiable in the pose through the projected vertex positions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Protocol, Sequence

import torch
from jaxtyping import Float
from torch import Tensor

from nerfstudio_humanfeat.body.smpl import BodyPose
from nerfstudio_humanfeat.refine.features import local_descriptors
from nerfstudio_humanfeat.refine.io import MonocularVideo


@dataclass
class Rendered:
    """Rays of one frame rendered in one pose."""

    rgb: Float[Tensor, "N 3"]
    """Colour of the person composited on black."""
    accumulation: Float[Tensor, " N"]
    """Opacity W in [0, 1]."""


class PoseRenderer(Protocol):
    """What NeuHMR needs from its renderer (frames index the video)."""

    video: MonocularVideo

    def condition(self, anchors: Sequence[int], poses: BodyPose) -> None:
        """Condition the appearance on these frames of the video, seen in these poses (a batch, one per anchor)."""

    def render(self, frame: int, pose: BodyPose, pixels: Float[Tensor, "N 2"]) -> Rendered:
        """Render the rays through pixel positions (x, y) of the video camera with the body in ``pose`` (a batch of
        one), differentiably in the pose; ``frame`` is the video frame being explained."""

    def surface_depth(self, frame: int, pose: BodyPose, pixels: Float[Tensor, "N 2"]) -> Float[Tensor, " N"]:
        """Camera z of the closest body surface through each pixel (inf: none), for the z-buffer test."""

    def feature_map(self, frame: int) -> Float[Tensor, "C h w"]:
        """The features F of the video frame's image (any resolution; sampled at image pixel positions)."""


def splat_depth_map(
    uv: Float[Tensor, "V 2"], depth: Float[Tensor, " V"], height: int, width: int, radius: int = 1
) -> Float[Tensor, "H W"]:
    """A z-buffer of points: each pixel holds the least depth of the points projecting within ``radius`` pixels
    (a square footprint); inf where none does."""
    zbuf = torch.full((height * width,), float("inf"), dtype=depth.dtype, device=depth.device)
    x0 = torch.floor(uv[:, 0]).long()
    y0 = torch.floor(uv[:, 1]).long()
    front = depth > 0
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            x, y = x0 + dx, y0 + dy
            ok = front & (x >= 0) & (x < width) & (y >= 0) & (y < height)
            zbuf.scatter_reduce_(0, (y * width + x)[ok], depth[ok], reduce="amin")
    return zbuf.reshape(height, width)


def point_visibility(
    uv: Float[Tensor, "V 2"], depth: Float[Tensor, " V"], zbuf: Float[Tensor, "H W"], tolerance: float
) -> Float[Tensor, " V"]:
    """1 for points within ``tolerance`` (metres) of the z-buffer at their pixel, else 0."""
    height, width = zbuf.shape
    x = torch.floor(uv[:, 0]).long().clamp(0, width - 1)
    y = torch.floor(uv[:, 1]).long().clamp(0, height - 1)
    return (depth <= zbuf[y, x] + tolerance).to(depth.dtype)


class SplatRenderer:
    """Differentiable Gaussian splatting of (a fixed subset of) the posed SMPL vertices; see the module docstring.

    ``num_points`` None splats every vertex. A subset leaves holes in the silhouette (2000 of SMPL's 6890 vertices at
    1 cm: soft IoU with the mask at the true pose 0.74-0.79 against 0.76-0.78 for all, patchy opacity), and the
    geometry loss then rewards poses that cover the holes."""

    def __init__(
        self,
        video: MonocularVideo,
        num_points: Optional[int] = None,
        point_radius: float = 0.01,
        density_scale: float = 2.0,
        depth_tolerance: float = 0.05,
        seed: int = 0,
        num_vertices: Optional[int] = None,
    ) -> None:
        self.video = video
        self.num_points, self.point_radius = num_points, point_radius
        self.density_scale, self.depth_tolerance = density_scale, depth_tolerance
        self.seed = seed
        self._subset: Optional[Tensor] = None
        self.colors: Optional[Tensor] = None
        self._features: dict[int, Tensor] = {}
        if num_vertices is not None:
            self._choose_subset(num_vertices)

    def _choose_subset(self, num_vertices: int) -> Tensor:
        if self._subset is None or int(self._subset.max()) >= num_vertices:
            generator = torch.Generator().manual_seed(self.seed)
            count = num_vertices if self.num_points is None else min(self.num_points, num_vertices)
            self._subset = torch.randperm(num_vertices, generator=generator)[:count].sort().values
        return self._subset

    def points(self, pose: BodyPose) -> Float[Tensor, "P 3"]:
        """The splatted vertices of a pose (a batch of one)."""
        return pose.vertices[0, self._choose_subset(pose.vertices.shape[1])]

    def _project(self, pose: BodyPose):
        uv, depth = self.video.project(self.points(pose))
        return uv, depth

    def _zbuffer(self, uv: Tensor, depth: Tensor) -> Tensor:
        return splat_depth_map(uv.detach(), depth.detach(), self.video.height, self.video.width)

    def condition(self, anchors: Sequence[int], poses: BodyPose) -> None:
        """Per-point colours: the anchors' images at the points' projections, averaged over the anchors that see the
        point (z-buffer); points no anchor sees get the mean colour."""
        total = None
        count = None
        with torch.no_grad():
            for i, frame in enumerate(anchors):
                uv, depth = self._project(poses[i])
                visible = point_visibility(uv, depth, self._zbuffer(uv, depth), self.depth_tolerance)
                x = torch.floor(uv[:, 0]).long().clamp(0, self.video.width - 1)
                y = torch.floor(uv[:, 1]).long().clamp(0, self.video.height - 1)
                colors = self.video.images[frame][y, x].to(depth)
                if self.video.masks is not None:
                    visible = visible * self.video.masks[frame][y, x].to(depth)
                total = colors * visible[:, None] if total is None else total + colors * visible[:, None]
                count = visible if count is None else count + visible
            assert total is not None and count is not None
            seen = count > 0
            mean = total[seen].sum(0) / count[seen].sum().clamp_min(1.0) if bool(seen.any()) else total.new_zeros(3)
            self.colors = torch.where(seen[:, None], total / count.clamp_min(1.0)[:, None], mean)

    def render(self, frame: int, pose: BodyPose, pixels: Float[Tensor, "N 2"]) -> Rendered:
        if self.colors is None:
            raise RuntimeError("SplatRenderer.render before condition(): no anchor appearance")
        uv, depth = self._project(pose)
        sigma = (self.point_radius * self.video.intrinsics[0, 0].to(depth) / depth.clamp_min(1e-3)).clamp_min(0.5)
        with torch.no_grad():
            visible = point_visibility(uv, depth, self._zbuffer(uv, depth), self.depth_tolerance)
        d2 = ((pixels[:, None, :].to(uv) - uv[None]) ** 2).sum(-1)
        gauss = torch.exp(-0.5 * d2 / sigma[None] ** 2)
        accumulation = 1.0 - torch.exp(-self.density_scale * gauss.sum(-1))
        weights = gauss * visible[None]
        rgb = (weights @ self.colors.to(weights)) / (weights.sum(-1, keepdim=True) + 1e-6)
        return Rendered(rgb * accumulation[:, None], accumulation)

    def surface_depth(self, frame: int, pose: BodyPose, pixels: Float[Tensor, "N 2"]) -> Float[Tensor, " N"]:
        with torch.no_grad():
            uv, depth = self._project(pose)
            zbuf = self._zbuffer(uv, depth)
            x = torch.floor(pixels[:, 0]).long()
            y = torch.floor(pixels[:, 1]).long()
            inside = (x >= 0) & (x < self.video.width) & (y >= 0) & (y < self.video.height)
            out = torch.full_like(pixels[:, 0], float("inf"))
            out[inside] = zbuf[y[inside], x[inside]].to(out)
            return out

    def feature_map(self, frame: int) -> Float[Tensor, "C h w"]:
        if frame not in self._features:
            self._features[frame] = local_descriptors(self.video.images[frame])
        return self._features[frame]
