"""Calibration readers: nerfstudio transforms.json, COLMAP text model, ZJU-MoCap annots.npy -> OpenCV cameras.

Every reader returns a `Calibration` keyed by camera folder name, in OpenCV conventions: `x_cam = R x_world + T`
(x right, y down, z forward), T in the file's world unit (metres expected), K with pixel centres at integers, and
distortion (k1, k2, p1, p2, k3). nerfstudio and COLMAP put pixel centres at +0.5 (the upper-left pixel's centre is
(0.5, 0.5)): their cx, cy are shifted by -0.5.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Dict, List, Optional, Tuple

import numpy as np

from nerfstudio_humanfeat.data.catalog import HumanDataError

OPENGL_TO_OPENCV = np.diag([1.0, -1.0, -1.0])
"""nerfstudio's camera axes (x right, y up, z back) to OpenCV's (x right, y down, z forward)."""


@dataclass
class Calibration:
    """OpenCV cameras by folder name."""

    names: List[str]
    K: np.ndarray
    """(C, 3, 3) intrinsics, pixel centres at integers (OpenCV)."""
    D: np.ndarray
    """(C, 5) k1, k2, p1, p2, k3."""
    R: np.ndarray
    """(C, 3, 3) world-to-camera rotations."""
    T: np.ndarray
    """(C, 3) world-to-camera translations (metres)."""
    sizes: List[Optional[Tuple[int, int]]]
    """(height, width) per camera when the file states it."""
    source: Path

    def index(self, name: str) -> int:
        return self.names.index(name)

    def subset(self, names: List[str]) -> "Calibration":
        missing = [n for n in names if n not in self.names]
        if missing:
            raise HumanDataError(
                f"{self.source}: no calibration for camera folder(s) {missing}; calibrated cameras: {self.names}"
            )
        idx = [self.names.index(n) for n in names]
        return Calibration(
            list(names), self.K[idx], self.D[idx], self.R[idx], self.T[idx], [self.sizes[i] for i in idx], self.source
        )


def camera_of(path: str) -> str:
    """Camera folder of an image path: its parent folder's name."""
    parent = PurePosixPath(path.replace("\\", "/")).parent.name
    if not parent:
        raise HumanDataError(f"{path}: image path has no camera folder (expected <camera>/<frame>.<ext>)")
    return parent


