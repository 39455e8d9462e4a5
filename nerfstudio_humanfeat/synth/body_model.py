"""A procedural SMPL-format body: closed tubes per body part, written as a pickle that smplx loads.

Canonical space is SMPL's: metres, y up, x towards the body's left, z towards the front, T-pose.
The vertex array holds the surface vertices plus hidden landmark vertices that no face references:
one per SMPL joint (the joint regressor is one-hot on them) and one per BODY_25 face / foot keypoint
and per fingertip, placed at the vertex ids smplx's default `VertexJointSelector` reads, so the
extra joints smplx appends (nose, eyes, ears, toes, heels, fingertips) are the right body points.
"""

from __future__ import annotations

import contextlib
import io
import pickle
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import smplx
import torch
from jaxtyping import Float, Int
from smplx.lbs import batch_rodrigues
from smplx.vertex_ids import vertex_ids as SMPLX_VERTEX_IDS
from torch import Tensor

from nerfstudio_humanfeat.skeleton import BODY25_FROM_SMPL, BODY25_NAMES, SMPL_JOINT_NAMES, SMPL_PARENTS

NUM_VERTICES = 6890
NUM_JOINTS = 24
NUM_BETAS = 10
NUM_POSE_BASIS = 9 * (NUM_JOINTS - 1)
SMPL_ROOT_PARENT = 4294967295
"""How SMPL's own pickles encode the root's parent in `kintree_table` (uint32 -1); smplx resets it to -1."""

MIRROR_JOINT = [0, 2, 1, 3, 5, 4, 6, 8, 7, 9, 11, 10, 12, 14, 13, 15, 17, 16, 19, 18, 21, 20, 23, 22]
"""SMPL joint index of the mirror-image joint (left <-> right)."""
LEFT_JOINTS = (1, 4, 7, 10, 13, 16, 18, 20, 22)

LANDMARK_NAMES: Dict[str, str] = {
    "Nose": "nose", "REye": "reye", "LEye": "leye", "REar": "rear", "LEar": "lear",
    "LBigToe": "LBigToe", "LSmallToe": "LSmallToe", "LHeel": "LHeel",
    "RBigToe": "RBigToe", "RSmallToe": "RSmallToe", "RHeel": "RHeel",
    "LThumb": "lthumb", "LIndex": "lindex", "LMiddle": "lmiddle", "LRing": "lring", "LPinky": "lpinky",
    "RThumb": "rthumb", "RIndex": "rindex", "RMiddle": "rmiddle", "RRing": "rring", "RPinky": "rpinky",
}  # fmt: skip
"""Surface landmarks and the key of their vertex id in smplx's SMPL-H vertex id table."""

SHAPE_DIRECTIONS: Tuple[Tuple[str, Dict[str, float]], ...] = (
    ("height", {"scale": 0.05}),
    ("girth", {"girth": 0.1}),
    ("leg_length", {"leg_length": 0.04}),
    ("arm_length", {"arm_length": 0.03}),
    ("shoulder_width", {"shoulder_width": 0.02}),
    ("belly", {"belly": 0.03}),
    ("head_size", {"head_size": 0.06}),
    ("hip_width", {"hip_width": 0.015}),
    ("torso_length", {"torso_length": 0.03}),
    ("chest", {"chest": 0.02}),
)
"""What one unit of each beta changes, in `Proportions` units (metres or relative scale)."""


@dataclass(frozen=True)
class Proportions:
    """The body's design parameters; betas move them linearly (see SHAPE_DIRECTIONS)."""

    scale: float = 1.0
    girth: float = 1.0
    leg_length: float = 0.0
    arm_length: float = 0.0
    shoulder_width: float = 0.0
    belly: float = 0.0
    head_size: float = 1.0
    hip_width: float = 0.0
    torso_length: float = 0.0
    chest: float = 0.0

    def shifted(self, delta: Dict[str, float]) -> "Proportions":
        return replace(self, **{k: getattr(self, k) + v for k, v in delta.items()})


