"""Field heads (GHNeRF / ENeRF) and the losses: shapes, ranges, masking, and the perceptual loss without weights."""

from __future__ import annotations

from unittest import mock

import lpips
import pytest
import torch
import torchvision
from nerfstudio.field_components.encodings import SHEncoding
from torchvision.models.vgg import cfgs, make_layers
from vgg_fixtures import isolate_hub_and_forbid_downloads, write_stand_in_vgg16

from nerfstudio_humanfeat.model_components.heads import (
    ColorHead,
    CoordinateHead,
    DensePoseHead,
    DensityHead,
    HeatmapHead,
    IBRBlendingHead,
    NeRFFeatureMLP,
)
from nerfstudio_humanfeat.model_components.losses import (
    PerceptualLoss,
    coordinate_loss,
    densepose_loss,
    masked_heatmap_mse,
)
from nerfstudio_humanfeat.model_components.pretrained_vgg import find_vgg16_weights

torch.manual_seed(0)


def test_feature_mlp_and_density_shapes_and_range():
    g_nerf = NeRFFeatureMLP(image_dim=16, voxel_dim=8, hidden_dim=32, out_dim=24)
    nerf = g_nerf(torch.randn(4, 7, 16), torch.randn(4, 7, 8))
    assert nerf.shape == (4, 7, 24)
    assert bool((nerf >= 0).all()) and bool((nerf == 0).any())  # a ReLU after the last layer too
    density_head = DensityHead(24)
    linear = density_head.layers[0]
    density = density_head(nerf)
    assert density.shape == (4, 7, 1)
    assert torch.allclose(density, torch.nn.functional.softplus(nerf @ linear.weight.T + linear.bias))
    with torch.no_grad():
        linear.bias.fill_(-50.0)  # strongly negative pre-activation: Softplus keeps it >= 0
    assert bool((density_head(nerf) >= 0).all())


@pytest.mark.parametrize("encoding", [None, SHEncoding(levels=4, implementation="torch")])
def test_color_head_outputs_rgb_in_unit_range(encoding):
    head = ColorHead(24, direction_encoding=encoding, hidden_dim=16)
    directions = torch.nn.functional.normalize(torch.randn(5, 6, 3), dim=-1)
    features = torch.randn(5, 6, 24) * 10
    rgb = head(features, directions)
    assert rgb.shape == (5, 6, 3)
    assert bool(((rgb >= 0) & (rgb <= 1)).all())
    assert not torch.allclose(head(features, -directions), rgb)  # the colour depends on the view direction


def test_heatmap_and_densepose_heads_shapes_ranges_and_human_feature_check():
    heatmap = HeatmapHead(24, human_dim=10, num_outputs=25, hidden_dim=16)
    nerf = torch.randn(3, 8, 24) * 10
    out = heatmap(nerf, torch.randn(3, 8, 10) * 10)
    assert out.shape == (3, 8, 25)
    assert bool(((out >= 0) & (out <= 1)).all())
    assert not torch.allclose(heatmap(nerf, torch.randn(3, 8, 10) * 10), out)  # the human feature f_h is used
    with pytest.raises(ValueError, match="human_dim"):
        heatmap(torch.randn(3, 8, 24))
    densepose = DensePoseHead(24, human_dim=0, num_outputs=3)
    embedding = densepose(torch.randn(3, 8, 24) * 10)
    assert embedding.shape == (3, 8, 3)
    assert bool(((embedding >= 0) & (embedding <= 1)).all())


def test_coordinate_head_reaches_negative_coordinates():
    head = CoordinateHead(12, hidden_dim=8)
    with torch.no_grad():
        head.layers[-1].bias.copy_(torch.tensor([-2.0, 0.5, -0.25]))
        head.layers[-1].weight.zero_()
    points = head(torch.randn(6, 12))
    assert points.shape == (6, 3)
    assert torch.allclose(points, torch.tensor([-2.0, 0.5, -0.25]).expand(6, 3))


def _ibr_inputs(num_views=3, batch=(4, 5), view_dim=6):
    features = torch.randn(num_views, *batch, view_dim)
    directions = torch.randn(num_views, *batch, 4)
    rgb = torch.rand(num_views, *batch, 3)
    return features, directions, rgb


def test_ibr_weights_sum_to_one_over_valid_views_and_ignore_invalid():
    head = IBRBlendingHead(view_dim=6, context_dim=5, hidden_dim=16)
    features, directions, rgb = _ibr_inputs()
    context = torch.randn(4, 5, 5)
    valid = torch.rand(3, 4, 5) > 0.3
    valid[:, 0, 0] = False  # a point no view sees
    valid[1, 0, 1], valid[0, 0, 1], valid[2, 0, 1] = True, False, False  # a point only view 1 sees
    weights = head.blend_weights(features, directions, valid, context)
    assert weights.shape == (3, 4, 5, 1)
    assert bool((weights[~valid] == 0).all())
    seen = valid.any(dim=0)
    assert torch.allclose(weights.sum(dim=0)[..., 0][seen], torch.ones(int(seen.sum())))
    color = head(features, directions, rgb, valid, context)
    assert color.shape == (4, 5, 3)
    assert torch.equal(color[0, 0], torch.zeros(3))
    assert torch.equal(color[0, 1], rgb[1, 0, 1])  # one valid view: exactly its colour


