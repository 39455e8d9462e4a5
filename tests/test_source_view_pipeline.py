"""Source-view selection, ray/patch sampling inside masks, camera conventions, metric aggregation."""

from __future__ import annotations

import math

import pytest
import torch

from nerfstudio_humanfeat.camera_utils import (
    cameras_from_opencv,
    invert_rigid,
    look_at_world_to_camera,
    opencv_from_cameras,
    opencv_w2c_from_opengl_c2w,
    opengl_c2w_from_opencv_w2c,
)
from nerfstudio_humanfeat.data.catalog import select_nearest_views
from nerfstudio_humanfeat.data.datamanagers.human_datamanager import HumanDataManagerConfig
from nerfstudio_humanfeat.data.ray_sampling import sample_patches, sample_pixels_near_joints, sample_view_pixels
from nerfstudio_humanfeat.keypoints import keypoint_valid
from nerfstudio_humanfeat.pipelines.human_pipeline import metric_std, scalar_summary


def ring_c2w(num: int, radius: float = 3.0) -> torch.Tensor:
    angles = torch.arange(num) * 2 * math.pi / num
    eyes = [torch.tensor([radius * math.cos(a), radius * math.sin(a), 1.0]) for a in angles]
    return invert_rigid(torch.stack([look_at_world_to_camera(eye, torch.zeros(3)) for eye in eyes]))


def test_nearest_views_are_the_angular_neighbours_on_a_ring():
    c2w = ring_c2w(12)
    target = c2w[3]
    ids = list(range(12))
    picked = select_nearest_views(target, c2w[[i for i in ids if i != 3]], 2, [i for i in ids if i != 3])
    assert sorted(picked) == [2, 4]
    picked = select_nearest_views(target, c2w[[0, 6, 8, 10]], 2, [0, 6, 8, 10])
    assert sorted(picked) == [0, 6]


def test_view_pixels_stay_in_the_box_mask_and_respect_the_foreground_share():
    box = torch.zeros(40, 50, dtype=torch.bool)
    box[5:35, 10:45] = True
    foreground = torch.zeros_like(box)
    foreground[15:25, 20:30] = True
    foreground[0:3, 0:3] = True  # outside the box: must never be drawn
    gen = torch.Generator().manual_seed(0)
    yx = sample_view_pixels(box, foreground, 1000, 0.75, gen)
    assert yx.shape == (1000, 2)
    assert box[yx[:, 0], yx[:, 1]].all()
    on_body = foreground[yx[:, 0], yx[:, 1]].float().mean().item()
    assert 0.75 <= on_body <= 0.85  # 75% drawn on the body plus the body's share of the uniform remainder


def test_joint_pixels_cluster_around_every_joint_and_stay_in_the_image():
    joints = torch.tensor([[10.0, 20.0], [45.0, 5.0], [0.5, 39.5]])  # (x, y); the last at the image's corner
    yx = sample_pixels_near_joints(joints, 3000, 2.0, 40, 50, torch.Generator().manual_seed(0))
    assert yx.shape == (3000, 2) and yx.dtype == torch.long
    assert yx[:, 0].min() >= 0 and yx[:, 0].max() < 40 and yx[:, 1].min() >= 0 and yx[:, 1].max() < 50
    centres = yx.flip(-1).float() + 0.5
    nearest = torch.cdist(centres, joints).min(dim=1)
    assert (nearest.values < 4 * 2.0 + 1).float().mean() > 0.99
    shares = torch.bincount(nearest.indices, minlength=3).float() / 3000
    assert (shares - 1 / 3).abs().max() < 0.05  # joints drawn uniformly
    assert sample_pixels_near_joints(joints[:0], 10, 2.0, 40, 50).shape == (0, 2)


def test_joint_rays_share_of_a_training_batch(tiny_dataset):
    """joint_ray_ratio of a step's rays lie near the target view's visible joints; the others as before."""
    config = HumanDataManagerConfig(data=tiny_dataset, train_num_rays_per_batch=400, joint_ray_ratio=0.5)
    config.prefetch, config.heatmap_sigma = False, 0.5  # a spread of 1 px: the 96 px person is all near some joint
    manager = config.setup(device="cpu")
    manager.setup_train()
    ray_bundle, batch = manager.ray_batch(manager.train_dataset, manager.train_indices[0], 400, [0])
    joints = batch["keypoints2d"][keypoint_valid(batch["keypoints2d"]), :2]
    distance = torch.cdist(ray_bundle.metadata["pixels"], joints).min(dim=1).values
    spread = 2 * config.heatmap_sigma
    assert (distance[:200] < 4 * spread).all()
    assert distance[:200].mean() < 0.5 * distance[200:].mean()  # the other rays reach the rest of the box


def test_patches_are_contiguous_squares_inside_the_image():
    box = torch.zeros(64, 64, dtype=torch.bool)
    box[20:50, 10:40] = True
    patches = sample_patches(box, 5, 16, torch.Generator().manual_seed(1))
    assert patches.shape == (5, 16, 16, 2)
    assert (patches[:, 1:, :, 0] - patches[:, :-1, :, 0] == 1).all()
    assert (patches[:, :, 1:, 1] - patches[:, :, :-1, 1] == 1).all()
    assert patches.min() >= 0 and patches[..., 0].max() < 64 and patches[..., 1].max() < 64
    with pytest.raises(ValueError, match="does not fit"):
        sample_patches(box, 1, 65)


def test_nerfstudio_cameras_round_trip_opencv_and_rays_hit_the_projected_point():
    w2c = look_at_world_to_camera(torch.tensor([2.5, -1.0, 1.2]), torch.zeros(3))[None]
    intrinsics = torch.tensor([[[100.0, 0.0, 40.0], [0.0, 110.0, 30.0], [0.0, 0.0, 1.0]]])
    assert torch.allclose(opencv_w2c_from_opengl_c2w(opengl_c2w_from_opencv_w2c(w2c)), w2c, atol=1e-6)
    cameras = cameras_from_opencv(intrinsics, w2c, height=60, width=80)
    k_back, w2c_back, height, width = opencv_from_cameras(cameras[0:1])
    assert (height, width) == (60, 80)
    assert torch.allclose(k_back, intrinsics[0]) and torch.allclose(w2c_back, w2c[0], atol=1e-6)
    point = torch.tensor([0.1, 0.2, 0.9])
    cam = w2c[0, :, :3] @ point + w2c[0, :, 3]
    uv = (intrinsics[0] @ cam)[:2] / cam[2]
    rays = cameras.generate_rays(camera_indices=torch.zeros(1, 1, dtype=torch.long), coords=uv.flip(-1)[None])
    to_point = point - rays.origins[0]
    along = (to_point * rays.directions[0]).sum()
    assert torch.allclose(rays.origins[0] + along * rays.directions[0], point, atol=1e-5)


def test_std_skips_missing_views_and_writer_summary_drops_undefined_and_per_joint_metrics():
    views = [{"psnr": 20.0, "lpips": None}, {"psnr": 30.0, "lpips": None}, {"psnr": None}]
    assert metric_std(views, "psnr") == pytest.approx(math.sqrt(50.0))
    assert metric_std(views, "lpips") is None
    summary = scalar_summary({"psnr": 20.0, "lpips": None, "pck/Nose": 1.0, "pck": 0.5})
    assert summary == {"psnr": 20.0, "pck": 0.5}
