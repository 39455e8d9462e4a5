"""Evaluation masks and metrics against hand-computed values."""

from __future__ import annotations

import math
from unittest import mock

import cv2
import lpips
import numpy as np
import pytest
import torch
import torchvision
from skimage.metrics import structural_similarity
from vgg_fixtures import isolate_hub_and_forbid_downloads, write_stand_in_vgg16

from nerfstudio_humanfeat.keypoints import heatmap_image
from nerfstudio_humanfeat.metrics import (
    ImageMetrics,
    LPIPSMetric,
    average_metrics,
    bbox_corners,
    enerf_bbox_mask,
    heatmap_mse,
    masked_psnr,
    masked_ssim,
    mean_joint_error_px,
    mpjpe,
    neuralbody_bbox_mask,
    pck,
)
from nerfstudio_humanfeat.skeleton import BODY25_NAMES

# A camera at the world origin looking down +z (OpenCV), f = 100 px, principal point at the image centre.
K = torch.tensor([[100.0, 0.0, 60.0], [0.0, 100.0, 60.0], [0.0, 0.0, 1.0]])
IDENTITY_W2C = torch.cat([torch.eye(3), torch.zeros(3, 1)], dim=1)
BOX = torch.tensor([[-1.0, -1.0, 2.0], [1.0, 1.0, 3.0]])


def test_neuralbody_mask_is_the_rays_hitting_the_z_padded_box():
    # Near face at z = 2 - 0.05: half-width 100 / 1.95 = 51.28 px, so centres in [8.72, 111.28]: pixels 9..110.
    mask = neuralbody_bbox_mask(BOX, K, IDENTITY_W2C, 120, 120)
    cols = torch.nonzero(mask.any(dim=0))[:, 0]
    assert (int(cols.min()), int(cols.max())) == (9, 110)
    assert int(mask.sum()) == 102 * 102
    # Without padding: half-width 50 px, centres in (10, 110): pixels 10..109.
    unpadded = neuralbody_bbox_mask(BOX, K, IDENTITY_W2C, 120, 120, z_padding=0.0)
    assert int(unpadded.sum()) == 100 * 100 and bool(unpadded[10, 10]) and not bool(unpadded[9, 10])


def test_enerf_mask_is_the_projected_padded_box():
    # Padded by 0.1 m: the near face (z = 1.9, half-size 1.1 m) bounds the image: 60 +- 57.89 px.
    mask = enerf_bbox_mask(BOX, K, IDENTITY_W2C, 120, 120)
    rows = torch.nonzero(mask.any(dim=1))[:, 0]
    assert abs(int(rows.min()) - 2) <= 1 and abs(int(rows.max()) - 117) <= 1
    assert bool(mask[3:117, 3:117].all())
    smaller = enerf_bbox_mask(BOX, K, IDENTITY_W2C, 120, 120, padding=0.0)
    assert bool((mask | smaller).eq(mask).all()) and int(smaller.sum()) < int(mask.sum())


def _rotation(axis: torch.Tensor, angle: float) -> torch.Tensor:
    vec = (axis / axis.norm() * angle).numpy().astype(np.float64)
    return torch.from_numpy(cv2.Rodrigues(vec)[0]).float()


def test_enerf_mask_covers_the_hull_of_the_projected_corners():
    rot = _rotation(torch.tensor([0.3, 1.0, 0.2]), 0.7)
    centre = torch.tensor([0.2, -0.1, 0.9])
    trans = torch.tensor([0.0, 0.0, 4.0]) - rot @ centre  # the box centre lies 4 m in front of the camera
    w2c = torch.cat([rot, trans[:, None]], dim=1)
    box = torch.stack([centre - torch.tensor([0.3, 0.25, 0.9]), centre + torch.tensor([0.3, 0.25, 0.9])])
    mask = enerf_bbox_mask(box, K, w2c, 120, 120, padding=0.0).numpy()
    cam = bbox_corners(box) @ rot.T + trans
    uv = (cam @ K.T)[:, :2] / cam[:, 2:]
    hull = cv2.convexHull(uv.numpy().astype(np.float32))
    ys, xs = np.mgrid[0:120, 0:120]
    distance = np.array(
        [cv2.pointPolygonTest(hull, (float(x) + 0.5, float(y) + 0.5), True) for x, y in zip(xs.ravel(), ys.ravel())]
    ).reshape(120, 120)
    assert (distance > 1).sum() > 500  # the hull is well inside the image
    assert mask[distance > 1].all()  # every pixel centre inside the hull is in the mask
    assert not mask[distance < -1].any()  # and none clearly outside


