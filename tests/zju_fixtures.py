"""Writers of tiny ZJU-MoCap sequences in the real on-disk layout, with controllable quirks, and their truth.

Scene: per frame, a body box (1.7 m tall, moving along x) seen by cameras on a circle looking at it. Images are
rendered in the distorted geometry of each camera (every pixel is undistorted and shaded by what the pinhole
camera sees there): a grey ellipse inscribed in the box's projection and a red square around a marker point.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Literal, Optional, Sequence, Tuple

import cv2
import numpy as np

from nerfstudio_humanfeat.skeleton import BODY25_FROM_SMPL, BODY25_NAMES, SMPL_JOINT_NAMES

BODY_HALF_SIZE = np.array([0.2, 0.15, 0.85])
MARKER_HALF_PX = 2.5
BACKGROUND, BODY, MARKER = (20, 20, 20), (150, 150, 150), (255, 0, 0)


@dataclass
class SequenceSpec:
    """One sequence and its quirks."""

    name: str = "CoreView_377"
    naming: Literal["b", "legacy"] = "b"
    """'b': Camera_B1/000000.jpg (0-based); 'legacy': Camera (1)/CoreView_313_Camera_(1)_0001_<ts>.jpg (1-based)."""
    num_cameras: int = 4
    missing_cameras: Tuple[int, ...] = ()
    """1-based camera numbers absent from the sequence, like CoreView_313's 20 and 21."""
    num_frames: int = 3
    size: int = 64
    focal: float = 0.75
    """Focal length as a fraction of the image size."""
    distortion: Tuple[float, ...] = (0.0, 0.0, 0.0, 0.0, 0.0)
    d_row: bool = False
    """D stored as (1, 5) instead of (5, 1)."""
    masks: Tuple[str, ...] = ("mask", "mask_cihp")
    """'mask' covers the upper half of the body ellipse, 'mask_cihp' the lower half: the union is all of it."""
    mask_value: int = 255
    smpl_dirs: Literal["old", "new", "both"] = "old"
    """'both': params/ and vertices/ hold a wrong (shifted) fit, new_params/ and new_vertices/ the right one."""
    params: bool = True
    vertices: bool = True
    keypoints: Tuple[str, ...] = ("annots",)
    """Any of 'annots' (kpts2d), 'openpose' (keypoints2d JSON), 'keypoints3d' (JSON), 'joints3d' (npy)."""
    openpose_offset: float = 0.0
    """Pixels added to the OpenPose JSON keypoints (to tell sources apart)."""
    missing_joints: Tuple[int, ...] = (15, 16)
    """BODY_25 joints written with confidence 0 (and zero coordinates)."""
    densepose: bool = False


@dataclass
class SequenceTruth:
    """What a written sequence holds, in the dataset's conventions (OpenCV, world metres)."""

    root: Path
    spec: SequenceSpec
    names: List[str]
    K: np.ndarray
    D: np.ndarray
    R: np.ndarray
    T: np.ndarray
    """(C, 3) metres."""
    centers: np.ndarray
    frame_ids: List[int]
    image_rel: List[List[str]]
    boxes: np.ndarray
    """(F, 2, 3) unpadded body boxes."""
    markers: np.ndarray
    """(F, 3) world marker points."""
    keypoints3d: np.ndarray
    """(F, 25, 4) world keypoints with confidence."""
    extra: Dict = field(default_factory=dict)

    def project(self, camera: int, points: np.ndarray, distorted: bool = False) -> np.ndarray:
        """(N, 2) OpenCV pixel coordinates (pixel centres at integers) of world points."""
        rvec = cv2.Rodrigues(self.R[camera])[0]
        dist = self.D[camera] if distorted else np.zeros(5)
        uv, _ = cv2.projectPoints(
            np.ascontiguousarray(points, np.float64).reshape(-1, 3), rvec, self.T[camera], self.K[camera], dist
        )
        return uv.reshape(-1, 2)


