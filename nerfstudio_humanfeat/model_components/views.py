"""The target camera being rendered and the source views it is conditioned on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch
from jaxtyping import Float
from nerfstudio.cameras.rays import RayBundle
from torch import Tensor

from nerfstudio_humanfeat.body.smpl import BodyPose
from nerfstudio_humanfeat.camera_utils import invert_rigid
from nerfstudio_humanfeat.data.catalog import HumanCatalog
from nerfstudio_humanfeat.model_components.projection import project_points, sample_pixel_aligned


@dataclass
class TargetView:
    """An OpenCV camera of one (subject, frame): a dataset view, a render-path camera or the viewer's."""

    frame_key: int
    intrinsics: Float[Tensor, "3 3"]
    world_to_camera: Float[Tensor, "3 4"]
    height: int
    width: int
    bbox: Float[Tensor, "2 3"]
    """The frame's padded SMPL box: near/far come from it."""
    source_frame_key: Optional[int] = None
    """The frame whose source images condition the render; None: ``frame_key`` itself. Another frame of the same
    subject renders a novel pose: the body of ``frame_key`` seen through the images of this one."""

    target_pose: Optional[BodyPose] = None
    """A body pose to render instead of the fit of ``frame_key`` (animatable methods): a pose being optimised
    (NeuHMR, differentiable) or one from another frame or subject."""

    @property
    def sources_key(self) -> int:
        """The frame key of the source views."""
        return self.frame_key if self.source_frame_key is None else self.source_frame_key

    @property
    def novel_pose(self) -> bool:
        """Whether the rendered pose differs from the one the source views show."""
        return self.sources_key != self.frame_key or self.target_pose is not None

    @property
    def camera_to_world(self) -> Float[Tensor, "3 4"]:
        return invert_rigid(self.world_to_camera)

    def pixel_grid(self) -> Float[Tensor, "HW 2"]:
        """Pixel centres (x, y) in row-major order."""
        ys, xs = torch.meshgrid(
            torch.arange(self.height, device=self.intrinsics.device),
            torch.arange(self.width, device=self.intrinsics.device),
            indexing="ij",
        )
        return torch.stack([xs, ys], dim=-1).reshape(-1, 2).float() + 0.5

    def rays(self, pixels: Float[Tensor, "N 2"]) -> RayBundle:
        """World rays through pixel positions (x, y) of this camera."""
        return camera_rays(self.intrinsics, self.world_to_camera, pixels)


def camera_rays(
    intrinsics: Float[Tensor, "3 3"], world_to_camera: Float[Tensor, "3 4"], pixels: Float[Tensor, "N 2"]
) -> RayBundle:
    """World rays (unit directions) through pixel positions (x, y) of an OpenCV camera."""
    homogeneous = torch.cat([pixels, torch.ones_like(pixels[:, :1])], -1) @ torch.linalg.inv(intrinsics).T
    rotation = world_to_camera[:, :3]
    directions = homogeneous.to(rotation) @ rotation
    directions = directions / directions.norm(dim=-1, keepdim=True)
    origin = -rotation.T @ world_to_camera[:, 3]
    count = pixels.shape[0]
    return RayBundle(
        origins=origin.expand(count, 3),
        directions=directions,
        pixel_area=torch.ones(count, 1, device=directions.device),
        camera_indices=torch.zeros(count, 1, dtype=torch.long, device=directions.device),
    )


@dataclass
class SourceViews:
    """The K source images of a frame with their OpenCV cameras."""

    camera_ids: List[int]
    images: Float[Tensor, "V 3 H W"]
    intrinsics: Float[Tensor, "V 3 3"]
    world_to_camera: Float[Tensor, "V 3 4"]

    @property
    def image_size(self) -> Tuple[int, int]:
        return int(self.images.shape[-2]), int(self.images.shape[-1])

    @property
    def centers(self) -> Float[Tensor, "V 3"]:
        return invert_rigid(self.world_to_camera)[:, :, 3]


def select_source_views(sources: SourceViews, keep: List[int]) -> SourceViews:
    """The source views at the given positions, in that order."""
    index = torch.tensor(keep, dtype=torch.long, device=sources.images.device)
    return SourceViews(
        [sources.camera_ids[i] for i in keep],
        sources.images[index],
        sources.intrinsics[index],
        sources.world_to_camera[index],
    )


def drop_source_views(
    sources: SourceViews, probability: float, generator: Optional[torch.Generator] = None
) -> SourceViews:
    """KeypointNeRF's training augmentation: each source view but the first is dropped with ``probability``."""
    draws = torch.rand(len(sources.camera_ids), generator=generator)
    keep = [0] + [i for i in range(1, len(sources.camera_ids)) if float(draws[i]) >= probability]
    return select_source_views(sources, keep)


