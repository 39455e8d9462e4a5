"""The masks' fallback: a visual hull of the body's 3D box (from the triangulated keypoints) in each view."""

from __future__ import annotations

from typing import Tuple

import cv2
import numpy as np
from jaxtyping import Bool, Float

HULL_PADDING = 0.25
"""Metres added around the triangulated keypoints' box (the surface reaches beyond the joints)."""


def hull_mask(
    keypoints3d: Float[np.ndarray, "J 4"],
    K: Float[np.ndarray, "3 3"],
    R: Float[np.ndarray, "3 3"],
    T: Float[np.ndarray, "3"],
    hw: Tuple[int, int],
    padding: float = HULL_PADDING,
) -> Bool[np.ndarray, "H W"]:
    """The convex hull of the projected corners of the padded box of the keypoints with confidence > 0 (OpenCV
    pixels, undistorted); all False with fewer than two keypoints or a corner behind the camera."""
    mask = np.zeros(hw, dtype=np.uint8)
    valid = keypoints3d[:, 3] > 0
    if valid.sum() < 2:
        return mask > 0
    points = keypoints3d[valid, :3].astype(np.float64)
    low, high = points.min(0) - padding, points.max(0) + padding
    corners = np.array([[x, y, z] for x in (low[0], high[0]) for y in (low[1], high[1]) for z in (low[2], high[2])])
    cam = corners @ R.T + T
    if (cam[:, 2] <= 1e-6).any():
        return mask > 0
    uv = cam @ K.T
    uv = uv[:, :2] / uv[:, 2:]
    hull = cv2.convexHull(np.round(uv).astype(np.int32))
    cv2.fillConvexPoly(mask, hull, 1)
    return mask > 0
