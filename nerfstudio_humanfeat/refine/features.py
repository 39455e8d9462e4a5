"""Image features F for joint registration and matching, and sampling them at pixel positions.

The paper samples its GHN's encoder (ConvNeXt-tiny at 1/4 resolution). A renderer may provide its model's encoder;
``local_descriptors`` is the fixed, training-free stand-in: a small DAISY-like descriptor (the blurred image sampled
on rings around the pixel), normalised per pixel so that cosine similarity compares local colour patterns."""

from __future__ import annotations

import math
from typing import Sequence, Tuple

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor


def gaussian_blur(image: Float[Tensor, "C H W"], sigma: float) -> Float[Tensor, "C H W"]:
    """Separable Gaussian blur with zero padding."""
    if sigma <= 0:
        return image
    radius = max(1, int(math.ceil(3 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=image.dtype, device=image.device)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = kernel / kernel.sum()
    channels = image.shape[0]
    out = F.conv2d(
        image[None], kernel.reshape(1, 1, 1, -1).expand(channels, 1, 1, -1), padding=(0, radius), groups=channels
    )
    out = F.conv2d(out, kernel.reshape(1, 1, -1, 1).expand(channels, 1, -1, 1), padding=(radius, 0), groups=channels)
    return out[0]


def shift(image: Float[Tensor, "C H W"], dx: int, dy: int) -> Float[Tensor, "C H W"]:
    """out[y, x] = image[y + dy, x + dx], zero outside."""
    _, height, width = image.shape
    padded = F.pad(image, (abs(dx), abs(dx), abs(dy), abs(dy)))
    return padded[:, abs(dy) + dy : abs(dy) + dy + height, abs(dx) + dx : abs(dx) + dx + width]


def local_descriptors(
    image: Float[Tensor, "H W 3"], radii: Sequence[int] = (0, 3, 6), directions: int = 8, sigma: float = 1.5
) -> Float[Tensor, "C H W"]:
    """Per-pixel descriptors: the image blurred by ``sigma`` sampled at the centre and at ``directions`` points on each
    ring of the given radii (pixels), minus their mean and scaled to unit norm."""
    blurred = gaussian_blur(image.permute(2, 0, 1).float(), sigma)
    parts = []
    for radius in radii:
        if radius == 0:
            parts.append(blurred)
            continue
        for k in range(directions):
            angle = 2 * math.pi * k / directions
            parts.append(shift(blurred, int(round(radius * math.cos(angle))), int(round(radius * math.sin(angle)))))
    features = torch.cat(parts, dim=0)
    features = features - features.mean(dim=0, keepdim=True)
    return features / features.norm(dim=0, keepdim=True).clamp_min(1e-6)


def sample_features(
    feature_map: Float[Tensor, "C h w"], uv: Float[Tensor, "N 2"], image_size: Tuple[int, int]
) -> Float[Tensor, "N C"]:
    """Bilinear samples at pixel positions (x, y) of the image (the map may be at a lower resolution); zeros outside."""
    height, width = image_size
    grid = torch.stack([uv[:, 0] * (2.0 / width) - 1.0, uv[:, 1] * (2.0 / height) - 1.0], dim=-1)
    sampled = F.grid_sample(
        feature_map[None].float(), grid[None, None].float(), mode="bilinear", padding_mode="zeros", align_corners=False
    )
    return sampled[0, :, 0].T
