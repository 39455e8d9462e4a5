"""The SMPL body in the ZJU-MoCap convention: posed vertices, joints and canonical-to-world bone transforms.

ZJU convention: world = smpl(poses with zero global orient, shapes) @ R(Rh)^T + Th, i.e. the global rotation is about
the origin of SMPL space. "SMPL space" is world with Rh/Th removed: p = (x - Th) @ R(Rh). The canonical space is the
shaped rest pose (T-pose) or the AniNeRF "big pose" (legs spread), always without Rh/Th.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional, Tuple

import smplx
import torch
from jaxtyping import Float
from smplx.lbs import batch_rigid_transform, blend_shapes, vertices2joints
from torch import Tensor, nn

from nerfstudio_humanfeat.synth.body_model import axis_angle_to_matrix, load_smpl

NUM_JOINTS = 24
SMPL_MODEL_ENV = "HUMANFEAT_SMPL_MODEL"
"""Environment variable naming an SMPL pickle, or a folder holding one of SMPL_FILE_NAMES."""
SMPL_FILE_NAMES = ("SMPL_NEUTRAL.pkl", "basicmodel_neutral_lbs_10_207_0_v1.0.0.pkl")
BIG_POSE_LEG_ANGLE = math.radians(30.0)
"""AniNeRF's big pose: each hip rotated 30 degrees about z, spreading the legs apart."""


def resolve_smpl_model(path: Optional[Path] = None, data_root: Optional[Path] = None) -> Path:
    """The SMPL pickle to load: `path`, else $HUMANFEAT_SMPL_MODEL, else `<data_root>/body_model/SMPL_NEUTRAL.pkl`."""
    looked: list[str] = []

    def _in(candidate: Path) -> Optional[Path]:
        if candidate.is_file():
            return candidate
        if candidate.is_dir():
            for name in SMPL_FILE_NAMES:
                looked.append(str(candidate / name))
                if (candidate / name).is_file():
                    return candidate / name
        else:
            looked.append(str(candidate))
        return None

    if path is not None:
        found = _in(Path(path))
        if found is not None:
            return found
    env = os.environ.get(SMPL_MODEL_ENV)
    if env:
        found = _in(Path(env))
        if found is not None:
            return found
    else:
        looked.append(f"${SMPL_MODEL_ENV} (unset)")
    if data_root is not None:
        found = _in(Path(data_root) / "body_model" / SMPL_FILE_NAMES[0])
        if found is not None:
            return found
    else:
        looked.append("<data_root>/body_model/SMPL_NEUTRAL.pkl (no data root given)")
    raise FileNotFoundError(
        "No SMPL model found; looked at: " + "; ".join(looked) + f". Pass the model path, set ${SMPL_MODEL_ENV}, "
        "or write the generated body with `build_body_model().save(<data root>/body_model/SMPL_NEUTRAL.pkl)`."
    )


def rigid_transform(rot: Float[Tensor, "*bs 3 3"], trans: Float[Tensor, "*bs 3"]) -> Float[Tensor, "*bs 4 4"]:
    """Homogeneous 4x4 matrices [R t; 0 1]."""
    top = torch.cat([rot, trans[..., None]], dim=-1)
    bottom = torch.zeros_like(top[..., :1, :])
    bottom[..., 0, 3] = 1.0
    return torch.cat([top, bottom], dim=-2)


def invert_rigid(transforms: Float[Tensor, "*bs 4 4"]) -> Float[Tensor, "*bs 4 4"]:
    """Inverse of rigid (rotation + translation) 4x4 transforms."""
    rot_t = transforms[..., :3, :3].transpose(-1, -2)
    return rigid_transform(rot_t, -(rot_t @ transforms[..., :3, 3:])[..., 0])


def apply_transform(transforms: Float[Tensor, "*bs 4 4"], points: Float[Tensor, "*bs N 3"]) -> Float[Tensor, "*bs N 3"]:
    """Points mapped by one 4x4 transform per batch element."""
    return points @ transforms[..., :3, :3].transpose(-1, -2) + transforms[..., None, :3, 3]


