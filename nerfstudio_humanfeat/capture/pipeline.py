"""The processing run of ns-humanfeat-process: read, undistort, detect, triangulate, write."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Literal, Optional, Sequence, Tuple

import cv2
import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from nerfstudio_humanfeat.capture.calibration import Calibration, read_calibration
from nerfstudio_humanfeat.capture.capture_folder import scan_capture
from nerfstudio_humanfeat.capture.estimator import Detection
from nerfstudio_humanfeat.capture.hull import hull_mask
from nerfstudio_humanfeat.capture.robust import consistent_keypoints
from nerfstudio_humanfeat.capture.writer import SequenceWriter
from nerfstudio_humanfeat.data.catalog import HumanDataError

MaskMode = Literal["segmenter", "hull"]


@dataclass
class ProcessSummary:
    output: Path
    num_frames: int
    num_views: int
    seconds_per_image: float
    mask_sources: Dict[str, int] = field(default_factory=dict)
    missed_views: int = 0
    """Views where the estimator found no person."""
    triangulated_joints: float = 0.0
    """Mean number of joints triangulated per frame."""


def undistort(image: np.ndarray, K: np.ndarray, D: np.ndarray) -> np.ndarray:
    """The image undistorted with K kept (the ZJU-MoCap loaders' convention)."""
    return cv2.undistort(image, K, D) if np.any(D) else image


def triangulate(keypoints: np.ndarray, calibration: Calibration) -> Tuple[np.ndarray, np.ndarray]:
    """(25, 4) world keypoints from (C, 25, 3) OpenCV-pixel keypoints (NaN: missing) by DLT with per-joint RANSAC
    (`robust`), and the 2D keypoints made consistent (mirrored views swapped back, outliers' confidence 0)."""
    points = np.where(np.isfinite(keypoints), keypoints, 0.0)
    points[..., 2] = np.where(np.isfinite(keypoints).all(-1), points[..., 2], 0.0)
    world_to_camera = np.concatenate([calibration.R, calibration.T[:, :, None]], axis=2)
    return consistent_keypoints(points, calibration.K @ world_to_camera)


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold blue]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        disable=not enabled,
    )


def output_frame_names(frames: Sequence[str]) -> List[str]:
    """Frame names the ZJU layout can number: numeric stems kept (zero-padded), others numbered in order."""
    if all(f.isdigit() for f in frames):
        return [f"{int(f):06d}" for f in frames]
    return [f"{i:06d}" for i in range(len(frames))]


def process_capture(
    images: Path,
    cameras: Path,
    output_dir: Path,
    estimator,
    frames: Optional[Sequence[str]] = None,
    name: str = "capture",
    split: str = "train",
    masks: MaskMode = "segmenter",
    progress: bool = True,
) -> ProcessSummary:
    """Process a multi-view capture (one folder per camera under `images`) into `output_dir`/`name`."""
    capture = scan_capture(images, frames=frames)
    calibration = read_calibration(cameras).subset(capture.cameras)
    writer = SequenceWriter(output_dir, name, calibration)
    names = output_frame_names(capture.frames)
    sources: Counter = Counter()
    missed, seconds, views, joints = 0, 0.0, 0, []
    with _progress(progress) as bar:
        task = bar.add_task("Processing views", total=len(capture.frames) * len(capture.cameras))
        for frame, out_name in zip(capture.frames, names):
            detections: List[Optional[Detection]] = []
            undistorted: List[Optional[np.ndarray]] = []
            for c, camera in enumerate(capture.cameras):
                path = capture.image(camera, frame)
                if path is None:
                    detections.append(None)
                    undistorted.append(None)
                    bar.advance(task)
                    continue
                bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
                if bgr is None:
                    raise HumanDataError(f"{path}: cannot decode the image")
                size = calibration.sizes[c]
                if size is not None and tuple(size) != bgr.shape[:2]:
                    raise HumanDataError(
                        f"{path}: image is {bgr.shape[1]}x{bgr.shape[0]}, the calibration says {size[1]}x{size[0]}"
                    )
                rgb = undistort(bgr[..., ::-1].copy(), calibration.K[c], calibration.D[c])
                start = time.perf_counter()
                detection = estimator(rgb)
                seconds += time.perf_counter() - start
                views += 1
                missed += detection.keypoints is None
                detections.append(detection)
                undistorted.append(rgb)
                bar.advance(task)
            kpts2d = np.zeros((len(capture.cameras), 25, 3), dtype=np.float64)
            for c, detection in enumerate(detections):
                if detection is not None and detection.keypoints is not None:
                    kpts2d[c] = detection.keypoints
            kpts3d, kpts2d = triangulate(kpts2d, calibration)
            joints.append(int((kpts3d[:, 3] > 0).sum()))
            for c, camera in enumerate(capture.cameras):
                rgb, detection = undistorted[c], detections[c]
                if rgb is None:
                    continue
                mask = detection.mask if masks == "segmenter" else None
                if mask is None:
                    mask = hull_mask(kpts3d, calibration.K[c], calibration.R[c], calibration.T[c], rgb.shape[:2])
                    sources["hull"] += 1
                else:
                    sources[detection.mask_source] += 1
                writer.write_view(camera, out_name, rgb, mask, kpts2d[c])
            writer.write_frame(
                out_name, [c if capture.image(c, frame) else None for c in capture.cameras], kpts2d, kpts3d
            )
    summary = ProcessSummary(
        output=writer.sequence,
        num_frames=len(capture.frames),
        num_views=views,
        seconds_per_image=seconds / max(views, 1),
        mask_sources=dict(sources),
        missed_views=missed,
        triangulated_joints=float(np.mean(joints)) if joints else 0.0,
    )
    writer.finish(
        {
            "images": str(images),
            "calibration": str(cameras),
            "cameras": capture.cameras,
            "frames": dict(zip(names, capture.frames)),
            "estimator": type(estimator).__name__,
            "seconds_per_image": summary.seconds_per_image,
            "mask_sources": summary.mask_sources,
            "views_without_person": missed,
            "triangulated_joints_per_frame": summary.triangulated_joints,
        },
        split=split,
    )
    return summary
