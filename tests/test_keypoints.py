"""Heatmap targets, 2D / 3D keypoint extraction, skeleton drawing and feature colouring."""

from __future__ import annotations

import math

import matplotlib
import numpy as np
import pytest
import torch

from nerfstudio_humanfeat.keypoints import (
    draw_skeleton,
    embedding_to_color,
    extract_keypoints_2d,
    extract_keypoints_3d,
    heatmap_image,
    heatmap_targets,
    heatmap_to_color,
    keypoint_valid,
    volume_grid,
)
from nerfstudio_humanfeat.skeleton import BODY25_COLORS, BODY25_LIMBS


def test_heatmap_targets_peak_one_and_decay_with_sigma():
    keypoints = torch.tensor([[10.0, 20.0, 1.0], [5.0, 5.0, 0.0], [math.nan, 3.0, 1.0], [0.0, 0.0, 0.5]])
    sigma = 2.5
    pixels = torch.tensor([[10.0, 20.0], [12.5, 20.0], [10.0, 15.0], [0.0, 0.0]])
    targets, valid = heatmap_targets(pixels, keypoints, sigma)
    assert valid.tolist() == [True, False, False, True]
    assert targets.shape == (4, 4)
    assert targets[0, 0] == pytest.approx(1.0)
    assert targets[1, 0] == pytest.approx(math.exp(-0.5))  # one sigma away
    assert targets[2, 0] == pytest.approx(math.exp(-2.0))  # two sigmas away
    assert torch.equal(targets[:, 1:3], torch.zeros(4, 2))  # missing joints (conf 0, nan) have no target
    assert targets[3, 3] == pytest.approx(1.0)  # occluded (conf 0.5) joints still count


def test_heatmap_targets_with_per_sample_keypoints():
    keypoints = torch.tensor([[[1.0, 1.0, 1.0]], [[4.0, 1.0, 0.0]]])  # (N=2, J=1, 3)
    targets, valid = heatmap_targets(torch.tensor([[1.0, 1.0], [4.0, 1.0]]), keypoints, 1.0)
    assert valid.tolist() == [[True], [False]]
    assert targets.tolist() == [[1.0], [0.0]]


def test_heatmap_image_centres_pixels_at_half_integers():
    keypoints = torch.tensor([[7.5, 3.5, 1.0], [2.0, 2.0, 0.0]])
    image = heatmap_image(8, 12, keypoints, sigma=1.0)
    assert image.shape == (8, 12, 2)
    assert image[3, 7, 0] == pytest.approx(1.0)  # pixel (row 3, col 7) has its centre at (7.5, 3.5)
    assert image[3, 8, 0] == pytest.approx(math.exp(-0.5))
    assert float(image[..., 1].abs().max()) == 0.0
    integer_centres = heatmap_image(8, 12, torch.tensor([[7.0, 3.0, 1.0]]), sigma=1.0, pixel_center=0.0)
    assert integer_centres[3, 7, 0] == pytest.approx(1.0)


def test_extract_2d_recovers_integer_and_subpixel_peaks():
    keypoints = torch.tensor([[20.5, 14.5, 1.0], [31.3, 17.8, 1.0], [9.04, 40.71, 1.0]])
    heatmaps = heatmap_image(48, 40, keypoints, sigma=3.0).permute(2, 0, 1)
    extracted = extract_keypoints_2d(heatmaps, threshold=0.1, filter_sigma=1.0)
    assert extracted.shape == (3, 3)
    assert torch.allclose(extracted[:, :2], keypoints[:, :2], atol=0.02)
    # Confidence: the unfiltered heatmap at the peak pixel, the one whose square holds the keypoint.
    cols, rows = keypoints[:, 0].floor().long(), keypoints[:, 1].floor().long()
    raw_peaks = heatmaps[torch.arange(3), rows, cols]
    assert raw_peaks[0] == 1.0 and bool((raw_peaks[1:] < 0.999).all())  # off-centre peaks are below 1...
    assert torch.allclose(extracted[:, 2], raw_peaks, atol=1e-6)  # ...and reported as they are, not smoothed
    centroid = extract_keypoints_2d(heatmaps, threshold=0.1, refine="centroid")
    assert torch.allclose(centroid[:, :2], keypoints[:, :2], atol=0.1)
    integer = extract_keypoints_2d(heatmaps, refine="none")
    assert integer[1, :2].tolist() == [31.5, 17.5]  # the peak pixel's centre