def test_ibr_dominant_view_gives_exactly_its_colour():
    head = IBRBlendingHead(view_dim=2, context_dim=0, direction_dim=4, hidden_dim=2)
    with torch.no_grad():  # logit = 1000 * feature[0]
        head.layers[0].weight.zero_()
        head.layers[0].bias.zero_()
        head.layers[0].weight[0, 0] = 1.0
        head.layers[2].weight.copy_(torch.tensor([[1000.0, 0.0]]))
        head.layers[2].bias.zero_()
    features = torch.zeros(3, 7, 2)
    features[2, :, 0] = 1.0
    _, directions, rgb = _ibr_inputs(3, (7,), 2)
    color = head(features, directions, rgb)
    assert torch.equal(color, rgb[2])
    with pytest.raises(ValueError, match="context_dim"):
        head(features, directions, rgb, context=torch.zeros(7, 1))


def test_masked_heatmap_mse_ignores_invalid_joints():
    pred, target = torch.rand(6, 4), torch.rand(6, 4)
    valid = torch.tensor([True, False, True, True])
    loss = masked_heatmap_mse(pred, target, valid)
    expected = ((pred - target) ** 2)[:, valid].mean()
    assert torch.allclose(loss, expected)
    changed_invisible = pred.clone()
    changed_invisible[:, 1] += 5.0
    assert torch.equal(masked_heatmap_mse(changed_invisible, target, valid), loss)
    changed_visible = pred.clone()
    changed_visible[:, 2] += 0.5
    assert masked_heatmap_mse(changed_visible, target, valid) > loss
    per_sample = valid.expand(6, 4).clone()
    per_sample[0, 0] = False
    expected_per_sample = ((pred - target) ** 2)[per_sample].mean()
    assert torch.allclose(masked_heatmap_mse(pred, target, per_sample), expected_per_sample)


def test_masked_heatmap_mse_is_zero_and_differentiable_without_valid_joints():
    pred = torch.rand(5, 3, requires_grad=True)
    loss = masked_heatmap_mse(pred, torch.rand(5, 3), torch.zeros(3, dtype=torch.bool))
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert torch.equal(pred.grad, torch.zeros(5, 3))


def test_densepose_and_coordinate_losses_use_only_masked_entries():
    pred = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.5, 0.5, 0.5]])
    target = torch.tensor([[0.0, 0.0, 0.3], [0.0, 0.0, 0.0], [0.5, 0.5, 0.5]])
    mask = torch.tensor([True, False, True])
    assert torch.allclose(densepose_loss(pred, target, mask), torch.tensor(0.09 / 6))
    assert torch.allclose(densepose_loss(pred, target, mask[:, None]), torch.tensor(0.09 / 6))
    assert torch.allclose(coordinate_loss(pred, target, mask), torch.tensor(0.09 / 6))
    assert torch.allclose(coordinate_loss(pred, target), torch.tensor((0.09 + 3.0) / 9))


@pytest.mark.parametrize("kind", ["vgg", "lpips"])
def test_perceptual_loss_is_off_without_weights_and_never_downloads(monkeypatch, tmp_path, kind):
    cache_file = isolate_hub_and_forbid_downloads(monkeypatch, tmp_path)
    with pytest.warns(RuntimeWarning, match=str(cache_file)):
        loss = PerceptualLoss(kind=kind)
    assert not loss.available
    assert str(cache_file) in loss.reason
    with pytest.raises(RuntimeError, match="not found"):
        loss(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32))


def test_explicit_weights_path_is_the_only_place_looked_at(monkeypatch, tmp_path):
    isolate_hub_and_forbid_downloads(monkeypatch, tmp_path / "home")
    missing = tmp_path / "nowhere" / "vgg.pth"
    lookup = find_vgg16_weights(missing)
    assert not lookup.available and lookup.searched == (missing,)
    with pytest.warns(RuntimeWarning, match="nowhere"):
        assert not PerceptualLoss(missing).available


@pytest.mark.parametrize("kind", ["vgg", "lpips"])
def test_perceptual_loss_uses_the_cached_weights(monkeypatch, tmp_path, kind):
    cache_file = isolate_hub_and_forbid_downloads(monkeypatch, tmp_path)
    state = write_stand_in_vgg16(cache_file)
    loss = PerceptualLoss(kind=kind)
    assert loss.available and loss.reason == ""
    first_conv = loss._net[0] if kind == "vgg" else loss._net.net.slice1[0]
    assert torch.equal(first_conv.weight, state["features.0.weight"])
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    same = loss(x, x.detach())
    assert float(same) == pytest.approx(0.0, abs=1e-6)
    target = torch.rand(2, 3, 32, 32)
    different = loss(x, target)
    assert float(different) == pytest.approx(_reference_perceptual(kind, state, x.detach(), target), rel=1e-4)
    different.backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0


def _reference_perceptual(kind: str, state: dict, pred: torch.Tensor, target: torch.Tensor) -> float:
    """The loss computed independently: ENeRF's VGG loss, or the lpips package's own VGG16 network."""
    features = make_layers(cfgs["D"])
    features.load_state_dict({k[len("features.") :]: v for k, v in state.items()})
    features.eval()
    if kind == "lpips":  # lpips builds its trunk from torchvision's vgg16: give it these weights
        vgg = torchvision.models.vgg16()
        vgg.features = features
        with mock.patch.object(torchvision.models, "vgg16", lambda *args, **kwargs: vgg):
            reference = lpips.LPIPS(pretrained=True, net="vgg", verbose=False).eval()
        with torch.no_grad():
            return float(reference(pred * 2 - 1, target * 2 - 1).mean())
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    x, y = (pred - mean) / std, (target - mean) / std
    total = 0.0
    with torch.no_grad():
        for start, end in ((0, 4), (4, 9), (9, 16), (16, 23)):  # relu1_2, relu2_2, relu3_3, relu4_3
            x, y = features[start:end](x), features[start:end](y)
            total += float((x - y).abs().mean())
    return total