@dataclass(frozen=True)
class PartSpec:
    """A closed tube along `start -> end` with elliptic cross-sections and rounded ends."""

    name: str
    start: np.ndarray
    end: np.ndarray
    lateral: np.ndarray
    """Hint for the cross-section's first axis (made orthogonal to the tube axis)."""
    profile: np.ndarray
    """(K, 4) rows (t in [0, 1], radius along the first axis, radius along the second, centre offset along it)."""
    caps: Tuple[float, float]
    """Length of the rounded end at the start and at the end, metres."""
    chain: Tuple[int, ...]
    """SMPL joints whose bones this part follows, proximal to distal."""
    cuts: Tuple[np.ndarray, ...]
    """Joint positions where the bone changes along the chain (len(chain) - 1)."""
    rings: int
    segments: int
    blend: float = 0.04
    """Half-width of the skinning-weight transition around each cut, metres."""
    mirrored: bool = False
    """Built as given, then reflected to the body's other side (x -> -x)."""


PART_NAMES: List[str] = [
    "torso", "head", "neck", "left_collar", "left_upper_arm", "left_forearm", "left_hand", "left_thigh",
    "left_calf", "left_foot", "right_collar", "right_upper_arm", "right_forearm", "right_hand", "right_thigh",
    "right_calf", "right_foot",
]  # fmt: skip


