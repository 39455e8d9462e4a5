"""Image encoders: shapes and strides, freeze switch, offline weight loading."""

from __future__ import annotations

import logging
import socket
import urllib.request

import pytest
import timm
import torch
import torch.nn.functional as F

from nerfstudio_humanfeat.model_components import image_encoders
from nerfstudio_humanfeat.model_components.image_encoders import (
    DINO_ARCH,
    DinoViTEncoder,
    FPNEncoder,
    ResNetPyramidEncoder,
    build_human_encoder,
    load_pretrained_weights,
)
from nerfstudio_humanfeat.model_components.projection import pixel_centres

LOGGER = image_encoders.__name__


def _no_network(*args, **kwargs):
    raise AssertionError("network access attempted")


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """No network, and an empty private torch hub directory."""
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", _no_network)
    monkeypatch.setattr(torch.hub, "download_url_to_file", _no_network)
    monkeypatch.setattr(urllib.request, "urlopen", _no_network)
    monkeypatch.setattr(socket.socket, "connect", _no_network)
    hub = tmp_path / "hub"
    (hub / "checkpoints").mkdir(parents=True)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    return hub


def test_fpn_encoder_shapes():
    encoder = FPNEncoder()
    feats = encoder(torch.rand(2, 3, 64, 48))
    assert [tuple(f.shape) for f in feats] == [(2, 8, 64, 48), (2, 16, 32, 24), (2, 32, 16, 12)]
    assert encoder.out_channels == (8, 16, 32) and encoder.stride == (1, 2, 4)


@pytest.mark.parametrize("kind", ["resnet18", "resnet34"])
def test_resnet_pyramid_shapes(kind):
    encoder = build_human_encoder(kind)
    assert isinstance(encoder, ResNetPyramidEncoder)
    assert encoder.out_channels == 512 and encoder.stride == 2 and encoder.pretrained_loaded is False
    assert encoder(torch.rand(2, 3, 64, 48)).shape == (2, 512, 32, 24)
    assert encoder(torch.rand(1, 3, 50, 38)).shape == (1, 512, 25, 19)


def test_resnet_pyramid_is_conv1_and_layers_1_to_3_at_half_resolution(tmp_path):
    source = timm.create_model("resnet18", pretrained=False).eval()
    path = tmp_path / "r18.pth"
    torch.save(source.state_dict(), path)
    encoder = ResNetPyramidEncoder("resnet18", pretrained_path=path).eval()
    images = torch.rand(2, 3, 64, 48)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        conv1 = source.act1(source.bn1(source.conv1((images - mean) / std)))  # ImageNet-normalised input
        layer1 = source.layer1(source.maxpool(conv1))
        layer2 = source.layer2(layer1)
        layer3 = source.layer3(layer2)
        levels = [
            F.interpolate(f, size=(32, 24), mode="bilinear", align_corners=False) for f in (layer1, layer2, layer3)
        ]
        ours = encoder(images)
    torch.testing.assert_close(ours, torch.cat([conv1, *levels], dim=1), atol=1e-5, rtol=1e-5)


def test_dino_shapes_at_non_224_sizes():
    encoder = build_human_encoder("dino_vits8")
    assert isinstance(encoder, DinoViTEncoder)
    assert encoder.out_channels == 768 and encoder.stride == 8
    assert encoder(torch.rand(2, 3, 64, 48)).shape == (2, 768, 8, 6)
    assert encoder(torch.rand(1, 3, 60, 44)).shape == (1, 768, 8, 6)
    mean_encoder = build_human_encoder("dino_vits8", dino_combine="mean")
    assert mean_encoder.out_channels == 384
    assert mean_encoder(torch.rand(1, 3, 64, 48)).shape == (1, 384, 8, 6)
    assert len(encoder.blocks) == 11
    with pytest.raises(ValueError, match="1-based"):
        DinoViTEncoder(blocks=(0, 11))
    with pytest.raises(ValueError, match="1-based"):
        DinoViTEncoder(blocks=(13,))