def look_at(center: np.ndarray, target: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """OpenCV world-to-camera (R, T in metres) of a camera at `center` looking at `target`, world z up."""
    forward = (target - center) / np.linalg.norm(target - center)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    R = np.stack([right, down, forward])
    return R, -R @ center


def body_keypoints(center: np.ndarray, missing: Sequence[int]) -> np.ndarray:
    """(25, 4) keypoints spread inside the body box; `missing` ones are zero with confidence 0."""
    j = np.arange(len(BODY25_NAMES))
    offsets = np.stack([((j % 5) / 4 - 0.5) * 0.3, ((j // 5) % 2 - 0.5) * 0.2, j / 24 * 1.5 - 0.75], axis=1)
    out = np.concatenate([center + offsets, np.ones((len(j), 1))], axis=1)
    out[list(missing)] = 0.0
    return out


def smpl_joints_from_body25(keypoints: np.ndarray, center: np.ndarray) -> np.ndarray:
    """(24, 3) SMPL joints: BODY_25 twins where they exist, else the body centre."""
    joints = np.tile(center, (len(SMPL_JOINT_NAMES), 1))
    for body25, smpl in BODY25_FROM_SMPL.items():
        joints[SMPL_JOINT_NAMES.index(smpl)] = keypoints[BODY25_NAMES.index(body25), :3]
    return joints


def write_sequence(root: Path, spec: SequenceSpec) -> SequenceTruth:
    """Write one sequence folder under `root` and return its truth."""
    seq = root / spec.name
    seq.mkdir(parents=True, exist_ok=True)
    numbers = [n for n in range(1, spec.num_cameras + len(spec.missing_cameras) + 1) if n not in spec.missing_cameras]
    numbers = numbers[: spec.num_cameras]
    names = [f"Camera_B{n}" if spec.naming == "b" else f"Camera ({n})" for n in numbers]
    size = spec.size
    target = np.array([0.0, 0.0, 0.9])
    K, D, R, T, centers = [], [], [], [], []
    for c in range(spec.num_cameras):
        angle = 2 * np.pi * c / spec.num_cameras + 0.3
        center = np.array([3.0 * np.cos(angle), 3.0 * np.sin(angle), 1.0])
        rot, trans = look_at(center, target)
        K.append(
            np.array([[spec.focal * size, 0, size / 2 + 1.3], [0, spec.focal * size * 1.01, size / 2 - 0.7], [0, 0, 1]])
        )
        D.append(np.asarray(spec.distortion, np.float64))
        R.append(rot)
        T.append(trans)
        centers.append(center)
    truth = SequenceTruth(
        root=seq,
        spec=spec,
        names=names,
        K=np.stack(K),
        D=np.stack(D),
        R=np.stack(R),
        T=np.stack(T),
        centers=np.stack(centers),
        frame_ids=[],
        image_rel=[],
        boxes=np.zeros((spec.num_frames, 2, 3)),
        markers=np.zeros((spec.num_frames, 3)),
        keypoints3d=np.zeros((spec.num_frames, len(BODY25_NAMES), 4)),
    )
    ims = []
    for f in range(spec.num_frames):
        body_center = target + np.array([0.05 * f, 0.0, 0.0])
        truth.boxes[f] = np.stack([body_center - BODY_HALF_SIZE, body_center + BODY_HALF_SIZE])
        truth.markers[f] = np.array([0.05 * f, 0.0, 2.6])
        truth.keypoints3d[f] = body_keypoints(body_center, spec.missing_joints)
        frame_id = f if spec.naming == "b" else f + 1
        truth.frame_ids.append(frame_id)
        rels = []
        for c, (number, folder) in enumerate(zip(numbers, names)):
            if spec.naming == "b":
                file = f"{frame_id:06d}.jpg"
            else:
                file = f"{spec.name}_Camera_({number})_{frame_id:04d}_{20190823101010 + 7 * number + f}.jpg"
            rels.append(f"{folder}/{file}")
            _write_view(truth, c, f, rels[-1])
        truth.image_rel.append(rels)
        entry: Dict = {"ims": np.array(rels)}
        if "annots" in spec.keypoints:
            entry["kpts2d"] = np.stack([_keypoints2d(truth, c, f, 0.0) for c in range(spec.num_cameras)])
        ims.append(entry)
        _write_frame_files(truth, f, body_center)
    d_shape = (1, 5) if spec.d_row else (5, 1)
    cams = {
        "K": [k for k in truth.K],
        "D": [d.reshape(d_shape) for d in truth.D],
        "R": [r for r in truth.R],
        "T": [(t * 1000.0).reshape(3, 1) for t in truth.T],
    }
    np.save(seq / "annots.npy", {"cams": cams, "ims": ims})
    return truth


def _keypoints2d(truth: SequenceTruth, camera: int, frame: int, offset: float) -> np.ndarray:
    """(25, 3) distorted OpenCV pixels of the frame's keypoints; missing ones zero."""
    keypoints = truth.keypoints3d[frame]
    out = np.zeros((len(keypoints), 3), np.float32)
    uv = truth.project(camera, keypoints[:, :3], distorted=True) + offset
    valid = keypoints[:, 3] > 0
    out[valid, :2] = uv[valid]
    out[valid, 2] = keypoints[valid, 3]
    return out


def _render(truth: SequenceTruth, camera: int, frame: int) -> Dict[str, np.ndarray]:
    """Per-pixel layers of one distorted view: body ellipse, its upper/lower halves, marker, embedding."""
    size = truth.spec.size
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    pixels = np.stack([xs.ravel(), ys.ravel()], axis=1).reshape(-1, 1, 2)
    K, D = truth.K[camera], truth.D[camera]
    if np.any(D):
        criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 50, 1e-10)
        pixels = cv2.undistortPointsIter(pixels, K, D, None, K, criteria)
    u, v = pixels.reshape(size, size, 2).transpose(2, 0, 1)
    corners = np.array(np.meshgrid(*truth.boxes[frame].T, indexing="ij")).reshape(3, -1).T
    uv = truth.project(camera, corners)
    lo, hi = uv.min(0), uv.max(0)
    cu, cv_ = (lo + hi) / 2
    au, av = (hi - lo) / 2
    body = ((u - cu) / au) ** 2 + ((v - cv_) / av) ** 2 <= 1.0
    mu, mv = truth.project(camera, truth.markers[frame][None])[0]
    marker = (np.abs(u - mu) <= MARKER_HALF_PX) & (np.abs(v - mv) <= MARKER_HALF_PX)
    embedding = np.stack([(u - lo[0]) / (hi[0] - lo[0]), (v - lo[1]) / (hi[1] - lo[1]), np.zeros_like(u)], -1)
    return {"body": body, "upper": body & (v <= cv_), "lower": body & (v >= cv_), "marker": marker, "emb": embedding}


def _write_view(truth: SequenceTruth, camera: int, frame: int, rel: str) -> None:
    spec, seq = truth.spec, truth.root
    layers = _render(truth, camera, frame)
    image = np.empty((spec.size, spec.size, 3), np.uint8)
    image[:] = BACKGROUND
    image[layers["body"]] = BODY
    image[layers["marker"]] = MARKER
    path = seq / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 98])
    for folder, layer in (("mask", "upper"), ("mask_cihp", "lower")):
        if folder in spec.masks:
            mask_path = (seq / folder / rel).with_suffix(".png")
            mask_path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(mask_path), layers[layer].astype(np.uint8) * spec.mask_value)
    if "openpose" in spec.keypoints:
        keypoints = _keypoints2d(truth, camera, frame, spec.openpose_offset)
        keypoints[keypoints[:, 2] == 0] = 0.0
        json_path = (seq / "keypoints2d" / rel).with_suffix(".json")
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps({"people": [{"pose_keypoints_2d": keypoints.ravel().tolist()}]}))
    if spec.densepose:
        dp_path = (seq / "densepose" / rel).with_suffix(".npz")
        dp_path.parent.mkdir(parents=True, exist_ok=True)
        body = layers["body"]
        embedding = (layers["emb"] * body[..., None]).astype(np.float16)
        lo, hi = np.zeros(3, np.float32), np.ones(3, np.float32)
        np.savez(dp_path, embedding=embedding, mask=body.astype(np.uint8), bbox_min=lo, bbox_max=hi)


