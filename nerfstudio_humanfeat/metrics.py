"""Evaluation: bounding-box evaluation masks, masked PSNR / SSIM / LPIPS, heatmap MSE, PCK and joint errors.

Evaluation masks follow the reference code of the papers (see docs ``datasets.md``): ENeRF (which GHNeRF builds
on) fills the projected SMPL box padded by 0.1 m; Neural Body keeps the rays that hit the SMPL box padded by
0.05 m in z. Both are computed for the rays the model renders, i.e. through pixel centres at index + 0.5 (the
project's pixel frame). PSNR uses the pixels inside the mask; SSIM and LPIPS use the mask's bounding rectangle
with the outside-mask pixels of both images zeroed, as ENeRF's human evaluator and Neural Body's do.

Metric functions return None (never a made-up number) when a value is undefined: an empty mask, a crop too small
for the window, no valid joints, or LPIPS without pretrained weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Literal, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
from jaxtyping import Bool, Float
from skimage.metrics import structural_similarity
from torch import Tensor, nn

from nerfstudio_humanfeat.keypoints import (
    DEFAULT_FILTER_SIGMA,
    DEFAULT_THRESHOLD,
    PIXEL_CENTER,
    Refinement,
    extract_keypoints_2d,
    heatmap_image,
    keypoint_valid,
)
from nerfstudio_humanfeat.model_components.losses import masked_mse
from nerfstudio_humanfeat.model_components.pretrained_vgg import (
    PathLike,
    build_lpips_vgg,
    find_vgg16_weights,
    warn_unavailable,
)
from nerfstudio_humanfeat.skeleton import BODY25_NAMES, BODY25_TORSO

EvalProtocol = Literal["enerf", "neuralbody"]
ENERF_BOX_PADDING = 0.1
"""Metres added on every side of the SMPL vertices' box by ENeRF's ZJU-MoCap loader."""
NEURALBODY_Z_PADDING = 0.05
"""Metres added below and above (world z) the SMPL box by Neural Body."""
REFERENCE_SSIM_DATA_RANGE = 2.0
"""SSIM data range of the published numbers: ENeRF and Neural Body call skimage's SSIM on float [0, 1] images
without ``data_range``; the skimage of their time took it from the float dtype range [-1, 1], i.e. 2. Pass 1.0 for
the textbook definition (lower values)."""
SSIM_WINDOW = 7
"""skimage's default window (uniform 7 x 7, sample covariance), as in the reference evaluators."""
MM_PER_M = 1000.0
LPIPS_MIN_SIDE = 16
"""Smallest crop side the VGG trunk of LPIPS accepts (four 2x poolings before the last stage)."""


def bbox_corners(bbox: Float[Tensor, "2 3"]) -> Float[Tensor, "8 3"]:
    """The 8 corners of an axis-aligned box given as (min, max)."""
    idx = torch.tensor([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], device=bbox.device)
    return torch.stack([bbox[idx[:, axis], axis] for axis in range(3)], dim=-1)


def _camera(world_to_camera: Float[Tensor, "3 4"] | Float[Tensor, "4 4"]) -> Tuple[Tensor, Tensor]:
    """Rotation and translation of an OpenCV world-to-camera transform, float64 on the CPU."""
    w2c = world_to_camera.detach().double().cpu()
    return w2c[:3, :3], w2c[:3, 3]


