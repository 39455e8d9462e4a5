"""The human catalog: every subject, frame and camera of a dataset, with lazy, cached view loading.

The catalog is what a dataparser produces and what the datamanager and the generalizable models
consume: a model finds the source views of any (subject, frame) through it, for training batches,
evaluation cameras, render paths and the viewer alike.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Literal, Optional, Sequence, Tuple

import numpy as np
import torch
from jaxtyping import Bool, Float, UInt8
from torch import Tensor

from nerfstudio_humanfeat.data.bodies import BodyModels, FrameBody

MaskMode = Literal["mask", "mask_cihp", "union", "none"]


class HumanDataError(ValueError):
    """A dataset file is missing, unreadable or inconsistent; the message names the file."""


@dataclass
class CameraRig:
    """The fixed cameras of one sequence, at the output (scaled, undistorted) resolution."""

    names: List[str]
    """Camera folder names, in the order of annots['cams']."""
    intrinsics: Float[Tensor, "C 3 3"]
    """Pinhole intrinsics at the output resolution (images are undistorted to these). Pixel (0, 0) covers
    [0, 1) x [0, 1): pixel centres sit at integer + 0.5, as in nerfstudio (OpenCV's K plus 0.5, then scaled)."""
    world_to_camera: Float[Tensor, "C 3 4"]
    """OpenCV world-to-camera transforms, metres."""
    distortion: Float[Tensor, "C 5"]
    """Distortion coefficients of the original images (k1, k2, p1, p2, k3)."""
    original_intrinsics: Float[Tensor, "C 3 3"]
    """K of the original, distorted images exactly as in annots.npy (OpenCV: pixel centres at integers)."""
    height: int
    width: int
    original_height: int
    original_width: int

    def __len__(self) -> int:
        return len(self.names)

    @property
    def camera_to_world(self) -> Float[Tensor, "C 3 4"]:
        """OpenCV camera-to-world transforms."""
        rot = self.world_to_camera[:, :, :3]
        trans = self.world_to_camera[:, :, 3:]
        rot_t = rot.transpose(1, 2)
        return torch.cat([rot_t, -rot_t @ trans], dim=2)

    @property
    def centers(self) -> Float[Tensor, "C 3"]:
        return self.camera_to_world[:, :, 3]


@dataclass
class FrameRecord:
    """One time step of a sequence: file paths per camera and per-frame annotations."""

    frame_id: int
    """The frame number as the dataset writes it (1-based for CoreView_313/315)."""
    image_paths: List[Optional[Path]]
    """Per camera; None where the dataset lacks that view."""
    mask_paths: List[List[Path]]
    """Per camera, the mask files to combine (empty: no mask, the whole image is foreground)."""
    densepose_paths: List[Optional[Path]]
    bbox: Float[Tensor, "2 3"]
    """World-space axis-aligned box of the body (min, max), padded."""
    keypoints2d: Optional[Float[Tensor, "C J 3"]] = None
    """BODY_25 keypoints per camera in output pixels (undistorted, scaled); confidence 0 = missing."""
    keypoints3d: Optional[Float[Tensor, "J 4"]] = None
    """World-space 3D keypoints with confidence (0 = missing)."""
    smpl_params: Optional[dict] = None
    """ZJU SMPL fit (new_params/ preferred): float32 tensors poses (72,), Rh (3,), Th (3,), shapes (10,)."""
    vertices_path: Optional[Path] = None


@dataclass
class SubjectRecord:
    """One sequence (subject) of the dataset."""

    name: str
    root: Path
    rig: CameraRig
    frames: List[FrameRecord]
    split: Literal["train", "test"]
    source_cameras: List[int]
    target_cameras: List[int]
    keypoint_source: str = "none"
    """Where 2D keypoints came from: 'annots-kpts2d', 'openpose-json', 'keypoints3d-projected', ...; 'none'."""
    world_offset: Float[Tensor, "3"] = field(default_factory=lambda: torch.zeros(3))
    """Added to the dataset's world coordinates to give the records' (``data.world``: the dataparser's centring);
    files read later in the dataset's world (SMPL vertices) are moved by it."""


@dataclass
class ViewData:
    """One decoded view at output resolution; the image is kept as 8-bit (a quarter of float32 in the cache)."""

    rgb8: UInt8[Tensor, "H W 3"]
    mask: Bool[Tensor, "H W"]
    keypoints2d: Optional[Float[Tensor, "J 3"]]
    densepose: Optional[Float[Tensor, "H W D"]] = None
    densepose_mask: Optional[Bool[Tensor, "H W"]] = None

    @property
    def image(self) -> Float[Tensor, "H W 3"]:
        """The image in [0, 1]."""
        return self.rgb8.float() / 255.0

    def pixels(self, y: Tensor, x: Tensor) -> Float[Tensor, "N 3"]:
        """Colours in [0, 1] at integer pixel indices."""
        return self.rgb8[y, x].float() / 255.0


ViewLoader = Callable[["SubjectRecord", "FrameRecord", int], ViewData]


@dataclass
class HumanCatalog:
    """All subjects of a dataset with a global frame index ("frame key") over (subject, frame)."""

    subjects: List[SubjectRecord]
    view_loader: ViewLoader
    """Decodes one view (the dataparser's reader: undistortion, scaling, masks)."""
    cache_bytes: int = 2 * 1024**3
    num_joints: int = 25
    bbox_padding: float = 0.0
    """Metres by which every frame's box was padded around its SMPL vertices."""
    smpl_model: Optional[Path] = None
    """The SMPL model file or folder given to the dataparser; None: $HUMANFEAT_SMPL_MODEL, else the data root's
    body_model/ (generated data)."""
    data_root: Optional[Path] = None
    frame_keys: List[Tuple[int, int]] = field(init=False)
    _cache: "OrderedDict[Tuple[int, int], ViewData]" = field(init=False, repr=False)
    _cache_used: int = field(init=False, default=0, repr=False)

    def __post_init__(self) -> None:
        self.frame_keys = [(s, f) for s, subject in enumerate(self.subjects) for f in range(len(subject.frames))]
        self._key_of = {pair: key for key, pair in enumerate(self.frame_keys)}
        self._cache = OrderedDict()
        self.bodies = BodyModels(self.smpl_model, self.data_root)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_cache"] = OrderedDict()
        state["_cache_used"] = 0
        return state

    @property
    def num_frames(self) -> int:
        return len(self.frame_keys)

    @property
    def world_offset(self) -> Float[Tensor, "3"]:
        """The dataparser's translation from the dataset's world to the catalog's (``data.world``)."""
        return self.subjects[0].world_offset if self.subjects else torch.zeros(3)

    def to_dataset_world(self, points: Float[Tensor, "*bs 3"]) -> Float[Tensor, "*bs 3"]:
        """Catalog-world points in the dataset's own world (what exports write)."""
        return points - self.world_offset.to(points)

    def frame_key(self, subject_index: int, frame_index: int) -> int:
        return self._key_of[(subject_index, frame_index)]

    def subject(self, frame_key: int) -> SubjectRecord:
        return self.subjects[self.frame_keys[frame_key][0]]

    def frame(self, frame_key: int) -> FrameRecord:
        subject_index, frame_index = self.frame_keys[frame_key]
        return self.subjects[subject_index].frames[frame_index]

    def frame_keys_of_split(self, split: str) -> List[int]:
        return [k for k, (s, _) in enumerate(self.frame_keys) if self.subjects[s].split == split]

    def describe(self, frame_key: int) -> str:
        return f"{self.subject(frame_key).name} frame {self.frame(frame_key).frame_id}"

    def time_of(self, frame_key: int) -> float:
        """The normalised time in [0, 1] that stands for a frame key (viewer slider, render paths)."""
        return frame_key / max(self.num_frames - 1, 1)

    def frame_key_from_time(self, time: float) -> int:
        return int(round(float(time) * max(self.num_frames - 1, 1)))

    def load_view(self, frame_key: int, camera: int) -> ViewData:
        """Decoded image, mask, keypoints and dense pose of one view, cached (LRU by bytes)."""
        cache_key = (frame_key, camera)
        if cache_key in self._cache:
            self._cache.move_to_end(cache_key)
            return self._cache[cache_key]
        subject = self.subject(frame_key)
        view = self.view_loader(subject, self.frame(frame_key), camera)
        size = _view_bytes(view)
        while self._cache and self._cache_used + size > self.cache_bytes:
            _, evicted = self._cache.popitem(last=False)
            self._cache_used -= _view_bytes(evicted)
        if size <= self.cache_bytes:
            self._cache[cache_key] = view
            self._cache_used += size
        return view

    def body(self, frame_key: int) -> "FrameBody":
        """The frame's SMPL body (parameters, posed vertices, joints, bone transforms), posed on first use."""
        frame = self.frame(frame_key)
        if frame.smpl_params is None:
            raise HumanDataError(
                f"{self.subject(frame_key).root}: frame {frame.frame_id} has no SMPL parameters "
                f"(expected params/{frame.frame_id}.npy or new_params/{frame.frame_id}.npy)"
            )
        return self.bodies.body(frame_key, frame.smpl_params, frame.keypoints3d)

    def source_images(self, frame_key: int, cameras: Sequence[int]) -> Float[Tensor, "K 3 H W"]:
        """Source view images, channels first, in [0, 1]."""
        return torch.stack([self.load_view(frame_key, c).image.permute(2, 0, 1) for c in cameras])

    def nearest_cameras(
        self, frame_key: int, target_camera_to_world: Float[Tensor, "3 4"], num: int, exclude: Sequence[int] = ()
    ) -> List[int]:
        """The `num` source cameras of the frame's subject closest in viewing direction to an OpenCV camera."""
        subject = self.subject(frame_key)
        candidates = [c for c in subject.source_cameras if c not in set(exclude)]
        if len(candidates) < num:
            raise HumanDataError(
                f"{subject.name}: {num} source views requested but only {len(candidates)} source cameras "
                f"({candidates}) are available"
            )
        return select_nearest_views(target_camera_to_world, subject.rig.camera_to_world[candidates], num, candidates)


def select_nearest_views(
    target_c2w: Float[Tensor, "3 4"], source_c2w: Float[Tensor, "N 3 4"], num: int, ids: Sequence[int]
) -> List[int]:
    """Ids of the `num` source cameras whose optical axes are closest in angle to the target's (OpenCV)."""
    target_axis = target_c2w[:, 2].to(source_c2w)
    source_axes = source_c2w[:, :, 2]
    cos = (source_axes @ target_axis) / (source_axes.norm(dim=-1) * target_axis.norm() + 1e-8)
    center_dist = (source_c2w[:, :, 3] - target_c2w[:, 3].to(source_c2w)).norm(dim=-1)
    # Angle first; the distance only breaks ties between equally oriented cameras.
    score = cos - 1e-4 * center_dist
    order = torch.argsort(score, descending=True)[:num]
    return [int(ids[i]) for i in order]


def _view_bytes(view: ViewData) -> int:
    total = 0
    for tensor in (view.rgb8, view.mask, view.densepose, view.densepose_mask):
        if tensor is not None:
            total += tensor.numel() * tensor.element_size()
    return total


def resolve_mask(masks: Sequence[np.ndarray], shape: Tuple[int, int]) -> np.ndarray:
    """Union of binary masks (values 0/1 or 0/255); all foreground when there is none."""
    if not masks:
        return np.ones(shape, dtype=bool)
    out = np.zeros(shape, dtype=bool)
    for m in masks:
        out |= m > 0
    return out


def as_path(p) -> Path:
    return p if isinstance(p, Path) else Path(p)
