"""BatchNorm statistics at render time: running (PyTorch's eval mode) or each batch's own, as in training."""

from __future__ import annotations

import torch
from torch import nn

from nerfstudio_humanfeat.model_components.normalization import set_eval_batch_statistics, trainable_batchnorms


def _net() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4))
    frozen = net[4]
    for param in frozen.parameters():
        param.requires_grad_(False)
    return net


def test_batch_statistics_at_eval_normalise_each_batch_and_leave_running_statistics_alone() -> None:
    net = _net()
    images = torch.rand(2, 3, 8, 8) * 3 + 1  # far from the initial running statistics (0 mean, unit variance)
    net.train()
    net(images)  # one training step's update of the running statistics
    trained, frozen = net[1], net[4]
    assert trainable_batchnorms(net) == [trained]
    saved = trained.running_mean.clone(), trained.running_var.clone(), int(trained.num_batches_tracked)

    net.eval()
    set_eval_batch_statistics(net, True)
    features = net[0](images)
    out = net[1](features)
    by_hand = (features - features.mean((0, 2, 3), keepdim=True)) / torch.sqrt(
        features.var((0, 2, 3), unbiased=False, keepdim=True) + trained.eps
    )
    by_hand = by_hand * trained.weight[:, None, None] + trained.bias[:, None, None]
    assert torch.allclose(out, by_hand, atol=1e-5)
    assert torch.equal(trained.running_mean, saved[0]) and torch.equal(trained.running_var, saved[1])
    assert int(trained.num_batches_tracked) == saved[2]
    assert not frozen.training  # a frozen layer keeps its statistics

    set_eval_batch_statistics(net, False)
    running = (features - saved[0][:, None, None]) / torch.sqrt(saved[1][:, None, None] + trained.eps)
    running = running * trained.weight[:, None, None] + trained.bias[:, None, None]
    assert not trained.training and torch.allclose(net[1](features), running, atol=1e-5)
    assert not torch.allclose(running, by_hand, atol=1e-2)  # the two modes differ on these images

    net.eval()
    set_eval_batch_statistics(net, True)
    net.train()
    set_eval_batch_statistics(net, True)  # training: the layers update their running statistics again
    net(images)
    assert trained.track_running_stats and int(trained.num_batches_tracked) == saved[2] + 1
