"""Readers for Animatable NeRF's Human3.6M layout: `<root>/S1/Posing/` in the ZJU-MoCap format (annots.npy with T
in millimetres, images in camera folders, mask_cihp, new_params, new_vertices; read by zju_io) plus `lbs/`:
`joints.npy` (24, 3) and `tvertices.npy` (V, 3), the canonical body; `parents.npy` (24,); `tbw.npy`, the canonical
blend-weight grid; `bweights/{i}.npy`, the grid (X, Y, Z, 25: 24 blend weights and the distance to the surface) of
frame i in its SMPL space (world with Rh/Th removed), over the SMPL-space vertices padded by 0.05 m.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np
import torch

from nerfstudio_humanfeat.body.skinning import WeightGrid
from nerfstudio_humanfeat.data.catalog import HumanDataError, SubjectRecord
from nerfstudio_humanfeat.data.zju_io import ProblemSink, _load_npy, load_points, report
from nerfstudio_humanfeat.synth.body_model import axis_angle_to_matrix

SEQUENCE_FOLDER = "Posing"
LBS_FOLDER = "lbs"
BWEIGHTS_PADDING = 0.05
NUM_WEIGHT_CHANNELS = 25
H36M_TRAIN: tuple = ("S1", "S5", "S6", "S7", "S8")
H36M_TEST: tuple = ("S9", "S11")
H36M_TRAIN_FRAMES: Dict[str, int] = {"S1": 150, "S5": 250, "S6": 150, "S7": 300, "S8": 250, "S9": 260, "S11": 200}
"""Animatable NeRF's training frames per subject (every 5th image)."""


def find_sequences(root: Path) -> Dict[str, Path]:
    """Subject name -> sequence folder: `<root>/<name>/Posing` holding annots.npy (or `<root>/<name>` itself)."""
    if not root.is_dir():
        raise HumanDataError(f"{root}: data root not found (expected Human3.6M subjects S1/Posing, S5/Posing, ...)")
    found = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        if (folder / SEQUENCE_FOLDER / "annots.npy").is_file():
            found[folder.name] = folder / SEQUENCE_FOLDER
        elif (folder / "annots.npy").is_file():
            found[folder.name] = folder
    return found


def is_h36m_root(root: Path) -> bool:
    """Whether a data root holds Human3.6M-layout subjects (`<name>/Posing/annots.npy`)."""
    return root.is_dir() and any((p / SEQUENCE_FOLDER / "annots.npy").is_file() for p in root.iterdir() if p.is_dir())


def bweights_path(sequence: Path, frame_id: int) -> Path:
    return sequence / LBS_FOLDER / "bweights" / f"{frame_id}.npy"


def world_to_smpl_space(vertices: np.ndarray, rh: Sequence[float], th: Sequence[float]) -> np.ndarray:
    """World points in SMPL space: (x - Th) @ R(Rh)."""
    rot = axis_angle_to_matrix(torch.as_tensor(np.asarray(rh, dtype=np.float64).reshape(3))).numpy()
    return (np.asarray(vertices, dtype=np.float64) - np.asarray(th, dtype=np.float64).reshape(3)) @ rot


def load_weight_grid(array_path: Path, vertices_smpl_space: np.ndarray) -> WeightGrid:
    """A stored (X, Y, Z, 25) weight grid, its bounds rebuilt from the SMPL-space vertices it was made over."""
    array = np.asarray(_load_npy(array_path, "blend-weight grid"))
    if array.ndim != 4 or array.shape[-1] != NUM_WEIGHT_CHANNELS:
        raise HumanDataError(f"{array_path}: blend-weight grid has shape {array.shape}, expected (X, Y, Z, 25)")
    if not np.isfinite(array).all():
        raise HumanDataError(f"{array_path}: blend-weight grid holds NaN or inf")
    return WeightGrid.from_array(array, vertices_smpl_space, padding=BWEIGHTS_PADDING)


def frame_weight_grid(subject: SubjectRecord, frame_index: int) -> WeightGrid:
    """The `lbs/bweights` grid of a catalog frame (SMPL space of its new_params / new_vertices)."""
    frame = subject.frames[frame_index]
    if frame.vertices_path is None or frame.smpl_params is None:
        raise HumanDataError(f"{subject.root}: frame {frame.frame_id} has no SMPL vertices and parameters")
    vertices = load_points(frame.vertices_path, "SMPL vertices") + subject.world_offset.double().numpy()
    verts = world_to_smpl_space(vertices, frame.smpl_params["Rh"], frame.smpl_params["Th"])
    return load_weight_grid(bweights_path(subject.root, frame.frame_id), verts)


def check_lbs(sequence: Path, frame_ids: Sequence[int], problems: ProblemSink = None) -> List[Path]:
    """Problems of a sequence's lbs/ folder: missing or malformed canonical files, a missing or malformed
    bweights/{i}.npy for any of the frames. Returns the files checked."""
    lbs = sequence / LBS_FOLDER
    checked: List[Path] = []
    if not lbs.is_dir():
        report(HumanDataError(f"{lbs}: lbs folder not found (joints, parents, tvertices, tbw, bweights/)"), problems)
        return checked
    shapes = {"joints.npy": (24, 3), "parents.npy": (24,)}
    for name in ("joints.npy", "parents.npy", "tvertices.npy", "tbw.npy"):
        path = lbs / name
        checked.append(path)
        try:
            array = np.asarray(_load_npy(path, f"lbs {name[:-4]}"))
            expected = shapes.get(name)
            if expected is not None and array.shape != expected:
                raise HumanDataError(f"{path}: shape {array.shape}, expected {expected}")
            if name == "tvertices.npy" and (array.ndim != 2 or array.shape[1] != 3):
                raise HumanDataError(f"{path}: shape {array.shape}, expected (V, 3)")
            if name == "tbw.npy" and (array.ndim != 4 or array.shape[-1] != NUM_WEIGHT_CHANNELS):
                raise HumanDataError(f"{path}: shape {array.shape}, expected (X, Y, Z, 25)")
        except HumanDataError as err:
            report(err, problems)
    for frame_id in frame_ids:
        path = bweights_path(sequence, frame_id)
        checked.append(path)
        if not path.is_file():
            report(HumanDataError(f"{path}: blend-weight grid of frame {frame_id} not found"), problems)
            continue
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
            if array.ndim != 4 or array.shape[-1] != NUM_WEIGHT_CHANNELS:
                raise HumanDataError(f"{path}: blend-weight grid has shape {array.shape}, expected (X, Y, Z, 25)")
        except HumanDataError as err:
            report(err, problems)
        except Exception as err:  # noqa: BLE001 - any failure to read the header
            report(HumanDataError(f"{path}: cannot read the blend-weight grid ({err})"), problems)
    return checked
