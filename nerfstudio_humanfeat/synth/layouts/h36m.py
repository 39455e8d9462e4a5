"""The Human3.6M layout of Animatable NeRF: `<root>/S1/Posing/` with annots.npy, images, mask_cihp, new_params,
new_vertices and lbs/ (canonical body, canonical and per-frame blend-weight grids); docs/data_format.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List

import cv2
import numpy as np
import smplx
import torch
from jaxtyping import Float

from nerfstudio_humanfeat.body.skinning import blend_weight_grid
from nerfstudio_humanfeat.body.smpl import SMPLBody
from nerfstudio_humanfeat.skeleton import SMPL_PARENTS
from nerfstudio_humanfeat.synth.body_model import BodyModel, axis_angle_to_matrix
from nerfstudio_humanfeat.synth.generator import (
    JPEG_QUALITY,
    Renderer,
    SubjectMotion,
    SubjectPlan,
    SubjectSink,
    SubjectWriter,
    SynthSpec,
    ViewRender,
    make_parent,
    save_npy,
    write_png,
    write_splits,
)

H36M_CAMERA_NAMES = ("54138969", "55011271", "58860488", "60457274")
"""The Human3.6M camera ids (the image folders of the real data); cameras beyond four are Camera_B<n>."""
SEQUENCE_FOLDER = "Posing"
BWEIGHTS_PADDING = 0.05
"""Metres around the SMPL-space vertices covered by a weight grid (Animatable NeRF's)."""
BWEIGHTS_VOXEL_SIZE = 0.025


def h36m_camera_names(num_cameras: int) -> List[str]:
    """Image folder of each camera."""
    return [H36M_CAMERA_NAMES[c] if c < len(H36M_CAMERA_NAMES) else f"Camera_B{c + 1}" for c in range(num_cameras)]


def world_to_smpl(
    vertices: Float[np.ndarray, "V 3"], rh: Float[np.ndarray, "3"], th: Float[np.ndarray, "3"]
) -> Float[np.ndarray, "V 3"]:
    """World points in the frame's SMPL space (Rh/Th removed): (x - Th) @ R(Rh)."""
    rot = axis_angle_to_matrix(torch.as_tensor(rh, dtype=torch.float64)).numpy()
    return (vertices - th) @ rot


@dataclass
class H36MSubjectWriter:
    """One `<subject>/Posing` folder: the ZJU files the real data has (annots.npy with kpts2d, new_params,
    new_vertices, mask_cihp) and lbs/."""

    annots: SubjectWriter
    """Writes annots.npy (cameras, T in mm; image lists and 2D keypoints) into the Posing folder."""
    body: BodyModel
    smpl_body: SMPLBody
    betas: Float[np.ndarray, "10"]

    @property
    def root(self) -> Path:
        return self.annots.root

    def frame_files(self, frame: int, state: SubjectMotion, keypoints3d: Float[np.ndarray, "25 3"]) -> None:
        """new_params/, new_vertices/ and lbs/bweights/ of one frame."""
        params = {
            "poses": state.poses[frame][None].astype(np.float32),
            "Rh": state.rh[frame][None].astype(np.float32),
            "Th": state.th[frame][None].astype(np.float32),
            "shapes": state.shapes[frame][None].astype(np.float32),
        }
        save_npy(self.root / "new_params" / f"{frame}.npy", params)
        vertices = state.vertices[frame].astype(np.float32)
        save_npy(self.root / "new_vertices" / f"{frame}.npy", vertices)
        smpl_space = world_to_smpl(vertices.astype(np.float64), state.rh[frame], state.th[frame])
        grid = blend_weight_grid(
            smpl_space, self.body.faces, self.body.weights, padding=BWEIGHTS_PADDING, voxel_size=BWEIGHTS_VOXEL_SIZE
        )
        save_npy(self.root / "lbs" / "bweights" / f"{frame}.npy", grid.weights.numpy().astype(np.float32))

    def view_files(
        self, frame: int, camera: int, view: ViewRender, keypoints2d: Float[np.ndarray, "25 3"], renderer: Renderer
    ) -> str:
        """Image and mask_cihp (0/1, as the human parser writes) of one view; no mask/ (the real data has none)."""
        rel = f"{h36m_camera_names(len(self.annots.cameras))[camera]}/{frame:06d}"
        make_parent(self.root / f"{rel}.jpg")
        cv2.imwrite(str(self.root / f"{rel}.jpg"), view.image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        write_png(self.root / "mask_cihp" / f"{rel}.png", view.mask.astype(np.uint8))
        return f"{rel}.jpg"

    def end_frame(self, frame: int, paths: List[str], keypoints2d: Float[np.ndarray, "C 25 3"]) -> None:
        self.annots.end_frame(frame, paths, keypoints2d)

    def close(self) -> None:
        """annots.npy and the canonical body of lbs/: joints, parents, tvertices, faces, tbw."""
        self.annots.close()
        shapes = torch.as_tensor(self.betas, dtype=torch.float32)[None]
        tvertices, joints = (x[0].double().numpy() for x in self.smpl_body.rest(shapes))
        lbs = self.root / "lbs"
        save_npy(lbs / "joints.npy", joints.astype(np.float32))
        save_npy(lbs / "parents.npy", np.asarray(SMPL_PARENTS, dtype=np.int64))
        save_npy(lbs / "tvertices.npy", tvertices.astype(np.float32))
        save_npy(lbs / "faces.npy", self.body.faces.astype(np.int64))
        grid = blend_weight_grid(
            tvertices, self.body.faces, self.body.weights, padding=BWEIGHTS_PADDING, voxel_size=BWEIGHTS_VOXEL_SIZE
        )
        save_npy(lbs / "tbw.npy", grid.weights.numpy().astype(np.float32))


@dataclass
class H36MWriter:
    """`<root>/<S?>/Posing/` per subject and splits.json (sources: every camera but the last; target: the last, as
    Animatable NeRF's train views 0-2 and test view 3 of four)."""

    root: Path
    spec: SynthSpec
    body: BodyModel
    smpl: smplx.SMPL

    def __post_init__(self) -> None:
        self.smpl_body = SMPLBody(self.smpl)

    def subject(self, plan: SubjectPlan, state: SubjectMotion) -> SubjectSink:
        annots = SubjectWriter(self.root / plan.name / SEQUENCE_FOLDER, plan.cameras)
        return H36MSubjectWriter(annots, self.body, self.smpl_body, plan.betas)

    def finish(self, plans: List[SubjectPlan]) -> None:
        num = self.spec.num_cameras
        sources = list(range(num - 1)) if num > 1 else [0]
        write_splits(self.root, plans, self.spec, sources, [num - 1])