@dataclass
class BodyModel:
    """The generated SMPL-format body with its part labels and landmark vertex ids."""

    v_template: Float[np.ndarray, "V 3"]
    shapedirs: Float[np.ndarray, "V 3 B"]
    weights: Float[np.ndarray, "V 24"]
    faces: Int[np.ndarray, "F 3"]
    face_parts: Int[np.ndarray, " F"]
    """Index into PART_NAMES of each face."""
    joint_vertex_ids: Int[np.ndarray, "24"]
    landmark_vertex_ids: Dict[str, int]
    landmark_surface_ids: Dict[str, int]
    """The surface vertex each landmark duplicates (same position, skinning and shape directions)."""
    joint_regressor: Float[np.ndarray, "24 V"] = field(init=False)

    def __post_init__(self) -> None:
        self.joint_regressor = np.zeros((NUM_JOINTS, len(self.v_template)))
        self.joint_regressor[np.arange(NUM_JOINTS), self.joint_vertex_ids] = 1.0

    @property
    def num_vertices(self) -> int:
        return len(self.v_template)

    def body25_vertex_ids(self) -> Int[np.ndarray, "25"]:
        """Vertex id of each BODY_25 keypoint (SMPL joint landmarks or surface landmarks)."""
        ids = []
        for name in BODY25_NAMES:
            smpl_name = BODY25_FROM_SMPL.get(name)
            if smpl_name is not None:
                ids.append(int(self.joint_vertex_ids[SMPL_JOINT_NAMES.index(smpl_name)]))
            else:
                ids.append(self.landmark_vertex_ids[name])
        return np.asarray(ids, dtype=np.int64)

    def body25_surface_ids(self) -> Int[np.ndarray, "25"]:
        """For BODY_25 keypoints on the surface (face, feet), the surface vertex they sit on; -1 for joints."""
        return np.asarray([self.landmark_surface_ids.get(name, -1) for name in BODY25_NAMES], dtype=np.int64)

    def surface_vertex_mask(self) -> np.ndarray:
        used = np.zeros(self.num_vertices, dtype=bool)
        used[self.faces.reshape(-1)] = True
        return used

    def canonical_bbox(self) -> Tuple[Float[np.ndarray, "3"], Float[np.ndarray, "3"]]:
        """Bounding box of the rest-pose, zero-shape surface."""
        surface = self.v_template[self.surface_vertex_mask()]
        return surface.min(axis=0), surface.max(axis=0)

    def pickle_dict(self) -> Dict[str, np.ndarray]:
        """Exactly the arrays smplx reads from an SMPL pickle."""
        kintree = np.stack([np.asarray(SMPL_PARENTS, dtype=np.int64), np.arange(NUM_JOINTS, dtype=np.int64)])
        kintree[0, 0] = SMPL_ROOT_PARENT
        return {
            "v_template": self.v_template.astype(np.float64),
            "shapedirs": self.shapedirs.astype(np.float64),
            "posedirs": np.zeros((self.num_vertices, 3, NUM_POSE_BASIS), dtype=np.float32),
            "J_regressor": self.joint_regressor.astype(np.float64),
            "weights": self.weights.astype(np.float64),
            "kintree_table": kintree,
            "f": self.faces.astype(np.uint32),
        }

    def save(self, path: Path) -> Path:
        """Writes the SMPL pickle (e.g. body_model/SMPL_NEUTRAL.pkl)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            pickle.dump(self.pickle_dict(), f, protocol=2)
        return path


def joint_positions(p: Proportions) -> Float[np.ndarray, "24 3"]:
    """Rest-pose SMPL joints of a body with the given proportions."""
    tl, ll, al, sw, hw = p.torso_length, p.leg_length, p.arm_length, p.shoulder_width, p.hip_width
    j = np.zeros((NUM_JOINTS, 3))
    j[0] = (0.0, -0.22, 0.025)
    j[3] = (0.0, -0.10, 0.005)
    j[6] = (0.0, 0.03 + 0.4 * tl, 0.01)
    j[9] = (0.0, 0.085 + 0.6 * tl, 0.02)
    j[12] = (0.0, 0.29 + tl, -0.02)
    j[15] = (0.0, 0.36 + tl, 0.03)
    j[1] = (0.07 + hw, -0.31, 0.02)
    j[4] = (0.095 + 0.5 * hw, -0.69 - 0.5 * ll, 0.015)
    j[7] = (0.085 + 0.5 * hw, -1.08 - ll, -0.025)
    j[10] = (0.11 + 0.5 * hw, -1.14 - ll, 0.095)
    j[13] = (0.075, 0.205 + tl, -0.015)
    j[16] = (0.175 + sw, 0.225 + tl, -0.02)
    j[18] = (0.435 + sw + 0.5 * al, 0.215 + tl, -0.04)
    j[20] = (0.69 + sw + al, 0.215 + tl, -0.04)
    j[22] = (0.78 + sw + al, 0.21 + tl, -0.05)
    for left in LEFT_JOINTS:
        j[MIRROR_JOINT[left]] = j[left] * (-1.0, 1.0, 1.0)
    return j * p.scale


def _profile(rows: Sequence[Tuple[float, ...]], scale_a: float = 1.0, scale_b: float = 1.0) -> np.ndarray:
    out = np.array([tuple(r) + (0.0,) * (4 - len(r)) for r in rows], dtype=np.float64)
    out[:, 1] *= scale_a
    out[:, 2] *= scale_b
    return out


def _v(*xyz: float) -> np.ndarray:
    return np.asarray(xyz, dtype=np.float64)


def _central_parts(p: Proportions, j: np.ndarray) -> List[PartSpec]:
    g, tl, sw, hw, hs = p.girth, p.torso_length, p.shoulder_width, p.hip_width, p.head_size
    y0, y1 = -0.40, 0.335 + tl
    torso_rows = [
        (-0.40, 0.12, 0.09),
        (-0.30, 0.165 + hw, 0.115),
        (-0.20, 0.16 + 0.7 * hw, 0.11 + 0.3 * p.belly),
        (-0.08, 0.14 + 0.3 * p.belly, 0.10 + p.belly),
        (0.05 + 0.4 * tl, 0.15 + 0.3 * p.chest, 0.105 + p.chest),
        (0.16 + 0.7 * tl, 0.165 + 0.5 * sw + 0.3 * p.chest, 0.11 + p.chest),
        (0.25 + tl, 0.17 + sw, 0.085),
        (y1, 0.10, 0.06),
    ]
    torso_profile = _profile([((y - y0) / (y1 - y0), ra, rb) for y, ra, rb in torso_rows], g, g)
    head_centre = _v(0.0, j[15, 1] + 0.055 * hs, 0.025)
    half = 0.115 * hs
    return [
        PartSpec(
            "torso", _v(0.0, y0, 0.02), _v(0.0, y1, -0.015), _v(1, 0, 0), torso_profile, (0.07, 0.06),
            (0, 3, 6, 9, 12), (j[3], j[6], j[9], j[12]), rings=37, segments=35, blend=0.035,
        ),
        PartSpec(
            "head", head_centre - _v(0, half, 0), head_centre + _v(0, half, 0), _v(1, 0, 0),
            _profile([(0.0, 0.08, 0.095), (1.0, 0.08, 0.095)], hs, hs), (half, half),
            (12, 15), (j[15],), rings=22, segments=26, blend=0.03,
        ),
        PartSpec(
            "neck", _v(0.0, j[12, 1] - 0.06, -0.015), _v(0.0, j[15, 1] + 0.03, 0.0), _v(1, 0, 0),
            _profile([(0.0, 0.056, 0.058), (1.0, 0.05, 0.052)], g**0.5, g**0.5), (0.02, 0.02),
            (9, 12, 15), (j[12], j[15]), rings=12, segments=18, blend=0.025,
        ),
    ]  # fmt: skip


def _left_parts(p: Proportions, j: np.ndarray) -> List[PartSpec]:
    g = p.girth
    x = _v(1, 0, 0)
    y = _v(0, 1, 0)
    sole = j[7, 1] - 0.08
    return [
        PartSpec(
            "left_collar", _v(0.02, j[13, 1] + 0.015, -0.02), _v(j[16, 0] + 0.03, j[16, 1], -0.02), y,
            _profile([(0.0, 0.055, 0.065), (1.0, 0.05, 0.06)], g, g), (0.04, 0.04),
            (9, 13, 16), (j[13], j[16]), rings=12, segments=16,
        ),
        PartSpec(
            "left_upper_arm", j[16] - 0.05 * x, j[18] + 0.02 * x, y,
            _profile([(0.0, 0.058, 0.06), (0.5, 0.048, 0.05), (1.0, 0.042, 0.043)], g, g), (0.04, 0.03),
            (13, 16, 18), (j[16], j[18]), rings=22, segments=18,
        ),
        PartSpec(
            "left_forearm", j[18] - 0.02 * x, j[20] + 0.015 * x, y,
            _profile([(0.0, 0.042, 0.044), (0.3, 0.042, 0.046), (1.0, 0.028, 0.035)], g, g), (0.03, 0.025),
            (16, 18, 20), (j[18], j[20]), rings=22, segments=18,
        ),
        PartSpec(
            "left_hand", j[20] - 0.015 * x, j[22] + 0.095 * x, y,
            _profile([(0.0, 0.022, 0.035), (0.35, 0.022, 0.048), (0.7, 0.018, 0.045), (1.0, 0.014, 0.035)]),
            (0.02, 0.04), (18, 20, 22), (j[20], j[22]), rings=14, segments=14, blend=0.02,
        ),
        PartSpec(
            "left_thigh", j[1] + 0.07 * y, j[4] - 0.03 * y, x,
            _profile([(0.0, 0.085, 0.09), (0.3, 0.08, 0.085), (1.0, 0.055, 0.058)], g, g), (0.07, 0.05),
            (0, 1, 4), (j[1], j[4]), rings=24, segments=20,
        ),
        PartSpec(
            "left_calf", j[4] + 0.035 * y, j[7] - 0.03 * y, x,
            _profile([(0.0, 0.052, 0.055), (0.3, 0.056, 0.06), (1.0, 0.035, 0.038)], g, g), (0.04, 0.035),
            (1, 4, 7), (j[4], j[7]), rings=24, segments=18,
        ),
        PartSpec(
            "left_foot", _v(j[7, 0], sole, j[7, 2] - 0.075), _v(j[10, 0] + 0.005, sole, j[10, 2] + 0.085), x,
            _profile([(0.0, 0.035, 0.04, 0.04), (0.4, 0.045, 0.042, 0.042), (0.75, 0.05, 0.028, 0.028),
                      (1.0, 0.045, 0.02, 0.02)]),
            (0.04, 0.04), (7, 10), (j[10],), rings=17, segments=16, blend=0.025,
        ),
    ]  # fmt: skip


def _frame(spec: PartSpec) -> Tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    axis = spec.end - spec.start
    length = float(np.linalg.norm(axis))
    d = axis / length
    a = spec.lateral - (spec.lateral @ d) * d
    a = a / np.linalg.norm(a)
    return d, a, np.cross(d, a), length


def tube_vertices(spec: PartSpec) -> Tuple[Float[np.ndarray, "N 3"], Float[np.ndarray, " N"]]:
    """Vertices of a part (start pole, rings, end pole) and their coordinate along the axis, metres."""
    d, a, b, length = _frame(spec)
    k = np.arange(1, spec.rings + 1)
    t = 0.5 * (1.0 - np.cos(np.pi * k / (spec.rings + 1)))
    s = t * length
    envelope = np.ones_like(s)
    for cap, dist in ((spec.caps[0], s), (spec.caps[1], length - s)):
        inside = dist < cap
        envelope[inside] = np.minimum(envelope[inside], np.sqrt(1.0 - (1.0 - dist[inside] / cap) ** 2))
    ra = np.interp(t, spec.profile[:, 0], spec.profile[:, 1]) * envelope
    rb = np.interp(t, spec.profile[:, 0], spec.profile[:, 2]) * envelope
    offset = np.interp(t, spec.profile[:, 0], spec.profile[:, 3])
    theta = 2.0 * np.pi * np.arange(spec.segments) / spec.segments
    centres = spec.start + s[:, None] * d + offset[:, None] * b
    rings = (
        centres[:, None, :]
        + (ra[:, None] * np.cos(theta))[..., None] * a
        + (rb[:, None] * np.sin(theta))[..., None] * b
    )
    off_ends = spec.profile[[0, -1], 3]
    start_pole = spec.start + off_ends[0] * b
    end_pole = spec.end + off_ends[1] * b
    verts = np.concatenate([start_pole[None], rings.reshape(-1, 3), end_pole[None]])
    if spec.mirrored:
        verts = verts * _v(-1, 1, 1)
    coords = np.concatenate([[0.0], np.repeat(s, spec.segments), [length]])
    return verts, coords


def tube_faces(rings: int, segments: int) -> Int[np.ndarray, "F 3"]:
    """Triangles of a tube with `rings` rings of `segments` vertices closed by two poles."""
    ring = lambda r: 1 + r * segments + np.arange(segments)
    nxt = lambda idx: np.roll(idx, -1)
    faces = []
    first, last = ring(0), ring(rings - 1)
    faces.append(np.stack([np.zeros(segments, dtype=np.int64), nxt(first), first], axis=1))
    for r in range(rings - 1):
        lo, hi = ring(r), ring(r + 1)
        faces.append(np.stack([lo, nxt(lo), nxt(hi)], axis=1))
        faces.append(np.stack([lo, nxt(hi), hi], axis=1))
    end = 1 + rings * segments
    faces.append(np.stack([np.full(segments, end), last, nxt(last)], axis=1))
    return np.concatenate(faces).astype(np.int64)


def signed_volume(verts: Float[np.ndarray, "N 3"], faces: Int[np.ndarray, "F 3"]) -> float:
    """Volume enclosed by a closed mesh; positive when its faces wind outwards."""
    v0, v1, v2 = verts[faces[:, 0]], verts[faces[:, 1]], verts[faces[:, 2]]
    return float(np.einsum("ij,ij->i", v0, np.cross(v1, v2)).sum() / 6.0)


def chain_weights(coords: Float[np.ndarray, " N"], spec: PartSpec) -> Float[np.ndarray, "N 24"]:
    """Skinning weights along a part: its chain's bones, blended linearly across each cut."""
    d, _, _, _ = _frame(spec)
    cut_coords = [float((c - spec.start) @ d) for c in spec.cuts]
    gaps = np.diff(cut_coords) if len(cut_coords) > 1 else np.array([np.inf])
    width = min(spec.blend, float(np.abs(gaps).min()) / 2.5)
    ramps = [np.clip(0.5 + 0.5 * (coords - c) / width, 0.0, 1.0) for c in cut_coords]
    weights = np.zeros((len(coords), NUM_JOINTS))
    bounds = [np.ones_like(coords)] + ramps + [np.zeros_like(coords)]
    for i, joint in enumerate(spec.chain):
        weights[:, joint] += bounds[i] - bounds[i + 1]
    return weights


