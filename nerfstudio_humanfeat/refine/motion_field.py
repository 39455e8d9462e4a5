"""The neural motion field (NeMo) of NeuHMR: an MLP on RBF features of the normalised time t in [0, 1] that outputs
residual joint rotations, a residual global rotation and a residual translation (the paper's equation 10)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import torch
from jaxtyping import Float
from torch import Tensor, nn

NUM_BODY_JOINTS = 23
"""SMPL joints below the root; the root's rotation is the ZJU ``Rh``."""


# ------------------------------------------------------------------------------------------ rotation algebra
def axis_angle_to_quaternion(axis_angle: Float[Tensor, "*bs 3"]) -> Float[Tensor, "*bs 4"]:
    """Unit quaternions (w, x, y, z); smooth (finite gradients) at the zero rotation."""
    sq = (axis_angle * axis_angle).sum(-1, keepdim=True)
    small = sq < 1e-8
    angle = torch.sqrt(torch.where(small, torch.ones_like(sq), sq))
    half = 0.5 * angle
    scale = torch.where(small, 0.5 - sq / 48.0, torch.sin(half) / angle)
    w = torch.where(small, 1.0 - sq / 8.0, torch.cos(half))
    return torch.cat([w, axis_angle * scale], dim=-1)


def quaternion_to_axis_angle(quaternion: Float[Tensor, "*bs 4"]) -> Float[Tensor, "*bs 3"]:
    """Axis-angle of (not necessarily unit) quaternions, angles in [0, pi]; smooth at the identity."""
    q = quaternion / quaternion.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    q = torch.where(q[..., :1] < 0, -q, q)
    w, xyz = q[..., :1], q[..., 1:]
    sq = (xyz * xyz).sum(-1, keepdim=True)
    small = sq < 1e-10
    sin_half = torch.sqrt(torch.where(small, torch.ones_like(sq), sq))
    factor = torch.where(small, 2.0 / w.clamp_min(1e-6), 2.0 * torch.atan2(sin_half, w) / sin_half)
    return xyz * factor


def quaternion_multiply(a: Float[Tensor, "*bs 4"], b: Float[Tensor, "*bs 4"]) -> Float[Tensor, "*bs 4"]:
    """The Hamilton product a b (the rotation b, then a)."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        dim=-1,
    )


def compose_axis_angle(first: Float[Tensor, "*bs 3"], second: Float[Tensor, "*bs 3"]) -> Float[Tensor, "*bs 3"]:
    """Axis-angle of R(first) @ R(second), differentiable."""
    return quaternion_to_axis_angle(
        quaternion_multiply(axis_angle_to_quaternion(first), axis_angle_to_quaternion(second))
    )


# ------------------------------------------------------------------------------------------ the field
def rbf_features(
    times: Float[Tensor, " B"], num_features: int = 100, width: float | None = None
) -> Float[Tensor, "B F"]:
    """Gaussian radial basis functions of t on ``num_features`` evenly spaced centres in [0, 1]; the width defaults to
    the spacing of the centres."""
    centres = torch.linspace(0.0, 1.0, num_features, device=times.device, dtype=times.dtype)
    width = width if width is not None else 1.0 / max(num_features - 1, 1)
    return torch.exp(-0.5 * ((times[:, None] - centres[None]) / width) ** 2)


@dataclass
class MotionResidual:
    """The field's output for a batch of times."""

    joint_rotations: Float[Tensor, "B 23 3"]
    """Axis-angle R'_joints, applied on the right of each joint's local rotation."""
    global_rotation: Float[Tensor, "B 3"]
    """Axis-angle R'_global, applied on the right of R(Rh)."""
    translation: Float[Tensor, "B 3"]
    """T', added to Th (metres)."""


class MotionField(nn.Module):
    """``num_layers`` linear layers (ReLU between) on ``num_rbf`` RBF features of t; the last layer starts at zero, so
    the field is the identity (no residual) at initialisation."""

    def __init__(self, num_rbf: int = 100, hidden: int = 256, num_layers: int = 4, rbf_width: float | None = None):
        super().__init__()
        if num_layers < 1:
            raise ValueError("the motion field needs at least one layer")
        self.num_rbf, self.rbf_width = num_rbf, rbf_width
        sizes = [num_rbf] + [hidden] * (num_layers - 1) + [NUM_BODY_JOINTS * 3 + 6]
        layers: list[nn.Module] = []
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.Linear(n_in, n_out))
            if i < num_layers - 1:
                layers.append(nn.ReLU())
        self.mlp = nn.Sequential(*layers)
        last = self.mlp[-1]
        assert isinstance(last, nn.Linear)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def forward(self, times: Float[Tensor, " B"]) -> MotionResidual:
        out = self.mlp(rbf_features(times, self.num_rbf, self.rbf_width))
        joints = out[:, : NUM_BODY_JOINTS * 3].reshape(-1, NUM_BODY_JOINTS, 3)
        return MotionResidual(joints, out[:, NUM_BODY_JOINTS * 3 : NUM_BODY_JOINTS * 3 + 3], out[:, -3:])


def apply_residual(
    poses: Float[Tensor, "B 72"], Rh: Float[Tensor, "B 3"], Th: Float[Tensor, "B 3"], residual: MotionResidual
) -> Tuple[Float[Tensor, "B 72"], Float[Tensor, "B 3"], Float[Tensor, "B 3"]]:
    """Equation 10 in the ZJU convention: R_joints R'_joints, R(Rh) R'_global, Th + T' (poses[:, :3] kept)."""
    body = compose_axis_angle(poses[:, 3:].reshape(-1, NUM_BODY_JOINTS, 3), residual.joint_rotations)
    new_poses = torch.cat([poses[:, :3], body.reshape(-1, NUM_BODY_JOINTS * 3)], dim=-1)
    return new_poses, compose_axis_angle(Rh, residual.global_rotation), Th + residual.translation