def test_enerf_mask_is_everything_when_the_box_reaches_behind_the_camera():
    box = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 3.0]])
    assert bool(enerf_bbox_mask(box, K, IDENTITY_W2C, 20, 30).all())


def test_masked_psnr_uses_only_mask_pixels():
    gt = torch.full((6, 8, 3), 0.5)
    pred = gt.clone()
    mask = torch.zeros(6, 8, dtype=torch.bool)
    mask[1:3, 2:6] = True
    pred[1, 2] += 0.1  # one of 8 mask pixels off by 0.1 in all channels: mse = 0.01 / 8
    pred[5, 7] = 1.0  # outside the mask: ignored
    assert masked_psnr(pred, gt, mask) == pytest.approx(-10 * math.log10(0.01 / 8))
    assert masked_psnr(gt, gt, mask) == math.inf
    assert masked_psnr(pred, gt, torch.zeros(6, 8, dtype=torch.bool)) is None


def test_masked_ssim_of_constant_crops_matches_the_formula():
    # Constant images: SSIM = (2ab + C1) / (a^2 + b^2 + C1) with C1 = (0.01 * data_range)^2.
    pred, gt = torch.full((10, 10, 3), 0.5), torch.full((10, 10, 3), 0.25)
    mask = torch.zeros(10, 10, dtype=torch.bool)
    mask[1:9, 2:9] = True
    for data_range in (2.0, 1.0):
        c1 = (0.01 * data_range) ** 2
        expected = (2 * 0.5 * 0.25 + c1) / (0.5**2 + 0.25**2 + c1)
        assert masked_ssim(pred, gt, mask, data_range=data_range) == pytest.approx(expected, rel=1e-9)
    assert masked_ssim(pred, pred, mask) == pytest.approx(1.0)


def test_masked_ssim_crop_zeroing_and_undefined_cases():
    torch.manual_seed(1)
    gt = torch.rand(20, 24, 3)
    pred = (gt + 0.1 * torch.randn(20, 24, 3)).clamp(0, 1)
    mask = torch.zeros(20, 24, dtype=torch.bool)
    mask[3:15, 4:20] = True
    mask[3:6, 4:8] = False  # inside the bounding rectangle, outside the mask
    expected = structural_similarity(
        (gt * mask[..., None])[3:15, 4:20].double().numpy(),
        (pred * mask[..., None])[3:15, 4:20].double().numpy(),
        channel_axis=-1,
        data_range=2.0,
    )
    assert masked_ssim(pred, gt, mask) == pytest.approx(expected)
    assert masked_ssim(pred, gt, mask, zero_outside=False) != pytest.approx(expected)
    tiny = torch.zeros(20, 24, dtype=torch.bool)
    tiny[2:5, 2:12] = True
    assert masked_ssim(pred, gt, tiny) is None
    assert masked_ssim(pred, gt, torch.zeros(20, 24, dtype=torch.bool)) is None


def test_heatmap_mse_over_mask_and_valid_joints():
    pred = torch.zeros(2, 2, 3)
    target = torch.zeros(2, 2, 3)
    target[0, 0] = torch.tensor([0.2, 0.4, 9.0])
    target[1, 1] = torch.tensor([5.0, 5.0, 5.0])  # outside the mask
    mask = torch.tensor([[True, True], [False, False]])
    joint_valid = torch.tensor([True, True, False])
    assert heatmap_mse(pred, target, mask, joint_valid) == pytest.approx((0.04 + 0.16) / 4)
    assert heatmap_mse(pred, target, mask, torch.zeros(3, dtype=torch.bool)) is None


def _pose_gt() -> torch.Tensor:
    gt = torch.zeros(25, 3)
    gt[:, 2] = 1.0
    gt[:, 0] = torch.arange(25.0) * 4
    gt[:, 1] = 100.0
    gt[5, :2] = torch.tensor([0.0, 0.0])  # left shoulder
    gt[9, :2] = torch.tensor([30.0, 40.0])  # right hip: torso diameter 50 px, PCK@0.2 radius 10 px
    gt[20, 2] = 0.0  # missing in the ground truth
    return gt


