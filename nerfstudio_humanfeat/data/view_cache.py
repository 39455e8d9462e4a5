"""Pre-undistorted copies of the views at the training scale, written on first load and read afterwards.

A ZJU-MoCap view costs a 1024 px JPEG decode, an undistortion remap, a resize and a mask union each time it leaves
the memory cache; at ZJU scale (~80k views) it leaves nearly every time. The copy is one lossless PNG per view at the
output resolution, background already masked, with the foreground mask as its alpha channel.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch

from nerfstudio_humanfeat.data.catalog import FrameRecord, HumanDataError, SubjectRecord, ViewData
from nerfstudio_humanfeat.data.zju_io import load_densepose

ViewReader = Callable[[SubjectRecord, FrameRecord, int], ViewData]


@dataclass(frozen=True)
class DiskViewCache:
    """Reads views from ``root`` when copied there, else decodes them with ``reader`` and writes the copy."""

    root: Path
    reader: ViewReader
    settings: str
    """What the copies depend on besides the files (background, dilation, mask choice): a folder of its own."""

    def path(self, subject: SubjectRecord, frame: FrameRecord, camera: int) -> Path:
        rig = subject.rig
        return (
            self.root / f"{rig.width}x{rig.height}-{self.settings}" / subject.name / rig.names[camera]
        ) / f"{frame.frame_id:06d}.png"

    def __call__(self, subject: SubjectRecord, frame: FrameRecord, camera: int) -> ViewData:
        path = self.path(subject, frame, camera)
        if path.is_file():
            copy = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            if copy is None or copy.ndim != 3 or copy.shape[2] != 4:
                raise HumanDataError(f"{path}: unreadable view copy (expected an RGBA PNG); delete it to rewrite it")
            densepose, densepose_mask = load_densepose(subject, frame, camera)
            return ViewData(
                rgb8=torch.from_numpy(np.ascontiguousarray(copy[..., 2::-1])),
                mask=torch.from_numpy(copy[..., 3] > 127),
                keypoints2d=None if frame.keypoints2d is None else frame.keypoints2d[camera],
                densepose=densepose,
                densepose_mask=densepose_mask,
            )
        view = self.reader(subject, frame, camera)
        rgba = np.concatenate([view.rgb8.numpy()[..., ::-1], view.mask.numpy()[..., None].astype(np.uint8) * 255], -1)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.stem}.{os.getpid()}.png")
        if not cv2.imwrite(str(partial), rgba):
            raise HumanDataError(f"{partial}: cannot write the view copy")
        os.replace(partial, path)  # an interrupted write leaves no copy that would be read back
        return view
