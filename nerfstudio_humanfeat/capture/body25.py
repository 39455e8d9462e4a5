"""BlazePose (mediapipe, 33 landmarks) -> OpenPose BODY_25: the mapping of docs/blazepose_body25.md."""

from __future__ import annotations

from typing import Dict, List, Tuple, Union

import numpy as np
from jaxtyping import Float

from nerfstudio_humanfeat.skeleton import BODY25_NAMES

BLAZEPOSE_NAMES: List[str] = [
    "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye", "right_eye_outer",
    "left_ear", "right_ear", "mouth_left", "mouth_right", "left_shoulder", "right_shoulder", "left_elbow",
    "right_elbow", "left_wrist", "right_wrist", "left_pinky", "right_pinky", "left_index", "right_index",
    "left_thumb", "right_thumb", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
    "left_heel", "right_heel", "left_foot_index", "right_foot_index",
]  # fmt: skip
"""mediapipe's PoseLandmark order (BlazePose GHUM 3D topology)."""

BODY25_FROM_BLAZEPOSE: Dict[str, Union[str, Tuple[str, str]]] = {
    "Nose": "nose",
    "Neck": ("left_shoulder", "right_shoulder"),
    "RShoulder": "right_shoulder",
    "RElbow": "right_elbow",
    "RWrist": "right_wrist",
    "LShoulder": "left_shoulder",
    "LElbow": "left_elbow",
    "LWrist": "left_wrist",
    "MidHip": ("left_hip", "right_hip"),
    "RHip": "right_hip",
    "RKnee": "right_knee",
    "RAnkle": "right_ankle",
    "LHip": "left_hip",
    "LKnee": "left_knee",
    "LAnkle": "left_ankle",
    "REye": "right_eye",
    "LEye": "left_eye",
    "REar": "right_ear",
    "LEar": "left_ear",
    "LBigToe": "left_foot_index",
    "LHeel": "left_heel",
    "RBigToe": "right_foot_index",
    "RHeel": "right_heel",
}
"""BODY_25 keypoint -> BlazePose landmark, or the pair whose midpoint it is. LSmallToe and RSmallToe have no
counterpart: always missing."""

MAPPED_JOINTS: List[int] = [BODY25_NAMES.index(name) for name in BODY25_FROM_BLAZEPOSE]
"""BODY_25 indices the estimator can detect (23 of 25)."""


def detectable_mask() -> np.ndarray:
    """(25,) bool: the BODY_25 joints that have a BlazePose counterpart."""
    mask = np.zeros(len(BODY25_NAMES), dtype=bool)
    mask[MAPPED_JOINTS] = True
    return mask


def body25_from_blazepose(
    landmarks: Float[np.ndarray, "33 3"], min_confidence: float = 0.0
) -> Float[np.ndarray, "25 3"]:
    """(25, 3) BODY_25 (x, y, confidence) from BlazePose landmarks (x, y, visibility), same pixel units.

    A midpoint's confidence is the smaller of its two landmarks'. Joints without a counterpart, and joints whose
    confidence is at most `min_confidence` or whose coordinates are not finite, are missing: confidence 0 and
    coordinates NaN (never a keypoint at (0, 0); OpenPose files write them as 0, 0, 0).
    """
    landmarks = np.asarray(landmarks, dtype=np.float64)
    if landmarks.shape != (len(BLAZEPOSE_NAMES), 3):
        raise ValueError(f"expected ({len(BLAZEPOSE_NAMES)}, 3) BlazePose landmarks, got {landmarks.shape}")
    out = np.full((len(BODY25_NAMES), 3), np.nan)
    out[:, 2] = 0.0
    for name, source in BODY25_FROM_BLAZEPOSE.items():
        pair = source if isinstance(source, tuple) else (source,)
        points = landmarks[[BLAZEPOSE_NAMES.index(s) for s in pair]]
        out[BODY25_NAMES.index(name)] = (*points[:, :2].mean(0), points[:, 2].min())
    missing = ~np.isfinite(out).all(-1) | ~(out[:, 2] > min_confidence)
    out[missing, :2] = np.nan
    out[missing, 2] = 0.0
    return out.astype(np.float32)
