"""MPJPE and PVE (millimetres, camera space, no alignment) of SMPL sequences against ground truth."""

from __future__ import annotations

from typing import Dict

import torch
from jaxtyping import Float
from torch import Tensor

from nerfstudio_humanfeat.body.smpl import BodyPose, SMPLBody
from nerfstudio_humanfeat.refine.io import SmplSequence


def pose_sequence(body: SMPLBody, sequence: SmplSequence, chunk: int = 64) -> BodyPose:
    """The posed bodies of a whole sequence (no gradient)."""
    parts = []
    with torch.no_grad():
        for start in range(0, len(sequence), chunk):
            rows = slice(start, start + chunk)
            parts.append(body(sequence.poses[rows], sequence.shapes[rows], sequence.Rh[rows], sequence.Th[rows]))
    return BodyPose(
        torch.cat([p.vertices for p in parts]), torch.cat([p.joints for p in parts]),
        torch.cat([p.transforms for p in parts]), torch.cat([p.canonical_vertices for p in parts]),
        torch.cat([p.canonical_joints for p in parts]), torch.cat([p.global_transform for p in parts]),
    )  # fmt: skip


def to_camera(points: Float[Tensor, "*bs 3"], world_to_camera: Float[Tensor, "3 4"]) -> Float[Tensor, "*bs 3"]:
    return points @ world_to_camera[:, :3].T.to(points) + world_to_camera[:, 3].to(points)


def pose_errors(
    body: SMPLBody, estimate: SmplSequence, truth: SmplSequence, world_to_camera: Float[Tensor, "3 4"]
) -> Dict[str, Float[Tensor, " T"]]:
    """Per-frame MPJPE (24 SMPL joints) and PVE (all vertices) in mm, both in the camera's coordinates (as the paper;
    a rigid change of coordinates, so the same numbers as in world). Also the joint error split into its part across
    the image (camera x, y: what 2D evidence constrains) and along the viewing axis (|z|: what a monocular video
    hardly constrains), and MPJPE after aligning the pelvis (articulation alone)."""
    est, ref = pose_sequence(body, estimate), pose_sequence(body, truth)
    est_joints, ref_joints = to_camera(est.joints, world_to_camera), to_camera(ref.joints, world_to_camera)
    offset = est_joints - ref_joints
    verts = (to_camera(est.vertices, world_to_camera) - to_camera(ref.vertices, world_to_camera)).norm(dim=-1)
    aligned = offset - offset[:, :1]
    return {
        "mpjpe_mm": offset.norm(dim=-1).mean(-1) * 1000.0,
        "pve_mm": verts.mean(-1) * 1000.0,
        "mpjpe_xy_mm": offset[..., :2].norm(dim=-1).mean(-1) * 1000.0,
        "mpjpe_z_mm": offset[..., 2].abs().mean(-1) * 1000.0,
        "pelvis_aligned_mpjpe_mm": aligned.norm(dim=-1).mean(-1) * 1000.0,
    }