def _mirror_spec(spec: PartSpec) -> PartSpec:
    chain = tuple(MIRROR_JOINT[c] for c in spec.chain)
    return replace(spec, name=spec.name.replace("left_", "right_"), chain=chain, mirrored=True)


def part_specs(p: Proportions) -> List[PartSpec]:
    """All parts of a body, in PART_NAMES order."""
    j = joint_positions(replace(p, scale=1.0))
    left = _left_parts(p, j)
    specs = _central_parts(p, j) + left + [_mirror_spec(s) for s in left]
    assert [s.name for s in specs] == PART_NAMES
    return [_scaled(s, p.scale) for s in specs]


def _scaled(spec: PartSpec, scale: float) -> PartSpec:
    profile = spec.profile.copy()
    profile[:, 1:] *= scale
    return replace(
        spec,
        start=spec.start * scale,
        end=spec.end * scale,
        profile=profile,
        caps=(spec.caps[0] * scale, spec.caps[1] * scale),
        cuts=tuple(c * scale for c in spec.cuts),
    )


@dataclass
class _Surface:
    verts: np.ndarray
    faces: np.ndarray
    face_parts: np.ndarray
    vertex_parts: np.ndarray
    weights: np.ndarray


def _surface(p: Proportions, weights: bool = True) -> _Surface:
    verts, faces, face_parts, vertex_parts, skin = [], [], [], [], []
    offset = 0
    for index, spec in enumerate(part_specs(p)):
        v, coords = tube_vertices(spec)
        f = tube_faces(spec.rings, spec.segments)
        if signed_volume(v, f) < 0:
            f = f[:, ::-1]
        verts.append(v)
        faces.append(f + offset)
        face_parts.append(np.full(len(f), index))
        vertex_parts.append(np.full(len(v), index))
        if weights:
            skin.append(chain_weights(coords, spec))
        offset += len(v)
    return _Surface(
        np.concatenate(verts),
        np.concatenate(faces),
        np.concatenate(face_parts),
        np.concatenate(vertex_parts),
        np.concatenate(skin) if weights else np.zeros((0, NUM_JOINTS)),
    )


