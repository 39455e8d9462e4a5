"""Confidence-weighted DLT triangulation of 2D keypoints from calibrated views."""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor


def project(points: Float[Tensor, "J 3"], projections: Float[Tensor, "C 3 4"]) -> Float[Tensor, "C J 2"]:
    """Pixel coordinates of 3D points in each view."""
    homo = torch.cat([points, torch.ones_like(points[:, :1])], dim=-1)
    uvw = torch.einsum("cij,nj->cni", projections, homo)
    return uvw[..., :2] / uvw[..., 2:]


def triangulate_dlt(
    points2d: Float[Tensor, "C J 3"],
    projections: Float[Tensor, "C 3 4"],
    threshold: float = 0.1,
    reprojection_scale: float = 10.0,
) -> Float[Tensor, "J 4"]:
    """3D joints (x, y, z, confidence) by confidence-weighted DLT over the views with confidence > threshold.

    Each view adds the rows x P3 - P1 and y P3 - P2, normalised to unit length, times its confidence; the solution is
    the last right singular vector. Confidence = mean confidence of the used views x 1 / (1 + (e / s)^2), e = mean
    reprojection error over the used views in pixels, s = `reprojection_scale`. Joints seen in < 2 views: all zeros.
    """
    dtype = points2d.dtype
    p = projections.to(torch.float64)
    xy, conf = points2d[..., :2].to(torch.float64), points2d[..., 2].to(torch.float64)
    used = conf > threshold  # (C, J)
    xy = torch.where(used[..., None], xy, torch.zeros_like(xy))  # unused detections may be nan (missing)
    weight = torch.where(used, conf, torch.zeros_like(conf))
    rows = torch.stack(
        [xy[..., 0:1] * p[:, None, 2] - p[:, None, 0], xy[..., 1:2] * p[:, None, 2] - p[:, None, 1]], dim=2
    )  # (C, J, 2, 4)
    rows = rows / rows.norm(dim=-1, keepdim=True).clamp_min(1e-12) * weight[..., None, None]
    system = rows.permute(1, 0, 2, 3).reshape(rows.shape[1], -1, 4)  # (J, 2C, 4)
    _, _, vh = torch.linalg.svd(system)
    homo = vh[:, -1]
    points = homo[:, :3] / homo[:, 3:].where(homo[:, 3:].abs() > 1e-12, torch.full_like(homo[:, 3:], 1e-12))
    num_used = used.sum(0)
    error = (project(points, p) - xy).norm(dim=-1)  # (C, J)
    mean_error = (error * used).sum(0) / num_used.clamp_min(1)
    mean_conf = weight.sum(0) / num_used.clamp_min(1)
    confidence = mean_conf / (1.0 + (mean_error / reprojection_scale) ** 2)
    valid = num_used >= 2
    out = torch.cat([points, confidence[:, None]], dim=-1)
    return torch.where(valid[:, None], out, torch.zeros_like(out)).to(dtype)


def triangulate_consistent(
    points2d: Float[Tensor, "C J 3"],
    projections: Float[Tensor, "C 3 4"],
    max_error_px: float,
    threshold: float = 0.1,
    reprojection_scale: float = 10.0,
) -> Float[Tensor, "J 4"]:
    """``triangulate_dlt`` that rejects outlying views: per joint, the view with the largest reprojection error is
    dropped while that error exceeds ``max_error_px`` and more than two views remain. A joint whose remaining views
    still disagree by more than ``max_error_px`` is reported missing (all zeros): its detections name no 3D point."""
    detections = points2d.clone()
    joints = torch.arange(points2d.shape[1], device=points2d.device)
    for _ in range(max(points2d.shape[0] - 2, 0)):
        points = triangulate_dlt(detections, projections, threshold, reprojection_scale)
        used, error = _used_view_errors(points, detections, projections, threshold)
        worst, view = error.max(dim=0)
        drop = (worst > max_error_px) & (used.sum(dim=0) > 2)
        if not bool(drop.any()):
            break
        detections[view[drop], joints[drop], 2] = 0.0
    points = triangulate_dlt(detections, projections, threshold, reprojection_scale)
    _, error = _used_view_errors(points, detections, projections, threshold)
    inconsistent = error.amax(dim=0) > max_error_px
    return torch.where(inconsistent[:, None], torch.zeros_like(points), points)


def _used_view_errors(
    points: Float[Tensor, "J 4"],
    detections: Float[Tensor, "C J 3"],
    projections: Float[Tensor, "C 3 4"],
    threshold: float,
) -> tuple[Tensor, Tensor]:
    """Which detections are used (confidence above ``threshold``) and their reprojection errors in pixels (-1 where
    unused)."""
    used = detections[..., 2] > threshold
    error = (project(points[:, :3], projections.to(points)) - detections[..., :2]).norm(dim=-1)
    return used, torch.where(used, error, torch.full_like(error, -1.0))
