"""ns-humanfeat-process: turn your own calibrated multi-view capture into a ZJU-MoCap dataset.

One folder of images per camera under --images, frames matched by file name; calibration from a nerfstudio
transforms.json, a COLMAP text model (folder with cameras.txt, images.txt) or a ZJU-MoCap annots.npy. Writes
undistorted images, foreground masks, BODY_25 2D keypoints (OpenPose JSON and annots.npy kpts2d) from mediapipe's
BlazePose, DLT-triangulated 3D keypoints (keypoints3d/, which bound the body) and splits.json (docs/capture.md).
The result has no SMPL fit: methods that need one (anipixel) refuse it, ghnerf / hfnerf train on it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional, Tuple

import tyro
from rich.console import Console

from nerfstudio_humanfeat.capture.pipeline import ProcessSummary, process_capture
from nerfstudio_humanfeat.data.catalog import HumanDataError

CONSOLE = Console()


@dataclass
class ProcessConfig:
    """Process a multi-view capture into the ZJU-MoCap layout (masks, keypoints, 3D keypoints, splits.json)."""

    images: Path
    """Folder holding one sub-folder of images per camera (<images>/<camera>/<frame>.jpg)."""
    cameras: Path
    """Calibration: transforms.json (nerfstudio, OpenGL camera-to-world), a COLMAP text model folder, or annots.npy;
    camera names are the image paths' folders."""
    output_dir: Path
    """Dataset root; the sequence goes to <output-dir>/<name>, and is added to <output-dir>/splits.json."""
    frames: Optional[Tuple[str, ...]] = None
    """Frame names (file stems) to process; default: every frame."""
    name: str = "capture"
    """Sequence (subject) name."""
    split: Literal["train", "test"] = "train"
    """Which subject list of splits.json the sequence joins."""
    masks: Literal["segmenter", "hull"] = "segmenter"
    """segmenter: mediapipe's person segmentation (views where it finds nothing fall back to the hull); hull: the
    projected box of the triangulated keypoints for every view."""
    quiet: bool = False
    """No progress bar."""


def print_summary(summary: ProcessSummary) -> None:
    CONSOLE.print(
        f"Wrote {summary.output}: {summary.num_frames} frames, {summary.num_views} views; "
        f"{1000 * summary.seconds_per_image:.0f} ms per image (pose + segmentation); masks {summary.mask_sources}; "
        f"{summary.missed_views} views without a detected person; {summary.triangulated_joints:.1f} of 25 joints "
        f"triangulated per frame. Check it with: ns-humanfeat-inspect --data {summary.output.parent}"
    )


def main(config: ProcessConfig) -> ProcessSummary:
    from nerfstudio_humanfeat.capture.estimator import make_estimator

    estimator = make_estimator("mediapipe")
    try:
        summary = process_capture(
            config.images,
            config.cameras,
            config.output_dir,
            estimator,
            frames=config.frames,
            name=config.name,
            split=config.split,
            masks=config.masks,
            progress=not config.quiet,
        )
    finally:
        estimator.close()
    print_summary(summary)
    return summary


def entrypoint() -> None:
    """Console script ns-humanfeat-process."""
    from nerfstudio_humanfeat.capture.estimator import EstimatorUnavailable

    config = tyro.cli(ProcessConfig, description=__doc__)
    try:
        main(config)
    except (HumanDataError, EstimatorUnavailable) as err:
        CONSOLE.print(f"ns-humanfeat-process: {err}", style="bold red", markup=False, soft_wrap=True)
        sys.exit(1)


if __name__ == "__main__":
    entrypoint()
