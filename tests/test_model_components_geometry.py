"""Geometry of the model components: projection, pooling, cost volume, depth-guided sampling."""

from __future__ import annotations

import math

import pytest
import torch
from nerfstudio.cameras.rays import RayBundle

from nerfstudio_humanfeat.model_components.cost_volume import (
    CascadeCostVolume,
    CostRegNet,
    depth_distribution,
    homography_warp,
    homography_warp_with_valid,
    next_level_range,
    plane_sweep_depths,
    sample_volume_features,
    variance_cost_volume,
)
from nerfstudio_humanfeat.model_components.pooling import (
    ViewPoolingMLP,
    mean_variance_pool,
    relative_view_directions,
)
from nerfstudio_humanfeat.model_components.projection import (
    camera_centres,
    pixel_centres,
    project_points,
    sample_pixel_aligned,
)
from nerfstudio_humanfeat.model_components.ray_samplers import (
    DepthGuidedSampler,
    ray_aabb_near_far,
    ray_distance_to_z_depth,
    z_depth_to_ray_distance,
)

torch.manual_seed(0)


def intrinsics(focal: float, width: int, height: int) -> torch.Tensor:
    return torch.tensor([[focal, 0.0, width / 2], [0.0, focal, height / 2], [0.0, 0.0, 1.0]])


def look_at(centre, target=(0.0, 0.0, 2.0)) -> torch.Tensor:
    """OpenCV world-to-camera [R | t] of a camera at ``centre`` looking at ``target`` (y down)."""
    centre = torch.tensor(centre, dtype=torch.float32)
    forward = torch.nn.functional.normalize(torch.tensor(target) - centre, dim=0)
    right = torch.nn.functional.normalize(torch.linalg.cross(torch.tensor([0.0, 1.0, 0.0]), forward), dim=0)
    down = torch.linalg.cross(forward, right)
    rot = torch.stack([right, down, forward])
    return torch.cat([rot, (-rot @ centre)[:, None]], dim=1)


def rotation(axis, angle: float) -> torch.Tensor:
    axis = torch.nn.functional.normalize(torch.tensor(axis, dtype=torch.float32), dim=0)
    skew = torch.tensor([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]])
    return torch.eye(3) + math.sin(angle) * skew + (1 - math.cos(angle)) * skew @ skew


def backproject(uv: torch.Tensor, depth: torch.Tensor, K: torch.Tensor, w2c: torch.Tensor) -> torch.Tensor:
    rays = torch.cat([uv, torch.ones_like(uv[..., :1])], dim=-1) @ torch.linalg.inv(K).T
    return (rays * depth[..., None] - w2c[:, 3]) @ w2c[:, :3]


# ---------------------------------------------------------------- projection


def test_project_points_known_pixel_and_depth():
    K = torch.tensor([[120.0, 0.0, 31.0], [0.0, 110.0, 25.0], [0.0, 0.0, 1.0]])
    w2c = torch.cat([rotation((0.2, 1.0, 0.3), 0.4), torch.tensor([[0.1], [-0.2], [0.5]])], dim=1)
    uv = torch.tensor([[10.5, 20.25], [0.0, 0.0], [63.9, 47.1]])
    depth = torch.tensor([3.0, 1.5, 7.0])
    points = backproject(uv, depth, K, w2c)
    uv_p, depth_p = project_points(points, torch.stack([K, K]), torch.stack([w2c, w2c]))
    assert uv_p.shape == (2, 3, 2) and depth_p.shape == (2, 3)
    torch.testing.assert_close(uv_p[0], uv, atol=1e-3, rtol=0)
    torch.testing.assert_close(depth_p[1], depth, atol=1e-5, rtol=0)


def test_project_points_batch_shape_and_centres():
    w2c = look_at((0.5, -0.2, -1.0)).expand(3, 3, 4)
    uv, depth = project_points(torch.rand(4, 5, 3), intrinsics(50.0, 64, 48).expand(3, 3, 3), w2c)
    assert uv.shape == (3, 4, 5, 2) and depth.shape == (3, 4, 5)
    torch.testing.assert_close(camera_centres(w2c)[0], torch.tensor([0.5, -0.2, -1.0]), atol=1e-5, rtol=0)


