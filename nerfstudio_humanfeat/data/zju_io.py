"""Readers for the ZJU-MoCap (Neural Body) layout: annotations, SMPL fits, keypoints and decoded views.

Pixel convention of everything this module returns (catalog intrinsics, 2D keypoints): continuous coordinates
in which pixel (row i, column j) covers [j, j+1) x [i, i+1), so its centre is (j + 0.5, i + 0.5), as in
nerfstudio's ray generation. The calibration in annots.npy is OpenCV's (pixel centres at integers): it is
converted with +0.5 before scaling, which also makes the scaling exact for resized images.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Dict, List, Literal, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
from jaxtyping import Bool, Float, Shaped, UInt8
from nerfstudio.utils.rich_utils import CONSOLE
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from nerfstudio_humanfeat.body.triangulation import triangulate_dlt
from nerfstudio_humanfeat.data.catalog import (
    CameraRig,
    FrameRecord,
    HumanDataError,
    MaskMode,
    SubjectRecord,
    ViewData,
    resolve_mask,
)
from nerfstudio_humanfeat.skeleton import BODY25_FROM_SMPL, BODY25_NAMES, SMPL_JOINT_NAMES

NUM_KEYPOINTS = len(BODY25_NAMES)
MASK_FOLDERS: Tuple[str, ...] = ("mask", "mask_cihp")
SMPL_SIZES: Dict[str, int] = {"poses": 72, "Rh": 3, "Th": 3, "shapes": 10}
JOINT_BBOX_MARGIN = 0.2
"""Metres the body surface reaches beyond its joints (head top, hands, feet): extra padding of joint boxes."""
AUTO_SCALE_MIN_SIZE = 1024
"""Images at least this large (either side) are halved by default, as every ZJU-MoCap paper does."""

KeypointSource = Literal["annots-kpts2d", "openpose-json", "keypoints3d-projected", "joints3d-projected", "none"]
ProblemSink = Optional[List[HumanDataError]]
"""Where non-fatal problems go: None raises the first one, a list collects them all (ns-humanfeat-inspect)."""


def report(problem: HumanDataError, problems: ProblemSink) -> None:
    """Raise `problem`, or collect it when a list is given."""
    if problems is None:
        raise problem
    problems.append(problem)


# ----------------------------------------------------------------------------------------------- annots.npy


@dataclass
class Annots:
    """The contents of one annots.npy, validated; cameras at the original resolution, T in metres."""

    path: Path
    K: np.ndarray
    """(C, 3, 3) OpenCV intrinsics of the original, distorted images."""
    D: np.ndarray
    """(C, 5) distortion coefficients (k1, k2, p1, p2, k3)."""
    R: np.ndarray
    """(C, 3, 3) world-to-camera rotations."""
    T: np.ndarray
    """(C, 3) world-to-camera translations in metres (the file holds millimetres)."""
    ims: List[List[Optional[str]]]
    """Per frame, the image path of every camera relative to the sequence folder (None: no image)."""
    kpts2d: List[Optional[np.ndarray]]
    """Per frame, (C, 25, 3) BODY_25 keypoints in original distorted pixels, or None."""

    @property
    def root(self) -> Path:
        return self.path.parent

    @property
    def num_cameras(self) -> int:
        return len(self.K)

    @property
    def num_frames(self) -> int:
        return len(self.ims)

    @property
    def camera_names(self) -> List[str]:
        """Camera folder names, taken from the first frame that has an image for the camera."""
        names = []
        for camera in range(self.num_cameras):
            rel = next((frame[camera] for frame in self.ims if frame[camera]), None)
            names.append(str(PurePosixPath(rel).parent) if rel else f"camera_{camera}")
        return names


def load_annots(path: Path) -> Annots:
    """Read and validate a sequence's annots.npy (clear errors naming the file)."""
    if not path.is_file():
        raise HumanDataError(f"{path}: annotation file not found (expected a dict with 'cams' and 'ims')")
    try:
        raw = np.load(path, allow_pickle=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means an unreadable file
        raise HumanDataError(f"{path}: cannot read the annotation file ({err})") from err
    data = raw.item() if isinstance(raw, np.ndarray) and raw.dtype == object and raw.shape == () else raw
    if not isinstance(data, dict):
        raise HumanDataError(f"{path}: expected a pickled dict with 'cams' and 'ims', found {type(data).__name__}")
    for key in ("cams", "ims"):
        if key not in data:
            raise HumanDataError(f"{path}: missing key '{key}' (found keys {sorted(map(str, data))})")
    cams = data["cams"]
    if not isinstance(cams, dict) or any(k not in cams for k in "KDRT"):
        found = sorted(map(str, cams)) if isinstance(cams, dict) else type(cams).__name__
        raise HumanDataError(f"{path}: 'cams' must be a dict with lists K, D, R, T (found {found})")
    counts = {k: len(cams[k]) for k in "KDRT"}
    if len(set(counts.values())) != 1 or counts["K"] == 0:
        raise HumanDataError(f"{path}: camera lists K, D, R, T must have one equal, non-zero length, found {counts}")
    K = _camera_arrays(path, cams["K"], "K", (3, 3))
    R = _camera_arrays(path, cams["R"], "R", (3, 3))
    T = _camera_arrays(path, cams["T"], "T", (3,)) / 1000.0
    D = np.stack([_distortion(path, c, d) for c, d in enumerate(cams["D"])])
    for camera in range(len(K)):
        _check_camera(path, camera, K[camera], R[camera])
    check_camera_units(path, R, T, "millimetres")
    check_duplicate_cameras(path, R, T)
    ims, kpts2d = _frames(path, data["ims"], len(K))
    return Annots(path=path, K=K, D=D, R=R, T=T, ims=ims, kpts2d=kpts2d)


def _camera_arrays(path: Path, values: Sequence, name: str, shape: Tuple[int, ...]) -> np.ndarray:
    out = []
    for camera, value in enumerate(values):
        array = np.asarray(value, dtype=np.float64)
        if array.size != int(np.prod(shape)):
            raise HumanDataError(f"{path}: cams['{name}'][{camera}] has shape {array.shape}, expected {shape}")
        array = array.reshape(shape)
        if not np.isfinite(array).all():
            raise HumanDataError(f"{path}: cams['{name}'][{camera}] holds NaN or inf")
        out.append(array)
    return np.stack(out)


def _distortion(path: Path, camera: int, value: Any) -> np.ndarray:
    coeffs = np.asarray(value, dtype=np.float64).reshape(-1)
    if coeffs.size not in (4, 5):
        raise HumanDataError(f"{path}: cams['D'][{camera}] has {coeffs.size} coefficients, expected 5 (or 4)")
    if not np.isfinite(coeffs).all():
        raise HumanDataError(f"{path}: cams['D'][{camera}] holds NaN or inf")
    return np.concatenate([coeffs, np.zeros(5 - coeffs.size)])


def _check_camera(path: Path, camera: int, K: np.ndarray, R: np.ndarray) -> None:
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        raise HumanDataError(f"{path}: cams['K'][{camera}] has non-positive focal lengths ({K[0, 0]}, {K[1, 1]})")
    if np.abs(K[2] - [0.0, 0.0, 1.0]).max() > 1e-6 or abs(K[1, 0]) > 1e-6:
        raise HumanDataError(
            f"{path}: cams['K'][{camera}] is not an intrinsic matrix (singular or malformed: rows "
            f"{np.round(K, 3).tolist()}); expected [[fx, s, cx], [0, fy, cy], [0, 0, 1]] with fx, fy > 0"
        )
    if np.abs(R @ R.T - np.eye(3)).max() > 1e-2 or np.linalg.det(R) < 0:
        raise HumanDataError(f"{path}: cams['R'][{camera}] is not a rotation matrix (R R^T != I or det < 0)")


CAMERA_DISTANCE_RANGE = (0.05, 100.0)
"""Metres: a capture camera stands farther than 5 cm and nearer than 100 m from the world origin (the capture
area; ZJU-MoCap's cameras are about 3 m from the body). Outside: T is in the wrong unit."""


def check_camera_units(path: Path, R: np.ndarray, T: np.ndarray, unit: str, names: Sequence[str] = ()) -> None:
    """Error when every camera sits within 5 cm of the world origin or one sits beyond 100 m: T (read as `unit`) is
    in another unit (metres where millimetres are expected, or the reverse)."""
    centres = -np.einsum("cji,cj->ci", R, T)
    distance = np.linalg.norm(centres, axis=1)
    near, far = CAMERA_DISTANCE_RANGE
    if np.abs(T).max() > 0 and distance.max() < near:
        raise HumanDataError(
            f"{path}: every camera lies within {distance.max():.4f} m of the world origin: T must be in {unit} "
            f"(cameras stand metres from the body, ~3 m in ZJU-MoCap), these values look like "
            f"{'metres' if unit == 'millimetres' else 'a larger unit'}"
        )
    if distance.max() > far:
        camera = int(distance.argmax())
        name = names[camera] if names else camera
        raise HumanDataError(
            f"{path}: camera {name} lies {distance.max():.0f} m from the world origin: T must be in {unit} "
            f"(cameras stand metres from the body, ~3 m in ZJU-MoCap), these values look like "
            f"{'millimetres' if unit == 'metres' else 'a smaller unit'}"
        )


def check_duplicate_cameras(path: Path, R: np.ndarray, T: np.ndarray, names: Sequence[str] = ()) -> None:
    """Error when two cameras have the same pose (a copied calibration): within 1 mm and 0.001 of rotation."""
    centres = -np.einsum("cji,cj->ci", R, T)
    for i in range(len(R)):
        for j in range(i + 1, len(R)):
            if np.linalg.norm(centres[i] - centres[j]) < 1e-3 and np.abs(R[i] - R[j]).max() < 1e-3:
                a, b = (names[i], names[j]) if names else (i, j)
                raise HumanDataError(
                    f"{path}: cameras {a} and {b} have the same pose (R, T): a duplicated camera; expected one "
                    "calibration per distinct camera"
                )


def _frames(path: Path, entries: Any, num_cameras: int) -> Tuple[List[List[Optional[str]]], List[Optional[np.ndarray]]]:
    ims: List[List[Optional[str]]] = []
    kpts2d: List[Optional[np.ndarray]] = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or "ims" not in entry:
            raise HumanDataError(f"{path}: ims[{index}] must be a dict with an 'ims' list of image paths")
        paths = [str(p) if p is not None and str(p) else None for p in entry["ims"]]
        if len(paths) != num_cameras:
            raise HumanDataError(f"{path}: ims[{index}] lists {len(paths)} images but 'cams' has {num_cameras} cameras")
        ims.append(paths)
        keypoints = entry.get("kpts2d")
        if keypoints is not None:
            keypoints = np.asarray(keypoints, dtype=np.float32)
            if keypoints.shape != (num_cameras, NUM_KEYPOINTS, 3):
                raise HumanDataError(
                    f"{path}: ims[{index}]['kpts2d'] has shape {keypoints.shape}, "
                    f"expected ({num_cameras}, {NUM_KEYPOINTS}, 3)"
                )
        kpts2d.append(keypoints)
    if not ims:
        raise HumanDataError(f"{path}: 'ims' lists no frame")
    return ims, kpts2d


def frame_number(rel_path: str) -> int:
    """The frame number written in an image name: '000012.jpg' -> 12, 'CoreView_313_Camera_(1)_0013_x.jpg' -> 13."""
    stem = PurePosixPath(rel_path).stem
    if stem.isdigit():
        return int(stem)
    fields = stem.split("_")
    if len(fields) > 4 and fields[4].isdigit():
        return int(fields[4])
    raise HumanDataError(f"cannot read a frame number from the image name {rel_path!r}")


def frame_stem(rel_path: str, frame_id: int) -> str:
    """The name of per-frame files that are not per camera (keypoints3d/<stem>.json)."""
    stem = PurePosixPath(rel_path).stem
    return stem if stem.isdigit() else f"{frame_id:06d}"


def select_frames(num_frames: int, start: int = 0, end: Optional[int] = None, stride: int = 1) -> List[int]:
    """Positions in annots['ims'] of the frames [start, end) with a stride (end clipped to the frame count)."""
    if stride < 1 or start < 0:
        raise HumanDataError(
            f"invalid frame range (--frame-start/--frame-stride, or splits.json 'frames'): start {start} must be "
            f">= 0 and stride {stride} >= 1"
        )
    stop = num_frames if end is None else min(end, num_frames)
    return list(range(start, stop, stride))


# --------------------------------------------------------------------------------------------- sequence files


@dataclass(frozen=True)
class SequenceLayout:
    """Which optional folders a sequence holds."""

    root: Path
    params_dir: Optional[str]
    """'new_params' when present, else 'params', else None."""
    vertices_dir: Optional[str]
    mask_dirs: Tuple[str, ...]
    keypoints2d: bool
    keypoints3d: bool
    joints3d: bool
    densepose: bool

    @classmethod
    def detect(cls, root: Path) -> "SequenceLayout":
        def first(*names: str) -> Optional[str]:
            return next((n for n in names if (root / n).is_dir()), None)

        return cls(
            root=root,
            params_dir=first("new_params", "params"),
            vertices_dir=first("new_vertices", "vertices"),
            mask_dirs=tuple(d for d in MASK_FOLDERS if (root / d).is_dir()),
            keypoints2d=(root / "keypoints2d").is_dir(),
            keypoints3d=(root / "keypoints3d").is_dir(),
            joints3d=(root / "joints3d").is_dir(),
            densepose=(root / "densepose").is_dir(),
        )

    def mirror(self, folder: str, rel_path: str, suffix: str) -> Path:
        """A file of `folder` that mirrors an image path (masks, OpenPose JSON, dense pose)."""
        return self.root / folder / PurePosixPath(rel_path).with_suffix(suffix)


def mask_folders(layout: SequenceLayout, mode: MaskMode) -> Tuple[List[str], Optional[str]]:
    """Mask folders to combine for a mode, and a warning when the wanted ones are missing.

    A missing folder falls back to the other one (Animatable NeRF does so for Human3.6M); with neither, every
    pixel is foreground.
    """
    wanted = {"mask": ["mask"], "mask_cihp": ["mask_cihp"], "union": list(MASK_FOLDERS), "none": []}[mode]
    present = [d for d in wanted if d in layout.mask_dirs]
    if present or mode == "none":
        return present, None
    if layout.mask_dirs:
        fallback = list(layout.mask_dirs)
        return fallback, f"{layout.root}: no {' or '.join(wanted)} folder, using {', '.join(fallback)} instead"
    return [], f"{layout.root}: no mask or mask_cihp folder: every pixel counts as foreground"


def keypoint_source(annots: Annots, layout: SequenceLayout) -> KeypointSource:
    """The first keypoint source a sequence offers, in priority order."""
    if any(k is not None for k in annots.kpts2d):
        return "annots-kpts2d"
    if layout.keypoints2d:
        return "openpose-json"
    if layout.keypoints3d:
        return "keypoints3d-projected"
    if layout.joints3d:
        return "joints3d-projected"
    return "none"


def load_smpl_params(path: Path) -> Dict[str, Tensor]:
    """SMPL parameters of one frame, flattened: poses (72,), Rh (3,), Th (3,), shapes (10,), float32."""
    data = _load_npy(path, "SMPL parameters")
    if isinstance(data, np.ndarray) and data.dtype == object and data.shape == ():
        data = data.item()
    if not isinstance(data, dict):
        raise HumanDataError(f"{path}: expected a dict with {sorted(SMPL_SIZES)}, found {type(data).__name__}")
    params = {}
    for key, size in SMPL_SIZES.items():
        if key not in data:
            raise HumanDataError(f"{path}: SMPL parameters lack '{key}' (found {sorted(map(str, data))})")
        value = np.asarray(data[key], dtype=np.float32).reshape(-1)
        if value.size != size:
            raise HumanDataError(f"{path}: SMPL '{key}' has {value.size} values, expected {size}")
        if not np.isfinite(value).all():
            raise HumanDataError(f"{path}: SMPL '{key}' holds NaN or inf")
        params[key] = torch.from_numpy(value)
    return params


def load_points(path: Path, what: str, width: int = 3) -> Float[np.ndarray, "N width"]:
    """An (N, width) array of finite points from a .npy file (vertices, joints)."""
    points = np.asarray(_load_npy(path, what), dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != width or len(points) == 0:
        raise HumanDataError(f"{path}: {what} have shape {points.shape}, expected (N, {width})")
    if not np.isfinite(points).all():
        raise HumanDataError(f"{path}: {what} hold NaN or inf")
    return points


def _load_npy(path: Path, what: str) -> Any:
    if not path.is_file():
        raise HumanDataError(f"{path}: {what} file not found")
    try:
        return np.load(path, allow_pickle=True)
    except Exception as err:  # noqa: BLE001
        raise HumanDataError(f"{path}: cannot read {what} ({err})") from err


def _load_json(path: Path, what: str) -> Any:
    try:
        with open(path, encoding="utf-8") as file:
            return json.load(file)
    except (OSError, ValueError) as err:
        raise HumanDataError(f"{path}: cannot read {what} ({err})") from err


def read_openpose_json(path: Path) -> Float[np.ndarray, "25 3"]:
    """(25, 3) BODY_25 keypoints of the first person of an OpenPose JSON; all missing without a person."""
    data = _load_json(path, "OpenPose keypoints")
    people = data.get("people", []) if isinstance(data, dict) else None
    if people is None:
        raise HumanDataError(f"{path}: expected an OpenPose dict with a 'people' list")
    if not people:
        return np.zeros((NUM_KEYPOINTS, 3), dtype=np.float32)
    values = np.asarray(people[0].get("pose_keypoints_2d", []), dtype=np.float32)
    if values.size != NUM_KEYPOINTS * 3:
        raise HumanDataError(f"{path}: pose_keypoints_2d has {values.size} values, expected {NUM_KEYPOINTS * 3}")
    return values.reshape(NUM_KEYPOINTS, 3)


def read_keypoints3d_json(path: Path) -> Float[np.ndarray, "25 4"]:
    """(25, 4) world keypoints (x, y, z, confidence) of the first person of a keypoints3d JSON."""
    data = _load_json(path, "3D keypoints")
    person = data[0] if isinstance(data, list) and data else data
    values = person.get("keypoints3d") if isinstance(person, dict) else None
    array = np.asarray(values if values is not None else [], dtype=np.float32)
    if array.shape != (NUM_KEYPOINTS, 4):
        raise HumanDataError(f"{path}: expected [{{'id': 0, 'keypoints3d': 25 x [x, y, z, c]}}], got {array.shape}")
    return array


def body25_from_smpl_joints(joints: Float[np.ndarray, "24 3"]) -> Float[np.ndarray, "25 4"]:
    """(25, 4) BODY_25 keypoints from the 24 SMPL joints; joints without an SMPL twin get confidence 0."""
    out = np.zeros((NUM_KEYPOINTS, 4), dtype=np.float32)
    for body25, smpl in BODY25_FROM_SMPL.items():
        out[BODY25_NAMES.index(body25)] = (*joints[SMPL_JOINT_NAMES.index(smpl)], 1.0)
    return out


def clean_keypoints(keypoints: Float[np.ndarray, "*bs J D"]) -> Float[np.ndarray, "*bs J D"]:
    """Keypoints whose confidence is 0 or whose values are not finite become (0, 0, ..., 0)."""
    keypoints = keypoints.astype(np.float32, copy=True)
    missing = ~np.isfinite(keypoints).all(-1) | ~(keypoints[..., -1] > 0)
    keypoints[missing] = 0.0
    return keypoints


def bbox_from_points(points: Float[np.ndarray, "N 3"], padding: float) -> Float[Tensor, "2 3"]:
    """Axis-aligned (min, max) box of points, padded on every side."""
    return torch.tensor(np.stack([points.min(0) - padding, points.max(0) + padding]), dtype=torch.float32)


# ----------------------------------------------------------------------------------------------- geometry


def output_size(height: int, width: int, scale: float) -> Tuple[int, int]:
    """Output (height, width) of an image resized by `scale`."""
    return max(1, int(round(height * scale))), max(1, int(round(width * scale)))


def auto_image_scale(height: int, width: int) -> float:
    """0.5 for images of 1024 px or more (the ZJU-MoCap convention), else 1.0."""
    return 0.5 if max(height, width) >= AUTO_SCALE_MIN_SIZE else 1.0


def build_rig(annots: Annots, original_hw: Tuple[int, int], image_scale: Optional[float]) -> CameraRig:
    """The sequence's cameras at the output resolution (intrinsics in the module's pixel convention)."""
    height, width = original_hw
    scale = auto_image_scale(height, width) if image_scale is None else image_scale
    if scale <= 0:
        raise HumanDataError(f"{annots.path}: image_scale (--image-scale) must be positive, got {scale}")
    out_h, out_w = output_size(height, width, scale)
    intrinsics = annots.K.copy()
    intrinsics[:, :2, 2] += 0.5
    intrinsics[:, 0, :] *= out_w / width
    intrinsics[:, 1, :] *= out_h / height
    world_to_camera = np.concatenate([annots.R, annots.T[:, :, None]], axis=2)
    return CameraRig(
        names=annots.camera_names,
        intrinsics=torch.tensor(intrinsics, dtype=torch.float32),
        world_to_camera=torch.tensor(world_to_camera, dtype=torch.float32),
        distortion=torch.tensor(annots.D, dtype=torch.float32),
        original_intrinsics=torch.tensor(annots.K, dtype=torch.float32),
        height=out_h,
        width=out_w,
        original_height=height,
        original_width=width,
    )


def undistort_keypoints(
    keypoints: Float[np.ndarray, "J 3"], K: Float[np.ndarray, "3 3"], D: Float[np.ndarray, "5"], scale_xy: np.ndarray
) -> Float[np.ndarray, "J 3"]:
    """Keypoints in original distorted OpenCV pixels -> undistorted output pixels; missing ones stay missing."""
    keypoints = clean_keypoints(keypoints)
    valid = keypoints[:, 2] > 0
    if valid.any():
        points = keypoints[valid, :2].astype(np.float64).reshape(-1, 1, 2)
        if np.any(D != 0):
            criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 50, 1e-8)
            points = cv2.undistortPointsIter(points, K, D, None, K, criteria)
        keypoints[valid, :2] = (points.reshape(-1, 2) + 0.5) * scale_xy
    return keypoints


def project_keypoints(
    keypoints3d: Float[np.ndarray, "J 4"], intrinsics: np.ndarray, world_to_camera: np.ndarray, hw: Tuple[int, int]
) -> Float[np.ndarray, "J 3"]:
    """World keypoints projected into an undistorted output view; behind the camera or outside: missing."""
    keypoints3d = clean_keypoints(keypoints3d)
    cam = keypoints3d[:, :3] @ world_to_camera[:, :3].T + world_to_camera[:, 3]
    depth = cam[:, 2]
    uv = cam @ intrinsics.T
    uv = uv[:, :2] / np.where(np.abs(depth) > 1e-9, depth, 1e-9)[:, None]
    inside = (depth > 1e-6) & (uv[:, 0] >= 0) & (uv[:, 0] < hw[1]) & (uv[:, 1] >= 0) & (uv[:, 1] < hw[0])
    keep = inside & (keypoints3d[:, 3] > 0)
    out = np.zeros((len(keypoints3d), 3), dtype=np.float32)
    out[keep, :2] = uv[keep]
    out[keep, 2] = keypoints3d[keep, 3]
    return out


# ------------------------------------------------------------------------------------------------ subjects


@dataclass(frozen=True)
class ReadOptions:
    """How a sequence is read into catalog records."""

    mask_mode: MaskMode = "union"
    image_scale: Optional[float] = None
    """Output/original resolution; None: 0.5 for images of 1024 px or more, else 1.0."""
    bbox_padding: float = 0.05
    """Metres added on every side of the SMPL vertices' box."""


def read_subject(
    annots: Annots,
    split: Literal["train", "test"],
    source_cameras: Sequence[int],
    target_cameras: Sequence[int],
    frame_indices: Sequence[int],
    view_cameras: Sequence[int],
    options: ReadOptions = ReadOptions(),
    problems: ProblemSink = None,
    advance: Optional[Callable[[], None]] = None,
    name: Optional[str] = None,
) -> SubjectRecord:
    """Catalog record of one sequence: rig, frames (paths, bbox, SMPL, keypoints); no image is decoded.

    `view_cameras` are the cameras whose images must exist (checked for every selected frame). With a
    problem list, broken frames are reported there and left out instead of raising.
    """
    root = annots.root
    for role, cameras in (("source", source_cameras), ("target", target_cameras), ("view", view_cameras)):
        bad = [c for c in cameras if not 0 <= c < annots.num_cameras]
        if bad:
            raise HumanDataError(
                f"{annots.path}: {role} camera indices {bad} out of range: the sequence has {annots.num_cameras} "
                f"cameras (0..{annots.num_cameras - 1})"
            )
    if not frame_indices:
        raise HumanDataError(f"{annots.path}: no frame selected (the sequence has {annots.num_frames} frames)")
    layout = SequenceLayout.detect(root)
    masks, warning = mask_folders(layout, options.mask_mode)
    if warning:
        CONSOLE.print(f"Warning: {warning}", style="yellow", markup=False, soft_wrap=True)
    rig = build_rig(annots, original_size(annots, frame_indices, view_cameras, problems), options.image_scale)
    source = keypoint_source(annots, layout)
    frames = []
    for index in frame_indices:
        try:
            frames.append(read_frame(annots, layout, rig, index, masks, source, view_cameras, options, problems))
        except HumanDataError as err:
            report(err, problems)
        if advance is not None:
            advance()
    return SubjectRecord(
        name=name or root.name,
        root=root,
        rig=rig,
        frames=frames,
        split=split,
        source_cameras=list(source_cameras),
        target_cameras=list(target_cameras),
        keypoint_source=source,
    )


def original_size(
    annots: Annots, frame_indices: Sequence[int], cameras: Sequence[int], problems: ProblemSink = None
) -> Tuple[int, int]:
    """(height, width) of the original images, read from the headers of the first selected frame."""
    sizes: Dict[Tuple[int, int], Path] = {}
    for camera in cameras or range(annots.num_cameras):
        rel = next((annots.ims[i][camera] for i in frame_indices if annots.ims[i][camera]), None)
        path = annots.root / rel if rel else None
        if path is not None and path.is_file():
            try:
                sizes.setdefault(image_size(path), path)
            except HumanDataError as err:
                report(err, problems)
    if not sizes:
        raise HumanDataError(f"{annots.path}: none of the selected images is readable (cameras {list(cameras)})")
    if len(sizes) > 1:
        listing = ", ".join(f"{w}x{h} ({p})" for (h, w), p in sizes.items())
        raise HumanDataError(f"{annots.root}: the cameras' images differ in size: {listing}")
    return next(iter(sizes))


def read_frame(
    annots: Annots,
    layout: SequenceLayout,
    rig: CameraRig,
    index: int,
    masks: Sequence[str],
    source: KeypointSource,
    view_cameras: Sequence[int],
    options: ReadOptions,
    problems: ProblemSink = None,
) -> FrameRecord:
    """Catalog record of the frame at position `index` of annots['ims']."""
    rels = annots.ims[index]
    present = [r for r in rels if r]
    if not present:
        raise HumanDataError(f"{annots.path}: ims[{index}] has no image path")
    try:
        numbers = {r: frame_number(r) for r in present}
    except HumanDataError as err:
        raise HumanDataError(f"{annots.path}: ims[{index}]: {err}") from err
    frame_id = numbers[present[0]]
    odd = next((r for r, n in numbers.items() if n != frame_id), None)
    if odd is not None:
        raise HumanDataError(
            f"{annots.path}: ims[{index}] mixes frame numbers: {present[0]} is frame {frame_id}, "
            f"{odd} is frame {numbers[odd]}"
        )
    root = layout.root
    image_paths = [root / r if r else None for r in rels]
    for camera in view_cameras:
        path = image_paths[camera]
        if path is None or not path.is_file():
            where = path if path is not None else f"{annots.path} ims[{index}] camera {camera}"
            report(HumanDataError(f"{where}: image listed in annots.npy does not exist"), problems)
    joints_path = root / "joints3d" / f"{frame_id}.npy"
    joints = load_points(joints_path, "SMPL joints") if layout.joints3d and joints_path.is_file() else None
    keypoints3d = _frame_keypoints3d(layout, frame_stem(present[0], frame_id), joints)
    keypoints2d = _frame_keypoints2d(annots, layout, rig, index, source, keypoints3d)
    if keypoints3d is None and keypoints2d is not None:
        keypoints3d = triangulate_keypoints(keypoints2d, rig)
    params = None
    if layout.params_dir is not None:
        params = load_smpl_params(root / layout.params_dir / f"{frame_id}.npy")
    vertices_path = root / layout.vertices_dir / f"{frame_id}.npy" if layout.vertices_dir else None
    return FrameRecord(
        frame_id=frame_id,
        image_paths=image_paths,
        mask_paths=[[layout.mirror(m, r, ".png") for m in masks] if r else [] for r in rels],
        densepose_paths=[layout.mirror("densepose", r, ".npz") if r and layout.densepose else None for r in rels],
        bbox=_frame_bbox(layout, frame_id, vertices_path, joints, keypoints3d, options.bbox_padding),
        keypoints2d=keypoints2d,
        keypoints3d=None if keypoints3d is None else torch.from_numpy(keypoints3d),
        smpl_params=params,
        vertices_path=vertices_path,
    )


def triangulate_keypoints(keypoints2d: Float[Tensor, "C J 3"], rig: CameraRig) -> Optional[np.ndarray]:
    """(J, 4) world keypoints DLT-triangulated from the 2D detections of every camera (output pixels); None when
    no joint is seen by two cameras."""
    projections = rig.intrinsics.double() @ rig.world_to_camera.double()
    keypoints3d = triangulate_dlt(keypoints2d.double(), projections).numpy().astype(np.float32)
    return keypoints3d if (keypoints3d[:, 3] > 0).any() else None


def _frame_keypoints3d(layout: SequenceLayout, stem: str, joints: Optional[np.ndarray]) -> Optional[np.ndarray]:
    """(25, 4) world keypoints: keypoints3d JSON, else SMPL joints mapped to BODY_25, else None."""
    path = layout.root / "keypoints3d" / f"{stem}.json"
    if layout.keypoints3d and path.is_file():
        return clean_keypoints(read_keypoints3d_json(path))
    return None if joints is None else body25_from_smpl_joints(joints)


def _frame_bbox(
    layout: SequenceLayout,
    frame_id: int,
    vertices_path: Optional[Path],
    joints: Optional[np.ndarray],
    keypoints3d: Optional[np.ndarray],
    pad: float,
) -> Float[Tensor, "2 3"]:
    """Padded box of the SMPL vertices, else of the joints or 3D keypoints (padded more: they lie inside)."""
    if vertices_path is not None:
        return bbox_from_points(load_points(vertices_path, "SMPL vertices"), pad)
    if joints is not None:
        return bbox_from_points(joints, pad + JOINT_BBOX_MARGIN)
    if keypoints3d is not None and (keypoints3d[:, 3] > 0).sum() >= 2:
        return bbox_from_points(keypoints3d[keypoints3d[:, 3] > 0, :3].astype(np.float64), pad + JOINT_BBOX_MARGIN)
    raise HumanDataError(
        f"{layout.root}: frame {frame_id} has no body to bound: expected vertices/{frame_id}.npy (or new_vertices/), "
        f"joints3d/{frame_id}.npy or a keypoints3d/ JSON"
    )


def _frame_keypoints2d(
    annots: Annots,
    layout: SequenceLayout,
    rig: CameraRig,
    index: int,
    source: KeypointSource,
    keypoints3d: Optional[np.ndarray],
) -> Optional[Tensor]:
    """(C, 25, 3) keypoints in undistorted output pixels from the sequence's keypoint source."""
    if source == "none":
        return None
    num_cameras = annots.num_cameras
    out = np.zeros((num_cameras, NUM_KEYPOINTS, 3), dtype=np.float32)
    if source in ("keypoints3d-projected", "joints3d-projected"):
        if keypoints3d is not None:
            intrinsics, world_to_camera = rig.intrinsics.numpy(), rig.world_to_camera.numpy()
            for camera in range(num_cameras):
                out[camera] = project_keypoints(
                    keypoints3d, intrinsics[camera], world_to_camera[camera], (rig.height, rig.width)
                )
        return torch.from_numpy(out)
    scale_xy = np.array([rig.width / rig.original_width, rig.height / rig.original_height])
    for camera in range(num_cameras):
        if source == "annots-kpts2d":
            raw = annots.kpts2d[index][camera] if annots.kpts2d[index] is not None else None
            where = f"{annots.path}: ims[{index}]['kpts2d'] camera {camera} ({rig.names[camera]})"
        else:
            rel = annots.ims[index][camera]
            path = layout.mirror("keypoints2d", rel, ".json") if rel else None
            raw = read_openpose_json(path) if path is not None and path.is_file() else None
            where = f"{path}:"
        if raw is not None:
            check_keypoints_inside(where, raw, rig.original_width, rig.original_height)
            out[camera] = undistort_keypoints(raw, annots.K[camera], annots.D[camera], scale_xy)
    return torch.from_numpy(out)


KEYPOINT_OUTSIDE_MARGIN = 0.25
"""A detected keypoint may lie this fraction of the image size beyond its border (detectors extrapolate cut-off
limbs); farther, the keypoints are not in this image's pixels (another resolution, normalised coordinates, ...)."""


def check_keypoints_inside(where: str, keypoints: np.ndarray, width: int, height: int) -> None:
    """Error when a detected 2D keypoint (original OpenCV pixels) lies far outside the width x height image."""
    valid = np.isfinite(keypoints).all(-1) & (np.nan_to_num(keypoints[:, 2]) > 0)
    x, y = keypoints[:, 0], keypoints[:, 1]
    margin_x, margin_y = KEYPOINT_OUTSIDE_MARGIN * width, KEYPOINT_OUTSIDE_MARGIN * height
    outside = valid & ((x < -margin_x) | (x > width + margin_x) | (y < -margin_y) | (y > height + margin_y))
    if outside.any():
        joint = int(np.flatnonzero(outside)[0])
        raise HumanDataError(
            f"{where} keypoint {BODY25_NAMES[joint] if len(keypoints) == NUM_KEYPOINTS else joint} at "
            f"({x[joint]:.1f}, {y[joint]:.1f}) lies outside the {width}x{height} image ({int(outside.sum())} of "
            f"{int(valid.sum())} detected keypoints do): expected pixel coordinates of this image, within it or at "
            f"most {KEYPOINT_OUTSIDE_MARGIN:.0%} of its size beyond its border"
        )


# ------------------------------------------------------------------------------------------------- views


def image_size(path: Path, what: str = "image") -> Tuple[int, int]:
    """(height, width) of an image file, from its header only."""
    try:
        with Image.open(path) as image:
            width, height = image.size
    except FileNotFoundError as err:
        raise HumanDataError(f"{path}: {what} not found") from err
    except (UnidentifiedImageError, OSError) as err:
        raise HumanDataError(f"{path}: not a readable {what} ({err})") from err
    return height, width


def _decode(path: Path, flags: int, what: str) -> np.ndarray:
    if not path.is_file():
        raise HumanDataError(f"{path}: {what} not found")
    data = np.fromfile(path, dtype=np.uint8)
    decoded = cv2.imdecode(data, flags) if data.size else None
    if decoded is None:
        raise HumanDataError(f"{path}: cannot decode the {what} (corrupt or not an image)")
    if data[:2].tobytes() == b"\xff\xd8" and b"\xff\xd9" not in data[-1024:].tobytes():
        raise HumanDataError(f"{path}: truncated JPEG {what} (no end-of-image marker)")
    return decoded


def read_image(path: Path) -> UInt8[np.ndarray, "H W 3"]:
    """(H, W, 3) uint8 RGB image at the original resolution."""
    return cv2.cvtColor(_decode(path, cv2.IMREAD_COLOR, "image"), cv2.COLOR_BGR2RGB)


def read_mask(path: Path) -> Bool[np.ndarray, "H W"]:
    """(H, W) bool foreground of a mask file holding 0/1 or 0/255."""
    mask = _decode(path, cv2.IMREAD_UNCHANGED, "mask")
    if mask.ndim == 3:
        mask = mask[..., :3].max(axis=-1)
    return mask > (127 if mask.max() > 1 else 0)


def read_densepose(path: Path) -> Tuple[Float[np.ndarray, "H W D"], Bool[np.ndarray, "H W"]]:
    """(H, W, D) float32 embedding and (H, W) bool mask of a dense-pose file."""
    try:
        with np.load(path) as data:
            embedding = np.asarray(data["embedding"], dtype=np.float32)
            mask = np.asarray(data["mask"]) > 0
    except (OSError, KeyError, ValueError) as err:
        raise HumanDataError(f"{path}: cannot read dense pose (expected npz with 'embedding', 'mask'): {err}") from err
    if embedding.ndim != 3 or mask.shape != embedding.shape[:2]:
        raise HumanDataError(f"{path}: dense pose embedding {embedding.shape} and mask {mask.shape} disagree")
    return embedding, mask


def check_size(path: Path, hw: Tuple[int, int], rig: CameraRig) -> None:
    """Error unless a file's resolution is the sequence's original one."""
    if tuple(hw) != (rig.original_height, rig.original_width):
        raise HumanDataError(
            f"{path}: size {hw[1]}x{hw[0]} differs from the sequence's other images "
            f"({rig.original_width}x{rig.original_height})"
        )


_MAPS: "OrderedDict[bytes, Tuple[np.ndarray, np.ndarray]]" = OrderedDict()
_MAPS_MAX = 8


def _undistort_maps(rig: CameraRig, camera: int) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    """cv2.remap maps equivalent to cv2.undistort(img, K, D) (K kept), cached; None without distortion."""
    K = rig.original_intrinsics[camera].double().numpy()
    D = rig.distortion[camera].double().numpy()
    if not np.any(D):
        return None
    key = K.tobytes() + D.tobytes() + bytes(f"{rig.original_height}x{rig.original_width}", "ascii")
    if key not in _MAPS:
        size = (rig.original_width, rig.original_height)
        _MAPS[key] = cv2.initUndistortRectifyMap(K, D, None, K, size, cv2.CV_32FC1)
        while len(_MAPS) > _MAPS_MAX:
            _MAPS.popitem(last=False)
    _MAPS.move_to_end(key)
    return _MAPS[key]


def _remap(array: np.ndarray, maps: Tuple[np.ndarray, np.ndarray], interp: int) -> np.ndarray:
    """cv2.remap over any number of channels (it takes at most 4 at a time)."""
    if array.ndim == 2 or array.shape[2] <= 4:
        out = cv2.remap(array, maps[0], maps[1], interp, borderMode=cv2.BORDER_CONSTANT)
        return out.reshape(*out.shape[:2], *array.shape[2:])
    return np.concatenate([_remap(array[..., i : i + 4], maps, interp) for i in range(0, array.shape[2], 4)], -1)


def to_output(
    array: Shaped[np.ndarray, "H W *C"], rig: CameraRig, camera: int, nearest: bool
) -> Shaped[np.ndarray, "h w *C"]:
    """Undistort (K kept) at the original resolution, then resize to the output resolution."""
    maps = _undistort_maps(rig, camera)
    if maps is not None:
        array = _remap(array, maps, cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR)
    if array.shape[:2] != (rig.height, rig.width):
        resized = cv2.resize(
            array, (rig.width, rig.height), interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_AREA
        )
        array = resized.reshape(rig.height, rig.width, *array.shape[2:])
    return array


@dataclass(frozen=True)
class BackgroundOptions:
    """What a loaded image shows outside the person: real captures show the dome, which no model renders."""

    background: Literal["black", "keep"] = "black"
    """'black': pixels outside the (dilated) foreground mask are set to 0, in target and source images alike, as
    every ZJU-MoCap method's loader does (the renderers composite on black); 'keep': the image as captured."""
    mask_dilation: int = 5
    """Pixels (at output resolution) by which the mask is dilated before the background is zeroed: ENeRF 5,
    Neural Body and KeypointNeRF 0."""


def mask_background(
    image: UInt8[np.ndarray, "H W 3"], mask: Bool[np.ndarray, "H W"], dilation: int
) -> UInt8[np.ndarray, "H W 3"]:
    """The image with every pixel farther than `dilation` pixels from the mask set to 0."""
    if dilation > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * dilation + 1, 2 * dilation + 1))
        mask = cv2.dilate(mask.astype(np.uint8), kernel) > 0
    return image * mask[..., None].astype(image.dtype)