def _write_frame_files(truth: SequenceTruth, frame: int, body_center: np.ndarray) -> None:
    spec, seq, frame_id = truth.spec, truth.root, truth.frame_ids[frame]
    corners = np.array(np.meshgrid(*truth.boxes[frame].T, indexing="ij")).reshape(3, -1).T
    vertices = np.concatenate([corners, body_center[None]])
    params = {
        "poses": np.zeros((1, 72)),
        "Rh": np.zeros((1, 3)),
        "Th": body_center[None].copy(),
        "shapes": np.zeros((1, 10)),
    }
    wrong = {**params, "Th": params["Th"] + 5.0}
    dirs = {"old": [("params", "vertices", False)], "new": [("new_params", "new_vertices", False)]}
    dirs["both"] = [("params", "vertices", True), ("new_params", "new_vertices", False)]
    for params_dir, vertices_dir, shifted in dirs[spec.smpl_dirs]:
        if spec.params:
            (seq / params_dir).mkdir(exist_ok=True)
            np.save(seq / params_dir / f"{frame_id}.npy", wrong if shifted else params)
        if spec.vertices:
            (seq / vertices_dir).mkdir(exist_ok=True)
            np.save(seq / vertices_dir / f"{frame_id}.npy", vertices + (5.0 if shifted else 0.0))
    keypoints = truth.keypoints3d[frame]
    if "keypoints3d" in spec.keypoints:
        (seq / "keypoints3d").mkdir(exist_ok=True)
        (seq / "keypoints3d" / f"{frame_id:06d}.json").write_text(
            json.dumps([{"id": 0, "keypoints3d": keypoints.tolist()}])
        )
    if "joints3d" in spec.keypoints:
        (seq / "joints3d").mkdir(exist_ok=True)
        np.save(seq / "joints3d" / f"{frame_id}.npy", smpl_joints_from_body25(keypoints, body_center))