def test_sample_pixel_aligned_recovers_coordinates_from_low_res_map():
    height, width = 48, 64
    coords = pixel_centres(12, 16, (height, width))
    assert coords[0, 0].tolist() == [2.0, 2.0]
    feature_map = coords.permute(2, 0, 1)[None].expand(2, 2, 12, 16)
    uv = torch.rand(2, 50, 2) * torch.tensor([width - 4.0, height - 4.0]) + 2.0
    feats, valid = sample_pixel_aligned(feature_map, uv, (height, width))
    assert feats.shape == (2, 50, 2) and valid.all()
    torch.testing.assert_close(feats, uv, atol=1e-4, rtol=0)


def test_sample_pixel_aligned_marks_outside_and_behind_invalid_with_zero_features():
    feature_map = torch.ones(1, 3, 8, 8)
    uv = torch.tensor([[[4.0, 4.0], [-1.0, 4.0], [4.0, 33.0], [4.0, 4.0]]])
    depth = torch.tensor([[1.0, 1.0, 1.0, -2.0]])
    feats, valid = sample_pixel_aligned(feature_map, uv, (32, 32), depth=depth)
    assert valid.tolist() == [[True, False, False, False]]
    assert feats[0, 0].tolist() == [1.0, 1.0, 1.0]
    assert feats[0, 1:].abs().sum() == 0


# ---------------------------------------------------------------- pooling


def test_mean_variance_pool_weighted_and_unweighted():
    feats = torch.randn(3, 10, 4)
    pooled = mean_variance_pool(feats)
    assert pooled.shape == (10, 8)
    torch.testing.assert_close(pooled[:, :4], feats.mean(0))
    torch.testing.assert_close(pooled[:, 4:], feats.var(0, unbiased=False))
    weights = torch.ones(3, 10, 1)
    weights[2] = 0.0
    pooled_w = mean_variance_pool(feats, weights)
    torch.testing.assert_close(pooled_w[:, :4], feats[:2].mean(0))
    torch.testing.assert_close(pooled_w[:, 4:], feats[:2].var(0, unbiased=False))
    assert torch.isfinite(mean_variance_pool(feats, torch.zeros(3, 10, 1))).all()


def test_view_pooling_ignores_invalid_views():
    pool = ViewPoolingMLP(in_channels=6)
    feats = torch.randn(3, 7, 6)
    dirs = relative_view_directions(
        torch.rand(7, 3), torch.zeros(7, 3), torch.stack([look_at((x, 0, 0)) for x in (1, 2, 3)])
    )
    assert dirs.shape == (3, 7, 4)
    torch.testing.assert_close(dirs[..., :3].norm(dim=-1), torch.ones(3, 7), atol=1e-5, rtol=0)
    valid = torch.tensor([True, True, False])[:, None].expand(3, 7)
    out = pool(feats, dirs, valid)
    assert out.shape == (7, 16)
    feats_changed = feats.clone()
    feats_changed[2] += 100.0
    torch.testing.assert_close(pool(feats_changed, dirs, valid), out)
    assert not torch.allclose(pool(feats_changed, dirs), pool(feats, dirs))
    assert torch.isfinite(pool(feats, dirs, torch.zeros(3, 7, dtype=torch.bool))).all()


# ---------------------------------------------------------------- cost volume: plane sweep and warping

IMAGE = (64, 64)
K_FULL = intrinsics(64.0, 64, 64)
PLANE_DEPTH = 2.0
TARGET_W2C = torch.cat([torch.eye(3), torch.zeros(3, 1)], dim=1)
SOURCE_W2C = torch.stack([look_at((0.5, 0.1, 0.0)), look_at((-0.5, -0.1, 0.1))])


def texture(points: torch.Tensor) -> torch.Tensor:
    x, y = points[..., 0], points[..., 1]
    return torch.stack([torch.sin(4 * x) + 0.5 * y, torch.cos(5 * y), torch.sin(3 * x + 2 * y)], dim=0)


