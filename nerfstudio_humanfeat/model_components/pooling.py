"""Pooling of per-view features over source views (IBRNet / ENeRF style)."""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from jaxtyping import Bool, Float
from torch import Tensor, nn

from nerfstudio_humanfeat.model_components.projection import camera_centres

WEIGHT_EPS = 1e-8


def weighted_mean_variance(
    features: Float[Tensor, "V *bs C"], weights: Optional[Float[Tensor, "V *bs 1"]] = None
) -> Tuple[Float[Tensor, "*bs C"], Float[Tensor, "*bs C"]]:
    """Mean and (population) variance over the view axis, optionally weighted."""
    if weights is None:
        mean = features.mean(dim=0)
        var = ((features - mean) ** 2).mean(dim=0)
        return mean, var
    weights = weights.to(features.dtype)
    total = weights.sum(dim=0).clamp_min(WEIGHT_EPS)
    mean = (features * weights).sum(dim=0) / total
    var = (weights * (features - mean) ** 2).sum(dim=0) / total
    return mean, var


def mean_variance_pool(
    features: Float[Tensor, "V N C"], weights: Optional[Float[Tensor, "V N 1"]] = None
) -> Float[Tensor, "N 2C"]:
    """Concatenated [mean, variance] over views; ``weights`` (e.g. visibility 0/1) weight both statistics.

    Variance is the population variance (divides by the weight sum, not sum - 1). Points with no weight at all
    get zeros.
    """
    mean, var = weighted_mean_variance(features, weights)
    return torch.cat([mean, var], dim=-1)


def relative_view_directions(
    points: Float[Tensor, "*bs 3"], target_origins: Float[Tensor, "*bs 3"], source_w2c: Float[Tensor, "V 3 4"]
) -> Float[Tensor, "V *bs 4"]:
    """IBRNet's view-direction difference: unit direction of (d_target - d_source) and the dot d_target . d_source.

    d_target / d_source are unit vectors from the point towards the target origin / each source camera centre.
    """
    to_target = nn.functional.normalize(target_origins - points, dim=-1)
    centres = camera_centres(source_w2c).reshape(source_w2c.shape[0], *([1] * (points.dim() - 1)), 3)
    to_source = nn.functional.normalize(centres - points, dim=-1)
    diff = to_target - to_source
    direction = diff / diff.norm(dim=-1, keepdim=True).clamp_min(1e-6)
    dot = (to_target * to_source).sum(dim=-1, keepdim=True)
    return torch.cat([direction, dot], dim=-1)


class ViewPoolingMLP(nn.Module):
    """ENeRF's feature aggregation: pooled image feature f_img from per-view features.

    Per view: f_i + FC(view-direction difference); concatenated with the (visibility-weighted) variance and mean
    over views; a shared FC gives a hidden vector and a pooling logit; softmax over (visible) views pools the
    hidden vectors; a final FC gives f_img.

    Args:
        in_channels: per-view feature channels C (e.g. image features + RGB).
        hidden_channels: width of the shared per-view FC (ENeRF: 32).
        out_channels: channels of f_img (ENeRF: 16).
        direction_channels: size of the direction input (4 for ``relative_view_directions``; 0 disables it).
    """

    def __init__(
        self, in_channels: int, hidden_channels: int = 32, out_channels: int = 16, direction_channels: int = 4
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.direction_channels = direction_channels
        self.view_fc = (
            nn.Sequential(nn.Linear(direction_channels, in_channels), nn.ReLU()) if direction_channels > 0 else None
        )
        self.global_fc = nn.Sequential(nn.Linear(3 * in_channels, hidden_channels), nn.ReLU())
        self.weight_fc = nn.Sequential(nn.Linear(hidden_channels, 1), nn.ReLU())
        self.out_fc = nn.Sequential(nn.Linear(hidden_channels, out_channels), nn.ReLU())

    def forward(
        self,
        features: Float[Tensor, "V *bs C"],
        directions: Optional[Float[Tensor, "V *bs D"]] = None,
        valid: Optional[Bool[Tensor, " V *bs"]] = None,
    ) -> Float[Tensor, "*bs out"]:
        """Pools per-view features; ``valid`` masks views that do not see the point."""
        if self.view_fc is not None:
            if directions is None:
                raise ValueError("ViewPoolingMLP was built with direction_channels > 0: pass `directions`.")
            features = features + self.view_fc(directions)
        weights = None if valid is None else valid[..., None].to(features.dtype)
        mean, var = weighted_mean_variance(features, weights)
        stats = torch.cat([var, mean], dim=-1).expand(features.shape[0], *mean.shape[:-1], 2 * mean.shape[-1])
        hidden = self.global_fc(torch.cat([features, stats], dim=-1))
        logits = self.weight_fc(hidden)
        if valid is not None:
            logits = logits.masked_fill(~valid[..., None], torch.finfo(logits.dtype).min)
        pool = torch.softmax(logits, dim=0)
        return self.out_fc((hidden * pool).sum(dim=0))