def _landmark_targets(p: Proportions) -> Dict[str, Tuple[str, np.ndarray]]:
    """For each surface landmark, its part and a point near which the landmark vertex is chosen."""
    j = joint_positions(replace(p, scale=1.0))
    hs = p.head_size
    head = _v(0.0, j[15, 1] + 0.055 * hs, 0.025)
    sole = j[7, 1] - 0.08
    toe_z = j[10, 2] + 0.085
    tip = j[22] + _v(0.095, 0, 0)
    left = {
        "LEye": ("head", head + _v(0.032, 0.02, 0.1) * hs),
        "LEar": ("head", head + _v(0.1, 0.0, 0.0) * hs),
        "LBigToe": ("left_foot", _v(j[10, 0] - 0.02, sole + 0.02, toe_z)),
        "LSmallToe": ("left_foot", _v(j[10, 0] + 0.035, sole + 0.015, toe_z - 0.03)),
        "LHeel": ("left_foot", _v(j[7, 0], sole, j[7, 2] - 0.08)),
        "LThumb": ("left_hand", tip + _v(-0.07, 0.0, 0.05)),
        "LIndex": ("left_hand", tip + _v(0.0, 0.0, 0.03)),
        "LMiddle": ("left_hand", tip + _v(0.005, 0.0, 0.01)),
        "LRing": ("left_hand", tip + _v(0.0, 0.0, -0.01)),
        "LPinky": ("left_hand", tip + _v(-0.01, 0.0, -0.03)),
    }
    targets = {"Nose": ("head", (head + _v(0.0, -0.02, 0.12) * hs) * p.scale)}
    for name, (part, point) in left.items():
        targets[name] = (part, point * p.scale)
        targets["R" + name[1:]] = (part.replace("left_", "right_"), point * _v(-1, 1, 1) * p.scale)
    return targets