def test_pck_with_torso_normalisation_and_missing_joints():
    gt = _pose_gt()
    pred = gt.clone()
    pred[0, 0] += 9.0  # correct
    pred[1, 1] += 11.0  # wrong
    pred[2] = torch.tensor([math.nan, math.nan, 0.0])  # missing prediction: wrong
    pred[20, :2] = gt[20, :2]  # gt missing: excluded even though it matches
    result = pck(pred, gt)
    assert result.torso_length == pytest.approx(50.0)
    assert int(result.evaluated.sum()) == 24 and not bool(result.evaluated[20])
    assert not bool(result.correct[1]) and not bool(result.correct[2]) and bool(result.correct[0])
    assert result.value == pytest.approx(22 / 24)
    assert pck(pred, gt, threshold=0.1).value == pytest.approx(21 / 24)  # 5 px: the 9 px error fails too
    no_torso = gt.clone()
    no_torso[9, 2] = 0.0
    undefined = pck(pred, no_torso)
    assert undefined.value is None and not bool(undefined.evaluated.any())


def test_mean_joint_error_and_mpjpe_exclude_missing_joints():
    gt = torch.tensor([[0.0, 0.0, 1.0], [10.0, 0.0, 1.0], [5.0, 5.0, 0.0], [1.0, 1.0, 1.0]])
    pred = torch.tensor([[3.0, 4.0, 0.9], [10.0, 1.0, 0.8], [5.0, 5.0, 1.0], [math.nan, math.nan, 0.0]])
    assert mean_joint_error_px(pred, gt) == pytest.approx(3.0)  # (5 + 1) / 2
    gt3 = torch.tensor([[0.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0], [2.0, 0.0, 0.0, 0.0]])
    pred3 = torch.tensor([[0.03, 0.0, 0.04, 1.0], [1.0, 1.01, 1.0, 1.0], [0.0, 0.0, 0.0, 1.0]])
    assert mpjpe(pred3, gt3) == pytest.approx((50.0 + 10.0) / 2)
    assert mpjpe(pred3[:1], gt3[2:3]) is None


def test_lpips_metric_without_weights_reports_none_with_a_reason(monkeypatch, tmp_path):
    cache_file = isolate_hub_and_forbid_downloads(monkeypatch, tmp_path)
    with pytest.warns(RuntimeWarning, match="LPIPS"):
        metric = LPIPSMetric()
    assert not metric.available and str(cache_file) in metric.reason
    assert metric(torch.rand(32, 32, 3), torch.rand(32, 32, 3)) is None


def _reference_lpips(state: dict, pred: torch.Tensor, gt: torch.Tensor) -> float:
    """LPIPS-VGG of (H, W, 3) images in [0, 1] by the lpips package itself, its torchvision trunk given `state`."""
    vgg = torchvision.models.vgg16()
    vgg.features.load_state_dict({k[len("features.") :]: v for k, v in state.items()})
    with mock.patch.object(torchvision.models, "vgg16", lambda *args, **kwargs: vgg):
        reference = lpips.LPIPS(pretrained=True, net="vgg", verbose=False).eval()
    with torch.no_grad():
        return float(reference(*(image.permute(2, 0, 1)[None] * 2 - 1 for image in (gt, pred))).mean())


def test_lpips_metric_with_cached_weights_compares_crops(monkeypatch, tmp_path):
    cache_file = isolate_hub_and_forbid_downloads(monkeypatch, tmp_path)
    state = write_stand_in_vgg16(cache_file)
    metric = LPIPSMetric()
    assert metric.available
    torch.manual_seed(2)
    gt = torch.rand(40, 40, 3)
    mask = torch.zeros(40, 40, dtype=torch.bool)
    mask[4:36, 6:30] = True
    mask[24:30, 20:26] = False  # a hole: zeroed in both crops
    noisy = gt.clone()
    noisy[0:3] = 0.0  # outside the crop: no effect
    noisy[25:28, 21:24] = 1.0  # in the hole: no effect
    assert metric(noisy, gt, mask) == pytest.approx(0.0, abs=1e-6)
    noisy[10:20, 10:20] = torch.rand(10, 10, 3)
    keep = mask[..., None].float()
    expected = _reference_lpips(state, (noisy * keep)[4:36, 6:30], (gt * keep)[4:36, 6:30])
    assert expected > 0.01 and metric(noisy, gt, mask) == pytest.approx(expected, rel=1e-4)
    assert metric(noisy, gt, mask, zero_outside=False) != pytest.approx(expected, rel=1e-4)
    assert metric(noisy, gt) == pytest.approx(_reference_lpips(state, noisy, gt), rel=1e-4)  # no mask: whole image


