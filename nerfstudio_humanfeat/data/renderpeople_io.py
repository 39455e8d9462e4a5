"""Readers for SHERF's RenderPeople layout: cameras.json, the smplx-convention SMPL fits, human_list.txt, subjects.

Per subject `img/camera0000/0000.jpg`, `mask/camera0000/0000.png`, `cameras.json` ({camera0000: {K, R, T}}, T in
metres, no distortion) and `outputs_re_fitting/refit_smpl_2nd.npz` (`smpl`: betas (1, 10), global_orient (N, 3),
body_pose (N, 69), transl (N, 3)). The fits are converted to the ZJU convention (Rh, Th; poses = [0, 0, 0] +
body_pose) so that `FrameRecord.smpl_params` is the same for every dataset. RenderPeople has no keypoints: the 2D
and 3D keypoint targets are the SMPL joints of the fit (BODY_25 through `body25_from_smpl_joints`), projected.
Views are decoded by `zju_io.load_view` like every other layout.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from nerfstudio_humanfeat.body.smpl import SMPLBody, smplx_to_zju
from nerfstudio_humanfeat.data.catalog import FrameRecord, HumanDataError, MaskMode, SubjectRecord
from nerfstudio_humanfeat.data.zju_io import (
    Annots,
    ProblemSink,
    ReadOptions,
    _check_camera,
    bbox_from_points,
    body25_from_smpl_joints,
    build_rig,
    check_camera_units,
    check_duplicate_cameras,
    original_size,
    project_keypoints,
    report,
)

HUMAN_LIST = "human_list.txt"
CAMERAS_FILE = "cameras.json"
SMPL_FIT = Path("outputs_re_fitting") / "refit_smpl_2nd.npz"
SHERF_TRAIN_LINES = 450
SHERF_TEST_END = 480
"""human_list.txt lines [0, 450) are SHERF's training subjects, [450, 480) its test subjects."""
OBSERVATION_VIEWS: Tuple[int, ...] = (0, 16, 31)
"""SHERF's observation (source) views of the 36; the others are targets."""
KEYPOINT_SOURCE = "smpl-joints-projected"
_CAMERA_NAME = re.compile(r"^camera\d+$")


def image_rel(camera: str, frame: int) -> str:
    """An image path relative to the subject folder: img/camera0000/0000.jpg."""
    return f"img/{camera}/{frame:04d}.jpg"


def mask_path(root: Path, camera: str, frame: int) -> Path:
    return root / "mask" / camera / f"{frame:04d}.png"


@dataclass
class RenderPeopleCameras:
    """A subject's cameras.json, validated; original resolution, OpenCV, world to camera in metres."""

    path: Path
    names: List[str]
    K: np.ndarray
    """(C, 3, 3)"""
    R: np.ndarray
    """(C, 3, 3)"""
    T: np.ndarray
    """(C, 3) metres."""

    def __len__(self) -> int:
        return len(self.names)


def read_cameras_json(path: Path) -> RenderPeopleCameras:
    """Cameras in the order of their names (camera0000, camera0001, ...)."""
    if not path.is_file():
        raise HumanDataError(f"{path}: camera file not found (expected {{camera0000: {{K, R, T}}, ...}})")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise HumanDataError(f"{path}: cannot read the camera file ({err})") from err
    if not isinstance(data, dict) or not data:
        raise HumanDataError(f"{path}: expected a non-empty object {{camera0000: {{K, R, T}}, ...}}")
    names = sorted(data)
    K, R, T = [], [], []
    for camera, name in enumerate(names):
        entry = data[name]
        if not isinstance(entry, dict) or any(k not in entry for k in "KRT"):
            raise HumanDataError(f"{path}: camera '{name}' must hold K (3x3), R (3x3) and T (3)")
        arrays = []
        for key, size in (("K", 9), ("R", 9), ("T", 3)):
            try:
                value = np.asarray(entry[key], dtype=np.float64).reshape(-1)
            except (TypeError, ValueError) as err:
                raise HumanDataError(f"{path}: camera '{name}' {key} is not numeric ({err})") from err
            if value.size != size or not np.isfinite(value).all():
                raise HumanDataError(f"{path}: camera '{name}' {key} has {value.size} values (expected {size}) or NaN")
            arrays.append(value)
        K.append(arrays[0].reshape(3, 3))
        R.append(arrays[1].reshape(3, 3))
        T.append(arrays[2])
        _check_camera(path, camera, K[-1], R[-1])
    check_camera_units(path, np.stack(R), np.stack(T), "metres", names)
    check_duplicate_cameras(path, np.stack(R), np.stack(T), names)
    return RenderPeopleCameras(path, names, np.stack(K), np.stack(R), np.stack(T))