def _landmark_sources(surface: _Surface, p: Proportions) -> Dict[str, int]:
    sources = {}
    for name, (part, target) in _landmark_targets(p).items():
        candidates = np.flatnonzero(surface.vertex_parts == PART_NAMES.index(part))
        dist = np.linalg.norm(surface.verts[candidates] - target, axis=1)
        sources[name] = int(candidates[np.argmin(dist)])
    return sources


def _layout(num_surface: int) -> Tuple[np.ndarray, Dict[str, int], np.ndarray]:
    """Final vertex ids of the surface vertices, the landmarks (at smplx's ids) and the joints."""
    landmark_ids = {name: SMPLX_VERTEX_IDS["smplh"][key] for name, key in LANDMARK_NAMES.items()}
    total = num_surface + len(landmark_ids) + NUM_JOINTS
    if total != NUM_VERTICES:
        raise ValueError(f"the body has {total} vertices, expected {NUM_VERTICES}")
    free = np.setdiff1d(np.arange(total), np.fromiter(landmark_ids.values(), dtype=np.int64))
    return free[:num_surface], landmark_ids, free[num_surface:]


def _assemble(p: Proportions, sources: Dict[str, int], surface: _Surface) -> np.ndarray:
    surface_ids, landmark_ids, joint_ids = _layout(len(surface.verts))
    verts = np.zeros((NUM_VERTICES, 3))
    verts[surface_ids] = surface.verts
    for name, vid in landmark_ids.items():
        verts[vid] = surface.verts[sources[name]]
    verts[joint_ids] = joint_positions(p)
    return verts


