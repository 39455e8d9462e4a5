"""Skeleton definitions: OpenPose BODY_25 keypoints and the 24-joint SMPL kinematic tree."""

from __future__ import annotations

from typing import List, Tuple

BODY25_NAMES: List[str] = [
    "Nose", "Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist", "MidHip",
    "RHip", "RKnee", "RAnkle", "LHip", "LKnee", "LAnkle", "REye", "LEye", "REar", "LEar",
    "LBigToe", "LSmallToe", "LHeel", "RBigToe", "RSmallToe", "RHeel",
]  # fmt: skip

BODY25_LIMBS: List[Tuple[int, int]] = [
    (1, 8), (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (8, 9), (9, 10), (10, 11), (8, 12),
    (12, 13), (13, 14), (1, 0), (0, 15), (15, 17), (0, 16), (16, 18), (14, 19), (19, 20), (14, 21),
    (11, 22), (22, 23), (11, 24),
]  # fmt: skip
"""OpenPose's BODY_25 limb pairs, as drawn by its renderer."""

BODY25_TORSO: Tuple[int, int] = (5, 9)
"""Left shoulder and right hip: the torso diameter used by PCK@0.2."""

SMPL_JOINT_NAMES: List[str] = [
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle",
    "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hand", "right_hand",
]  # fmt: skip

SMPL_PARENTS: List[int] = [-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21]
"""Parent of each SMPL joint (the kinematic tree of SMPL's kintree_table)."""

BODY25_FROM_SMPL = {
    "Neck": "neck", "RShoulder": "right_shoulder", "RElbow": "right_elbow", "RWrist": "right_wrist",
    "LShoulder": "left_shoulder", "LElbow": "left_elbow", "LWrist": "left_wrist", "MidHip": "pelvis",
    "RHip": "right_hip", "RKnee": "right_knee", "RAnkle": "right_ankle", "LHip": "left_hip",
    "LKnee": "left_knee", "LAnkle": "left_ankle",
}  # fmt: skip
"""BODY_25 keypoints that coincide with an SMPL joint; the others (face, feet) come from surface points."""

BODY25_COLORS: List[Tuple[int, int, int]] = [
    (255, 0, 85), (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0),
    (0, 255, 0), (255, 0, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255),
    (0, 0, 255), (255, 0, 170), (170, 0, 255), (255, 0, 255), (85, 0, 255), (0, 0, 255), (0, 0, 255),
    (0, 0, 255), (0, 255, 255), (0, 255, 255), (0, 255, 255),
]  # fmt: skip
"""OpenPose's per-keypoint colours (RGB)."""
