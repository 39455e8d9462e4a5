"""Writes a processed capture in the ZJU-MoCap layout (docs/data_format.md) read by the `zju-mocap` dataparser."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import cv2
import numpy as np

from nerfstudio_humanfeat.capture.calibration import Calibration
from nerfstudio_humanfeat.data.catalog import HumanDataError

JPEG_QUALITY = 95


def _parent(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def openpose_json(keypoints: np.ndarray) -> dict:
    """OpenPose's per-image JSON with one person; missing joints (confidence 0) are written 0, 0, 0 as OpenPose
    does, an empty people list when nothing was detected."""
    if keypoints is None or not (keypoints[:, 2] > 0).any():
        return {"version": 1.3, "people": []}
    clean = np.where((keypoints[:, 2:] > 0) & np.isfinite(keypoints), keypoints, 0.0)
    return {
        "version": 1.3,
        "people": [{"person_id": [-1], "pose_keypoints_2d": [round(float(v), 3) for v in clean.reshape(-1)]}],
    }


class SequenceWriter:
    """One processed sequence: images, masks and keypoints per view, 3D keypoints per frame, then annots.npy."""

    def __init__(self, root: Path, name: str, calibration: Calibration) -> None:
        self.root = root
        self.sequence = root / name
        self.name = name
        self.calibration = calibration
        self.ims: List[Dict] = []

    def rel(self, camera: str, frame: str, suffix: str = ".jpg") -> str:
        return f"{camera}/{frame}{suffix}"

    def write_view(self, camera: str, frame: str, image: np.ndarray, mask: np.ndarray, keypoints: np.ndarray) -> None:
        """Undistorted RGB image (jpg), 0/255 mask (png) and OpenPose JSON of one view."""
        rel = self.rel(camera, frame)
        cv2.imwrite(str(_parent(self.sequence / rel)), image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        cv2.imwrite(str(_parent(self.sequence / "mask" / self.rel(camera, frame, ".png"))), mask.astype(np.uint8) * 255)
        path = _parent(self.sequence / "keypoints2d" / self.rel(camera, frame, ".json"))
        path.write_text(json.dumps(openpose_json(keypoints)), encoding="utf-8")

    def write_frame(self, frame: str, cameras: Sequence[Optional[str]], kpts2d: np.ndarray, kpts3d: np.ndarray) -> None:
        """The frame's 3D keypoints JSON (world metres; missing: zeros, confidence 0) and its annots entry."""
        clean = np.where((kpts3d[:, 3:] > 0) & np.isfinite(kpts3d), kpts3d, 0.0)
        path = _parent(self.sequence / "keypoints3d" / f"{frame}.json")
        keypoints = [[round(float(v), 5) for v in joint] for joint in clean]
        path.write_text(json.dumps([{"id": 0, "keypoints3d": keypoints}]), encoding="utf-8")
        kpts2d = np.where((kpts2d[..., 2:] > 0) & np.isfinite(kpts2d), kpts2d, 0.0).astype(np.float32)
        self.ims.append({"ims": [self.rel(c, frame) if c else None for c in cameras], "kpts2d": kpts2d})

    def finish(self, summary: Dict, split: str = "train", source_cameras: Optional[List[int]] = None) -> None:
        """annots.npy (undistorted cameras: D = 0, T in millimetres), capture.json, and the root's splits.json."""
        cal = self.calibration
        cams = {
            "K": [k.copy() for k in cal.K],
            "D": [np.zeros((5, 1)) for _ in cal.names],
            "R": [r.copy() for r in cal.R],
            "T": [t.reshape(3, 1) * 1000.0 for t in cal.T],
        }
        np.save(self.sequence / "annots.npy", np.array({"cams": cams, "ims": self.ims}, dtype=object))
        (self.sequence / "capture.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
        write_splits(self.root, self.name, split, len(cal.names), source_cameras)


def write_splits(root: Path, name: str, split: str, num_cameras: int, source_cameras: Optional[List[int]]) -> None:
    """Add the sequence to the root's splits.json (made when absent): `split` subjects, even cameras as sources and
    odd ones as targets unless given."""
    if split not in ("train", "test"):
        raise HumanDataError(f"split must be 'train' or 'test', got {split!r}")
    path = root / "splits.json"
    splits = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    for key in ("train_subjects", "test_subjects"):
        splits.setdefault(key, [])
        if name in splits[key]:
            splits[key].remove(name)
    splits[f"{split}_subjects"].append(name)
    sources = list(range(0, num_cameras, 2)) if source_cameras is None else list(source_cameras)
    splits.setdefault("source_cameras", sources)
    splits.setdefault("target_cameras", [c for c in range(num_cameras) if c not in sources])
    splits.setdefault("frames", {"start": 0, "end": None, "stride": 1})
    path.write_text(json.dumps(splits, indent=2), encoding="utf-8")