def build_body_model(base: Optional[Proportions] = None) -> BodyModel:
    """The SMPL-format body: template, linear shape directions, smooth skinning weights, landmarks."""
    base = base or Proportions()
    surface = _surface(base)
    sources = _landmark_sources(surface, base)
    surface_ids, landmark_ids, joint_ids = _layout(len(surface.verts))
    template = _assemble(base, sources, surface)
    shapedirs = np.stack(
        [_assemble(base.shifted(delta), sources, _surface(base.shifted(delta), False)) - template
         for _, delta in SHAPE_DIRECTIONS],
        axis=-1,
    )  # fmt: skip
    weights = np.zeros((NUM_VERTICES, NUM_JOINTS))
    weights[surface_ids] = surface.weights
    for name, vid in landmark_ids.items():
        weights[vid] = surface.weights[sources[name]]
    weights[joint_ids, np.arange(NUM_JOINTS)] = 1.0
    return BodyModel(
        v_template=template,
        shapedirs=shapedirs,
        weights=weights,
        faces=surface_ids[surface.faces],
        face_parts=surface.face_parts,
        joint_vertex_ids=joint_ids,
        landmark_vertex_ids=landmark_ids,
        landmark_surface_ids={name: int(surface_ids[src]) for name, src in sources.items()},
    )


def body25_vertex_ids() -> Int[np.ndarray, "25"]:
    """Vertex ids of the BODY_25 keypoints in the generated body model."""
    return build_body_model().body25_vertex_ids()


def load_smpl(path: Path) -> smplx.SMPL:
    """The generated (or any SMPL-format) body model, loaded through smplx (its 10-betas notice muted)."""
    with contextlib.redirect_stdout(io.StringIO()):
        return smplx.SMPL(model_path=str(path))


def axis_angle_to_matrix(axis_angle: Float[Tensor, "*bs 3"]) -> Float[Tensor, "*bs 3 3"]:
    """Rotation matrices of axis-angle vectors (smplx's Rodrigues)."""
    flat = axis_angle.reshape(-1, 3)
    return batch_rodrigues(flat).reshape(*axis_angle.shape[:-1], 3, 3)


@torch.no_grad()
def pose_body(
    smpl: smplx.SMPL,
    poses: Float[Tensor, "*bs 72"],
    shapes: Float[Tensor, "*bs 10"],
    rh: Float[Tensor, "*bs 3"],
    th: Float[Tensor, "*bs 3"],
) -> Tuple[Float[Tensor, "*bs V 3"], Float[Tensor, "*bs 24 3"]]:
    """World vertices and SMPL joints in the ZJU convention: smpl(poses, shapes) @ R(Rh)^T + Th."""
    batch = poses.shape[:-1]
    poses, shapes = poses.reshape(-1, 72).float(), shapes.reshape(-1, shapes.shape[-1]).float()
    out = smpl(
        betas=shapes,
        global_orient=torch.zeros_like(poses[:, :3]),
        body_pose=poses[:, 3:],
        transl=torch.zeros_like(poses[:, :3]),
    )
    rot = axis_angle_to_matrix(rh.reshape(-1, 3).float())
    shift = th.reshape(-1, 1, 3).float()
    verts = out.vertices @ rot.transpose(1, 2) + shift
    joints = out.joints[:, :NUM_JOINTS] @ rot.transpose(1, 2) + shift
    return verts.reshape(*batch, -1, 3), joints.reshape(*batch, NUM_JOINTS, 3)
