"""Pixel sampling for one target view: rays inside the subject's box mask, a share on the body, and patches."""

from __future__ import annotations

from typing import Optional

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor


def sample_pixels_in_mask(
    mask: Bool[Tensor, "H W"], num: int, generator: Optional[torch.Generator] = None
) -> Int[Tensor, "num 2"]:
    """`num` pixel indices (y, x) drawn uniformly with replacement from the pixels where `mask` is true."""
    candidates = torch.nonzero(mask, as_tuple=False)
    if candidates.shape[0] == 0:
        raise ValueError("cannot sample pixels from an empty mask")
    picks = torch.randint(0, candidates.shape[0], (num,), generator=generator)
    return candidates[picks]


def sample_view_pixels(
    box_mask: Bool[Tensor, "H W"],
    foreground: Bool[Tensor, "H W"],
    num: int,
    foreground_ratio: float,
    generator: Optional[torch.Generator] = None,
) -> Int[Tensor, "num 2"]:
    """Pixels inside the box mask, `foreground_ratio` of them on the foreground mask (ENeRF: 0.75)."""
    if num <= 0:
        return torch.zeros(0, 2, dtype=torch.long)
    if not box_mask.any():
        box_mask = torch.ones_like(box_mask)
    foreground = foreground & box_mask
    num_fg = int(round(num * foreground_ratio)) if foreground.any() else 0
    parts = []
    if num_fg > 0:
        parts.append(sample_pixels_in_mask(foreground, num_fg, generator))
    if num - num_fg > 0:
        parts.append(sample_pixels_in_mask(box_mask, num - num_fg, generator))
    return torch.cat(parts, dim=0)


def sample_pixels_near_joints(
    keypoints: Float[Tensor, "J 2"],
    num: int,
    spread: float,
    height: int,
    width: int,
    generator: Optional[torch.Generator] = None,
) -> Int[Tensor, "num 2"]:
    """`num` pixel indices (y, x) at Gaussian offsets (std `spread` pixels) from joints drawn uniformly among
    `keypoints` (x, y), clamped to the image; none when there are no joints."""
    if num <= 0 or keypoints.shape[0] == 0:
        return torch.zeros(0, 2, dtype=torch.long)
    picks = torch.randint(0, keypoints.shape[0], (num,), generator=generator)
    offsets = torch.randn(num, 2, generator=generator) * spread
    xy = (keypoints[picks].float() + offsets).floor().long()
    x = xy[:, 0].clamp(0, width - 1)
    y = xy[:, 1].clamp(0, height - 1)
    return torch.stack([y, x], dim=-1)


def sample_patches(
    box_mask: Bool[Tensor, "H W"], num_patches: int, patch_size: int, generator: Optional[torch.Generator] = None
) -> Int[Tensor, "P S S 2"]:
    """Square patches (y, x per pixel, row-major) whose top-left corners lie inside the mask's bounding rectangle."""
    height, width = box_mask.shape
    if patch_size > min(height, width):
        raise ValueError(f"patch size {patch_size} does not fit in a {height}x{width} image")
    ys, xs = torch.nonzero(box_mask, as_tuple=True)
    if ys.numel() == 0:
        y0, y1, x0, x1 = 0, height, 0, width
    else:
        y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
    y_hi = max(min(y1, height) - patch_size, 0)
    x_hi = max(min(x1, width) - patch_size, 0)
    y_lo, x_lo = min(y0, y_hi), min(x0, x_hi)
    tops = torch.randint(y_lo, y_hi + 1, (num_patches,), generator=generator)
    lefts = torch.randint(x_lo, x_hi + 1, (num_patches,), generator=generator)
    offsets = torch.arange(patch_size)
    grid_y, grid_x = torch.meshgrid(offsets, offsets, indexing="ij")
    patch_y = tops[:, None, None] + grid_y[None]
    patch_x = lefts[:, None, None] + grid_x[None]
    return torch.stack([patch_y, patch_x], dim=-1)


def sample_patches_around(
    mask: Bool[Tensor, "H W"], num_patches: int, patch_size: int, generator: Optional[torch.Generator] = None
) -> Int[Tensor, "P S S 2"]:
    """Square patches (y, x per pixel, row-major) centred on random pixels of ``mask`` (KeypointNeRF: a patch around
    a random foreground pixel), shifted to lie inside the image; the whole image when the mask is empty."""
    height, width = mask.shape
    if patch_size > min(height, width):
        raise ValueError(f"patch size {patch_size} does not fit in a {height}x{width} image")
    centres = sample_pixels_in_mask(mask if mask.any() else torch.ones_like(mask), num_patches, generator)
    tops = (centres[:, 0] - patch_size // 2).clamp(0, height - patch_size)
    lefts = (centres[:, 1] - patch_size // 2).clamp(0, width - patch_size)
    offsets = torch.arange(patch_size)
    grid_y, grid_x = torch.meshgrid(offsets, offsets, indexing="ij")
    return torch.stack([tops[:, None, None] + grid_y[None], lefts[:, None, None] + grid_x[None]], dim=-1)
