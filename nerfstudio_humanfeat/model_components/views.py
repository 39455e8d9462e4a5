"""The target camera being rendered and the source views it is conditioned on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Tuple

import torch
from jaxtyping import Float
from torch import Tensor

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


def crop_to_box(sources: SourceViews, bbox: Float[Tensor, "2 3"], multiple: int = 16, margin: int = 4) -> SourceViews:
    """The source views cropped to one window size that holds the projection of the frame's box in each view.

    Only the principal point changes (cx, cy shift by the window's corner), so projections, homographies and
    pixel-aligned sampling are exact on the crops; the encoders then spend nothing on the background far from the
    person. The window size is rounded up to ``multiple`` (the encoders' stride) and each window is shifted to lie
    inside its image; views whose box is not in front of the camera keep the whole image.
    """
    height, width = sources.image_size
    corners = torch.stack(torch.meshgrid(*[bbox[:, i] for i in range(3)], indexing="ij"), -1).reshape(-1, 3)
    uv, depth = project_points(corners.to(sources.intrinsics), sources.intrinsics, sources.world_to_camera)
    if not bool((depth > 0).all()):
        return sources
    low = uv.amin(dim=1).floor() - margin
    high = uv.amax(dim=1).ceil() + margin
    size_x = int((high[:, 0] - low[:, 0]).max().clamp(1, width))
    size_y = int((high[:, 1] - low[:, 1]).max().clamp(1, height))
    size_x = min(-(-size_x // multiple) * multiple, width)
    size_y = min(-(-size_y // multiple) * multiple, height)
    if size_x == width and size_y == height:
        return sources
    centre = (low + high) / 2
    x0 = (centre[:, 0] - size_x / 2).round().clamp(0, width - size_x).long()
    y0 = (centre[:, 1] - size_y / 2).round().clamp(0, height - size_y).long()
    images = torch.stack(
        [image[:, y : y + size_y, x : x + size_x] for image, x, y in zip(sources.images, x0.tolist(), y0.tolist())]
    )
    intrinsics = sources.intrinsics.clone()
    intrinsics[:, 0, 2] -= x0.to(intrinsics)
    intrinsics[:, 1, 2] -= y0.to(intrinsics)
    return SourceViews(list(sources.camera_ids), images, intrinsics, sources.world_to_camera)