def test_dino_block_numbering_matches_timm_last_block(tmp_path):
    vit = timm.create_model(DINO_ARCH, pretrained=False, num_classes=0).eval()
    path = tmp_path / "vit.pth"
    torch.save(vit.state_dict(), path)
    encoder = DinoViTEncoder(pretrained_path=path, blocks=(12,)).eval()
    assert encoder.pretrained_loaded
    images = torch.rand(1, 3, 224, 224)
    with torch.no_grad():
        reference = vit.forward_features(encoder.normalise(images))[:, 1:]
        ours = encoder(images)
    torch.testing.assert_close(ours.flatten(2).transpose(1, 2), reference, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("height,width,stride", [(64, 48, 8), (60, 44, 8), (50, 38, 16)])
def test_padded_feature_maps_are_restricted_to_the_image_extent(height, width, stride):
    padded_size = (-(-height // stride) * stride, -(-width // stride) * stride)
    padded_grid = pixel_centres(padded_size[0] // stride, padded_size[1] // stride, padded_size)
    cropped = image_encoders._crop_to_image(padded_grid.permute(2, 0, 1)[None], padded_size, (height, width), stride)
    out_h, out_w = -(-height // stride), -(-width // stride)
    assert cropped.shape == (1, 2, out_h, out_w)
    expected = pixel_centres(out_h, out_w, (height, width)).permute(2, 0, 1)
    interior = (slice(None), slice(1, -1), slice(1, -1))
    torch.testing.assert_close(cropped[0][interior], expected[interior], atol=1e-4, rtol=0)


def test_freeze_switch():
    frozen = ResNetPyramidEncoder("resnet18", freeze=True)
    frozen.train()
    assert not frozen.training
    assert all(not p.requires_grad for p in frozen.parameters())
    assert all(not m.training for m in frozen.modules() if isinstance(m, torch.nn.BatchNorm2d))
    images = torch.rand(2, 3, 32, 32, requires_grad=True)
    assert not frozen(images).requires_grad

    tuned = ResNetPyramidEncoder("resnet18", freeze=False)
    tuned.train()
    assert tuned.training and all(p.requires_grad for p in tuned.parameters())
    tuned(torch.rand(2, 3, 32, 32)).mean().backward()
    assert tuned.conv1.weight.grad is not None and tuned.conv1.weight.grad.abs().sum() > 0

    frozen_vit = DinoViTEncoder(freeze=True, blocks=(1,))
    assert all(not p.requires_grad for p in frozen_vit.parameters())


def test_load_explicit_path_loads_equal_weights(tmp_path):
    source = timm.create_model("resnet18", pretrained=False)
    path = tmp_path / "r18.pth"
    torch.save({"state_dict": {"module." + k: v for k, v in source.state_dict().items()}}, path)
    encoder = ResNetPyramidEncoder("resnet18", pretrained_path=path)
    assert encoder.pretrained_loaded
    torch.testing.assert_close(encoder.conv1.weight, source.conv1.weight, rtol=0, atol=0)
    torch.testing.assert_close(encoder.layer3[1].bn2.running_var, source.layer3[1].bn2.running_var, rtol=0, atol=0)


def test_load_from_hub_cache(offline):
    source = timm.create_model("resnet34", pretrained=False)
    filename = source.default_cfg["url"].rsplit("/", 1)[-1]
    torch.save(source.state_dict(), offline / "checkpoints" / filename)
    target = timm.create_model("resnet34", pretrained=False)
    assert load_pretrained_weights(target, "resnet34", None) is True
    torch.testing.assert_close(target.fc.weight, source.fc.weight, rtol=0, atol=0)


def test_load_wrong_file_raises_clear_error(tmp_path):
    path = tmp_path / "r18.pth"
    torch.save(timm.create_model("resnet18", pretrained=False).state_dict(), path)
    with pytest.raises(ValueError, match=r"resnet34: weights at .* do not match the model: .*missing keys"):
        ResNetPyramidEncoder("resnet34", pretrained_path=path)
    junk = tmp_path / "junk.pth"
    torch.save([1, 2, 3], junk)
    with pytest.raises(ValueError, match="state dict"):
        load_pretrained_weights(timm.create_model("resnet18", pretrained=False), "resnet18", junk)
    with pytest.raises(FileNotFoundError):
        load_pretrained_weights(timm.create_model("resnet18", pretrained=False), "resnet18", tmp_path / "none.pth")


def test_missing_weights_warn_once_and_return_false(caplog, offline):
    model = timm.create_model("resnet18", pretrained=False)
    before = model.conv1.weight.detach().clone()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert load_pretrained_weights(model, "resnet18", None) is False
    records = [r for r in caplog.records if r.name == LOGGER]
    assert len(records) == 1
    message = records[0].getMessage()
    assert message.startswith("resnet18: no pretrained weights found at ")
    assert str(offline / "checkpoints" / "resnet18-5c106cde.pth") in message
    assert message.endswith("using random initialisation")
    torch.testing.assert_close(model.conv1.weight, before, rtol=0, atol=0)

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        encoder = build_human_encoder("dino_vits8")
    assert not encoder.pretrained_loaded
    assert len([r for r in caplog.records if r.name == LOGGER]) == 1