def write_dataset(root: Path, specs: Sequence[SequenceSpec], splits: Optional[Dict] = None) -> Dict[str, SequenceTruth]:
    """Write several sequences (and a splits.json when given) under `root`."""
    root.mkdir(parents=True, exist_ok=True)
    truths = {spec.name: write_sequence(root, spec) for spec in specs}
    if splits is not None:
        (root / "splits.json").write_text(json.dumps(splits))
    return truths


def rewrite_annots(sequence: Path, change: Callable[[Dict], None]) -> None:
    """Load a sequence's annots.npy, let `change` edit the dict in place, save it back."""
    annots = np.load(sequence / "annots.npy", allow_pickle=True).item()
    change(annots)
    np.save(sequence / "annots.npy", annots)


def red_centroid(image: np.ndarray) -> np.ndarray:
    """(x, y) centroid, in the module's pixel-centre convention (+0.5), of the red marker of an RGB image."""
    image = np.asarray(image, np.float64)
    if image.max() <= 1.0:
        image = image * 255.0
    red = (image[..., 0] > 150) & (image[..., 1] < 100) & (image[..., 2] < 100)
    ys, xs = np.nonzero(red)
    if len(xs) == 0:
        raise AssertionError("no red marker in the image")
    return np.array([xs.mean() + 0.5, ys.mean() + 0.5])