def load_densepose(
    subject: SubjectRecord, frame: FrameRecord, camera: int
) -> Tuple[Optional[Float[Tensor, "H W D"]], Optional[Bool[Tensor, "H W"]]]:
    """Dense-pose targets of one view at output resolution and where they are defined; (None, None) without."""
    path = frame.densepose_paths[camera]
    if path is None or not path.is_file():
        return None, None
    rig = subject.rig
    embedding, mask = read_densepose(path)
    check_size(path, mask.shape, rig)
    densepose = torch.from_numpy(to_output(embedding, rig, camera, nearest=True))
    return densepose, torch.from_numpy(to_output(mask.astype(np.uint8), rig, camera, nearest=True) > 0)


_EMPTY_MASKS_WARNED: set = set()


def warn_empty_mask(paths: Sequence[Path]) -> None:
    """Warn (once per view) that a view's masks hold no foreground: no person in it. Legitimate when the person has
    left that camera's field of view, a broken mask otherwise; the view is then all background."""
    key = tuple(str(p) for p in paths)
    if key in _EMPTY_MASKS_WARNED:
        return
    _EMPTY_MASKS_WARNED.add(key)
    CONSOLE.print(
        f"Warning: {', '.join(key)}: mask has no foreground pixel (expected the person's silhouette): the view is "
        "all background",
        style="yellow",
        markup=False,
        soft_wrap=True,
    )