def image_camera_folders(root: Path) -> List[str]:
    """The camera folders under a subject's img/."""
    img = root / "img"
    return sorted(p.name for p in img.iterdir() if p.is_dir() and _CAMERA_NAME.match(p.name)) if img.is_dir() else []


def check_camera_count(root: Path, cameras: RenderPeopleCameras) -> Optional[HumanDataError]:
    """A problem when cameras.json and the img/ camera folders disagree."""
    folders = image_camera_folders(root)
    if folders != cameras.names:
        only_json = sorted(set(cameras.names) - set(folders))
        only_img = sorted(set(folders) - set(cameras.names))
        return HumanDataError(
            f"{cameras.path}: camera count mismatch: cameras.json lists {len(cameras)} cameras, {root / 'img'} holds "
            f"{len(folders)} camera folders (only in cameras.json: {only_json[:5]}; only in img/: {only_img[:5]})"
        )
    return None


@dataclass
class SMPLFit:
    """The smplx-convention fit of every frame of a subject."""

    path: Path
    betas: Float[np.ndarray, "10"]
    global_orient: Float[np.ndarray, "N 3"]
    body_pose: Float[np.ndarray, "N 69"]
    transl: Float[np.ndarray, "N 3"]

    @property
    def num_frames(self) -> int:
        return len(self.global_orient)


def read_smpl_fit(path: Path) -> SMPLFit:
    """outputs_re_fitting/refit_smpl_2nd.npz: the pickled dict `smpl` with betas, global_orient, body_pose, transl."""
    if not path.is_file():
        raise HumanDataError(f"{path}: SMPL fit not found (expected the npz of SHERF's refit, key 'smpl')")
    try:
        with np.load(path, allow_pickle=True) as data:
            smpl = data["smpl"]
            smpl = smpl.item() if smpl.dtype == object and smpl.shape == () else smpl
    except Exception as err:  # noqa: BLE001 - any unpickling failure means an unreadable file
        raise HumanDataError(f"{path}: cannot read the SMPL fit (expected key 'smpl', a pickled dict): {err}") from err
    if not isinstance(smpl, dict):
        raise HumanDataError(f"{path}: 'smpl' must be a dict, found {type(smpl).__name__}")
    arrays = {}
    for key, width in (("global_orient", 3), ("body_pose", 69), ("transl", 3), ("betas", None)):
        if key not in smpl:
            raise HumanDataError(f"{path}: the SMPL fit lacks '{key}' (found {sorted(map(str, smpl))})")
        value = np.asarray(smpl[key], dtype=np.float64)
        if width is not None:
            value = value.reshape(-1, width) if value.size % width == 0 else value
            if value.ndim != 2 or value.shape[1] != width:
                raise HumanDataError(f"{path}: SMPL '{key}' has shape {value.shape}, expected (N, {width})")
        if not np.isfinite(value).all():
            raise HumanDataError(f"{path}: SMPL '{key}' holds NaN or inf")
        arrays[key] = value
    counts = {k: len(arrays[k]) for k in ("global_orient", "body_pose", "transl")}
    if len(set(counts.values())) != 1 or counts["transl"] == 0:
        raise HumanDataError(f"{path}: SMPL frame counts differ or are zero: {counts}")
    betas = arrays["betas"].reshape(-1, arrays["betas"].shape[-1] if arrays["betas"].ndim else 1)[0]
    betas = np.pad(betas, (0, max(0, 10 - betas.size)))[:10]
    return SMPLFit(path, betas, arrays["global_orient"], arrays["body_pose"], arrays["transl"])


def read_human_list(path: Path) -> List[str]:
    """The subject names of human_list.txt, one a line (blank lines skipped)."""
    try:
        return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except OSError as err:
        raise HumanDataError(f"{path}: cannot read the subject list ({err})") from err


def sherf_split(names: Sequence[str]) -> Tuple[List[str], List[str]]:
    """SHERF's split of human_list.txt: lines [0, 450) train, [450, 480) test. A shorter list is split in the same
    proportion (15/16 train, rounded down), keeping at least one test subject when there are two or more (one subject:
    training only)."""
    names = list(names)
    if len(names) >= SHERF_TEST_END:
        return names[:SHERF_TRAIN_LINES], names[SHERF_TRAIN_LINES:SHERF_TEST_END]
    num_train = len(names) * SHERF_TRAIN_LINES // SHERF_TEST_END
    num_train = min(max(num_train, 1), len(names) - 1) if len(names) >= 2 else len(names)
    return names[:num_train], names[num_train:]


def find_subjects(root: Path) -> Dict[str, Path]:
    """Subject name -> folder, for every folder of `root` holding cameras.json or img/."""
    if not root.is_dir():
        raise HumanDataError(f"{root}: data root not found (expected a folder of RenderPeople subjects)")
    return {
        p.name: p
        for p in sorted(root.iterdir())
        if p.is_dir() and ((p / CAMERAS_FILE).is_file() or (p / "img").is_dir())
    }


