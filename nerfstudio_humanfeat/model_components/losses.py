"""Losses of the human feature NeRFs: masked heatmap / dense-pose / coordinate MSE and a patch perceptual loss."""

from __future__ import annotations

from typing import Literal, Optional

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float
from torch import Tensor, nn

from nerfstudio_humanfeat.model_components.pretrained_vgg import (
    PathLike,
    build_lpips_vgg,
    find_vgg16_weights,
    load_vgg16_features,
    warn_unavailable,
)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
VGG_BLOCK_ENDS = (4, 9, 16, 23)
"""ENeRF's VGG perceptual loss compares the outputs of vgg16.features[:4], [4:9], [9:16] and [16:23]."""


def masked_mse(pred: Float[Tensor, "*bs C"], target: Float[Tensor, "*bs C"], mask: Bool[Tensor, "*bs C"]) -> Tensor:
    """Mean squared error over the entries where ``mask`` is True; 0 (still differentiable) when there are none."""
    mask = mask.expand_as(pred)
    squared = (pred - target) ** 2 * mask.to(pred.dtype)
    return squared.sum() / mask.sum().clamp_min(1)


def masked_heatmap_mse(
    pred: Float[Tensor, "*bs J"],
    target: Float[Tensor, "*bs J"],
    joint_valid: Bool[Tensor, "*bs J"] | Bool[Tensor, " J"],
    positive_weight: float = 0.0,
) -> Float[Tensor, ""]:
    """Heatmap MSE over valid (sample, joint) entries only: missing or excluded joints contribute nothing.

    ``joint_valid`` is per sample (N, J) or shared by all samples (J,). Returns 0 when nothing is valid. With
    ``positive_weight`` w each squared error is weighted by 1 + w * target, so the few samples near a joint are not
    outvoted by the many far from every joint (w = 0: the plain MSE of the papers).
    """
    valid = joint_valid.to(torch.bool)
    if positive_weight == 0:
        return masked_mse(pred, target, valid)
    weights = (1.0 + positive_weight * target) * valid.expand_as(pred).to(pred.dtype)
    return ((pred - target) ** 2 * weights).sum() / valid.expand_as(pred).sum().clamp_min(1)


def densepose_loss(
    pred: Float[Tensor, "*bs D"],
    target: Float[Tensor, "*bs D"],
    valid_mask: Bool[Tensor, "*bs"] | Bool[Tensor, "*bs 1"],
) -> Float[Tensor, ""]:
    """Dense-pose embedding MSE over the pixels where the target embedding is defined (0 when none)."""
    mask = valid_mask.to(torch.bool)
    if mask.dim() < pred.dim():
        mask = mask[..., None]
    return masked_mse(pred, target, mask)


def coordinate_loss(
    pred: Float[Tensor, "*bs 3"], points: Float[Tensor, "*bs 3"], mask: Optional[Bool[Tensor, "*bs"]] = None
) -> Float[Tensor, ""]:
    """GHNeRF's l_coord: MSE between regressed and true query points, optionally over ``mask``-ed points only.

    Both must be in the same frame (e.g. points normalised to the subject's bounding box, which keeps the loss
    independent of the world scale; see ``CoordinateHead``).
    """
    if mask is None:
        return F.mse_loss(pred, points)
    return masked_mse(pred, points, mask.to(torch.bool)[..., None])


class PerceptualLoss:
    """Patch perceptual loss on ImageNet VGG16 features; off (``available`` False) when the weights are absent.

    ``kind="vgg"`` is ENeRF's loss: L1 between VGG16 features of blocks relu1_2, relu2_2, relu3_3 and relu4_3 of
    ImageNet-normalised inputs, summed over blocks. ``kind="lpips"`` is LPIPS-VGG (the ``lpips`` package's linear
    heads on the same trunk), averaged over patches.

    Weights come from ``weights_path`` or torchvision's hub cache (see ``pretrained_vgg``). Nothing is downloaded
    and random weights are never used: without weights a one-line warning names where it looked, ``available`` is
    False, ``reason`` says why, and calling the loss raises ``RuntimeError``. Check ``available`` before calling.

    Deliberately not an ``nn.Module``: the frozen backbone stays out of model checkpoints (so a checkpoint loads on
    machines with or without the weights). It follows the device of its inputs.
    """

    def __init__(self, weights_path: Optional[PathLike] = None, kind: Literal["vgg", "lpips"] = "vgg") -> None:
        if kind not in ("vgg", "lpips"):
            raise ValueError(f"Unknown perceptual loss kind {kind!r}: use 'vgg' or 'lpips'.")
        self.kind = kind
        lookup = find_vgg16_weights(weights_path)
        self.available = lookup.available
        self.reason = lookup.reason(f"{kind} perceptual loss")
        self._net: Optional[nn.Module] = None
        if lookup.path is None:
            warn_unavailable(lookup, f"{kind} perceptual loss")
        elif kind == "vgg":
            self._net = load_vgg16_features(lookup.path)[: VGG_BLOCK_ENDS[-1]]
        else:
            self._net = build_lpips_vgg(lookup.path)

    def _network(self, device: torch.device) -> nn.Module:
        if self._net is None:
            raise RuntimeError(self.reason)
        self._net = self._net.to(device)
        return self._net

    def __call__(self, pred: Float[Tensor, "B 3 H W"], target: Float[Tensor, "B 3 H W"]) -> Float[Tensor, ""]:
        """Loss between predicted and target patches with colours in [0, 1] (channels first)."""
        net = self._network(pred.device)
        if self.kind == "lpips":
            return net(pred * 2 - 1, target * 2 - 1).mean()
        mean = pred.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = pred.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
        x, y = (pred - mean) / std, (target - mean) / std
        loss = pred.new_zeros(())
        start = 0
        for end in VGG_BLOCK_ENDS:
            block = net[start:end]
            x, y = block(x), block(y)
            loss = loss + F.l1_loss(x, y)
            start = end
        return loss
