"""The auxiliary source-view heatmap loss, a training aid for random-init encoders in short CPU budgets."""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from nerfstudio.plugins.registry import discover_methods

from nerfstudio_humanfeat.keypoints import feature_map_heatmaps
from nerfstudio_humanfeat.model_components.views import crop_to_box, load_source_views


def test_feature_map_heatmaps_peak_at_the_keypoint_inside_the_window():
    keypoints = torch.tensor([[[37.5, 21.5, 1.0], [5.0, 5.0, 0.0]]])  # (x, y, confidence); the second is missing
    maps = feature_map_heatmaps(keypoints, torch.tensor([[16.0, 8.0]]), 2.0, 16, 20, sigma=2.0)
    assert maps.shape == (1, 16, 20, 2)
    peak = int(maps[0, ..., 0].argmax())
    assert divmod(peak, 20) == (6, 10)  # ((21.5 - 8) / 2, (37.5 - 16) / 2) = (6.75, 10.75): cell (6, 10)
    assert maps[0, 6, 10, 0] > 0.9
    assert maps[0, ..., 1].abs().max() == 0


def ghnerf_config(data: Path, **model):
    config = copy.deepcopy(discover_methods()[0]["ghnerf-cpu"])
    config.pipeline.datamanager.data = data
    for key, value in model.items():
        setattr(config.pipeline.model, key, value)
    return config


def test_source_heatmap_targets_follow_the_crop_of_the_source_views(tiny_dataset: Path):
    config = ghnerf_config(tiny_dataset, lambda_source_heatmap=0.5)
    torch.manual_seed(0)
    model = config.pipeline.setup(device="cpu", test_mode="val").model
    frame_key = model.catalog.frame_keys_of_split("train")[0]
    target = model.target_of_dataset_view(frame_key, model.catalog.subject(frame_key).target_cameras[0])
    full = load_source_views(model.catalog, frame_key, list(model.catalog.subject(frame_key).source_cameras[:2]), "cpu")
    bbox = model.catalog.frame(frame_key).bbox.clone()
    bbox[0, 2] = bbox[1, 2] - 0.6 * (bbox[1, 2] - bbox[0, 2])  # the upper body: a window smaller than the image
    cropped = crop_to_box(full, bbox)
    assert cropped.image_size[0] < full.image_size[0]
    maps = {}
    for name, sources in (("full", full), ("cropped", cropped)):
        maps[name], valid = model.source_heatmap_targets(target, sources, *sources.image_size)
    corners = full.intrinsics[:, :2, 2] - cropped.intrinsics[:, :2, 2]
    checked = 0
    for view in range(2):
        x0, y0 = (int(c) for c in corners[view])
        for joint in torch.nonzero(valid[view, 0, 0]).flatten():
            row, col = divmod(int(maps["full"][view, ..., joint].argmax()), full.image_size[1])
            if not (0 <= row - y0 < cropped.image_size[0] and 0 <= col - x0 < cropped.image_size[1]):
                continue
            checked += 1
            crow, ccol = divmod(int(maps["cropped"][view, ..., joint].argmax()), cropped.image_size[1])
            assert (crow, ccol) == (row - y0, col - x0)
            torch.testing.assert_close(cropped.images[view, :, crow, ccol], full.images[view, :, row, col])
    assert checked >= 10


def test_source_heatmap_loss_trains_the_human_encoder(tiny_dataset: Path):
    config = ghnerf_config(tiny_dataset, lambda_source_heatmap=0.5)
    config.pipeline.datamanager.prefetch = False
    torch.manual_seed(0)
    pipeline = config.pipeline.setup(device="cpu", test_mode="val")
    pipeline.train()
    _, loss_dict, _ = pipeline.get_train_loss_dict(0)
    assert loss_dict["source_heatmap_loss"] > 0
    loss_dict["source_heatmap_loss"].backward()
    model = pipeline.model
    assert model.source_heatmap_head[0].weight.grad.abs().sum() > 0
    encoder_grads = [p.grad for p in model.human_encoder.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in encoder_grads)
    assert all(p.grad is None for p in model.feature_net.parameters())  # only f_h's branch is supervised
