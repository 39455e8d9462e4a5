"""Overlays of the initial and refined skeletons (and the ground truth where known) on the video frames."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence

import cv2
import imageio.v2 as imageio
import numpy as np
from jaxtyping import Float, UInt8
from torch import Tensor

from nerfstudio_humanfeat.skeleton import SMPL_PARENTS

INITIAL_COLOR = (230, 60, 60)
REFINED_COLOR = (60, 220, 60)
TRUTH_COLOR = (250, 250, 250)


def draw_skeletons(
    image: Float[Tensor, "H W 3"],
    skeletons: Sequence[Float[Tensor, "24 2"]],
    colors: Sequence[tuple],
    upscale: int = 3,
) -> UInt8[np.ndarray, "h w 3"]:
    """The image (upscaled for legibility) with each 24-joint skeleton drawn in its colour, in order."""
    canvas = (image.detach().cpu().numpy().clip(0, 1) * 255).astype(np.uint8)
    canvas = cv2.resize(canvas, None, fx=upscale, fy=upscale, interpolation=cv2.INTER_NEAREST)
    for joints, color in zip(skeletons, colors):
        points = (joints.detach().cpu().numpy() * upscale).round().astype(int)
        for child, parent in enumerate(SMPL_PARENTS):
            if parent >= 0:
                cv2.line(canvas, tuple(points[parent]), tuple(points[child]), color, 1, cv2.LINE_AA)
        for point in points:
            cv2.circle(canvas, tuple(point), 2, color, -1, cv2.LINE_AA)
    return canvas


def overlay_frames(
    images: Float[Tensor, "T H W 3"],
    initial: Float[Tensor, "T 24 2"],
    refined: Float[Tensor, "T 24 2"],
    truth: Optional[Float[Tensor, "T 24 2"]] = None,
    upscale: int = 3,
) -> List[np.ndarray]:
    """One overlay per frame: ground truth (white, when given), initial (red), refined (green)."""
    frames = []
    for t in range(images.shape[0]):
        skeletons = ([truth[t]] if truth is not None else []) + [initial[t], refined[t]]
        colors = ([TRUTH_COLOR] if truth is not None else []) + [INITIAL_COLOR, REFINED_COLOR]
        frames.append(draw_skeletons(images[t], skeletons, colors, upscale))
    return frames


def write_overlay(frames: Sequence[np.ndarray], path: Path, fps: int = 10) -> Path:
    """An .mp4/.gif video of the frames, or (any other suffix, e.g. .png) a strip of up to 8 evenly spaced frames."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix in (".mp4", ".gif"):
        if path.suffix == ".mp4":
            imageio.mimwrite(path, list(frames), fps=fps, macro_block_size=1)
        else:
            imageio.mimwrite(path, list(frames), duration=1.0 / fps)
        return path
    picks = np.linspace(0, len(frames) - 1, min(8, len(frames))).round().astype(int)
    imageio.imwrite(path, np.concatenate([frames[i] for i in picks], axis=1))
    return path