@dataclass
class BodyPose:
    """One batch of posed bodies: world geometry plus the canonical-to-world bone transforms."""

    vertices: Float[Tensor, "B V 3"]
    """World vertices."""
    joints: Float[Tensor, "B 24 3"]
    """The 24 SMPL joints in world."""
    transforms: Float[Tensor, "B 24 4 4"]
    """Bone transforms A mapping canonical points to world (Rh/Th included): x = sum_i w_i A_i x_c."""
    canonical_vertices: Float[Tensor, "B V 3"]
    """The shaped body in the canonical pose (rest or big pose; pose blend shapes excluded)."""
    canonical_joints: Float[Tensor, "B 24 3"]
    global_transform: Float[Tensor, "B 4 4"]
    """[R(Rh) Th; 0 1]: SMPL space to world."""
    canonical: str = "rest"
    """Which canonical pose `transforms` start from: "rest" (T-pose) or "big" (legs spread)."""

    @property
    def inverse_transforms(self) -> Float[Tensor, "B 24 4 4"]:
        """World to canonical for each bone."""
        return invert_rigid(self.transforms)

    @property
    def smpl_transforms(self) -> Float[Tensor, "B 24 4 4"]:
        """Canonical to SMPL space (Rh/Th removed)."""
        return invert_rigid(self.global_transform)[:, None] @ self.transforms

    def world_to_smpl(self, points: Float[Tensor, "B N 3"]) -> Float[Tensor, "B N 3"]:
        """World points in SMPL space: (x - Th) @ R(Rh)."""
        return apply_transform(invert_rigid(self.global_transform), points)

    def smpl_to_world(self, points: Float[Tensor, "B N 3"]) -> Float[Tensor, "B N 3"]:
        """SMPL-space points in world: p @ R(Rh)^T + Th."""
        return apply_transform(self.global_transform, points)

    def translated(self, offset: Float[Tensor, "3"]) -> "BodyPose":
        """The same bodies in a world moved by ``offset`` (x' = x + offset); differentiable."""
        shift = torch.zeros(4, 4, dtype=self.transforms.dtype, device=self.transforms.device)
        shift[:3, 3] = offset.to(shift)
        return BodyPose(
            self.vertices + shift[:3, 3], self.joints + shift[:3, 3], self.transforms + shift,
            self.canonical_vertices, self.canonical_joints, self.global_transform + shift, self.canonical,
        )  # fmt: skip

    def __getitem__(self, index: int) -> "BodyPose":
        """The index-th body, keeping a batch dimension of one."""
        s = slice(index, index + 1) if index != -1 else slice(-1, None)
        return BodyPose(
            self.vertices[s], self.joints[s], self.transforms[s], self.canonical_vertices[s],
            self.canonical_joints[s], self.global_transform[s], self.canonical,
        )  # fmt: skip


def big_pose(batch: int = 1, dtype: torch.dtype = torch.float32, device="cpu") -> Float[Tensor, "B 72"]:
    """AniNeRF's canonical big pose: left hip +30 degrees, right hip -30 degrees about z (legs spread)."""
    poses = torch.zeros(batch, 72, dtype=dtype, device=device)
    poses[:, 5] = BIG_POSE_LEG_ANGLE
    poses[:, 8] = -BIG_POSE_LEG_ANGLE
    return poses


