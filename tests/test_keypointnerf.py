"""KeypointNeRF: the relative keypoint encoding, its encoders and IBR blending, keypoints, and the real tools."""

from __future__ import annotations

import copy
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest
import torch
from nerfstudio.plugins.registry import discover_methods

from nerfstudio_humanfeat.body.triangulation import project, triangulate_dlt
from nerfstudio_humanfeat.configs.cli import with_dataparser
from nerfstudio_humanfeat.configs.cpu import cpu_overrides
from nerfstudio_humanfeat.data.ray_sampling import sample_patches_around
from nerfstudio_humanfeat.model_components.conv_encoders import HourglassEncoder, ResidualTextureEncoder
from nerfstudio_humanfeat.model_components.heads import IBRBlendingHead
from nerfstudio_humanfeat.model_components.keypoint_encoding import (
    RelativeKeypointEncoding,
    gaussian_keypoint_weights,
    relative_keypoint_encoding,
)
from nerfstudio_humanfeat.model_components.views import SourceViews, drop_source_views

BIN = Path(sys.executable).parent


def look_at(eye: torch.Tensor) -> torch.Tensor:
    """OpenCV world-to-camera [R | t] of a camera at `eye` looking at the origin, y down roughly along -world z."""
    forward = torch.nn.functional.normalize(-eye, dim=0)
    right = torch.nn.functional.normalize(torch.linalg.cross(forward, torch.tensor([0.0, 0.0, -1.0])), dim=0)
    down = torch.linalg.cross(forward, right)
    rotation = torch.stack([right, down, forward])
    return torch.cat([rotation, (-rotation @ eye)[:, None]], dim=1)


def test_encoding_of_one_keypoint_one_point_one_camera_matches_the_hand_computed_value():
    world_to_camera = torch.tensor([[1.0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]])[None]  # identity camera
    keypoint = torch.tensor([[0.0, 0.0, 2.05]])
    point = torch.tensor([0.03, 0.0, 2.0])
    encoding = relative_keypoint_encoding(point, keypoint, world_to_camera, num_frequencies=3, sigma=0.1)
    assert encoding.shape == (1, 7)
    delta = 0.05  # z(p) - z(X) in this camera
    weight = math.exp(-(0.03**2 + 0.05**2) / (2 * 0.1**2))  # exp(-0.17)
    expected = [delta]
    for level in range(3):
        expected += [math.sin(math.pi * 2**level * delta), math.cos(math.pi * 2**level * delta)]
    assert encoding[0].tolist() == pytest.approx([weight * e for e in expected], abs=1e-6)
    # A camera translated along its axis changes both depths alike: the encoding is relative.
    moved = world_to_camera.clone()
    moved[0, 2, 3] = 5.0
    assert torch.allclose(relative_keypoint_encoding(point, keypoint, moved), encoding, atol=1e-6)


def test_gaussian_decay_of_the_keypoint_weights():
    keypoint = torch.zeros(1, 3)
    distances = torch.tensor([0.0, 0.1, 0.2, 0.3, 1.0])
    points = torch.stack([distances, torch.zeros(5), torch.zeros(5)], dim=-1)
    weights = gaussian_keypoint_weights(points, keypoint, sigma=0.1)[:, 0]
    assert weights.tolist() == pytest.approx([1.0, math.exp(-0.5), math.exp(-2.0), math.exp(-4.5), math.exp(-50)])
    assert torch.all(weights[1:] < weights[:-1])  # decays monotonically with the distance
    assert gaussian_keypoint_weights(points, keypoint, sigma=math.inf).tolist() == [[1.0]] * 5  # the unweighted one
    # Far from every keypoint, and for missing keypoints, the encoding vanishes.
    camera = look_at(torch.tensor([0.0, -3.0, 0.0]))[None]
    far = relative_keypoint_encoding(torch.tensor([1.0, 0.0, 0.0]), keypoint, camera)
    assert far.abs().max() < 1e-20
    missing = relative_keypoint_encoding(
        torch.tensor([0.01, 0.0, 0.0]), keypoint, camera, keypoint_valid=torch.tensor([False])
    )
    assert torch.equal(missing, torch.zeros_like(missing))


def test_168_dims_per_view_for_24_keypoints():
    module = RelativeKeypointEncoding(num_keypoints=24, num_frequencies=3, sigma=0.1)
    cameras = torch.stack([look_at(torch.tensor([3.0 * math.cos(a), 3.0 * math.sin(a), 0.5])) for a in (0, 2, 4)])
    out = module(torch.randn(5, 7, 3) * 0.3, torch.randn(24, 3) * 0.3, cameras)
    assert module.out_dim == 168 and out.shape == (3, 5, 7, 168)
    with pytest.raises(ValueError, match="expected 24 keypoints"):
        module(torch.zeros(2, 3), torch.zeros(25, 3), cameras)


