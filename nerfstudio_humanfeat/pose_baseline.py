"""GHNeRF Table 3's baseline: an off-the-shelf 2D pose estimator run on the ground-truth target image.

The rendered-heatmap keypoints and the estimator's are scored on the same joints: the BODY_25 joints the estimator
can detect (23 of 25 for BlazePose; the small toes have no counterpart), so a joint the estimator cannot see
does not count against either. mediapipe is optional: ``auto`` uses it when installed and says so otherwise.
"""

from __future__ import annotations

from typing import Dict, Literal, Optional, Tuple

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from nerfstudio_humanfeat.metrics import joint_errors, pck
from nerfstudio_humanfeat.skeleton import BODY25_NAMES

PoseBaselineName = Literal["auto", "mediapipe", "off"]
BASELINE_LABEL = "2D pose estimator on the ground-truth image (mediapipe 0.10.14 BlazePose full -> BODY_25)"
BASELINE_KEYS = (
    "baseline_pck", "baseline_joint_error_px", "baseline_detected", "pck_baseline_joints",
    "joint_error_px_baseline_joints",
)  # fmt: skip
"""ns-eval keys: the estimator's PCK, 2D error and share of views in which it found the person; the rendered
keypoints' PCK and 2D error on the estimator's joints."""


def restrict_joints(keypoints: Float[Tensor, "J 3"], joints: Tensor) -> Float[Tensor, "J 3"]:
    """The keypoints with every joint outside `joints` (bool, J) marked missing."""
    out = keypoints.detach().double().cpu().clone()
    out[~joints.cpu(), -1] = 0.0
    return out


def mean_over_joints(metrics: Dict[str, Optional[float]], key: str, joints: Tensor) -> Optional[float]:
    """Mean of ImageMetrics' per-joint entries ``<key>/<name>`` over `joints` (bool, J), skipping undefined ones."""
    values = [metrics.get(f"{key}/{name}") for j, name in enumerate(BODY25_NAMES) if bool(joints[j])]
    counted = [v for v in values if v is not None]
    return sum(counted) / len(counted) if counted else None


class PoseBaseline:
    """The estimator's PCK and joint error on ground-truth images, cached per view (evaluation repeats views)."""

    def __init__(self, threshold: float = 0.2) -> None:
        from nerfstudio_humanfeat.capture.body25 import detectable_mask
        from nerfstudio_humanfeat.capture.estimator import make_estimator

        self.estimator = make_estimator("mediapipe")
        self.joints = torch.from_numpy(detectable_mask())
        self.threshold = threshold
        self._cache: Dict[Tuple[int, int], Dict[str, Optional[float]]] = {}

    def detect(self, image: Float[Tensor, "H W 3"]) -> Float[Tensor, "J 3"]:
        """BODY_25 keypoints found by the estimator in an RGB image in [0, 1]; all missing when nobody is found."""
        pixels = (image.detach().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
        found = self.estimator(np.ascontiguousarray(pixels)).keypoints
        if found is None:
            found = np.zeros((len(BODY25_NAMES), 3))
            found[:, :2] = np.nan
        return torch.from_numpy(found)

    def __call__(
        self, view: Tuple[int, int], gt_image: Float[Tensor, "H W 3"], gt_keypoints: Float[Tensor, "J 3"]
    ) -> Dict[str, Optional[float]]:
        """``baseline_pck``, ``baseline_joint_error_px`` and ``baseline_detected`` of one (frame, camera) view."""
        if view not in self._cache:
            gt = restrict_joints(gt_keypoints, self.joints)
            found = self.detect(gt_image)
            result = pck(found, gt, self.threshold)
            errors = joint_errors(found, gt)
            finite = errors[~torch.isnan(errors)]
            self._cache[view] = {
                "baseline_pck": result.value,
                "baseline_joint_error_px": float(finite.mean()) if finite.numel() else None,
                "baseline_detected": float(bool(torch.isfinite(found[:, :2]).any())),
            }
        return dict(self._cache[view])


def make_pose_baseline(name: PoseBaselineName, threshold: float = 0.2) -> Tuple[Optional[PoseBaseline], str]:
    """The baseline the setting asks for, or None with the reason (``auto`` without mediapipe, ``off``)."""
    if name == "off":
        return None, "pose-estimator baseline off (pipeline.pose_baseline off)"
    from nerfstudio_humanfeat.capture.estimator import INSTALL_HINT, EstimatorUnavailable

    try:
        return PoseBaseline(threshold), BASELINE_LABEL
    except EstimatorUnavailable as error:
        if name == "mediapipe":
            raise EstimatorUnavailable(f"pipeline.pose_baseline mediapipe: {INSTALL_HINT}") from error
        return None, f"pose-estimator baseline not computed: {INSTALL_HINT}"
