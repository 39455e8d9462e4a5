"""Per-frame SMPL sequences (ZJU ``params/`` folder or one ``.npz``) and the monocular video they belong to."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from jaxtyping import Bool, Float
from torch import Tensor

from nerfstudio_humanfeat.data.catalog import HumanDataError
from nerfstudio_humanfeat.data.zju_io import (
    SMPL_SIZES,
    ReadOptions,
    load_annots,
    load_smpl_params,
    load_view,
    read_subject,
    select_frames,
)

PARAM_KEYS = ("poses", "shapes", "Rh", "Th")


@dataclass
class SmplSequence:
    """Per-frame SMPL parameters in the ZJU convention (the global rotation is ``Rh``; ``poses[:, :3]`` unused)."""

    poses: Float[Tensor, "T 72"]
    shapes: Float[Tensor, "T 10"]
    Rh: Float[Tensor, "T 3"]
    Th: Float[Tensor, "T 3"]
    frame_ids: List[int]
    """The frame number of each row (the ``i`` of ``params/{i}.npy`` and of the images)."""

    def __post_init__(self) -> None:
        count = len(self.frame_ids)
        for key in PARAM_KEYS:
            value = getattr(self, key)
            if value.shape != (count, SMPL_SIZES[key]):
                raise HumanDataError(f"SMPL sequence: '{key}' has shape {tuple(value.shape)}, expected "
                                     f"({count}, {SMPL_SIZES[key]})")  # fmt: skip

    def __len__(self) -> int:
        return len(self.frame_ids)

    def subset(self, rows: Sequence[int]) -> "SmplSequence":
        index = torch.as_tensor(list(rows), dtype=torch.long)
        return SmplSequence(
            self.poses[index], self.shapes[index], self.Rh[index], self.Th[index], [self.frame_ids[i] for i in rows]
        )

    def select_ids(self, frame_ids: Sequence[int]) -> "SmplSequence":
        """The rows of the given frame numbers, in that order (raises naming the missing ones)."""
        row_of = {f: i for i, f in enumerate(self.frame_ids)}
        missing = [f for f in frame_ids if f not in row_of]
        if missing:
            raise HumanDataError(f"SMPL sequence has no parameters for frames {missing[:10]}")
        return self.subset([row_of[f] for f in frame_ids])

    def as_dict(self) -> Dict[str, Tensor]:
        return {key: getattr(self, key) for key in PARAM_KEYS}

    def clone(self) -> "SmplSequence":
        return SmplSequence(*(getattr(self, k).detach().clone() for k in PARAM_KEYS), list(self.frame_ids))


def load_params_dir(folder: Path) -> SmplSequence:
    """A ZJU ``params/`` (or ``new_params/``) folder of ``{i}.npy`` dicts, ordered by frame number."""
    folder = Path(folder)
    files = sorted((p for p in folder.glob("*.npy") if p.stem.isdigit()), key=lambda p: int(p.stem))
    if not files:
        raise HumanDataError(f"{folder}: no SMPL parameter files named {{frame}}.npy")
    rows = [load_smpl_params(p) for p in files]
    stacked = {key: torch.stack([row[key] for row in rows]) for key in PARAM_KEYS}
    return SmplSequence(**stacked, frame_ids=[int(p.stem) for p in files])


def load_npz(path: Path) -> SmplSequence:
    """One ``.npz`` with per-frame arrays poses (T, 72), shapes (T, 10) or (10,), Rh (T, 3), Th (T, 3) and
    optionally frame_ids (T,) (default 0..T-1)."""
    path = Path(path)
    with np.load(path) as data:
        missing = [k for k in ("poses", "Rh", "Th", "shapes") if k not in data]
        if missing:
            raise HumanDataError(f"{path}: lacks arrays {missing} (found {sorted(data.files)})")
        poses = np.asarray(data["poses"], np.float32).reshape(-1, 72)
        count = len(poses)
        shapes = np.asarray(data["shapes"], np.float32).reshape(-1, 10)
        if len(shapes) == 1 and count > 1:
            shapes = np.repeat(shapes, count, axis=0)
        frame_ids = [int(i) for i in data["frame_ids"]] if "frame_ids" in data else list(range(count))
        as_t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
        return SmplSequence(
            as_t(poses),
            as_t(shapes),
            as_t(np.asarray(data["Rh"], np.float32).reshape(count, 3)),
            as_t(np.asarray(data["Th"], np.float32).reshape(count, 3)),
            frame_ids,
        )


def load_sequence(path: Path) -> SmplSequence:
    """A ``params/`` folder or an ``.npz`` file, chosen by what ``path`` is."""
    path = Path(path)
    if path.is_dir():
        return load_params_dir(path)
    if path.suffix == ".npz":
        return load_npz(path)
    raise HumanDataError(f"{path}: expected a params/ folder of {{frame}}.npy files or an .npz file")


def save_params_dir(sequence: SmplSequence, folder: Path) -> None:
    """Writes ``{frame}.npy`` dicts {poses (1, 72), Rh (1, 3), Th (1, 3), shapes (1, 10)} (ZJU layout)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for row, frame_id in enumerate(sequence.frame_ids):
        record = {k: getattr(sequence, k)[row].detach().cpu().numpy().reshape(1, -1) for k in PARAM_KEYS}
        np.save(folder / f"{frame_id}.npy", record, allow_pickle=True)


