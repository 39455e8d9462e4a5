"""KeypointNeRF's image encoders (paper 003, Sec. 4.2 and supplementary B), trained from scratch.

- ``HourglassEncoder``: the geometry encoder. Four conv blocks (GroupNorm, ReLU; strides 2, 2, 2, 1), one
  hourglass with four downsamplings (GroupNorm residual blocks) and four refining convs give the deep map F^gl
  (64 ch, H/8); a transposed conv after the second block gives the shallow map F^gh (8 ch, H/2).
- ``ResidualTextureEncoder``: the appearance encoder, a residual conv net (instance norm, ReLU; 3 downsamplings,
  4 residual blocks, 1 upsampling) giving F^a (8 ch, H/4).

Both take images in [0, 1] (rescaled to [-1, 1]) of any size, (V, 3, H, W), and return maps that span the whole
image (so ``projection.sample_pixel_aligned`` samples them with full-resolution intrinsics).
"""

from __future__ import annotations

import math
from typing import Tuple

import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from nerfstudio_humanfeat.model_components.image_encoders import _crop_to_image, _pad_to_multiple


def group_norm(channels: int, groups: int = 32) -> nn.GroupNorm:
    """GroupNorm with the largest group count <= ``groups`` that divides ``channels`` and leaves >= 2 channels per
    group (so the 1x1 maps at the bottom of a small image's hourglass still normalise)."""
    return nn.GroupNorm(math.gcd(groups, max(channels // 2, 1)), channels)


def conv_gn_relu(in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2), group_norm(out_ch), nn.ReLU()
    )


class GNResidualBlock(nn.Module):
    """x + conv(GN, ReLU, conv, GN)(x), then ReLU."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1),
            group_norm(channels),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            group_norm(channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x + self.body(x))


class Hourglass(nn.Module):
    """Newell et al.'s hourglass: a skip branch at this resolution plus a pooled branch recursing ``depth`` times."""

    def __init__(self, channels: int, depth: int = 4) -> None:
        super().__init__()
        self.skip = GNResidualBlock(channels)
        self.down = GNResidualBlock(channels)
        self.inner = Hourglass(channels, depth - 1) if depth > 1 else GNResidualBlock(channels)
        self.up = GNResidualBlock(channels)

    def forward(self, x: Tensor) -> Tensor:
        low = self.up(self.inner(self.down(F.max_pool2d(x, 2, ceil_mode=True))))
        return self.skip(x) + F.interpolate(low, size=x.shape[-2:], mode="bilinear", align_corners=False)


class HourglassEncoder(nn.Module):
    """Geometry encoder: (F^gl at H/8, F^gh at H/2).

    Args:
        width: filters of the conv blocks and the hourglass (KeypointNeRF: 256).
        out_channels: channels of F^gl (64).
        high_channels: channels of F^gh (8).
        depth: downsamplings inside the hourglass (4).
    """

    stride: Tuple[int, int] = (8, 2)

    def __init__(self, width: int = 256, out_channels: int = 64, high_channels: int = 8, depth: int = 4) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.high_channels = high_channels
        self.block1 = conv_gn_relu(3, width, 7, stride=2)
        self.block2 = conv_gn_relu(width, width, 3, stride=2)
        self.high = nn.Sequential(nn.ConvTranspose2d(width, high_channels, 4, stride=2, padding=1), nn.ReLU())
        self.block3 = conv_gn_relu(width, width, 3, stride=2)
        self.block4 = conv_gn_relu(width, width, 3)
        self.hourglass = Hourglass(width, depth)
        self.refine = nn.Sequential(
            conv_gn_relu(width, width, 1),
            conv_gn_relu(width, width, 1),
            conv_gn_relu(width, out_channels, 1),
            nn.Conv2d(out_channels, out_channels, 1),
        )

    def forward(
        self, images: Float[Tensor, "V 3 H W"]
    ) -> Tuple[Float[Tensor, "V Cl H8 W8"], Float[Tensor, "V Ch H2 W2"]]:
        size = (images.shape[-2], images.shape[-1])
        x = _pad_to_multiple(images * 2.0 - 1.0, 8)
        padded = (x.shape[-2], x.shape[-1])
        x = self.block2(self.block1(x))
        high = self.high(x)
        low = self.refine(self.hourglass(self.block4(self.block3(x))))
        return _crop_to_image(low, padded, size, 8), _crop_to_image(high, padded, size, 2)


class ResidualBlock(nn.Module):
    """x + conv(IN, ReLU, conv, IN)(x) (pix2pixHD's residual block)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.InstanceNorm2d(channels, affine=True),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.InstanceNorm2d(channels, affine=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class ResidualTextureEncoder(nn.Module):
    """Appearance encoder: F^a, ``out_channels`` at H/4.

    Args:
        out_channels: channels of F^a (KeypointNeRF: 8).
        base_channels: filters of the first conv (ngf, 64), doubled at each downsampling (capped at 8 ngf).
        num_down: downsamplings (3); ``num_up`` = num_down - 2 upsamplings bring the map to H/4.
        num_blocks: residual blocks at the lowest resolution (4).
    """

    stride: int = 4

    def __init__(self, out_channels: int = 8, base_channels: int = 64, num_down: int = 3, num_blocks: int = 4) -> None:
        super().__init__()
        if num_down < 2:
            raise ValueError("num_down must be >= 2 (the output is at 1/4 resolution)")
        self.out_channels = out_channels
        self.num_down = num_down
        layers = [nn.Conv2d(3, base_channels, 7, padding=3), nn.InstanceNorm2d(base_channels, affine=True), nn.ReLU()]
        channels = base_channels
        for _ in range(num_down):
            nxt = min(channels * 2, 8 * base_channels)
            layers += [nn.Conv2d(channels, nxt, 3, stride=2, padding=1), nn.InstanceNorm2d(nxt, affine=True), nn.ReLU()]
            channels = nxt
        layers += [ResidualBlock(channels) for _ in range(num_blocks)]
        for _ in range(num_down - 2):
            nxt = max(channels // 2, base_channels)
            layers += [
                nn.ConvTranspose2d(channels, nxt, 4, stride=2, padding=1),
                nn.InstanceNorm2d(nxt, affine=True),
                nn.ReLU(),
            ]
            channels = nxt
        layers.append(nn.Conv2d(channels, out_channels, 3, padding=1))
        self.layers = nn.Sequential(*layers)

    def forward(self, images: Float[Tensor, "V 3 H W"]) -> Float[Tensor, "V C H4 W4"]:
        size = (images.shape[-2], images.shape[-1])
        x = _pad_to_multiple(images * 2.0 - 1.0, 2**self.num_down)
        return _crop_to_image(self.layers(x), (x.shape[-2], x.shape[-1]), size, self.stride)
