"""What real captures exercise and black synthetic backgrounds hide: background masking, the shipped configs'
ray batches, render-only FPS, rendering only the rays that hit the box, opacity conventions and the mask loss."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from nerfstudio.cameras.rays import Frustums, RaySamples
from nerfstudio.plugins.registry import discover_methods

from nerfstudio_humanfeat.data.dataparsers.zju_mocap_dataparser import ZJUMocapDataParserConfig, background_options
from nerfstudio_humanfeat.data.zju_io import mask_background
from nerfstudio_humanfeat.model_components.outputs import LazyOutputs
from nerfstudio_humanfeat.model_components.ray_samplers import ray_aabb_near_far, sample_weights
from nerfstudio_humanfeat.pipelines import human_pipeline

BRIGHT = 230


@pytest.fixture(scope="module")
def bright_dataset(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny synthetic set with every image pixel outside the person's mask painted bright, as a dome would be."""
    root = tmp_path_factory.mktemp("bright") / "data"
    shutil.copytree(tiny_dataset, root)
    images = sorted(root.glob("synth_*/Camera_*/*.jpg"))
    assert len(images) == 48
    for image_path in images:
        mask_path = image_path.parent.parent / "mask" / image_path.parent.name / f"{image_path.stem}.png"
        mask = cv2.imread(str(mask_path), cv2.IMREAD_GRAYSCALE) > 0
        image = cv2.imread(str(image_path))
        image[~mask] = BRIGHT
        cv2.imwrite(str(image_path), image, [cv2.IMWRITE_JPEG_QUALITY, 100])
    return root


def setup_pipeline(method: str, data: Path, **dataparser):
    config = copy.deepcopy(discover_methods()[0][method])
    config.pipeline.datamanager.data = data
    config.pipeline.model.eval_num_rays_per_chunk = 4096
    for key, value in dataparser.items():
        setattr(config.pipeline.datamanager.dataparser, key, value)
    torch.manual_seed(0)
    return config.pipeline.setup(device="cpu", test_mode="val")


def far_from_mask(mask: torch.Tensor, distance: int) -> torch.Tensor:
    """Pixels more than `distance` pixels (plus one for JPEG ringing) from the mask."""
    size = 2 * (distance + 1) + 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    return torch.from_numpy(cv2.dilate(mask.numpy().astype(np.uint8), kernel) == 0)


def test_mask_background_zeroes_beyond_the_dilated_mask():
    image = np.full((21, 21, 3), 200, np.uint8)
    mask = np.zeros((21, 21), bool)
    mask[10, 10] = True
    out = mask_background(image, mask, dilation=3)
    assert (out[10, 7:14] == 200).all() and (out[10, 6] == 0).all() and (out[10, 14] == 0).all()
    assert (out[0] == 0).all() and (mask_background(image, mask, 0).sum(-1) > 0).sum() == 1


@pytest.mark.parametrize("background", ["black", "keep"])
def test_bright_background_is_zero_in_targets_sources_and_eval_ground_truth(bright_dataset: Path, background: str):
    pipeline = setup_pipeline("enerf-heatmap", bright_dataset, background=background)
    manager, catalog = pipeline.datamanager, pipeline.datamanager.catalog
    dilation = background_options(manager.config.dataparser).mask_dilation
    frame_key, camera = manager.eval_dataset.views[0]
    view = catalog.load_view(frame_key, camera)
    outside = far_from_mask(view.mask, dilation)
    _, batch = manager.image_batch(manager.eval_dataset, 0)  # what ns-eval scores against
    sources = catalog.subject(frame_key).source_cameras[:2]
    source_images = catalog.source_images(frame_key, sources)
    source_outside = torch.stack([far_from_mask(catalog.load_view(frame_key, c).mask, dilation) for c in sources])
    loaded = [view.image[outside], batch["image"][outside], source_images.permute(0, 2, 3, 1)[source_outside]]
    for pixels in loaded:
        if background == "black":
            assert pixels.abs().max() == 0
        else:
            assert pixels.mean() > 0.8  # the painted background, 230/255
    inside = view.mask & ~torch.from_numpy(cv2.dilate((~view.mask).numpy().astype(np.uint8), np.ones((3, 3))) > 0)
    assert view.image[inside].mean() > 0.05  # the person is kept