def render_plane(w2c: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Texture of the plane z = PLANE_DEPTH seen by a camera, at a (height, width) grid over the image."""
    uv = pixel_centres(height, width, IMAGE)
    rays = torch.cat([uv, torch.ones_like(uv[..., :1])], dim=-1) @ torch.linalg.inv(K_FULL).T @ w2c[:, :3]
    centre = camera_centres(w2c[None])[0]
    scale = (PLANE_DEPTH - centre[2]) / rays[..., 2]
    return texture(centre + scale[..., None] * rays)


def test_plane_sweep_depths_inverse_and_linear():
    linear = plane_sweep_depths(1.0, 3.0, 5, inverse=False)
    torch.testing.assert_close(linear, torch.tensor([1.0, 1.5, 2.0, 2.5, 3.0]))
    inverse = plane_sweep_depths(torch.full((2, 3), 1.0), torch.full((2, 3), 4.0), 4, inverse=True)
    assert inverse.shape == (4, 2, 3)
    torch.testing.assert_close(1.0 / inverse[:, 0, 0], torch.tensor([1.0, 0.75, 0.5, 0.25]))


def test_homography_warp_is_the_plane_induced_homography():
    coords = pixel_centres(32, 32, IMAGE).permute(2, 0, 1)[None].expand(2, 2, 32, 32)
    depth = 2.5
    planes = torch.full((1, 16, 16), depth)
    warped, valid = homography_warp_with_valid(
        coords, K_FULL.expand(2, 3, 3), SOURCE_W2C, K_FULL, TARGET_W2C, planes, IMAGE
    )
    target_uv = pixel_centres(16, 16, IMAGE).reshape(-1, 2)
    homog = torch.cat([target_uv, torch.ones(256, 1)], dim=-1)
    normal = torch.tensor([[0.0, 0.0, 1.0]])
    for view in range(2):
        rot, trans = SOURCE_W2C[view, :, :3], SOURCE_W2C[view, :, 3:]
        homography = K_FULL @ (rot + trans @ normal / depth) @ torch.linalg.inv(K_FULL)
        mapped = homog @ homography.T
        expected = mapped[:, :2] / mapped[:, 2:]
        got = warped[view, :, 0].reshape(2, -1).T
        interior = ((expected > 1.0) & (expected < 63.0)).all(dim=-1)
        assert interior.sum() > 100
        assert valid[view, 0].reshape(-1)[interior].all()
        torch.testing.assert_close(got[interior], expected[interior], atol=1e-3, rtol=0)


def test_homography_warp_of_textured_plane_matches_target_view_only_at_true_depth():
    sources = torch.stack([render_plane(w2c, 64, 64) for w2c in SOURCE_W2C])
    target = render_plane(TARGET_W2C, 16, 16)
    depths = torch.tensor([1.4, 1.7, PLANE_DEPTH, 2.4, 3.0])
    true_index = 2
    planes = depths[:, None, None].expand(5, 16, 16)
    warped, valid = homography_warp_with_valid(
        sources, K_FULL.expand(2, 3, 3), SOURCE_W2C, K_FULL, TARGET_W2C, planes, IMAGE
    )
    assert warped.shape == (2, 3, 5, 16, 16)
    torch.testing.assert_close(
        warped, homography_warp(sources, K_FULL.expand(2, 3, 3), SOURCE_W2C, K_FULL, TARGET_W2C, planes, IMAGE)
    )
    overlap = valid.all(dim=0).all(dim=0)
    assert overlap.float().mean() > 0.5
    errors = [(warped[:, :, d] - target[None]).abs()[:, :, overlap].mean().item() for d in range(5)]
    assert errors[true_index] < 0.01
    assert min(e for i, e in enumerate(errors) if i != true_index) > 10 * errors[true_index]

    cost = variance_cost_volume(warped)
    assert cost.shape == (3, 5, 16, 16)
    per_plane = cost.sum(dim=0)[:, overlap]
    assert per_plane[true_index].mean() < 1e-4
    assert per_plane.argmin(dim=0).eq(true_index).float().mean() > 0.95
    assert (per_plane.mean(dim=1)[[0, 1, 3, 4]] > 20 * per_plane[true_index].mean()).all()


# ---------------------------------------------------------------- cost volume: regulariser and depth


def test_depth_distribution_known_softmax_and_next_level_range():
    depths = torch.tensor([1.0, 2.0])[:, None, None].expand(2, 1, 1)
    logits = torch.tensor([0.0, math.log(3.0)])[:, None, None]
    mean, std = depth_distribution(logits, depths)
    torch.testing.assert_close(mean, torch.tensor([[1.75]]))
    torch.testing.assert_close(std, torch.tensor([[math.sqrt(0.1875)]]))
    near, far = next_level_range(mean, std, 1.0, 2.0)
    torch.testing.assert_close(near, torch.tensor([[1.75 - math.sqrt(0.1875)]]))
    assert far.item() == 2.0
    near, far = next_level_range(torch.tensor([0.5, 1.5, 5.0]), torch.tensor([1.0, 0.1, 0.5]), 1.0, 3.0)
    assert near.tolist() == pytest.approx([1.0, 1.4, 3.0])
    assert far.tolist() == pytest.approx([1.5, 1.6, 3.0])


def test_cost_reg_net_shapes_for_non_divisible_volumes():
    net = CostRegNet(in_channels=4, channels=(8, 16, 32, 64), out_channels=8)
    feats, logits = net(torch.randn(4, 5, 7, 9))
    assert feats.shape == (8, 5, 7, 9) and logits.shape == (5, 7, 9)
    net0 = CostRegNet(in_channels=32, channels=(8, 16, 32), out_channels=32)
    feats, logits = net0(torch.randn(32, 8, 4, 4))
    assert feats.shape == (32, 8, 4, 4) and logits.shape == (8, 4, 4)


def test_sample_volume_features_recovers_pixel_and_depth():
    image, num_planes, h, w = (48, 64), 6, 12, 16
    uv_grid = pixel_centres(h, w, image).permute(2, 0, 1)
    for inverse in (False, True):
        near, far = torch.full((h, w), 1.0), torch.full((h, w), 3.0)
        planes = plane_sweep_depths(near, far, num_planes, inverse)
        depth_channel = 1.0 / planes if inverse else planes
        volume = torch.cat([uv_grid[:, None].expand(2, num_planes, h, w), depth_channel[None]], dim=0)
        uv = torch.rand(40, 2) * torch.tensor([56.0, 40.0]) + 4.0
        depth = 1.0 + 2.0 * torch.rand(40)
        feats = sample_volume_features(
            volume, uv, depth, torch.full((40,), 1.0), torch.full((40,), 3.0), image, inverse
        )
        assert feats.shape == (40, 3)
        torch.testing.assert_close(feats[:, :2], uv, atol=1e-3, rtol=0)
        expected = 1.0 / depth if inverse else depth
        torch.testing.assert_close(feats[:, 2], expected, atol=1e-4, rtol=0)


def test_cascade_cost_volume_two_levels_end_to_end():
    image = (64, 64)
    level0, level1 = CascadeCostVolume.enerf(0), CascadeCostVolume.enerf(1)
    src_K = K_FULL.expand(2, 3, 3)
    out0 = level0(torch.randn(2, 32, 16, 16), src_K, SOURCE_W2C, K_FULL, TARGET_W2C, 1.5, 3.0, image)
    assert out0.features.shape == (8, 32, 8, 8) and out0.depth_planes.shape == (32, 8, 8)  # ENeRF: 8 channels
    torch.testing.assert_close(out0.probabilities.sum(0), torch.ones(8, 8))
    assert ((out0.depth_mean >= 1.5) & (out0.depth_mean <= 3.0)).all() and (out0.depth_std >= 0).all()
    near1, far1 = next_level_range(out0.depth_mean, out0.depth_std, out0.near, out0.far)
    out1 = level1(torch.randn(2, 16, 32, 32), src_K, SOURCE_W2C, K_FULL, TARGET_W2C, near1, far1, image)
    assert out1.features.shape == (8, 8, 32, 32) and out1.depth_mean.shape == (32, 32)
    assert (out1.near >= 1.5 - 1e-5).all() and (out1.far <= 3.0 + 1e-5).all()
    assert ((out1.depth_mean >= out1.near - 1e-4) & (out1.depth_mean <= out1.far + 1e-4)).all()
    assert not out1.inverse and out0.inverse
    out0.features.sum().backward()
    assert level0.regulariser.stem[0].weight.grad is not None


# ---------------------------------------------------------------- ray sampling


def camera_rays(w2c: torch.Tensor, K: torch.Tensor, uv: torch.Tensor) -> RayBundle:
    dirs = torch.cat([uv, torch.ones_like(uv[..., :1])], dim=-1) @ torch.linalg.inv(K).T @ w2c[:, :3]
    dirs = torch.nn.functional.normalize(dirs, dim=-1)
    origins = camera_centres(w2c[None])[0].expand_as(dirs)
    return RayBundle(origins=origins, directions=dirs, pixel_area=torch.ones_like(dirs[..., :1]))


def test_z_depth_ray_distance_round_trip():
    w2c = look_at((0.3, -0.4, -1.0), (0.0, 0.0, 1.5))
    rays = camera_rays(w2c, K_FULL, torch.rand(20, 2) * 64)
    z = 1.0 + torch.rand(20, 1)
    t = z_depth_to_ray_distance(z, rays.origins, rays.directions, w2c)
    points = rays.origins + t * rays.directions
    z_cam = points @ w2c[2, :3] + w2c[2, 3]
    torch.testing.assert_close(z_cam, z[:, 0], atol=1e-5, rtol=0)
    torch.testing.assert_close(ray_distance_to_z_depth(t, rays.origins, rays.directions, w2c), z, atol=1e-5, rtol=0)
    assert (t >= z - 1e-6).all()


@pytest.mark.parametrize("training", [False, True])
def test_depth_guided_sampler_within_interval_near_far_sorted(training: bool):
    w2c = look_at((0.3, -0.4, -1.0), (0.0, 0.0, 1.5))
    num_rays, num_samples = 30, 4
    rays = camera_rays(w2c, K_FULL, torch.rand(num_rays, 2) * 64)
    mean = 2.0 + 0.5 * torch.rand(num_rays, 1)
    std = 0.3 * torch.rand(num_rays, 1)
    near = z_depth_to_ray_distance(torch.full((num_rays, 1), 1.9), rays.origins, rays.directions, w2c)
    far = z_depth_to_ray_distance(torch.full((num_rays, 1), 2.6), rays.origins, rays.directions, w2c)
    sampler = DepthGuidedSampler(num_samples).train(training)
    samples = sampler(rays, mean, std, w2c, near=near, far=far)
    starts, ends = samples.frustums.starts, samples.frustums.ends
    assert starts.shape == (num_rays, num_samples, 1) and samples.deltas.shape == (num_rays, num_samples, 1)
    assert (ends >= starts).all() and (starts[:, 1:] >= ends[:, :-1] - 1e-6).all()
    assert (starts >= near[:, None] - 1e-5).all() and (ends <= far[:, None] + 1e-5).all()
    z = samples.frustums.get_positions() @ w2c[2, :3] + w2c[2, 3]
    lo, hi = torch.maximum(mean - std, torch.tensor(1.9)), torch.minimum(mean + std, torch.tensor(2.6))
    assert (z >= lo - 1e-4).all() and (z <= hi + 1e-4).all()
    clamped = (mean - std < 1.9)[:, 0]
    assert clamped.any()
    if not training:
        torch.testing.assert_close(starts[clamped, 0], near[clamped], atol=1e-5, rtol=0)
        torch.testing.assert_close(samples.deltas[..., 0], (ends - starts)[:, :1, 0].expand(-1, num_samples))


def test_depth_guided_sampler_uses_bundle_near_far():
    w2c = TARGET_W2C
    rays = camera_rays(w2c, K_FULL, torch.tensor([[32.0, 32.0], [5.0, 60.0]]))
    rays.nears = torch.full((2, 1), 2.1)
    rays.fars = torch.full((2, 1), 2.2)
    samples = DepthGuidedSampler(3).eval()(rays, torch.full((2, 1), 2.0), torch.full((2, 1), 0.5), w2c)
    assert samples.frustums.starts.min() >= 2.1 - 1e-6 and samples.frustums.ends.max() <= 2.2 + 1e-6


def test_ray_aabb_near_far_hit_miss_inside():
    aabb = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
    origins = torch.tensor([[0.0, 0.0, -5.0], [0.0, 5.0, -5.0], [0.0, 0.0, 0.0], [0.0, 0.0, -5.0], [3.0, 3.0, -3.0]])
    dirs = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [-1.0, -1.0, 1.0]])
    dirs = torch.nn.functional.normalize(dirs, dim=-1)
    near, far, hit = ray_aabb_near_far(origins, dirs, aabb)
    assert near.shape == (5, 1) and hit.tolist() == [True, False, True, False, True]
    assert near[0].item() == pytest.approx(4.0) and far[0].item() == pytest.approx(6.0)
    assert near[2].item() == 0.0 and far[2].item() == pytest.approx(1.0)
    assert far[1].item() == near[1].item() and far[3].item() == near[3].item()
    assert near[4].item() == pytest.approx(2.0 * math.sqrt(3)) and far[4].item() == pytest.approx(4.0 * math.sqrt(3))