def test_triangulated_and_given_keypoints_give_the_same_encoding_on_noise_free_data():
    torch.manual_seed(0)
    keypoints = torch.randn(24, 3) * 0.3
    cameras = torch.stack([look_at(torch.tensor([3.0 * math.cos(a), 3.0 * math.sin(a), 0.4])) for a in (0.0, 2.1, 4.2)])
    intrinsics = torch.tensor([[500.0, 0, 256], [0, 500.0, 256], [0, 0, 1]]).expand(3, 3, 3)
    projections = intrinsics @ cameras
    detections = torch.cat([project(keypoints, projections), torch.ones(3, 24, 1)], dim=-1)
    triangulated = triangulate_dlt(detections, projections)
    assert (triangulated[:, 3] > 0.9).all()
    points = torch.randn(100, 3) * 0.3
    given = relative_keypoint_encoding(points, keypoints, cameras)
    lifted = relative_keypoint_encoding(points, triangulated[:, :3], cameras)
    assert torch.allclose(given, lifted, atol=1e-4)


@pytest.mark.parametrize("size", [(64, 48), (50, 38)])
def test_geometry_and_texture_encoders_output_shapes(size):
    images = torch.rand(2, 3, *size)
    low, high = HourglassEncoder(width=32)(images)
    texture = ResidualTextureEncoder(out_channels=8, base_channels=16)(images)
    height, width = size
    assert low.shape == (2, 64, math.ceil(height / 8), math.ceil(width / 8))
    assert high.shape == (2, 8, math.ceil(height / 2), math.ceil(width / 2))
    assert texture.shape == (2, 8, math.ceil(height / 4), math.ceil(width / 4))
    assert all(
        group.num_groups == 16
        for group in HourglassEncoder(width=32).modules()
        if isinstance(group, torch.nn.GroupNorm) and group.num_channels == 32
    )


def test_ibr_weights_sum_to_one_over_the_views_that_see_a_point():
    torch.manual_seed(0)
    head = IBRBlendingHead(11, context_dim=24, hidden_dim=64, num_layers=9, activation="elu", view_statistics=True)
    assert sum(isinstance(m, torch.nn.Linear) for m in head.modules()) == 9
    views, points = 3, 50
    valid = torch.rand(views, points) > 0.4
    valid[0, :5] = True
    weights = head.blend_weights(torch.randn(views, points, 11), torch.randn(views, points, 4), valid,
                                 torch.randn(points, 24))[..., 0]  # fmt: skip
    seen = valid.any(dim=0)
    assert torch.allclose(weights.sum(dim=0)[seen], torch.ones(int(seen.sum())), atol=1e-6)
    assert torch.all(weights[~valid] == 0)
    assert torch.all(weights.sum(dim=0)[~seen] == 0)
    # ENeRF's head (the default) keeps its parameter names, so GHNeRF checkpoints still load.
    assert sorted(IBRBlendingHead(8).state_dict()) == [
        "layers.0.bias",
        "layers.0.weight",
        "layers.2.bias",
        "layers.2.weight",
    ]


def test_source_dropout_keeps_the_first_view_and_patches_centre_on_the_foreground():
    sources = SourceViews([4, 2, 6], torch.rand(3, 3, 8, 8), torch.eye(3).expand(3, 3, 3), torch.zeros(3, 3, 4))
    generator = torch.Generator().manual_seed(0)
    kept = [drop_source_views(sources, 0.5, generator).camera_ids for _ in range(200)]
    assert all(ids[0] == 4 for ids in kept)
    counts = [sum(c in ids for ids in kept) for c in (2, 6)]
    assert all(60 < count < 140 for count in counts)  # about half
    assert drop_source_views(sources, 0.0).camera_ids == [4, 2, 6]
    mask = torch.zeros(40, 40, dtype=torch.bool)
    mask[30:33, 2:5] = True
    patches = sample_patches_around(mask, 5, 8, torch.Generator().manual_seed(0))
    assert patches.shape == (5, 8, 8, 2)
    for patch in patches:
        assert mask[patch[..., 0], patch[..., 1]].any()  # each patch holds the foreground pixel it was centred on
        assert patch[..., 0].max() < 40 and patch[..., 1].min() >= 0


def build_model(data: Path, **model):
    config = copy.deepcopy(discover_methods()[0]["keypointnerf"])
    config.pipeline.datamanager.data = data
    config.pipeline.datamanager.perceptual_patch_size = 16
    for key, value in {"num_coarse_samples": 8, "num_fine_samples": 8, "encoder_width": 16,
                       "texture_base_channels": 8, **model}.items():  # fmt: skip
        setattr(config.pipeline.model, key, value)
    torch.manual_seed(0)
    return config.pipeline.setup(device="cpu", test_mode="val")