@pytest.mark.parametrize("in_splits,in_config,expected", [(None, None, 5), (0, None, 0), (0, 3, 3), (2, None, 2)])
def test_mask_dilation_comes_from_the_config_else_splits_json_else_enerf(tmp_path, in_splits, in_config, expected):
    splits = {"train_subjects": ["a"], "test_subjects": []} | (
        {} if in_splits is None else {"mask_dilation": in_splits}
    )
    (tmp_path / "splits.json").write_text(json.dumps(splits))
    config = ZJUMocapDataParserConfig(data=tmp_path, background_mask_dilation=in_config)
    assert background_options(config).mask_dilation == expected


def test_synthetic_views_hold_no_background_ring(bright_dataset: Path):
    """The generator's masks are exact (splits.json: mask_dilation 0): no dome pixel is kept around the person."""
    pipeline = setup_pipeline("enerf-heatmap", bright_dataset)
    catalog = pipeline.datamanager.catalog
    frame_key, camera = pipeline.datamanager.eval_dataset.views[0]
    view = catalog.load_view(frame_key, camera)
    assert view.image[~view.mask].abs().max() == 0
    ring = ~view.mask & ~far_from_mask(view.mask, 5)
    assert ring.sum() > 0  # what ENeRF's 5 px would have kept


METHODS = (
    "ghnerf", "ghnerf-dino", "ghnerf-resnet18", "enerf-heatmap", "hfnerf", "hfnerf-dino", "keypointnerf-cpu",
    "anipixel-cpu",
)  # fmt: skip


@pytest.mark.parametrize("method", METHODS)
def test_shipped_configs_sample_their_rays_plus_patches(method: str, tiny_dataset: Path):
    config = copy.deepcopy(discover_methods()[0][method])
    config.pipeline.datamanager.data = tiny_dataset
    manager_config = config.pipeline.datamanager
    if manager_config.num_patches > 0:  # the 64 px patches of 512 px images do not fit 96 px ones: scale them
        manager_config.perceptual_patch_size = 32
    manager = manager_config.setup(device="cpu")
    manager.setup_train()
    ray_bundle, batch = manager.next_train(0)
    patch_rays = manager_config.num_patches * manager_config.perceptual_patch_size**2
    free = manager_config.train_num_rays_per_batch
    assert len(ray_bundle) == free + patch_rays == manager.get_train_rays_per_batch()
    assert batch["num_patches"] == manager_config.num_patches
    assert batch["heatmap"].shape[0] == len(ray_bundle)  # every ray supervises the heatmaps
    foreground = batch["foreground"][patch_rays:, 0]
    expected = round(free * manager_config.foreground_ratio)
    assert foreground.sum() >= expected  # the box-sampled rest may land on the person too
    assert foreground[:expected].all()


def test_eval_fps_times_the_render_alone(tiny_dataset: Path, monkeypatch):
    pipeline = setup_pipeline("enerf-heatmap", tiny_dataset)
    clock = [0.0]
    model = pipeline.model
    render, score = model.get_outputs_for_camera, model.get_image_metrics_and_images

    def timed_render(*args, **kwargs):
        clock[0] += 0.25
        return render(*args, **kwargs)

    def timed_metrics(*args, **kwargs):
        clock[0] += 10.0
        return score(*args, **kwargs)

    monkeypatch.setattr(model, "get_outputs_for_camera", timed_render)
    monkeypatch.setattr(model, "get_image_metrics_and_images", timed_metrics)
    monkeypatch.setattr(model.config, "eval_keypoints_3d", False)
    monkeypatch.setattr(human_pipeline, "time", lambda: clock[0])
    loader = [next(iter(pipeline.datamanager.fixed_indices_eval_dataloader))]
    results = pipeline.get_average_image_metrics(loader, image_prefix="eval")
    assert results["fps"] == pytest.approx(4.0)


