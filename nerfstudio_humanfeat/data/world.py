"""The dataparser's world frame: the dataset's world translated so that the subjects sit at the origin, in metres.

nerfstudio's dataparsers centre the scene and record the transform in ``dataparser_transforms.json``; this plugin does
the same with a translation only. The scale stays 1 on purpose: the methods are metric (SMPL bodies, KeypointNeRF's
0.1 m encoding width, box padding in metres, MPJPE in millimetres), and a rotation would loosen every frame's
axis-aligned box. Exports (3D keypoints, meshes, refined SMPL) are written back in the dataset's own world.
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence

import torch
from jaxtyping import Float
from torch import Tensor

from nerfstudio_humanfeat.data.catalog import FrameRecord, HumanCatalog, SubjectRecord


def subjects_centre(subjects: Sequence[SubjectRecord]) -> Float[Tensor, "3"]:
    """Mean of the centres of every frame's body box (the dataset's world)."""
    centres = [frame.bbox.mean(0) for subject in subjects for frame in subject.frames]
    if not centres:
        return torch.zeros(3)
    return torch.stack(centres).double().mean(0).float()


def translate_keypoints(keypoints: Optional[Float[Tensor, "J 4"]], offset: Float[Tensor, "3"]):
    """3D keypoints with confidence moved by ``offset``; missing joints (confidence 0) stay (0, 0, 0, 0)."""
    if keypoints is None:
        return None
    present = (keypoints[:, 3:] > 0).to(keypoints)
    return torch.cat([keypoints[:, :3] + present * offset.to(keypoints), keypoints[:, 3:]], dim=1)


def translate_smpl_params(params: Optional[Dict[str, Tensor]], offset: Float[Tensor, "3"]):
    """ZJU-convention SMPL parameters (x = R(Rh) x_smpl + Th) of the same body moved by ``offset``."""
    if params is None:
        return None
    return {**params, "Th": params["Th"] + offset.to(params["Th"]).reshape(params["Th"].shape)}


def translate_world_to_camera(world_to_camera: Float[Tensor, "*C 3 4"], offset: Float[Tensor, "3"]):
    """World-to-camera transforms of the same cameras in a world moved by ``offset`` (x' = x + offset)."""
    rotation, translation = world_to_camera[..., :3], world_to_camera[..., 3]
    moved = translation - rotation @ offset.to(world_to_camera)
    return torch.cat([rotation, moved[..., None]], dim=-1)


def translate_frame(frame: FrameRecord, offset: Float[Tensor, "3"]) -> None:
    frame.bbox = frame.bbox + offset
    frame.keypoints3d = translate_keypoints(frame.keypoints3d, offset)
    frame.smpl_params = translate_smpl_params(frame.smpl_params, offset)


def translate_subject(subject: SubjectRecord, offset: Float[Tensor, "3"]) -> None:
    """Moves a subject's cameras, boxes, 3D keypoints and SMPL fits by ``offset``, in place."""
    subject.rig.world_to_camera = translate_world_to_camera(subject.rig.world_to_camera, offset)
    subject.world_offset = subject.world_offset + offset
    for frame in subject.frames:
        translate_frame(frame, offset)


def centre_catalog(catalog: HumanCatalog) -> HumanCatalog:
    """Translates the catalog's world so that the mean body-box centre is the origin; records the offset."""
    offset = -subjects_centre(catalog.subjects)
    for subject in catalog.subjects:
        translate_subject(subject, offset)
    catalog.bodies.clear()
    return catalog


def dataparser_transform(catalog: HumanCatalog) -> Float[Tensor, "3 4"]:
    """nerfstudio's ``dataparser_transform``: dataset world to this plugin's world."""
    return torch.cat([torch.eye(3), catalog.world_offset.reshape(3, 1).float()], dim=1)
