"""The RenderPeople layout of SHERF: per subject `img/camera0000/0000.jpg`, `mask/camera0000/0000.png`,
`cameras.json` (T in metres) and `outputs_re_fitting/refit_smpl_2nd.npz` (smplx convention); `human_list.txt` at
the root. No keypoints, no distortion (docs/data_format.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Tuple

import cv2
import numpy as np
import smplx
import torch
from jaxtyping import Float
from torch import Tensor

from nerfstudio_humanfeat.body.smpl import SMPLBody
from nerfstudio_humanfeat.synth.body_model import BodyModel, axis_angle_to_matrix
from nerfstudio_humanfeat.synth.generator import (
    JPEG_QUALITY,
    CameraSet,
    Renderer,
    SubjectMotion,
    SubjectPlan,
    SubjectSink,
    SynthSpec,
    ViewRender,
    make_parent,
    write_json,
    write_png,
    write_splits,
)

HUMAN_LIST = "human_list.txt"
CAMERAS_FILE = "cameras.json"
SMPL_FIT = Path("outputs_re_fitting") / "refit_smpl_2nd.npz"
NUM_VIEWS = 36
OBSERVATION_VIEWS: Tuple[int, ...] = (0, 16, 31)
"""SHERF's observation (source) views of the 36."""


def camera_folder(camera: int) -> str:
    return f"camera{camera:04d}"


def image_name(frame: int) -> str:
    return f"{frame:04d}"


def observation_views(num_cameras: int) -> List[int]:
    """SHERF's views 0, 16, 31 of 36, scaled to another camera count (same angles around the ring)."""
    return sorted({min(num_cameras - 1, int(round(v * num_cameras / NUM_VIEWS))) for v in OBSERVATION_VIEWS})


def zju_to_smplx(
    body: SMPLBody, rh: Float[Tensor, "N 3"], th: Float[Tensor, "N 3"], betas: Float[Tensor, "N 10"]
) -> Tuple[Float[Tensor, "N 3"], Float[Tensor, "N 3"]]:
    """smplx (global_orient, transl) of ZJU (Rh, Th): global_orient = Rh, transl = Th - J0 + R(Rh) J0, with J0 the
    shaped rest root joint (smplx rotates about J0, ZJU about the SMPL origin). Inverse of `smplx_to_zju`."""
    _, joints = body.rest(betas.to(body.v_template.dtype))
    root = joints[:, 0].to(th.dtype)
    rot = axis_angle_to_matrix(rh).to(th.dtype)
    return rh.clone(), th - root + (rot @ root[..., None])[..., 0]


def cameras_json(cameras: CameraSet) -> Dict[str, Dict[str, list]]:
    """SHERF's cameras.json: {camera0000: {K: 3x3, R: 3x3, T: 3 (metres)}}, world to OpenCV camera."""
    return {
        camera_folder(c): {
            "K": cameras.intrinsics[c].tolist(),
            "R": cameras.rotation[c].tolist(),
            "T": cameras.translation[c].tolist(),
        }
        for c in range(len(cameras))
    }


@dataclass
class RenderPeopleSubjectWriter:
    """One subject folder."""

    root: Path
    cameras: CameraSet
    smpl_body: SMPLBody
    betas: Float[np.ndarray, "10"]
    state: SubjectMotion
    frames: List[int] = field(default_factory=list)

    def frame_files(self, frame: int, state: SubjectMotion, keypoints3d: Float[np.ndarray, "25 3"]) -> None:
        self.frames.append(frame)  # the SMPL fit of every frame goes into one npz at the end; no keypoints

    def view_files(
        self, frame: int, camera: int, view: ViewRender, keypoints2d: Float[np.ndarray, "25 3"], renderer: Renderer
    ) -> str:
        """img/camera0000/0000.jpg and mask/camera0000/0000.png (0/255)."""
        rel = f"{camera_folder(camera)}/{image_name(frame)}"
        make_parent(self.root / "img" / f"{rel}.jpg")
        image = view.image[..., ::-1]
        cv2.imwrite(str(self.root / "img" / f"{rel}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        write_png(self.root / "mask" / f"{rel}.png", view.mask.astype(np.uint8) * 255)
        return f"img/{rel}.jpg"

    def end_frame(self, frame: int, paths: List[str], keypoints2d: Float[np.ndarray, "C 25 3"]) -> None:
        pass

    def close(self) -> None:
        """cameras.json and the smplx-convention SMPL fit of every frame."""
        write_json(self.root / CAMERAS_FILE, cameras_json(self.cameras))
        state, frames = self.state, self.frames
        betas = torch.as_tensor(self.betas, dtype=torch.float64)[None]
        global_orient, transl = zju_to_smplx(
            self.smpl_body,
            torch.as_tensor(state.rh[frames], dtype=torch.float64),
            torch.as_tensor(state.th[frames], dtype=torch.float64),
            betas.expand(len(frames), -1),
        )
        smpl = {
            "betas": self.betas[None].astype(np.float32),
            "global_orient": global_orient.numpy().astype(np.float32),
            "body_pose": state.poses[frames, 3:].astype(np.float32),
            "transl": transl.numpy().astype(np.float32),
        }
        path = self.root / SMPL_FIT
        make_parent(path)
        np.savez(path, smpl=smpl)


@dataclass
class RenderPeopleWriter:
    """One folder per subject, human_list.txt (the subjects, training ones first) and splits.json."""

    root: Path
    spec: SynthSpec
    body: BodyModel
    smpl: smplx.SMPL

    def __post_init__(self) -> None:
        self.smpl_body = SMPLBody(self.smpl).double()

    def subject(self, plan: SubjectPlan, state: SubjectMotion) -> SubjectSink:
        return RenderPeopleSubjectWriter(self.root / plan.name, plan.cameras, self.smpl_body, plan.betas, state)

    def finish(self, plans: List[SubjectPlan]) -> None:
        names = [p.name for p in plans if p.split == "train"] + [p.name for p in plans if p.split == "test"]
        (self.root / HUMAN_LIST).write_text("".join(f"{name}\n" for name in names))
        sources = observation_views(self.spec.num_cameras)
        targets = [c for c in range(self.spec.num_cameras) if c not in sources]
        write_splits(self.root, plans, self.spec, sources, targets)