def load_source_views(catalog: HumanCatalog, frame_key: int, camera_ids: List[int], device) -> SourceViews:
    """Decode (through the catalog cache) the source images of a frame and gather their cameras."""
    rig = catalog.subject(frame_key).rig
    index = torch.tensor(camera_ids, dtype=torch.long)
    return SourceViews(
        camera_ids=list(camera_ids),
        images=catalog.source_images(frame_key, camera_ids).to(device),
        intrinsics=rig.intrinsics[index].to(device),
        world_to_camera=rig.world_to_camera[index].to(device),
    )


def sample_source_features(
    sources: SourceViews, feature_maps: Float[Tensor, "V C h w"], points: Float[Tensor, "*bs 3"]
) -> Tuple[Float[Tensor, "V *bs C"], Tensor]:
    """Pixel-aligned features of world points in every source view, and where they are valid (in view)."""
    uv, depth = project_points(points, sources.intrinsics, sources.world_to_camera)
    return sample_pixel_aligned(feature_maps, uv, sources.image_size, depth)


def box_windows(
    intrinsics: Float[Tensor, "V 3 3"],
    world_to_camera: Float[Tensor, "V 3 4"],
    image_size: Tuple[int, int],
    bbox: Float[Tensor, "2 3"],
    multiple: int = 16,
    margin: int = 4,
) -> Optional[Tuple[Tensor, Tensor, int, int]]:
    """Corners (x0, y0) of one window size (w, h) that holds the projection of the box in each view. Corners sit on
    multiples of ``multiple`` (the encoders' and cost volumes' strides, so their cells keep their places) unless
    the image border forces a shift; the size is a multiple of it. None when the whole image is needed anyway or
    the box is not entirely in front of a camera."""
    height, width = image_size
    corners = torch.stack(torch.meshgrid(*[bbox[:, i] for i in range(3)], indexing="ij"), -1).reshape(-1, 3)
    uv, depth = project_points(corners.to(intrinsics), intrinsics, world_to_camera)
    if not bool((depth > 0).all()):
        return None
    low = ((uv.amin(dim=1) - margin).clamp_min(0) // multiple * multiple).long()
    high = (uv.amax(dim=1) + margin).ceil().long()
    size_x = min(-(-int((high[:, 0] - low[:, 0]).max().clamp_min(1)) // multiple) * multiple, width)
    size_y = min(-(-int((high[:, 1] - low[:, 1]).max().clamp_min(1)) // multiple) * multiple, height)
    if size_x == width and size_y == height:
        return None
    x0 = low[:, 0].clamp(max=width - size_x)
    y0 = low[:, 1].clamp(max=height - size_y)
    return x0, y0, size_x, size_y


def shifted_intrinsics(intrinsics: Float[Tensor, "V 3 3"], x0: Tensor, y0: Tensor) -> Float[Tensor, "V 3 3"]:
    """Intrinsics of windows whose top-left corners are (x0, y0): the principal point moves, nothing else."""
    shifted = intrinsics.clone()
    shifted[:, 0, 2] -= x0.to(intrinsics)
    shifted[:, 1, 2] -= y0.to(intrinsics)
    return shifted


def crop_to_box(sources: SourceViews, bbox: Float[Tensor, "2 3"], multiple: int = 16, margin: int = 4) -> SourceViews:
    """The source views cropped to one window size that holds the projection of the frame's box in each view.

    Only the principal point changes, so projections, homographies and pixel-aligned sampling are exact on the
    crops; the encoders then spend nothing on the background far from the person.
    """
    window = box_windows(sources.intrinsics, sources.world_to_camera, sources.image_size, bbox, multiple, margin)
    if window is None:
        return sources
    x0, y0, size_x, size_y = window
    images = torch.stack(
        [image[:, y : y + size_y, x : x + size_x] for image, x, y in zip(sources.images, x0.tolist(), y0.tolist())]
    )
    intrinsics = shifted_intrinsics(sources.intrinsics, x0, y0)
    return SourceViews(list(sources.camera_ids), images, intrinsics, sources.world_to_camera)


def crop_target_to_box(
    target: TargetView, multiple: int = 16, margin: int = 8
) -> Tuple[TargetView, Float[Tensor, "2"]]:
    """The target camera restricted to a window around its box's projection, and the window's corner (x, y) to
    subtract from full-image pixels. Rays that hit the box pass through the window, so per-target work (cost
    volumes) need not cover the rest of the image. Not exact: the border of the cost volumes' 3D U-Nets (zero
    padding) moves from the image's border to the window's, ``margin`` pixels around the box."""
    size = (target.height, target.width)
    window = box_windows(target.intrinsics[None], target.world_to_camera[None], size, target.bbox, multiple, margin)
    if window is None:
        return target, target.intrinsics.new_zeros(2)
    x0, y0, size_x, size_y = window
    cropped = TargetView(
        target.frame_key,
        shifted_intrinsics(target.intrinsics[None], x0, y0)[0],
        target.world_to_camera,
        size_y,
        size_x,
        target.bbox,
        target.source_frame_key,
        target.target_pose,
    )
    return cropped, torch.stack([x0[0], y0[0]]).to(target.intrinsics)