def enerf_bbox_mask(
    bbox: Float[Tensor, "2 3"],
    intrinsics: Float[Tensor, "3 3"],
    world_to_camera: Float[Tensor, "3 4"] | Float[Tensor, "4 4"],
    height: int,
    width: int,
    padding: float = ENERF_BOX_PADDING,
) -> Bool[Tensor, "H W"]:
    """ENeRF's evaluation mask: the filled convex hull of the projected corners of the padded box.

    ``bbox`` is the world (min, max) of the SMPL vertices; OpenCV camera (``intrinsics``, ``world_to_camera``).
    When a corner lies behind the camera, the box's image is unbounded and the whole image is returned.
    """
    rot, trans = _camera(world_to_camera)
    box = bbox.detach().double().cpu() + torch.tensor([[-padding], [padding]], dtype=torch.float64)
    cam = bbox_corners(box) @ rot.T + trans
    if bool((cam[:, 2] <= 1e-6).any()):
        return torch.ones(height, width, dtype=torch.bool)
    uv = (cam @ intrinsics.detach().double().cpu().T)[:, :2] / cam[:, 2:]
    shift = 4
    points = np.round((uv.numpy() - PIXEL_CENTER) * (1 << shift)).astype(np.int32)
    mask = np.zeros((height, width), dtype=np.uint8)
    cv2.fillConvexPoly(mask, cv2.convexHull(points), 1, cv2.LINE_8, shift)
    return torch.from_numpy(mask.astype(bool))


def neuralbody_bbox_mask(
    bbox: Float[Tensor, "2 3"],
    intrinsics: Float[Tensor, "3 3"],
    world_to_camera: Float[Tensor, "3 4"] | Float[Tensor, "4 4"],
    height: int,
    width: int,
    z_padding: float = NEURALBODY_Z_PADDING,
) -> Bool[Tensor, "H W"]:
    """Neural Body's evaluation mask: pixels whose ray hits the box padded by ``z_padding`` in world z."""
    rot, trans = _camera(world_to_camera)
    box = bbox.detach().double().cpu().clone()
    box[0, 2] -= z_padding
    box[1, 2] += z_padding
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=torch.float64) + PIXEL_CENTER,
        torch.arange(width, dtype=torch.float64) + PIXEL_CENTER,
        indexing="ij",
    )
    pixels = torch.stack([xs, ys, torch.ones_like(xs)], dim=-1)
    directions = pixels @ torch.linalg.inv(intrinsics.detach().double().cpu()).T @ rot
    origin = -rot.T @ trans
    tiny = 1e-10
    directions = torch.where(directions.abs() < tiny, torch.full_like(directions, tiny), directions)
    t0 = (box[0] - origin) / directions
    t1 = (box[1] - origin) / directions
    near = torch.minimum(t0, t1).amax(dim=-1)
    far = torch.maximum(t0, t1).amin(dim=-1)
    return (near < far) & (far > 0)


def evaluation_mask(
    protocol: EvalProtocol,
    bbox: Float[Tensor, "2 3"],
    intrinsics: Float[Tensor, "3 3"],
    world_to_camera: Float[Tensor, "3 4"] | Float[Tensor, "4 4"],
    height: int,
    width: int,
) -> Bool[Tensor, "H W"]:
    """The evaluation mask of a protocol with its default padding."""
    if protocol == "enerf":
        return enerf_bbox_mask(bbox, intrinsics, world_to_camera, height, width)
    if protocol == "neuralbody":
        return neuralbody_bbox_mask(bbox, intrinsics, world_to_camera, height, width)
    raise ValueError(f"Unknown evaluation protocol {protocol!r}: use 'enerf' or 'neuralbody'.")


def crop_to_mask(
    pred: Float[Tensor, "H W C"], gt: Float[Tensor, "H W C"], mask: Bool[Tensor, "H W"], zero_outside: bool = True
) -> Optional[Tuple[Float[Tensor, "h w C"], Float[Tensor, "h w C"]]]:
    """Both images cropped to the mask's bounding rectangle, outside-mask pixels zeroed; None for an empty mask."""
    mask_np = mask.detach().cpu().numpy().astype(np.uint8)
    if not mask_np.any():
        return None
    x, y, w, h = cv2.boundingRect(mask_np)
    if zero_outside:
        keep = mask.to(pred.device)[..., None].to(pred.dtype)
        pred, gt = pred * keep, gt * keep
    return pred[y : y + h, x : x + w], gt[y : y + h, x : x + w]


