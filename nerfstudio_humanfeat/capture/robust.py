"""Multi-view consistent 3D keypoints: per-joint RANSAC over view pairs around the confidence-weighted DLT of
`body.triangulation`, and left/right swaps of whole views (a detector that takes the back for the front)."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import torch

from nerfstudio_humanfeat.body.triangulation import project, triangulate_dlt
from nerfstudio_humanfeat.skeleton import BODY25_NAMES

INLIER_FRACTION = 0.08
"""A detection is an inlier when it reprojects within this fraction of its view's keypoint box diagonal."""
LEFT_RIGHT = [
    BODY25_NAMES.index(n.replace("L", "R", 1) if n.startswith("L") else n.replace("R", "L", 1)) if n[0] in "LR" else i
    for i, n in enumerate(BODY25_NAMES)
]
"""BODY_25 index of each joint's mirror twin (itself for the midline joints)."""


def _dlt(points: np.ndarray, projections: np.ndarray) -> np.ndarray:
    return triangulate_dlt(torch.from_numpy(points), torch.from_numpy(projections)).numpy()


def reprojection_errors(points3d: np.ndarray, points2d: np.ndarray, projections: np.ndarray) -> np.ndarray:
    """(C, J) pixel distances of the projected 3D joints to the detections (inf where either is missing)."""
    uv = project(torch.from_numpy(points3d[:, :3]), torch.from_numpy(projections)).numpy()
    error = np.linalg.norm(uv - points2d[..., :2], axis=-1)
    valid = (points2d[..., 2] > 0.1) & (points3d[None, :, 3] > 0)
    return np.where(valid & np.isfinite(error), error, np.inf)


def view_scales(points2d: np.ndarray) -> np.ndarray:
    """(C,) diagonal of each view's detected keypoints' box (pixels); 0 without detections."""
    scales = np.zeros(len(points2d))
    for c, view in enumerate(points2d):
        seen = view[view[:, 2] > 0.1, :2]
        if len(seen) >= 2:
            scales[c] = float(np.linalg.norm(seen.max(0) - seen.min(0)))
    return scales


def ransac_triangulate(points2d: np.ndarray, projections: np.ndarray) -> tuple:
    """((J, 4) world keypoints, (C, J) inlier mask): per joint, the view pair whose DLT point has the most inliers
    (ties: the smaller error), then the DLT over its inliers."""
    num_views, num_joints = points2d.shape[:2]
    threshold = INLIER_FRACTION * view_scales(points2d)[:, None]
    best_count = np.zeros(num_joints, dtype=int)
    best_error = np.full(num_joints, np.inf)
    inliers = np.zeros((num_views, num_joints), dtype=bool)
    for a, b in combinations(range(num_views), 2):
        candidate = _dlt(points2d[[a, b]], projections[[a, b]])
        errors = reprojection_errors(candidate, points2d, projections)
        good = errors < threshold
        count = good.sum(0)
        total = np.where(good, errors, 0.0).sum(0)
        better = (count > best_count) | ((count == best_count) & (count > 0) & (total < best_error))
        best_count = np.where(better, count, best_count)
        best_error = np.where(better, total, best_error)
        inliers[:, better] = good[:, better]
    cleaned = points2d.copy()
    cleaned[..., 2] = np.where(inliers, points2d[..., 2], 0.0)
    return _dlt(cleaned, projections), inliers


def consistent_keypoints(points2d: np.ndarray, projections: np.ndarray) -> tuple:
    """((J, 4) 3D keypoints, (C, J, 3) 2D keypoints with mirrored views swapped back and outliers' confidence 0)."""
    points2d = np.where(np.isfinite(points2d), points2d, 0.0).astype(np.float64)
    points3d, _ = ransac_triangulate(points2d, projections)
    for c in range(len(points2d)):
        swapped = points2d[c, LEFT_RIGHT]
        as_is = reprojection_errors(points3d, points2d[c : c + 1], projections[c : c + 1])[0]
        mirrored = reprojection_errors(points3d, swapped[None], projections[c : c + 1])[0]
        finite = np.isfinite(as_is) & np.isfinite(mirrored)
        if finite.sum() >= 6 and np.median(mirrored[finite]) < 0.5 * np.median(as_is[finite]):
            points2d[c] = swapped
    points3d, inliers = ransac_triangulate(points2d, projections)
    cleaned = points2d.copy()
    cleaned[..., 2] = np.where(inliers, points2d[..., 2], 0.0)
    return points3d, cleaned