def test_rays_missing_the_box_are_not_rendered_and_the_rest_match_a_full_render(tiny_dataset: Path, monkeypatch):
    pipeline = setup_pipeline("enerf-heatmap", tiny_dataset)
    pipeline.eval()
    model = pipeline.model
    camera, _ = next(iter(pipeline.datamanager.fixed_indices_eval_dataloader))
    rendered_counts = []
    render_rays = model.render_rays

    def counting(ray_bundle, *args):
        rendered_counts.append(len(ray_bundle))
        return render_rays(ray_bundle, *args)

    monkeypatch.setattr(model, "render_rays", counting)
    outputs = model.get_outputs_for_camera(camera)
    assert isinstance(outputs, LazyOutputs) and "skeleton" in outputs.pending  # drawn only when asked for
    rays = camera.generate_rays(camera_indices=0, keep_shape=True)
    box = model.catalog.frame(int(camera.metadata["frame_key"].reshape(-1)[0])).bbox
    hit = ray_aabb_near_far(rays.origins, rays.directions, box)[2]
    assert 0 < sum(rendered_counts) == int(hit.sum()) < hit.numel()
    assert outputs["rgb"][~hit].abs().max() == 0 and outputs["accumulation"][~hit].abs().max() == 0
    with torch.no_grad():
        from nerfstudio_humanfeat.camera_utils import opencv_from_cameras
        from nerfstudio_humanfeat.model_components.views import TargetView

        intrinsics, world_to_camera, height, width = opencv_from_cameras(camera)
        target = TargetView(int(camera.metadata["frame_key"].reshape(-1)[0]), intrinsics, world_to_camera, height,
                            width, box)  # fmt: skip
        sources = model.sources_for(target)
        pixels = target.pixel_grid()
        target, offset, conditioning = model.conditioned(target, sources)
        assert target.width < width and target.height <= height  # the per-target volumes cover the box only
        full = render_rays(rays.flatten(), pixels - offset, target, sources, conditioning)
    torch.testing.assert_close(outputs["rgb"][hit], full["rgb"].reshape(height, width, 3)[hit], atol=1e-5, rtol=0)
    assert outputs["skeleton"].shape == outputs["rgb"].shape and "skeleton" not in outputs.pending


def test_lazy_outputs_compute_once_when_read():
    calls = []
    outputs = LazyOutputs({"rgb": torch.zeros(1)}, {"skeleton": lambda: calls.append(1) or torch.ones(1)})
    assert set(outputs.keys()) == {"rgb", "skeleton"} and "skeleton" in outputs and len(outputs) == 2 and not calls
    assert outputs["skeleton"].item() == 1 and outputs["skeleton"].item() == 1 and calls == [1]
    with pytest.raises(KeyError):
        outputs["depth"]


def test_enerf_opacity_ignores_the_sample_spacing_and_interval_opacity_uses_it():
    starts = torch.tensor([[0.0, 0.1, 0.2]])[..., None]
    deltas = torch.full_like(starts, 0.1)
    frustums = Frustums(
        origins=torch.zeros(1, 3, 3),
        directions=torch.tensor([0.0, 0.0, 1.0]).expand(1, 3, 3),
        starts=starts,
        ends=starts + deltas,
        pixel_area=torch.ones(1, 3, 1),
    )
    samples = RaySamples(frustums=frustums, deltas=deltas)
    density = torch.tensor([[1.0, 2.0, 3.0]])[..., None]
    alpha = 1 - torch.exp(-density[0, :, 0])
    expected = torch.stack([alpha[0], (1 - alpha[0]) * alpha[1], (1 - alpha[0]) * (1 - alpha[1]) * alpha[2]])
    torch.testing.assert_close(sample_weights(samples, density, "enerf")[0, :, 0], expected)
    alpha_interval = 1 - torch.exp(-0.1 * density[0, :, 0])
    torch.testing.assert_close(sample_weights(samples, density, "interval")[0, 0, 0], alpha_interval[0])


def test_mask_loss_is_the_opacity_error_against_the_foreground(tiny_dataset: Path):
    pipeline = setup_pipeline("enerf-heatmap", tiny_dataset)
    model = pipeline.model
    accumulation = torch.tensor([[0.2], [0.9], [1.3]])
    foreground = torch.tensor([[0.0], [1.0], [1.0]])
    losses = model.mask_losses({"accumulation": accumulation}, {"foreground": foreground})
    expected = model.config.lambda_mask * (0.2**2 + 0.1**2 + 0.0) / 3
    assert losses["mask_loss"].item() == pytest.approx(expected)
    ray_bundle, batch = pipeline.datamanager.next_train(0)
    assert {"mask_loss", "mask_loss_level0"} <= set(model.get_loss_dict(model(ray_bundle), batch))