def masked_psnr(
    pred: Float[Tensor, "H W C"], gt: Float[Tensor, "H W C"], mask: Optional[Bool[Tensor, "H W"]] = None
) -> Optional[float]:
    """PSNR (dB, colours in [0, 1]) over the pixels inside ``mask``; inf for identical pixels, None if empty."""
    if mask is None:
        mask = torch.ones(pred.shape[:-1], dtype=torch.bool)
    mask = mask.to(pred.device)
    if not bool(mask.any()):
        return None
    mse = float(masked_mse(pred.double(), gt.double(), mask[..., None]))
    return math.inf if mse == 0 else -10.0 * math.log10(mse)


def masked_ssim(
    pred: Float[Tensor, "H W C"],
    gt: Float[Tensor, "H W C"],
    mask: Optional[Bool[Tensor, "H W"]] = None,
    zero_outside: bool = True,
    data_range: float = REFERENCE_SSIM_DATA_RANGE,
) -> Optional[float]:
    """SSIM on the mask's bounding-rectangle crop (skimage, 7x7 uniform window, mean over channels).

    None when the mask is empty or the crop is smaller than the window. See ``REFERENCE_SSIM_DATA_RANGE``.
    """
    if mask is None:
        mask = torch.ones(pred.shape[:-1], dtype=torch.bool)
    crops = crop_to_mask(pred, gt, mask, zero_outside)
    if crops is None or min(crops[0].shape[:2]) < SSIM_WINDOW:
        return None
    pred_np, gt_np = (c.detach().double().cpu().numpy() for c in crops)
    return float(structural_similarity(gt_np, pred_np, channel_axis=-1, data_range=data_range))


class LPIPSMetric:
    """LPIPS-VGG on the mask's bounding-rectangle crop, inputs scaled to [-1, 1] (ENeRF's evaluator).

    Uses real pretrained weights only (``weights_path`` or torchvision's hub cache, see ``pretrained_vgg``). Without
    them ``available`` is False, ``reason`` says where it looked, and calls return None. The network is built on
    first use and follows the inputs' device.
    """

    def __init__(self, weights_path: Optional[PathLike] = None) -> None:
        self._lookup = find_vgg16_weights(weights_path)
        self.available = self._lookup.available
        self.reason = self._lookup.reason("LPIPS metric")
        self._net: Optional[nn.Module] = None
        if not self.available:
            warn_unavailable(self._lookup, "LPIPS metric")

    def __call__(
        self,
        pred: Float[Tensor, "H W 3"],
        gt: Float[Tensor, "H W 3"],
        mask: Optional[Bool[Tensor, "H W"]] = None,
        zero_outside: bool = True,
    ) -> Optional[float]:
        """LPIPS distance between the crops (lower is better); None when unavailable or the crop is too small."""
        if self._lookup.path is None:
            return None
        if mask is None:
            mask = torch.ones(pred.shape[:-1], dtype=torch.bool)
        crops = crop_to_mask(pred, gt, mask, zero_outside)
        if crops is None or min(crops[0].shape[:2]) < LPIPS_MIN_SIDE:
            return None
        if self._net is None:
            self._net = build_lpips_vgg(self._lookup.path)
        self._net = self._net.to(pred.device)
        pred_c, gt_c = (c.permute(2, 0, 1)[None].float() * 2 - 1 for c in crops)
        with torch.no_grad():
            return float(self._net(gt_c, pred_c).mean())


def heatmap_mse(
    pred: Float[Tensor, "*bs J"],
    target: Float[Tensor, "*bs J"],
    mask: Optional[Bool[Tensor, "*bs"]] = None,
    joint_valid: Optional[Bool[Tensor, " J"]] = None,
) -> Optional[float]:
    """Heatmap MSE over the pixels in ``mask`` and the joints in ``joint_valid`` (all when None); None if empty."""
    valid = torch.ones(pred.shape, dtype=torch.bool, device=pred.device)
    if mask is not None:
        valid = valid & mask.to(pred.device)[..., None]
    if joint_valid is not None:
        valid = valid & joint_valid.to(pred.device)
    if not bool(valid.any()):
        return None
    return float(masked_mse(pred.double(), target.double(), valid))