def test_extract_2d_higher_blob_wins_and_weak_channel_is_missing():
    strong = heatmap_image(40, 40, torch.tensor([[30.5, 8.5, 1.0]]), sigma=2.0)[..., 0]
    weak = heatmap_image(40, 40, torch.tensor([[6.5, 25.5, 1.0]]), sigma=2.0)[..., 0]
    two_blobs = 0.6 * weak + 0.95 * strong
    faint = 0.05 * weak
    spike = torch.zeros(40, 40)
    spike[20, 20] = 0.5  # one noisy pixel above the threshold: the filter brings it to 0.5 / (2 pi) < 0.1
    extracted = extract_keypoints_2d(torch.stack([two_blobs, faint, 0.6 * weak, spike]), threshold=0.1)
    assert extracted[0, :2].tolist() == pytest.approx([30.5, 8.5], abs=0.02)
    assert float(extracted[0, 2]) == pytest.approx(0.95, abs=1e-4)  # the strong blob's own peak
    assert math.isnan(extracted[1, 0]) and math.isnan(extracted[1, 1]) and extracted[1, 2] == 0.0
    assert extracted[2, :2].tolist() == pytest.approx([6.5, 25.5], abs=0.02)
    assert float(extracted[2, 2]) == pytest.approx(0.6, abs=1e-4)
    assert torch.isnan(extracted[3, :2]).all() and extracted[3, 2] == 0.0
    assert keypoint_valid(extracted).tolist() == [True, False, True, False]
    unfiltered = extract_keypoints_2d(spike[None], threshold=0.1, filter_sigma=0.0)
    assert unfiltered[0].tolist() == pytest.approx([20.5, 20.5, 0.5])  # without the filter the spike is a peak


def test_extract_3d_finds_known_world_peaks():
    bbox = torch.tensor([[-0.5, -0.4, 0.0], [0.5, 0.4, 1.2]])
    voxel = 0.05
    grid = volume_grid(bbox, voxel)
    assert grid.shape == (21, 17, 25, 3)
    assert torch.allclose(grid[0, 0, 0], bbox[0]) and torch.allclose(grid[-1, -1, -1], bbox[1])
    joints = torch.tensor([[0.1, -0.13, 0.62], [-0.33, 0.2, 1.01]])
    sq = ((grid[None] - joints[:, None, None, None]) ** 2).sum(-1)
    volume = torch.exp(-sq / (2 * 0.08**2))
    volume = torch.cat([volume, 0.02 * volume[:1]])  # third joint: below threshold
    extracted = extract_keypoints_3d(volume, origin=bbox[0], spacing=voxel, threshold=0.1)
    assert extracted.shape == (3, 4)
    assert torch.allclose(extracted[:2, :3], joints, atol=0.005)  # a tenth of a voxel
    nearest = ((joints - bbox[0]) / voxel).round().long()  # the grid point closest to each joint
    raw_peaks = volume[torch.arange(2), nearest[:, 0], nearest[:, 1], nearest[:, 2]]
    assert bool((raw_peaks < 0.99).all()) and torch.allclose(extracted[:2, 3], raw_peaks, atol=1e-6)
    assert bool(torch.isnan(extracted[2, :3]).all()) and extracted[2, 3] == 0.0


def _skeleton_keypoints() -> torch.Tensor:
    keypoints = torch.zeros(25, 3)
    keypoints[1] = torch.tensor([40.5, 20.5, 1.0])  # neck
    keypoints[8] = torch.tensor([40.5, 60.5, 1.0])  # mid hip
    keypoints[2] = torch.tensor([20.5, 20.5, 1.0])  # right shoulder
    keypoints[5] = torch.tensor([60.5, 20.5, 0.0])  # left shoulder: missing
    keypoints[3] = torch.tensor([math.nan, math.nan, 0.0])  # right elbow: missing, as extraction reports it
    return keypoints


