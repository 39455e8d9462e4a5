"""The models in-process: rendered outputs and their ranges, source-view lookup for any camera, learning."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from nerfstudio.plugins.registry import discover_methods

from nerfstudio_humanfeat.camera_utils import cameras_from_opencv
from nerfstudio_humanfeat.models.human_model import default_render_frame

SMALL = {
    "hfnerf": {"num_coarse_samples": 8, "num_fine_samples": 8, "hidden_dim": 32},
}


def build_pipeline(method: str, data: Path, rays: int = 256):
    config = copy.deepcopy(discover_methods()[0][method])
    config.pipeline.datamanager.data = data
    config.pipeline.datamanager.train_num_rays_per_batch = rays
    config.pipeline.datamanager.num_patches = 0
    config.pipeline.model.eval_num_rays_per_chunk = 4096
    for key, value in SMALL.get(method, {}).items():
        setattr(config.pipeline.model, key, value)
    torch.manual_seed(0)
    return config.pipeline.setup(device="cpu", test_mode="val")


@pytest.mark.parametrize("method", ["ghnerf", "enerf-heatmap", "hfnerf"])
def test_rendered_outputs_have_image_shapes_and_valid_ranges(method: str, tiny_dataset: Path):
    pipeline = build_pipeline(method, tiny_dataset)
    pipeline.eval()
    camera, batch = next(iter(pipeline.datamanager.fixed_indices_eval_dataloader))
    outputs = pipeline.model.get_outputs_for_camera(camera)
    height, width = batch["image"].shape[:2]
    expected_channels = {"rgb": 3, "accumulation": 1, "depth": 1, "heatmap": 25, "densepose": 3, "skeleton": 3,
                         "joint_heatmap": 3, "densepose_color": 3, "joint_00_Nose": 1}  # fmt: skip
    for name, channels in expected_channels.items():
        assert outputs[name].shape == (height, width, channels), name
    for name in ("rgb", "accumulation", "heatmap", "densepose", "joint_heatmap"):
        assert outputs[name].min() >= -1e-5 and outputs[name].max() <= 1.0 + 1e-5, name
    assert torch.isfinite(outputs["depth"]).all()
    metrics, images = pipeline.model.get_image_metrics_and_images(outputs, batch)
    assert metrics["psnr"] > 0 and 0.0 <= metrics["pck"] <= 1.0
    assert images["img"].shape == (height, 2 * width, 3)


def test_enerf_heatmap_has_no_human_encoder_and_ghnerf_trains_its_own(tiny_dataset: Path):
    baseline = build_pipeline("enerf-heatmap", tiny_dataset).model
    ghnerf = build_pipeline("ghnerf", tiny_dataset).model
    assert baseline.human_encoder is None
    assert ghnerf.human_encoder is not None and all(p.requires_grad for p in ghnerf.human_encoder.parameters())
    extra = sum(p.numel() for p in ghnerf.parameters()) - sum(p.numel() for p in baseline.parameters())
    encoder = sum(p.numel() for p in ghnerf.human_encoder.parameters())
    assert encoder > 8e6  # ResNet34 up to layer3
    assert extra > encoder  # the encoder plus g_h/g_dp's wider inputs for f_h


def test_any_camera_finds_its_frame_and_nearest_sources(tiny_dataset: Path, monkeypatch):
    pipeline = build_pipeline("enerf-heatmap", tiny_dataset)
    model = pipeline.model
    catalog = model.catalog
    test_subject = next(i for i, s in enumerate(catalog.subjects) if s.split == "test")
    key = catalog.frame_key(test_subject, 1)
    rig = catalog.subjects[test_subject].rig
    bare = cameras_from_opencv(rig.intrinsics[1:2], rig.world_to_camera[1:2], rig.height, rig.width)
    timed = cameras_from_opencv(
        rig.intrinsics[1:2], rig.world_to_camera[1:2], rig.height, rig.width, times=torch.tensor([catalog.time_of(key)])
    )
    assert model.resolve_frame_key(timed) == key
    model.viewer_pick_frame.value = True
    model.viewer_subject.value = catalog.subjects[0].name
    model.viewer_frame.value = 1
    assert model.resolve_frame_key(timed) == catalog.frame_key(0, 1)
    assert model.resolve_frame_key(bare) == catalog.frame_key(0, 1)
    with pytest.raises(ValueError, match="unknown subject"):
        default_render_frame(catalog, "nobody:0")
    assert default_render_frame(catalog, None)[0] == catalog.subjects[test_subject].name
    target = model.target_of_dataset_view(key, 1)
    sources = model.sources_for(target)
    assert sorted(sources.camera_ids) == [0, 2]  # the ring neighbours of camera 1 among the even source cameras
    full = catalog.source_images(key, sources.camera_ids)
    shift = (rig.intrinsics[sources.camera_ids, :2, 2] - sources.intrinsics[:, :2, 2]).round().long()
    height, width = sources.images.shape[-2:]
    assert sources.images.shape[:2] == (2, 3) and height <= rig.height and width < rig.width  # cropped to the box
    for image, crop, (x0, y0) in zip(full, sources.images, shift.tolist()):
        assert torch.equal(image[:, y0 : y0 + height, x0 : x0 + width], crop)


def test_ghnerf_fits_a_training_view(tiny_dataset: Path):
    pipeline = build_pipeline("ghnerf", tiny_dataset, rays=256)
    pipeline.train()
    datamanager = pipeline.datamanager
    datamanager.train_indices = datamanager.train_indices[:1]
    datamanager.config.train_num_source_views = (2, 2)
    optimizer = torch.optim.Adam([p for g in pipeline.get_param_groups().values() for p in g], lr=1e-3)
    losses = []
    for step in range(30):
        _, loss_dict, _ = pipeline.get_train_loss_dict(step)
        assert {"rgb_loss", "rgb_loss_level0", "heatmap_loss", "densepose_loss"} <= set(loss_dict)
        optimizer.zero_grad()
        sum(loss_dict.values()).backward()
        optimizer.step()
        losses.append(float(loss_dict["rgb_loss"]))
    assert sum(losses[-5:]) / 5 < 0.6 * sum(losses[:5]) / 5


def test_eval_batchnorm_batch_renders_with_each_batchs_statistics_and_keeps_the_running_ones(tiny_dataset: Path):
    pipeline = build_pipeline("enerf-heatmap", tiny_dataset)
    model = pipeline.model
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert norms  # the FPN and the cost volumes' U-Nets
    for norm in norms:  # running statistics far from any batch's, as after a short training
        norm.running_mean.fill_(3.0)
        norm.running_var.fill_(0.01)
    saved = [norm.running_mean.clone() for norm in norms]
    camera, _ = next(iter(pipeline.datamanager.fixed_indices_eval_dataloader))

    model.eval()
    running = model.get_outputs_for_camera(camera)["rgb"]
    model.config.eval_batchnorm = "batch"
    model.eval()
    assert all(norm.training and not norm.track_running_stats for norm in norms) and not model.training
    batch = model.get_outputs_for_camera(camera)["rgb"]
    assert all(torch.equal(norm.running_mean, before) for norm, before in zip(norms, saved))
    assert (batch - running).abs().max() > 1e-3  # the statistics differ, so the renders do

    model.train()
    assert all(norm.training and norm.track_running_stats for norm in norms)
    model.config.eval_batchnorm = "running"
    model.eval()
    assert not any(norm.training for norm in norms)
    for norm in norms:  # batch statistics by hand: training-mode layers that do not update their statistics
        norm.train()
        norm.momentum = 0.0
    assert torch.allclose(model.get_outputs_for_camera(camera)["rgb"], batch, atol=1e-5)