@dataclass
class PCKResult:
    """PCK of one set of keypoints."""

    correct: Bool[Tensor, " J"]
    """Joints evaluated and within the threshold."""
    evaluated: Bool[Tensor, " J"]
    """Joints that count: present in the ground truth, in an image whose torso length is defined."""
    torso_length: Optional[float]
    """Ground-truth torso diameter in pixels; None when a torso joint is missing."""

    @property
    def value(self) -> Optional[float]:
        """Fraction of evaluated joints that are correct; None when none is evaluated."""
        count = int(self.evaluated.sum())
        return None if count == 0 else int(self.correct.sum()) / count


def pck(
    pred: Float[Tensor, "J 3"],
    gt: Float[Tensor, "J 3"],
    threshold: float = 0.2,
    torso: Tuple[int, int] = BODY25_TORSO,
) -> PCKResult:
    """PCK@threshold (GHNeRF): a joint is correct when closer than ``threshold`` x the ground-truth torso diameter.

    Ground-truth-missing joints are excluded; a predicted-missing joint counts as incorrect; without both torso
    joints in the ground truth nothing is evaluated.
    """
    pred, gt = pred.detach().double().cpu(), gt.detach().double().cpu()
    gt_valid, pred_valid = keypoint_valid(gt), keypoint_valid(pred)
    no_joints = torch.zeros_like(gt_valid)
    if not (gt_valid[torso[0]] and gt_valid[torso[1]]):
        return PCKResult(correct=no_joints, evaluated=no_joints, torso_length=None)
    torso_length = float((gt[torso[0], :2] - gt[torso[1], :2]).norm())
    if torso_length <= 0:
        return PCKResult(correct=no_joints, evaluated=no_joints, torso_length=None)
    distance = (pred[:, :2] - gt[:, :2]).norm(dim=-1)
    close = torch.nan_to_num(distance, nan=math.inf) < threshold * torso_length
    return PCKResult(correct=gt_valid & pred_valid & close, evaluated=gt_valid, torso_length=torso_length)


def joint_errors(pred: Float[Tensor, "J K"], gt: Float[Tensor, "J K"]) -> Float[Tensor, " J"]:
    """Euclidean error per joint (location = all but the last column); nan where either side is missing."""
    pred, gt = pred.detach().double().cpu(), gt.detach().double().cpu()
    error = (pred[:, :-1] - gt[:, :-1]).norm(dim=-1)
    return torch.where(keypoint_valid(pred) & keypoint_valid(gt), error, torch.full_like(error, math.nan))


def _nanmean(values: Tensor) -> Optional[float]:
    finite = values[~torch.isnan(values)]
    return None if finite.numel() == 0 else float(finite.mean())


def mean_joint_error_px(pred: Float[Tensor, "J 3"], gt: Float[Tensor, "J 3"]) -> Optional[float]:
    """Mean 2D error in pixels over joints present in both; None when there are none."""
    return _nanmean(joint_errors(pred, gt))


def mpjpe(pred: Float[Tensor, "J 4"], gt: Float[Tensor, "J 4"], scale: float = MM_PER_M) -> Optional[float]:
    """Mean per-joint 3D position error in mm (inputs in metres, ``scale`` = mm per unit) over joints present in
    both; no alignment, so world and camera frames give the same value. None when no joint is shared."""
    mean = _nanmean(joint_errors(pred, gt))
    return None if mean is None else mean * scale


