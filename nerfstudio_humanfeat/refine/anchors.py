"""Anchor frames (NeuHMR 3.3.1): diverse global orientations by farthest point sampling on the unit sphere, then the
candidates whose initial poses render with the least photometric + geometric loss."""

from __future__ import annotations

import math
from typing import List, Optional, Sequence

import torch
from jaxtyping import Float
from torch import Tensor

from nerfstudio_humanfeat.synth.body_model import axis_angle_to_matrix

BODY_FORWARD = (0.0, 0.0, 1.0)
"""The direction the body faces in SMPL space (+z)."""


def orientation_directions(
    Rh: Float[Tensor, "T 3"], world_to_camera: Optional[Float[Tensor, "3 4"]] = None
) -> Float[Tensor, "T 3"]:
    """The global rotation of each frame as a point on the unit sphere: the body's forward axis, in camera space when
    a camera is given (what the camera sees of the body is what matters), else in world."""
    forward = Rh.new_tensor(BODY_FORWARD)
    directions = axis_angle_to_matrix(Rh) @ forward
    if world_to_camera is not None:
        directions = directions @ world_to_camera[:, :3].T.to(directions)
    return directions / directions.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def farthest_point_sampling(points: Float[Tensor, "T D"], count: int, start: int = 0) -> List[int]:
    """Indices of ``count`` points, each the farthest (Euclidean; on the sphere, also in angle) from those chosen
    before, starting from ``start``; ties go to the lowest index."""
    total = points.shape[0]
    count = min(count, total)
    if count <= 0:
        return []
    chosen = [start]
    distance = (points - points[start]).norm(dim=-1)
    for _ in range(count - 1):
        nxt = int(torch.argmax(distance))
        chosen.append(nxt)
        distance = torch.minimum(distance, (points - points[nxt]).norm(dim=-1))
    return chosen


def num_anchor_frames(num_frames: int, per_frames: int = 10, minimum: int = 2) -> int:
    """N = T / 10 (the paper), at least the n = 2 frames that condition a render, at most T."""
    return max(min(minimum, num_frames), min(num_frames, int(round(num_frames / per_frames))))


def candidate_count(num_anchors: int, num_frames: int, factor: float = 2.0) -> int:
    """N^ > N farthest-point candidates (the paper leaves N^ open): ``factor`` N, at most T."""
    return min(num_frames, max(num_anchors + 1, int(math.ceil(factor * num_anchors))))


def keep_least_loss(candidates: Sequence[int], losses: Sequence[float], num_anchors: int) -> List[int]:
    """The ``num_anchors`` candidates of least loss (ties: the earlier candidate), sorted by frame."""
    ranked = sorted(range(len(candidates)), key=lambda i: (float(losses[i]), i))
    return sorted(int(candidates[i]) for i in ranked[:num_anchors])


def select_anchors(
    directions: Float[Tensor, "T 3"],
    losses: Optional[Float[Tensor, " T"]],
    num_anchors: int,
    num_candidates: Optional[int] = None,
    start: int = 0,
) -> List[int]:
    """N anchors: FPS of the orientations from frame ``start`` picks N^ candidates, and the N of least loss are kept
    (sorted by frame). Without losses, the first N candidates of the FPS (sorted)."""
    total = directions.shape[0]
    num_anchors = min(num_anchors, total)
    num_candidates = candidate_count(num_anchors, total) if num_candidates is None else min(num_candidates, total)
    candidates = farthest_point_sampling(directions, max(num_candidates, num_anchors), start=start)
    if losses is None:
        return sorted(candidates[:num_anchors])
    return keep_least_loss(candidates, [float(losses[i]) for i in candidates], num_anchors)


def nearest_anchors(directions: Float[Tensor, "T 3"], anchors: Sequence[int], frame: int, count: int = 1) -> List[int]:
    """The ``count`` anchors whose orientations are closest to the frame's (most similar view of the body)."""
    anchor_dirs = directions[list(anchors)]
    order = torch.argsort(-(anchor_dirs @ directions[frame]))
    return [list(anchors)[int(i)] for i in order[:count]]