def intrinsic_matrix(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def _build(source: Path, cameras: Dict[str, dict]) -> Calibration:
    if not cameras:
        raise HumanDataError(f"{source}: no camera found in the calibration file")
    names = sorted(cameras)
    return Calibration(
        names=names,
        K=np.stack([cameras[n]["K"] for n in names]),
        D=np.stack([cameras[n]["D"] for n in names]),
        R=np.stack([cameras[n]["R"] for n in names]),
        T=np.stack([cameras[n]["T"] for n in names]),
        sizes=[cameras[n].get("size") for n in names],
        source=source,
    )


# --------------------------------------------------------------------------------------------- transforms.json


def read_transforms_json(path: Path) -> Calibration:
    """nerfstudio transforms.json: per frame `file_path` (<camera>/<frame>) and `transform_matrix` (OpenGL
    camera-to-world); intrinsics fl_x, fl_y, cx, cy, k1, k2, p1, p2 (k3) per frame or at the top level."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise HumanDataError(f"{path}: cannot read transforms.json ({err})") from err
    if not isinstance(data, dict) or not isinstance(data.get("frames"), list):
        raise HumanDataError(f"{path}: expected a JSON object with a 'frames' list (nerfstudio transforms.json)")
    cameras: Dict[str, dict] = {}
    for i, frame in enumerate(data["frames"]):
        if "file_path" not in frame or "transform_matrix" not in frame:
            raise HumanDataError(f"{path}: frames[{i}] lacks 'file_path' or 'transform_matrix'")
        name = camera_of(str(frame["file_path"]))

        def value(key: str, default: Optional[float] = None, frame: dict = frame, i: int = i) -> float:
            found = frame.get(key, data.get(key, default))
            if found is None:
                raise HumanDataError(f"{path}: frames[{i}] ({frame['file_path']}) has no '{key}' (nor the file)")
            return float(found)

        fx = value("fl_x")
        fy = value("fl_y", fx)
        K = intrinsic_matrix(fx, fy, value("cx") - 0.5, value("cy") - 0.5)
        D = np.array([value(k, 0.0) for k in ("k1", "k2", "p1", "p2", "k3")])
        c2w = np.asarray(frame["transform_matrix"], dtype=np.float64)
        if c2w.shape not in ((4, 4), (3, 4)) or not np.isfinite(c2w).all():
            raise HumanDataError(f"{path}: frames[{i}] transform_matrix must be a finite 4x4 (or 3x4) matrix")
        rotation = c2w[:3, :3] @ OPENGL_TO_OPENCV
        R = rotation.T
        T = -R @ c2w[:3, 3]
        size = (int(value("h")), int(value("w"))) if ("h" in frame or "h" in data) else None
        camera = {"K": K, "D": D, "R": R, "T": T, "size": size}
        if name in cameras:
            known = cameras[name]
            if np.abs(known["R"] - R).max() > 1e-4 or np.abs(known["T"] - T).max() > 1e-4:
                raise HumanDataError(
                    f"{path}: frames of camera folder '{name}' have different poses; a multi-view capture expects "
                    "fixed cameras (one pose per camera folder)"
                )
            continue
        cameras[name] = camera
    return _build(path, cameras)


# ------------------------------------------------------------------------------------------------ COLMAP text

COLMAP_MODELS = {
    "SIMPLE_PINHOLE": ("f", "cx", "cy"),
    "PINHOLE": ("fx", "fy", "cx", "cy"),
    "SIMPLE_RADIAL": ("f", "cx", "cy", "k1"),
    "RADIAL": ("f", "cx", "cy", "k1", "k2"),
    "OPENCV": ("fx", "fy", "cx", "cy", "k1", "k2", "p1", "p2"),
    "FULL_OPENCV": ("fx", "fy", "cx", "cy", "k1", "k2", "p1", "p2", "k3", "k4", "k5", "k6"),
}


def _data_lines(path: Path) -> List[str]:
    if not path.is_file():
        raise HumanDataError(f"{path}: COLMAP text file not found (expected cameras.txt and images.txt)")
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]


def quaternion_to_matrix(qw: float, qx: float, qy: float, qz: float) -> np.ndarray:
    q = np.array([qw, qx, qy, qz]) / np.linalg.norm([qw, qx, qy, qz])
    w, x, y, z = q
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def read_colmap_text(folder: Path) -> Calibration:
    """COLMAP text model (`cameras.txt`, `images.txt`; world-to-camera quaternion and translation)."""
    folder = folder.parent if folder.is_file() else folder
    intrinsics: Dict[int, dict] = {}
    for line in _data_lines(folder / "cameras.txt"):
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        camera_id, model, width, height = int(parts[0]), parts[1], int(parts[2]), int(parts[3])
        if model not in COLMAP_MODELS:
            raise HumanDataError(f"{folder / 'cameras.txt'}: camera model {model} unsupported ({list(COLMAP_MODELS)})")
        params = dict(zip(COLMAP_MODELS[model], map(float, parts[4:])))
        if any(params.get(k, 0.0) for k in ("k4", "k5", "k6")):
            raise HumanDataError(f"{folder / 'cameras.txt'}: FULL_OPENCV with k4..k6 (rational model) unsupported")
        fx = params.get("fx", params.get("f"))
        fy = params.get("fy", params.get("f"))
        intrinsics[camera_id] = {
            "K": intrinsic_matrix(fx, fy, params["cx"] - 0.5, params["cy"] - 0.5),
            "D": np.array([params.get(k, 0.0) for k in ("k1", "k2", "p1", "p2", "k3")]),
            "size": (height, width),
        }
    cameras: Dict[str, dict] = {}
    lines = _data_lines(folder / "images.txt")
    rows = [line for line in lines if not line.startswith("#")]
    for i in range(0, len(rows), 2):  # an image line, then its (possibly empty) 2D point line
        if not rows[i]:
            continue
        parts = rows[i].split()
        if len(parts) < 10:
            raise HumanDataError(f"{folder / 'images.txt'}: malformed image line '{rows[i]}'")
        qw, qx, qy, qz, tx, ty, tz = map(float, parts[1:8])
        camera_id, name = int(parts[8]), " ".join(parts[9:])
        if camera_id not in intrinsics:
            raise HumanDataError(f"{folder / 'images.txt'}: image {name} uses unknown camera id {camera_id}")
        folder_name = camera_of(name)
        if folder_name not in cameras:
            cameras[folder_name] = {
                **intrinsics[camera_id],
                "R": quaternion_to_matrix(qw, qx, qy, qz),
                "T": np.array([tx, ty, tz]),
            }
    return _build(folder / "images.txt", cameras)


# ------------------------------------------------------------------------------------------------- annots.npy


def read_zju_annots(path: Path) -> Calibration:
    """A ZJU-MoCap annots.npy (T in millimetres); camera names from its image paths."""
    from nerfstudio_humanfeat.data.zju_io import load_annots

    annots = load_annots(path)
    return Calibration(
        names=annots.camera_names,
        K=annots.K,
        D=annots.D,
        R=annots.R,
        T=annots.T,
        sizes=[None] * annots.num_cameras,
        source=path,
    )


def read_calibration(path: Path) -> Calibration:
    """The calibration reader for `path`: *.json (transforms.json), *.npy (annots.npy), or a COLMAP text model (a
    folder holding cameras.txt and images.txt, or either file)."""
    if path.suffix == ".json":
        return read_transforms_json(path)
    if path.suffix == ".npy":
        return read_zju_annots(path)
    if path.is_dir() or path.name in ("cameras.txt", "images.txt"):
        return read_colmap_text(path)
    raise HumanDataError(
        f"{path}: unknown calibration file: expected a transforms.json, an annots.npy or a COLMAP text model folder"
    )