def average_metrics(per_image: Sequence[Dict[str, Optional[float]]]) -> Dict[str, Optional[float]]:
    """Mean of every key over images, ignoring None; adds ``pck_pooled`` = sum(pck_correct) / sum(pck_joints)."""
    keys: List[str] = list(dict.fromkeys(k for metrics in per_image for k in metrics))
    averaged: Dict[str, Optional[float]] = {}
    for key in keys:
        values = [m[key] for m in per_image if m.get(key) is not None]
        averaged[key] = float(np.mean(values)) if values else None
    joints = sum(m.get("pck_joints") or 0 for m in per_image)
    if joints:
        averaged["pck_pooled"] = sum(m.get("pck_correct") or 0 for m in per_image) / joints
    return averaged


class ImageMetrics:
    """All metrics of one rendered view, as a flat dict of floats (None where unavailable or undefined).

    Keys: ``psnr``, ``ssim``, ``lpips``; with heatmaps / keypoints: ``heatmap_mse``, ``pck``, ``pck_correct``,
    ``pck_joints``, ``joint_error_px`` and per joint ``pck/<name>`` (1.0, 0.0 or None) and
    ``joint_error_px/<name>``; with dense pose: ``densepose_mse``; with 3D keypoints: ``mpjpe_mm``,
    ``keypoints3d_detected`` and ``mpjpe_mm/<name>``. Average over images with ``average_metrics``; ``notes()``
    explains the settings.

    Args:
        protocol: evaluation-mask protocol of ``evaluation_mask``: "enerf" or "neuralbody".
        given_bbox_padding: metres already added on every side of the boxes passed to ``evaluation_mask`` (0.1
            for the catalog's boxes); removed before the protocol's own padding.
        heatmap_sigma: sigma (pixels) of ground-truth heatmaps built from keypoints when none are passed.
        pck_threshold: PCK threshold as a fraction of the torso diameter.
        joint_names: names used in per-joint keys.
        torso: the joint pair whose ground-truth distance is the torso diameter.
        zero_outside: zero outside-mask pixels in the SSIM / LPIPS crops (ENeRF, Neural Body).
        ssim_data_range: see ``REFERENCE_SSIM_DATA_RANGE``.
        lpips_weights: VGG16 weights file for LPIPS (else torchvision's cache); LPIPS is None without them.
        compute_lpips: False skips LPIPS entirely (``lpips`` is then None).
        keypoint_threshold, keypoint_filter_sigma, keypoint_refine: ``extract_keypoints_2d`` settings.
    """

    def __init__(
        self,
        protocol: EvalProtocol = "enerf",
        given_bbox_padding: float = 0.0,
        heatmap_sigma: float = 3.0,
        pck_threshold: float = 0.2,
        joint_names: Sequence[str] = BODY25_NAMES,
        torso: Tuple[int, int] = BODY25_TORSO,
        zero_outside: bool = True,
        ssim_data_range: float = REFERENCE_SSIM_DATA_RANGE,
        lpips_weights: Optional[PathLike] = None,
        compute_lpips: bool = True,
        keypoint_threshold: float = DEFAULT_THRESHOLD,
        keypoint_filter_sigma: float = DEFAULT_FILTER_SIGMA,
        keypoint_refine: Refinement = "quadratic",
    ) -> None:
        if protocol not in ("enerf", "neuralbody"):
            raise ValueError(f"Unknown evaluation protocol {protocol!r}: use 'enerf' or 'neuralbody'.")
        self.protocol: EvalProtocol = protocol
        self.given_bbox_padding = given_bbox_padding
        self.heatmap_sigma = heatmap_sigma
        self.pck_threshold = pck_threshold
        self.joint_names = list(joint_names)
        self.torso = torso
        self.zero_outside = zero_outside
        self.ssim_data_range = ssim_data_range
        self.lpips = LPIPSMetric(lpips_weights) if compute_lpips else None
        self.keypoint_threshold = keypoint_threshold
        self.keypoint_filter_sigma = keypoint_filter_sigma
        self.keypoint_refine: Refinement = keypoint_refine

    def evaluation_mask(
        self,
        bbox: Float[Tensor, "2 3"],
        intrinsics: Float[Tensor, "3 3"],
        world_to_camera: Float[Tensor, "3 4"] | Float[Tensor, "4 4"],
        height: int,
        width: int,
    ) -> Bool[Tensor, "H W"]:
        """This protocol's mask for a body box (padded by ``given_bbox_padding``) seen by an OpenCV camera."""
        pad = self.given_bbox_padding
        raw = bbox.detach().double().cpu() + torch.tensor([[pad], [-pad]], dtype=torch.float64)
        return evaluation_mask(self.protocol, raw, intrinsics, world_to_camera, height, width)

    def notes(self) -> Dict[str, str]:
        """Human-readable settings of the evaluation, and why a metric is unavailable."""
        mask = {
            "enerf": f"ENeRF: filled projection of the SMPL box padded by {ENERF_BOX_PADDING} m",
            "neuralbody": f"Neural Body: rays hitting the SMPL box padded by {NEURALBODY_Z_PADDING} m in z",
        }[self.protocol]
        notes = {
            "eval_protocol": f"{mask}; PSNR inside the mask; SSIM (skimage, 7x7, data_range "
            f"{self.ssim_data_range}) and LPIPS-VGG ([-1, 1]) on the mask's bounding-rectangle crop"
            + (" with outside-mask pixels zeroed" if self.zero_outside else ""),
            "pck": f"PCK@{self.pck_threshold} of the torso diameter ({self.joint_names[self.torso[0]]}-"
            f"{self.joint_names[self.torso[1]]}); joints missing in the ground truth excluded, missing predictions "
            "count as wrong",
        }
        if self.lpips is None:
            notes["lpips"] = "LPIPS not computed (compute_lpips=False)"
        elif not self.lpips.available:
            notes["lpips"] = self.lpips.reason
        return notes

    def keypoints_2d(self, heatmaps: Float[Tensor, "H W J"]) -> Float[Tensor, "J 3"]:
        """Keypoints extracted from rendered heatmaps (channels last) with this helper's settings."""
        return extract_keypoints_2d(
            heatmaps.permute(2, 0, 1),
            threshold=self.keypoint_threshold,
            filter_sigma=self.keypoint_filter_sigma,
            refine=self.keypoint_refine,
        )

    def image_metrics(
        self, pred_rgb: Float[Tensor, "H W 3"], gt_rgb: Float[Tensor, "H W 3"], mask: Bool[Tensor, "H W"]
    ) -> Dict[str, Optional[float]]:
        """PSNR inside the mask, SSIM and LPIPS on its crop."""
        return {
            "psnr": masked_psnr(pred_rgb, gt_rgb, mask),
            "ssim": masked_ssim(pred_rgb, gt_rgb, mask, self.zero_outside, self.ssim_data_range),
            "lpips": None if self.lpips is None else self.lpips(pred_rgb, gt_rgb, mask, self.zero_outside),
        }

    def pose_metrics(
        self,
        mask: Bool[Tensor, "H W"],
        gt_keypoints: Float[Tensor, "J 3"],
        pred_heatmaps: Optional[Float[Tensor, "H W J"]] = None,
        pred_keypoints: Optional[Float[Tensor, "J 3"]] = None,
        gt_heatmaps: Optional[Float[Tensor, "H W J"]] = None,
    ) -> Dict[str, Optional[float]]:
        """Heatmap MSE (mask pixels, joints present in the ground truth), PCK and 2D joint errors."""
        gt_valid = keypoint_valid(gt_keypoints)
        out: Dict[str, Optional[float]] = {"heatmap_mse": None}
        if pred_heatmaps is not None:
            if gt_heatmaps is None:
                height, width = pred_heatmaps.shape[:2]
                gt_heatmaps = heatmap_image(height, width, gt_keypoints.to(pred_heatmaps), self.heatmap_sigma)
            out["heatmap_mse"] = heatmap_mse(pred_heatmaps, gt_heatmaps, mask, gt_valid.to(pred_heatmaps.device))
            if pred_keypoints is None:
                pred_keypoints = self.keypoints_2d(pred_heatmaps)
        if pred_keypoints is None:
            raise ValueError("pose_metrics needs pred_heatmaps or pred_keypoints.")
        result = pck(pred_keypoints, gt_keypoints, self.pck_threshold, self.torso)
        errors = joint_errors(pred_keypoints, gt_keypoints)
        out.update(
            pck=result.value,
            pck_correct=float(result.correct.sum()),
            pck_joints=float(result.evaluated.sum()),
            joint_error_px=_nanmean(errors),
        )
        for j, name in enumerate(self.joint_names):
            out[f"pck/{name}"] = float(result.correct[j]) if result.evaluated[j] else None
            out[f"joint_error_px/{name}"] = None if math.isnan(errors[j]) else float(errors[j])
        return out

    def keypoint_3d_metrics(
        self, pred_keypoints_3d: Float[Tensor, "J 4"], gt_keypoints_3d: Float[Tensor, "J 4"]
    ) -> Dict[str, Optional[float]]:
        """MPJPE in mm, overall and per joint, and the share of ground-truth joints that were found."""
        errors = joint_errors(pred_keypoints_3d, gt_keypoints_3d) * MM_PER_M
        gt_valid = keypoint_valid(gt_keypoints_3d.cpu())
        found = keypoint_valid(pred_keypoints_3d.cpu()) & gt_valid
        out: Dict[str, Optional[float]] = {
            "mpjpe_mm": _nanmean(errors),
            "keypoints3d_detected": float(found.sum()) / int(gt_valid.sum()) if bool(gt_valid.any()) else None,
        }
        for j, name in enumerate(self.joint_names):
            out[f"mpjpe_mm/{name}"] = None if math.isnan(errors[j]) else float(errors[j])
        return out

    def __call__(
        self,
        pred_rgb: Float[Tensor, "H W 3"],
        gt_rgb: Float[Tensor, "H W 3"],
        mask: Bool[Tensor, "H W"],
        gt_keypoints: Optional[Float[Tensor, "J 3"]] = None,
        pred_heatmaps: Optional[Float[Tensor, "H W J"]] = None,
        pred_keypoints: Optional[Float[Tensor, "J 3"]] = None,
        gt_heatmaps: Optional[Float[Tensor, "H W J"]] = None,
        pred_densepose: Optional[Float[Tensor, "H W D"]] = None,
        gt_densepose: Optional[Float[Tensor, "H W D"]] = None,
        densepose_mask: Optional[Bool[Tensor, "H W"] | Bool[Tensor, "H W 1"]] = None,
        pred_keypoints_3d: Optional[Float[Tensor, "J 4"]] = None,
        gt_keypoints_3d: Optional[Float[Tensor, "J 4"]] = None,
    ) -> Dict[str, Optional[float]]:
        """Every metric the inputs allow. Pose metrics need ``gt_keypoints`` and predicted heatmaps or keypoints
        (pass ``pred_keypoints`` to reuse an extraction); dense pose is compared where ``densepose_mask`` (else
        ``mask``) holds."""
        metrics = self.image_metrics(pred_rgb, gt_rgb, mask)
        if gt_keypoints is not None and (pred_heatmaps is not None or pred_keypoints is not None):
            metrics.update(self.pose_metrics(mask, gt_keypoints, pred_heatmaps, pred_keypoints, gt_heatmaps))
        if pred_densepose is not None and gt_densepose is not None:
            dp_mask = mask if densepose_mask is None else densepose_mask.reshape(mask.shape).to(torch.bool)
            metrics["densepose_mse"] = heatmap_mse(pred_densepose, gt_densepose, dp_mask)
        if pred_keypoints_3d is not None and gt_keypoints_3d is not None:
            metrics.update(self.keypoint_3d_metrics(pred_keypoints_3d, gt_keypoints_3d))
        return metrics