def test_keypoint_sources_of_a_frame(tiny_dataset: Path):
    pipeline = build_model(tiny_dataset, keypoints="dataset")
    model = pipeline.model
    catalog = model.catalog
    sources = catalog.subject(0).source_cameras[:3]
    given, given_valid = model.frame_keypoints(0, tuple(sources))
    model.config.keypoints = "triangulated"
    lifted, lifted_valid = model.frame_keypoints(0, tuple(sources))
    assert torch.equal(given_valid, lifted_valid) and given.shape == (25, 3)
    assert torch.allclose(given[given_valid], lifted[lifted_valid], atol=1e-4)
    model.config.keypoints = "smpl"
    joints, valid = model.frame_keypoints(0, tuple(sources))
    assert torch.allclose(joints, catalog.body(0).joints) and bool(valid.all()) and joints.shape == (24, 3)
    model.config.keypoint_noise_mm = 10.0
    noisy, _ = model.frame_keypoints(0, tuple(sources))
    again, _ = model.frame_keypoints(0, tuple(sources))
    assert torch.equal(noisy, again)  # one draw per frame, the same for every camera
    assert 0.004 < float((noisy - joints).norm(dim=-1).mean()) < 0.03


def test_the_papers_method_has_no_feature_heads(tiny_dataset: Path):
    pipeline = build_model(tiny_dataset, feature_heads=False)
    pipeline.train()
    ray_bundle, batch = pipeline.datamanager.next_train(0)
    assert ray_bundle.shape[0] == 16 * 16  # one 16x16 patch and no other rays
    losses = pipeline.model.get_loss_dict(pipeline.model(ray_bundle), batch)
    assert sorted(losses) == ["rgb_loss", "rgb_loss_coarse"]
    assert pipeline.model.field.heatmap is None and not pipeline.model.config.eval_keypoints_3d


def run(args: List[str], cwd: Path) -> str:
    result = subprocess.run([str(BIN / args[0]), *args[1:]], cwd=cwd, capture_output=True, text=True, timeout=900,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    return result.stdout + result.stderr


def test_ns_train_ns_eval_and_ns_render(tiny_dataset: Path, tmp_path: Path):
    flags = [*cpu_overrides("keypointnerf"), "--pipeline.datamanager.perceptual-patch-size", "16",
             "--pipeline.model.num-coarse-samples", "8", "--pipeline.model.num-fine-samples", "8",
             "--pipeline.model.keypoints-3d-voxel-size", "0.06",
             "--pipeline.datamanager.dataparser.eval-max-views", "2"]  # fmt: skip
    run(["ns-train", "keypointnerf", "--data", str(tiny_dataset), "--output-dir", "outputs", "--experiment-name",
         "e2e", "--timestamp", "run", "--max-num-iterations", "3", "--steps-per-save", "2",
         *with_dataparser(flags)], cwd=tmp_path)  # fmt: skip
    config = tmp_path / "outputs" / "e2e" / "keypointnerf" / "run" / "config.yml"
    assert sorted(p.name for p in config.parent.joinpath("nerfstudio_models").iterdir())[-1] == "step-000000002.ckpt"
    out = run(["ns-eval", "--load-config", str(config), "--output-path", "eval.json"], cwd=tmp_path)
    assert "Done loading checkpoint" in out
    results = json.loads((tmp_path / "eval.json").read_text())["results"]
    assert results["psnr"] > 5 and 0 <= results["pck"] <= 1 and results["heatmap_mse"] >= 0
    assert "mpjpe_mm" in results or "keypoints3d_detected" in results
    run(["ns-render", "dataset", "--load-config", str(config), "--split", "test", "--output-path", "renders",
         "--image-format", "png", "--rendered-output-names", "rgb", "joint_heatmap", "densepose_color"],
        cwd=tmp_path)  # fmt: skip
    for output in ("rgb", "joint_heatmap", "densepose_color"):
        assert len(list((tmp_path / "renders" / "test" / output).rglob("*.png"))) == 2, output


def test_the_heads_see_the_proximity_of_each_given_keypoint(tiny_dataset: Path):
    model = build_model(tiny_dataset).model
    model.eval()
    target = model.target_of_dataset_view(0, 0)
    sources = model.sources_for(target, exclude=(0,))
    target, _, conditioning = model.conditioned(target, sources)
    joints = conditioning.keypoints
    points = torch.stack([joints[3], joints[3] + torch.tensor([0.1, 0.0, 0.0])])
    proximity = model.point_features(points, conditioning).proximity
    assert proximity.shape == (2, 24)
    assert float(proximity[0, 3]) == pytest.approx(1.0) and float(proximity[1, 3]) == pytest.approx(math.exp(-0.5))
    conditioning.keypoint_valid[3] = False
    assert float(model.point_features(points, conditioning).proximity[0, 3]) == 0.0  # a missing keypoint is silent
    assert model.field.heatmap.layers[0].in_features == model.field.geometry_dim + 24
    heatmap = model.query_points(target, sources, conditioning, points)["heatmap"]
    assert heatmap.shape == (2, 25)

    without = build_model(tiny_dataset, head_keypoint_proximity=False).model
    assert without.field.heatmap.layers[0].in_features == without.field.geometry_dim
    assert without.point_features(points, conditioning).proximity is None