def save_npz(sequence: SmplSequence, path: Path) -> None:
    """Writes poses (T, 72), shapes (T, 10), Rh (T, 3), Th (T, 3) and frame_ids (T,)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {k: getattr(sequence, k).detach().cpu().numpy() for k in PARAM_KEYS}
    np.savez(path, **arrays, frame_ids=np.asarray(sequence.frame_ids, dtype=np.int64))


@dataclass
class MonocularVideo:
    """One camera of a sequence: undistorted, scaled images (background black where masks exist) and masks."""

    images: Float[Tensor, "T H W 3"]
    masks: Optional[Bool[Tensor, "T H W"]]
    """Foreground masks; None when the sequence has none (the geometric loss is then off)."""
    intrinsics: Float[Tensor, "3 3"]
    """At the images' resolution, pixel centres at integer + 0.5 (the catalog's convention)."""
    world_to_camera: Float[Tensor, "3 4"]
    frame_ids: List[int]

    def __len__(self) -> int:
        return len(self.frame_ids)

    @property
    def height(self) -> int:
        return int(self.images.shape[1])

    @property
    def width(self) -> int:
        return int(self.images.shape[2])

    def project(self, points: Float[Tensor, "*bs 3"]) -> tuple[Float[Tensor, "*bs 2"], Float[Tensor, " *bs"]]:
        """Pixel coordinates (x, y) and camera z-depth of world points."""
        cam = points @ self.world_to_camera[:, :3].T.to(points) + self.world_to_camera[:, 3].to(points)
        depth = cam[..., 2]
        xy = cam[..., :2] / depth.clamp_min(1e-6)[..., None]
        uv = xy @ self.intrinsics[:2, :2].T.to(points) + self.intrinsics[:2, 2].to(points)
        return uv, depth

    def to_camera(self, points: Float[Tensor, "*bs 3"]) -> Float[Tensor, "*bs 3"]:
        return points @ self.world_to_camera[:, :3].T.to(points) + self.world_to_camera[:, 3].to(points)


def load_video(
    sequence_dir: Path,
    camera: int,
    frames: Optional[Sequence[int]] = None,
    image_scale: Optional[float] = None,
    start: int = 0,
    end: Optional[int] = None,
    stride: int = 1,
) -> MonocularVideo:
    """One camera of a ZJU-layout sequence (``annots.npy`` + images, masks optional) through the dataparser's readers.

    ``frames`` are indices into the annotation's frame list (default: ``start:end:stride``)."""
    sequence_dir = Path(sequence_dir)
    annots = load_annots(sequence_dir / "annots.npy")
    indices = list(frames) if frames is not None else select_frames(annots.num_frames, start, end, stride)
    subject = read_subject(annots, "test", [camera], [camera], indices, [camera], ReadOptions(image_scale=image_scale))
    views = [load_view(subject, frame, camera) for frame in subject.frames]
    has_masks = all(frame.mask_paths[camera] for frame in subject.frames)
    return MonocularVideo(
        images=torch.stack([v.image for v in views]),
        masks=torch.stack([v.mask for v in views]) if has_masks else None,
        intrinsics=subject.rig.intrinsics[camera].clone(),
        world_to_camera=subject.rig.world_to_camera[camera].clone(),
        frame_ids=[frame.frame_id for frame in subject.frames],
    )
