"""Dataparser for Human3.6M as Animatable NeRF processed it (`<root>/S1/Posing/`, ZJU-MoCap format plus lbs/).

Defaults follow Animatable NeRF: 4 cameras, train views 0-2 are the sources and view 3 the target; every 5th frame,
the first 150 (S1), 250 (S5), 150 (S6), 300 (S7), 250 (S8), 260 (S9), 200 (S11) of them; subjects S1, S5, S6, S7, S8
train and S9, S11 test; mask_cihp (falling back to mask). A splits.json at the root (synthetic data) overrides the
subjects, cameras and frames, as for zju-mocap.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Literal, Optional, Tuple, Type, Union

import torch
from nerfstudio.utils.rich_utils import CONSOLE

from nerfstudio_humanfeat.body.smpl import SMPLBody, resolve_smpl_model
from nerfstudio_humanfeat.data.catalog import MaskMode, SubjectRecord
from nerfstudio_humanfeat.data.dataparsers.zju_mocap_dataparser import (
    PaperSplit,
    ZJUMocap,
    ZJUMocapDataParserConfig,
)
from nerfstudio_humanfeat.data.h36m_io import H36M_TEST, H36M_TRAIN, H36M_TRAIN_FRAMES, find_sequences
from nerfstudio_humanfeat.data.zju_io import Annots, body25_from_smpl_joints, select_frames

ANINERF_FRAME_STRIDE = 5
ANINERF_SPLIT = PaperSplit(
    "Animatable NeRF defaults",
    H36M_TRAIN,
    H36M_TEST,
    frame_end=None,
    frame_stride=ANINERF_FRAME_STRIDE,
    source_cameras=(0, 1, 2),
    target_cameras=(3,),
)


@dataclass
class Human36MDataParserConfig(ZJUMocapDataParserConfig):
    """Human3.6M (Animatable NeRF layout): S1/Posing/annots.npy ... with Animatable NeRF's split by default."""

    _target: Type = field(default_factory=lambda: Human36M)
    data: Path = Path("data/h36m")
    """Root holding S1/Posing, S5/Posing, ... (and optionally splits.json)."""
    source_cameras: Optional[Tuple[int, ...]] = None
    """Camera indices of the source views; None: splits.json, else 0, 1, 2 (Animatable NeRF's training views)."""
    target_cameras: Optional[Tuple[int, ...]] = None
    """Camera indices of the target views; None: splits.json, else 3 (Animatable NeRF's test view)."""
    frame_end: Union[int, None, Literal["auto"]] = "auto"
    """End frame, exclusive; None: all; 'auto': splits.json's, else each subject's Animatable NeRF training frames
    (S1 150, S5 250, S6 150, S7 300, S8 250, S9 260, S11 200, times the stride)."""
    frame_stride: Optional[int] = None
    """Frame step; None: splits.json's, else 5 (Animatable NeRF)."""
    mask_mode: MaskMode = "mask_cihp"
    """Foreground mask: mask_cihp (Animatable NeRF; falls back to mask when missing), mask, union or none."""


class Human36M(ZJUMocap):
    """Human3.6M dataparser: the ZJU-MoCap readers with Animatable NeRF's layout and defaults."""

    config: Human36MDataParserConfig
    name = "human36m"
    paper = ANINERF_SPLIT

    def find_sequences(self) -> Dict[str, Path]:
        return find_sequences(self.config.data)

    def select_frames(self, name: str, annots: Annots) -> List[int]:
        assert self.plan is not None
        plan, end = self.plan, self.plan.frame_end
        if self.config.frame_end == "auto" and plan.origin == ANINERF_SPLIT.label and name in H36M_TRAIN_FRAMES:
            end = plan.frame_start + H36M_TRAIN_FRAMES[name] * plan.frame_stride
        return select_frames(annots.num_frames, plan.frame_start, end, plan.frame_stride)

    def finish_subject(self, subject: SubjectRecord) -> SubjectRecord:
        """3D keypoints from the SMPL joints of new_params where the sequence has none (Animatable NeRF's data has
        no keypoints3d/joints3d), when a body model is found."""
        todo = [f for f in subject.frames if f.keypoints3d is None and f.smpl_params is not None]
        if not todo:
            return subject
        body = self._body()
        if body is None:
            return subject
        keys = ("poses", "shapes", "Rh", "Th")
        params = {k: torch.stack([f.smpl_params[k] for f in todo]) for k in keys}  # type: ignore[index]
        with torch.no_grad():
            joints = body(params["poses"], params["shapes"], params["Rh"], params["Th"]).joints.double().numpy()
        for frame, frame_joints in zip(todo, joints):
            frame.keypoints3d = torch.from_numpy(body25_from_smpl_joints(frame_joints))
        return subject

    def _body(self) -> Optional[SMPLBody]:
        if not hasattr(self, "_smpl_body"):
            try:
                path = resolve_smpl_model(self.config.smpl_model, self.config.data)
            except FileNotFoundError:
                CONSOLE.print(f"{self.name}: no SMPL model found: frames without 3D keypoints keep none")
                self._smpl_body = None
            else:
                CONSOLE.print(f"{self.name}: 3D keypoints from the SMPL joints of the fits (body model {path})")
                self._smpl_body = SMPLBody.from_file(path)
        return self._smpl_body