def load_view(
    subject: SubjectRecord, frame: FrameRecord, camera: int, background: BackgroundOptions = BackgroundOptions()
) -> ViewData:
    """Decoded, undistorted and resized image (background masked), mask, keypoints and dense pose of one view."""
    rig = subject.rig
    path = frame.image_paths[camera]
    if path is None:
        raise HumanDataError(f"{subject.root}: frame {frame.frame_id} has no image for camera {rig.names[camera]}")
    image = read_image(path)
    check_size(path, image.shape[:2], rig)
    image = to_output(image, rig, camera, nearest=False)
    original_hw = (rig.original_height, rig.original_width)
    masks = []
    for mask_path in frame.mask_paths[camera]:
        masks.append(read_mask(mask_path))
        check_size(mask_path, masks[-1].shape, rig)
    if masks:
        union = resolve_mask(masks, original_hw)
        if not union.any():
            warn_empty_mask(frame.mask_paths[camera])
        mask = to_output(union.astype(np.uint8), rig, camera, nearest=True) > 0
    else:
        mask = resolve_mask([], (rig.height, rig.width))
    densepose, densepose_mask = load_densepose(subject, frame, camera)
    if background.background == "black" and masks:
        image = mask_background(image, mask, background.mask_dilation)
    return ViewData(
        rgb8=torch.from_numpy(np.ascontiguousarray(image)),
        mask=torch.from_numpy(np.ascontiguousarray(mask)),
        keypoints2d=None if frame.keypoints2d is None else frame.keypoints2d[camera],
        densepose=densepose,
        densepose_mask=densepose_mask,
    )


def check_view(subject: SubjectRecord, frame: FrameRecord, camera: int, decode: bool) -> List[HumanDataError]:
    """Problems of one view's files: headers only, or full decodes with `decode` (same readers as load_view)."""
    rig = subject.rig
    problems: List[HumanDataError] = []
    files = [(frame.image_paths[camera], read_image, "image")]
    files += [(p, read_mask, "mask") for p in frame.mask_paths[camera]]
    masks = []
    for path, reader, what in files:
        if path is None:
            continue
        try:
            decoded = reader(path) if decode else None
            check_size(path, decoded.shape[:2] if decoded is not None else image_size(path, what), rig)
            if what == "mask" and decoded is not None:
                masks.append(decoded)
        except HumanDataError as err:
            problems.append(err)
    if masks and len(masks) == len(frame.mask_paths[camera]) and not any(m.any() for m in masks):
        warn_empty_mask(frame.mask_paths[camera])
    densepose_path = frame.densepose_paths[camera]
    if decode and densepose_path is not None and densepose_path.is_file():
        try:
            check_size(densepose_path, read_densepose(densepose_path)[1].shape, rig)
        except HumanDataError as err:
            problems.append(err)
    return problems