def zju_params(
    body: SMPLBody, fit: SMPLFit, frames: Sequence[int]
) -> Tuple[Dict[str, Float[Tensor, "F D"]], Float[Tensor, "F V 3"], Float[Tensor, "F 24 3"]]:
    """ZJU-convention parameters (poses (F, 72) with a zero global rotation, Rh, Th, shapes (F, 10)), world
    vertices and SMPL joints of the selected frames."""
    index = list(frames)
    as_t = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float64)  # noqa: E731
    shapes = as_t(fit.betas)[None].expand(len(index), -1)
    rh, th = smplx_to_zju(body, as_t(fit.global_orient[index]), as_t(fit.transl[index]), shapes)
    poses = torch.cat([torch.zeros(len(index), 3, dtype=torch.float64), as_t(fit.body_pose[index])], dim=1)
    with torch.no_grad():
        posed = body(poses.to(body.v_template.dtype), shapes, rh, th)
    params = {"poses": poses, "Rh": rh, "Th": th, "shapes": shapes}
    return params, posed.vertices.double(), posed.joints.double()


def read_subject(
    root: Path,
    name: str,
    split: str,
    cameras: RenderPeopleCameras,
    fit: SMPLFit,
    body: SMPLBody,
    source_cameras: Sequence[int],
    target_cameras: Sequence[int],
    frame_indices: Sequence[int],
    view_cameras: Sequence[int],
    options: ReadOptions = ReadOptions(),
    problems: ProblemSink = None,
) -> SubjectRecord:
    """Catalog record of one subject: rig, frames (paths, SMPL box, ZJU-convention SMPL, SMPL-joint keypoints)."""
    num = len(cameras)
    for role, ids in (("source", source_cameras), ("target", target_cameras), ("view", view_cameras)):
        bad = [c for c in ids if not 0 <= c < num]
        if bad:
            raise HumanDataError(
                f"{cameras.path}: {role} camera indices {bad} out of range: "
                f"the subject has {num} cameras (0..{num - 1})"
            )
    if not frame_indices:
        raise HumanDataError(f"{fit.path}: no frame selected (the fit has {fit.num_frames} frames)")
    bad_frames = [f for f in frame_indices if not 0 <= f < fit.num_frames]
    if bad_frames:
        raise HumanDataError(f"{fit.path}: frames {bad_frames[:5]} selected but the fit has {fit.num_frames} frames")
    ims = [[image_rel(camera, frame) for camera in cameras.names] for frame in range(fit.num_frames)]
    annots = Annots(cameras.path, cameras.K, np.zeros((num, 5)), cameras.R, cameras.T, ims, [None] * len(ims))
    rig = build_rig(annots, original_size(annots, frame_indices, view_cameras, problems), options.image_scale)
    rig.names = list(cameras.names)
    use_masks = options.mask_mode != "none" and (root / "mask").is_dir()
    params, vertices, joints = zju_params(body, fit, frame_indices)
    intrinsics, world_to_camera = rig.intrinsics.numpy(), rig.world_to_camera.numpy()
    frames = []
    for i, frame in enumerate(frame_indices):
        image_paths: List[Optional[Path]] = [root / image_rel(camera, frame) for camera in cameras.names]
        missing = [c for c in view_cameras if not image_paths[c].is_file()]  # type: ignore[union-attr]
        for camera in missing:
            report(HumanDataError(f"{image_paths[camera]}: image of camera {camera} does not exist"), problems)
        keypoints3d = body25_from_smpl_joints(joints[i].numpy())
        keypoints2d = np.stack(
            [
                project_keypoints(keypoints3d, intrinsics[c], world_to_camera[c], (rig.height, rig.width))
                for c in range(num)
            ]
        )
        frames.append(
            FrameRecord(
                frame_id=int(frame),
                image_paths=image_paths,
                mask_paths=[[mask_path(root, camera, frame)] if use_masks else [] for camera in cameras.names],
                densepose_paths=[None] * num,
                bbox=bbox_from_points(vertices[i].numpy(), options.bbox_padding),
                keypoints2d=torch.from_numpy(keypoints2d),
                keypoints3d=torch.from_numpy(keypoints3d),
                smpl_params={key: value[i].float() for key, value in params.items()},
                vertices_path=None,
            )
        )
    return SubjectRecord(
        name=name,
        root=root,
        rig=rig,
        frames=frames,
        split="test" if split == "test" else "train",
        source_cameras=list(source_cameras),
        target_cameras=list(target_cameras),
        keypoint_source=KEYPOINT_SOURCE,
    )


def mask_mode_warning(root: Path, mode: MaskMode) -> Optional[str]:
    """A warning when masks are wanted but the subject has no mask/ folder."""
    if mode != "none" and not (root / "mask").is_dir():
        return f"{root}: no mask folder: every pixel counts as foreground"
    return None