def test_image_metrics_on_a_perfect_render(monkeypatch, tmp_path):
    isolate_hub_and_forbid_downloads(monkeypatch, tmp_path)
    height, width = 64, 48
    gt_keypoints = _pose_gt()
    gt_keypoints[:, 0] = gt_keypoints[:, 0] * 0.4 + 3.3
    gt_keypoints[:, 1] = 20.2 + torch.arange(25.0)
    gt_keypoints[5, :2] = torch.tensor([10.5, 8.5])
    gt_keypoints[9, :2] = torch.tensor([30.5, 50.5])
    heatmaps = heatmap_image(height, width, gt_keypoints, sigma=3.0)
    torch.manual_seed(3)
    rgb = torch.rand(height, width, 3)
    mask = torch.zeros(height, width, dtype=torch.bool)
    mask[5:60, 4:44] = True
    with pytest.warns(RuntimeWarning):
        evaluator = ImageMetrics(heatmap_sigma=3.0, keypoint_threshold=0.1)
    keypoints3d = torch.cat([torch.rand(25, 3), torch.ones(25, 1)], dim=1)
    metrics = evaluator(
        rgb, rgb, mask, gt_keypoints=gt_keypoints, pred_heatmaps=heatmaps, pred_keypoints_3d=keypoints3d,
        gt_keypoints_3d=keypoints3d, pred_densepose=rgb, gt_densepose=rgb,
    )  # fmt: skip
    assert metrics["psnr"] == math.inf and metrics["ssim"] == pytest.approx(1.0) and metrics["lpips"] is None
    assert metrics["heatmap_mse"] == pytest.approx(0.0, abs=1e-12)
    assert metrics["pck"] == 1.0 and metrics["pck_joints"] == 24.0
    assert metrics["joint_error_px"] < 0.05
    assert metrics[f"pck/{BODY25_NAMES[0]}"] == 1.0 and metrics[f"pck/{BODY25_NAMES[20]}"] is None
    assert metrics[f"joint_error_px/{BODY25_NAMES[20]}"] is None
    assert metrics["mpjpe_mm"] == 0.0 and metrics["densepose_mse"] == 0.0
    assert all(v is None or isinstance(v, float) for v in metrics.values())
    assert "looked at" in evaluator.notes()["lpips"]


def test_image_metrics_pose_with_a_shifted_joint_and_averaging(monkeypatch, tmp_path):
    isolate_hub_and_forbid_downloads(monkeypatch, tmp_path)
    evaluator = ImageMetrics(compute_lpips=False)
    gt = _pose_gt()
    pred = gt.clone()
    pred[3, 0] += 20.0
    rgb = torch.zeros(8, 8, 3)
    mask = torch.ones(8, 8, dtype=torch.bool)
    first = evaluator(rgb, rgb, mask, gt_keypoints=gt, pred_keypoints=pred)
    assert first["pck"] == pytest.approx(23 / 24) and first[f"pck/{BODY25_NAMES[3]}"] == 0.0
    assert first[f"joint_error_px/{BODY25_NAMES[3]}"] == pytest.approx(20.0)
    second = evaluator(rgb, rgb, mask, gt_keypoints=gt, pred_keypoints=gt)
    averaged = average_metrics([first, second])
    assert averaged["pck"] == pytest.approx((23 / 24 + 1) / 2)
    assert averaged["pck_pooled"] == pytest.approx(47 / 48)
    assert averaged[f"pck/{BODY25_NAMES[20]}"] is None and averaged["lpips"] is None


def test_image_metrics_mask_removes_the_given_padding():
    evaluator = ImageMetrics(protocol="enerf", given_bbox_padding=0.1, compute_lpips=False)
    padded = BOX + torch.tensor([[-0.1], [0.1]])
    assert torch.equal(
        evaluator.evaluation_mask(padded, K, IDENTITY_W2C, 120, 120), enerf_bbox_mask(BOX, K, IDENTITY_W2C, 120, 120)
    )
    nb = ImageMetrics(protocol="neuralbody", given_bbox_padding=0.1, compute_lpips=False)
    assert torch.equal(
        nb.evaluation_mask(padded, K, IDENTITY_W2C, 120, 120), neuralbody_bbox_mask(BOX, K, IDENTITY_W2C, 120, 120)
    )
    assert "Neural Body" in nb.notes()["eval_protocol"]