def test_draw_skeleton_draws_present_joints_and_limbs_only():
    image = np.zeros((80, 80, 3), dtype=np.uint8)
    drawn = draw_skeleton(image, _skeleton_keypoints(), radius=2, thickness=3)
    assert drawn.dtype == np.uint8 and drawn.shape == image.shape
    assert not image.any()  # the input is not modified
    assert tuple(drawn[20, 20]) == BODY25_COLORS[2]  # joint disc in its colour
    assert tuple(drawn[40, 40]) == BODY25_COLORS[8]  # neck-midhip limb takes the mid hip's colour
    assert (1, 8) in BODY25_LIMBS and (1, 5) in BODY25_LIMBS
    assert not drawn[18:23, 58:63].any()  # the missing left shoulder: no disc
    assert not drawn[20, 50:56].any()  # and no neck-left shoulder limb


def test_draw_skeleton_keeps_float_and_torch_types():
    image = torch.full((80, 80, 3), 0.5)
    drawn = draw_skeleton(image, _skeleton_keypoints())
    assert isinstance(drawn, torch.Tensor) and drawn.dtype == torch.float32 and drawn.shape == (80, 80, 3)
    assert float(drawn.min()) >= 0.0 and float(drawn.max()) <= 1.0
    assert torch.allclose(drawn[20, 20], torch.tensor(BODY25_COLORS[2]) / 255.0, atol=1 / 255)
    assert torch.allclose(drawn[75, 75], torch.full((3,), 128 / 255.0))


def test_heatmap_to_color_maps_joint_maximum():
    heatmaps = torch.zeros(4, 5, 3)
    heatmaps[1, 2, 1] = 1.0
    heatmaps[3, 3, 2] = 7.0  # clamped to 1
    heatmaps[2, 4] = torch.tensor([0.2, 0.5, 0.1])  # the maximum over joints, 0.5, is coloured
    colors = heatmap_to_color(heatmaps)
    assert colors.shape == (4, 5, 3)
    turbo = torch.tensor(matplotlib.colormaps["turbo"].colors, dtype=torch.float32)  # 256 entries
    assert torch.allclose(colors[0, 0], turbo[0]) and torch.allclose(colors[1, 2], turbo[255])
    assert torch.allclose(colors[3, 3], turbo[255]) and torch.allclose(colors[2, 4], turbo[127])


def test_embedding_to_color_clamps_and_pads():
    embedding = torch.tensor([[[-0.5, 0.25, 2.0, 9.0]]])
    assert embedding_to_color(embedding).tolist() == [[[0.0, 0.25, 1.0]]]
    assert embedding_to_color(torch.tensor([[0.4]])).tolist() == [[pytest.approx(0.4), 0.0, 0.0]]


@pytest.mark.parametrize("shape", [(40, 50), (20, 24, 18)])
@pytest.mark.parametrize("refine", ["quadratic", "none"])
def test_batched_extraction_on_the_device_matches_the_per_channel_peak_finder(shape, refine):
    from nerfstudio_humanfeat.keypoints import _extract_on_device, find_peak

    generator = torch.Generator().manual_seed(1)
    grids = torch.meshgrid(*[torch.arange(n).double() for n in shape], indexing="ij")
    fields = 0.05 * torch.rand(6, *shape, generator=generator, dtype=torch.float64)
    for j in range(6):
        centre = [float(torch.rand(1, generator=generator)) * (n - 1) for n in shape]
        peak = 0.0 if j == 3 else 0.9  # channel 3: noise below the threshold, a missing joint
        fields[j] += peak * torch.exp(-sum((g - c) ** 2 for g, c in zip(grids, centre)) / 8.0)
    positions, confidence = _extract_on_device(fields.float(), 0.1, 1.0, refine)
    for j, field in enumerate(fields.float().numpy()):
        expected = find_peak(field, 0.1, 1.0, refine)
        if expected is None:
            assert confidence[j] == 0 and torch.isnan(positions[j]).all()
        else:
            assert np.allclose(positions[j].numpy(), expected[0], atol=1e-4)
            assert confidence[j].item() == pytest.approx(expected[1], abs=1e-5)
    assert confidence[3] == 0 and (confidence[[0, 1, 2, 4, 5]] > 0.5).all()