class SMPLBody(nn.Module):
    """SMPL linear blend skinning (smplx's model buffers and kinematics) returning bone transforms too."""

    def __init__(self, smpl: smplx.SMPL) -> None:
        super().__init__()
        self.register_buffer("v_template", smpl.v_template.detach().clone(), persistent=False)
        self.register_buffer("shapedirs", smpl.shapedirs.detach().clone(), persistent=False)
        self.register_buffer("posedirs", smpl.posedirs.detach().clone(), persistent=False)
        self.register_buffer("J_regressor", smpl.J_regressor.detach().clone(), persistent=False)
        self.register_buffer("lbs_weights", smpl.lbs_weights.detach().clone(), persistent=False)
        self.register_buffer("faces", smpl.faces_tensor.detach().clone().long(), persistent=False)
        self.parents = smpl.parents.detach().clone().long()

    @classmethod
    def from_file(cls, path: Path) -> "SMPLBody":
        """Loads an SMPL-format pickle through smplx (nothing is downloaded)."""
        return cls(load_smpl(Path(path)))

    @property
    def num_betas(self) -> int:
        return int(self.shapedirs.shape[-1])

    def _betas(self, shapes: Tensor, batch: int) -> Tensor:
        shapes = shapes.to(self.v_template.dtype)[:, : self.num_betas]
        if shapes.shape[-1] < self.num_betas:
            shapes = torch.nn.functional.pad(shapes, (0, self.num_betas - shapes.shape[-1]))
        return shapes.expand(batch, -1)

    def rest(self, shapes: Float[Tensor, "B 10"]) -> Tuple[Float[Tensor, "B V 3"], Float[Tensor, "B 24 3"]]:
        """Shaped rest-pose vertices and joints."""
        v_shaped = self.v_template + blend_shapes(self._betas(shapes, shapes.shape[0]), self.shapedirs)
        return v_shaped, vertices2joints(self.J_regressor, v_shaped)

    def skeleton(
        self, poses: Float[Tensor, "B 72"], shapes: Float[Tensor, "B 10"]
    ) -> Tuple[Float[Tensor, "B V 3"], Float[Tensor, "B 24 3"], Float[Tensor, "B 24 4 4"], Tensor]:
        """Rest vertices and joints, rest-to-SMPL-space bone transforms, pose offsets (root rotation used as is)."""
        batch = poses.shape[0]
        dtype = self.v_template.dtype
        v_shaped, rest_joints = self.rest(self._betas(shapes, batch))
        rot_mats = axis_angle_to_matrix(poses.to(dtype).reshape(batch, NUM_JOINTS, 3))
        ident = torch.eye(3, dtype=dtype, device=poses.device)
        pose_feature = (rot_mats[:, 1:] - ident).reshape(batch, -1)
        pose_offsets = (pose_feature @ self.posedirs).reshape(batch, -1, 3)
        _, transforms = batch_rigid_transform(rot_mats, rest_joints, self.parents)
        return v_shaped, rest_joints, transforms, pose_offsets

    def big_pose_transforms(
        self, shapes: Float[Tensor, "B 10"]
    ) -> Tuple[Float[Tensor, "B V 3"], Float[Tensor, "B 24 3"], Float[Tensor, "B 24 4 4"]]:
        """Big-pose vertices, joints and the rest-to-big-pose bone transforms (no pose blend shapes)."""
        poses = big_pose(shapes.shape[0], self.v_template.dtype, shapes.device)
        v_shaped, rest_joints, transforms, _ = self.skeleton(poses, shapes)
        verts = skin_points(v_shaped, self.lbs_weights, transforms)
        joints = (transforms[..., :3, :3] @ rest_joints[..., None])[..., 0] + transforms[..., :3, 3]
        return verts, joints, transforms

    def forward(
        self,
        poses: Float[Tensor, "B 72"],
        shapes: Float[Tensor, "B 10"],
        Rh: Float[Tensor, "B 3"],
        Th: Float[Tensor, "B 3"],
        canonical: Literal["rest", "big"] = "rest",
    ) -> BodyPose:
        """World vertices, joints and canonical-to-world bone transforms; poses[:, :3] is ignored (ZJU)."""
        dtype = self.v_template.dtype
        poses = torch.cat([torch.zeros_like(poses[:, :3]), poses[:, 3:]], dim=-1).to(dtype)
        v_shaped, rest_joints, transforms, pose_offsets = self.skeleton(poses, shapes)
        global_transform = rigid_transform(axis_angle_to_matrix(Rh.to(dtype)), Th.to(dtype))
        world = global_transform[:, None] @ transforms
        vertices = skin_points(v_shaped + pose_offsets, self.lbs_weights, world)
        joints = (world[..., :3, :3] @ rest_joints[..., None])[..., 0] + world[..., :3, 3]
        canonical_vertices, canonical_joints = v_shaped, rest_joints
        if canonical == "big":
            canonical_vertices, canonical_joints, big = self.big_pose_transforms(shapes.expand(poses.shape[0], -1))
            world = world @ invert_rigid(big)
        elif canonical != "rest":
            raise ValueError(f"unknown canonical pose {canonical!r}")
        return BodyPose(vertices, joints, world, canonical_vertices, canonical_joints, global_transform, canonical)


def skin_points(
    points: Float[Tensor, "B N 3"], weights: Float[Tensor, "*b N 24"], transforms: Float[Tensor, "B 24 4 4"]
) -> Float[Tensor, "B N 3"]:
    """Linear blend skinning: sum_i w_i A_i x."""
    weights = weights.expand(transforms.shape[0], -1, -1) if weights.dim() == 2 else weights
    blended = torch.einsum("bnj,bjkl->bnkl", weights, transforms)
    return (blended[..., :3, :3] @ points[..., None])[..., 0] + blended[..., :3, 3]


def smplx_to_zju(
    body: SMPLBody,
    global_orient: Float[Tensor, "N 3"],
    transl: Float[Tensor, "N 3"],
    betas: Float[Tensor, "N 10"],
) -> Tuple[Float[Tensor, "N 3"], Float[Tensor, "N 3"]]:
    """ZJU (Rh, Th) of smplx-convention parameters: Rh = global_orient, Th = transl + J0 - R J0 (J0: shaped root)."""
    _, joints = body.rest(betas.to(body.v_template.dtype))
    root = joints[:, 0].to(transl.dtype)
    rot = axis_angle_to_matrix(global_orient)
    th = transl + root - (rot @ root[..., None])[..., 0]
    return global_orient.clone(), th