def test_enerf_source_sampling_draws_from_the_nearest_plus_one(tiny_dataset: Path):
    pipeline = setup_pipeline("enerf-heatmap", tiny_dataset)
    manager = pipeline.datamanager
    catalog = manager.catalog
    frame_key, camera = manager.train_dataset.views[0]
    c2w = catalog.subject(frame_key).rig.camera_to_world[camera]
    draws = [manager.training_sources(frame_key, camera) for _ in range(2000)]
    counts = [len(d) for d in draws]
    assert set(counts) == {2, 3} and 0.07 < counts.count(3) / len(draws) < 0.13
    with_target = [d for d in draws if camera in d]
    assert 0.03 < len(with_target) / len(draws) < 0.07
    for draw in draws:
        others = [c for c in draw if c != camera]
        assert set(others) <= set(catalog.nearest_cameras(frame_key, c2w, len(draw) + 1, exclude=[camera]))
    assert len({tuple(sorted(d)) for d in draws if len(d) == 2}) > 1  # not always the two nearest


def test_prefetched_batches_are_the_batches_drawn_in_order(tiny_dataset: Path):
    batches = {}
    for prefetch in (True, False):
        config = copy.deepcopy(discover_methods()[0]["enerf-heatmap"])
        config.pipeline.datamanager.data = tiny_dataset
        config.pipeline.datamanager.prefetch = prefetch
        manager = config.pipeline.datamanager.setup(device="cpu")
        manager.setup_train()
        batches[prefetch] = [manager.next_train(step) for step in range(4)]
    for (rays_a, batch_a), (rays_b, batch_b) in zip(batches[True], batches[False]):
        assert torch.equal(rays_a.origins, rays_b.origins) and torch.equal(rays_a.directions, rays_b.directions)
        assert torch.equal(batch_a["image"], batch_b["image"])
        assert torch.equal(rays_a.metadata["source_cameras"], rays_b.metadata["source_cameras"])
    assert len({int(b["frame_key"]) * 100 + int(b["target_camera"]) for _, b in batches[True]}) > 1


def test_training_evaluates_a_fixed_spread_sample_and_ns_eval_everything(tiny_dataset: Path, monkeypatch):
    pipeline = setup_pipeline("enerf-heatmap", tiny_dataset)
    manager = pipeline.datamanager
    monkeypatch.setattr(manager.config, "training_eval_views", 3)
    seen = []
    monkeypatch.setattr(pipeline, "get_average_image_metrics", lambda loader, *args: seen.append(loader.indices))
    pipeline.train()
    pipeline.get_average_eval_image_metrics(step=100)
    pipeline.eval()
    pipeline.get_average_eval_image_metrics(step=100)
    total = len(manager.eval_dataset)
    assert seen == [[0, total // 3, 2 * total // 3], list(range(total))]


def test_sources_cropped_to_the_box_sample_the_same_pixels(tiny_dataset: Path):
    from nerfstudio_humanfeat.model_components.views import crop_to_box, load_source_views, sample_source_features

    pipeline = setup_pipeline("enerf-heatmap", tiny_dataset)
    catalog = pipeline.datamanager.catalog
    frame_key = catalog.frame_keys_of_split("test")[0]
    bbox = catalog.frame(frame_key).bbox
    full = load_source_views(catalog, frame_key, catalog.subject(frame_key).source_cameras[:3], "cpu")
    cropped = crop_to_box(full, bbox)
    assert cropped.images.shape[-1] < full.images.shape[-1] or cropped.images.shape[-2] < full.images.shape[-2]
    assert cropped.images.shape[-1] % 16 == 0 and cropped.images.shape[-2] % 16 == 0
    points = bbox[0] + torch.rand(500, 3, generator=torch.Generator().manual_seed(0)) * (bbox[1] - bbox[0])
    values_full, valid_full = sample_source_features(full, full.images, points)
    values_crop, valid_crop = sample_source_features(cropped, cropped.images, points)
    assert valid_crop.equal(valid_full) and valid_full.float().mean() > 0.9
    torch.testing.assert_close(values_crop, values_full, atol=1e-5, rtol=0)


@pytest.mark.parametrize("context", ["nerf", "enerf"])
def test_ibr_context_choices_train(tiny_dataset: Path, context: str):
    config = copy.deepcopy(discover_methods()[0]["enerf-heatmap"])
    config.pipeline.datamanager.data = tiny_dataset
    config.pipeline.model.ibr_context = context
    torch.manual_seed(0)
    pipeline = config.pipeline.setup(device="cpu", test_mode="val")
    expected = 64 if context == "nerf" else pipeline.model.cost_volumes[1].out_channels + 16
    assert pipeline.model.levels[1]["g_c"].context_dim == expected
    _, losses, _ = pipeline.get_train_loss_dict(step=0)
    sum(losses.values()).backward()
    assert pipeline.model.levels[1]["g_c"].layers[0].weight.grad.abs().sum() > 0
