"""NeuHMR's constraints: photometric L2, IoU (Jaccard) geometry and joint matching against registered features."""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float
from torch import Tensor

from nerfstudio_humanfeat.refine.features import sample_features
from nerfstudio_humanfeat.skeleton import SMPL_JOINT_NAMES

DROPPED_JOINTS = ("spine1", "spine2", "spine3", "neck", "left_foot", "right_foot", "left_hand", "right_hand")
"""The 'crowded joints at the body trunk, hands and feet' left out of joint matching (the paper keeps 16 of 24
without naming them): the three spine joints and the neck, the feet's toe joints and the hands' finger joints."""
MATCH_JOINTS: Tuple[int, ...] = tuple(i for i, name in enumerate(SMPL_JOINT_NAMES) if name not in DROPPED_JOINTS)
REGULARISED_JOINTS: Tuple[int, ...] = tuple(
    SMPL_JOINT_NAMES.index(n) for n in ("head", "left_hand", "right_hand", "left_foot", "right_foot")
)
"""'A simple joint regularization term to penalize high-degree rotations at the head, hands, and feet.'"""


def rgb_loss(rendered: Float[Tensor, "N 3"], target: Float[Tensor, "N 3"]) -> Tensor:
    """Per-pixel squared error, averaged (the L2 photometric constraint)."""
    return F.mse_loss(rendered, target)


def iou_loss(accumulation: Float[Tensor, " N"], mask: Float[Tensor, " N"]) -> Tensor:
    """Equation 11: 1 - sum(M W) / (sum M + sum W - sum(M W))."""
    accumulation = accumulation.reshape(-1).clamp(0.0, 1.0)
    mask = mask.reshape(-1).to(accumulation)
    intersection = (mask * accumulation).sum()
    union = mask.sum() + accumulation.sum() - intersection
    return 1.0 - intersection / union.clamp_min(1e-6)


def match_joints(
    feature_map: Float[Tensor, "C h w"],
    image_size: Tuple[int, int],
    joints_2d: Float[Tensor, "J 2"],
    registered: Float[Tensor, "J C"],
    num_candidates: int = 128,
    sigma: float = 4.0,
    generator: Optional[torch.Generator] = None,
    include_current: bool = True,
) -> Tuple[Float[Tensor, "J 2"], Float[Tensor, " J"]]:
    """omega(i) of equation 12: S candidates ~ N(J_i, sigma^2) (pixels) per joint, the one whose feature in the input
    frame is most cosine-similar to the registered feature, and that similarity. With ``include_current`` the joint's
    own position is candidate 0, so a joint already at the best match is left alone."""
    joints = joints_2d.detach()
    noise = torch.randn(joints.shape[0], num_candidates, 2, generator=generator).to(joints) * sigma
    candidates = joints[:, None] + noise
    if include_current:
        candidates = torch.cat([joints[:, None], candidates[:, :-1]], dim=1)
    feats = sample_features(feature_map, candidates.reshape(-1, 2), image_size).reshape(*candidates.shape[:2], -1)
    similarity = F.cosine_similarity(feats, registered[:, None].to(feats), dim=-1)
    best = similarity.argmax(dim=1)
    index = torch.arange(joints.shape[0], device=joints.device)
    return candidates[index, best], similarity[index, best]


def joint_matching_loss(
    joints_2d: Float[Tensor, "J 2"], targets: Float[Tensor, "J 2"], valid: Bool[Tensor, " J"]
) -> Tensor:
    """Equation 12: mean over the valid joints of ||J^_omega(i) - J_i||^2 (squared pixels)."""
    if not bool(valid.any()):
        return joints_2d.sum() * 0.0
    return ((targets.detach() - joints_2d) ** 2).sum(-1)[valid].mean()


def rotation_regulariser(
    joint_rotations: Float[Tensor, "B 23 3"], joints: Sequence[int] = REGULARISED_JOINTS
) -> Tensor:
    """Squared residual angles (radians^2) of the head, hands and feet, averaged (``joints`` index the 24 SMPL joints;
    the residuals cover joints 1..23)."""
    index = torch.as_tensor([j - 1 for j in joints], dtype=torch.long, device=joint_rotations.device)
    return (joint_rotations[:, index] ** 2).sum(-1).mean()
