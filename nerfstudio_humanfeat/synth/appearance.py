"""Clothing, procedural textures and Lambertian shading, all evaluated on canonical surface points.

Textures are functions of the rest-pose (zero-shape) position of the surface point a pixel sees,
so they stick to the body whatever its pose.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from nerfstudio_humanfeat.skeleton import SMPL_JOINT_NAMES
from nerfstudio_humanfeat.synth.body_model import PART_NAMES, BodyModel

RGB = Tuple[float, float, float]
PATTERNS = ("solid", "stripes", "checker", "blotches")

SKIN_TONES: Tuple[RGB, ...] = (
    (0.96, 0.80, 0.69), (0.91, 0.72, 0.58), (0.80, 0.60, 0.45), (0.65, 0.45, 0.32), (0.45, 0.30, 0.21),
    (0.33, 0.22, 0.16),
)  # fmt: skip
HAIR_COLOURS: Tuple[RGB, ...] = (
    (0.06, 0.05, 0.05), (0.20, 0.12, 0.07), (0.40, 0.26, 0.13), (0.75, 0.60, 0.35), (0.55, 0.18, 0.08),
    (0.55, 0.55, 0.55),
)  # fmt: skip
CLOTH_COLOURS: Tuple[RGB, ...] = (
    (0.80, 0.10, 0.10), (0.10, 0.30, 0.75), (0.10, 0.55, 0.25), (0.90, 0.75, 0.10), (0.95, 0.95, 0.95),
    (0.15, 0.15, 0.18), (0.55, 0.25, 0.65), (0.95, 0.50, 0.10), (0.20, 0.60, 0.70), (0.60, 0.45, 0.30),
    (0.85, 0.40, 0.60), (0.35, 0.40, 0.20),
)  # fmt: skip
TROUSER_COLOURS: Tuple[RGB, ...] = (
    (0.12, 0.18, 0.35), (0.20, 0.25, 0.45), (0.10, 0.10, 0.10), (0.45, 0.40, 0.30), (0.30, 0.30, 0.32),
    (0.55, 0.50, 0.40), (0.25, 0.15, 0.10),
)  # fmt: skip


@dataclass(frozen=True)
class Outfit:
    """One subject's colours and clothing cut."""

    skin: RGB
    hair: RGB
    shirt: RGB
    shirt_accent: RGB
    shirt_pattern: str
    trousers: RGB
    trousers_accent: RGB
    trousers_pattern: str
    shoes: RGB
    long_sleeves: bool
    long_trousers: bool
    hair_length: float
    """0 (short) to 1 (reaching the neck)."""
    pattern_size: float
    """Stripe period / checker cell size, metres."""


def _pick(rng: np.random.Generator, options: Tuple[RGB, ...], avoid: RGB | None = None) -> RGB:
    choices = [c for c in options if c != avoid]
    base = np.asarray(choices[int(rng.integers(len(choices)))])
    return tuple(np.clip(base * rng.uniform(0.9, 1.1, size=3), 0.0, 1.0).tolist())


def sample_outfit(rng: np.random.Generator) -> Outfit:
    """Random clothing for one subject."""
    shirt = _pick(rng, CLOTH_COLOURS)
    trousers = _pick(rng, TROUSER_COLOURS)
    return Outfit(
        skin=_pick(rng, SKIN_TONES),
        hair=_pick(rng, HAIR_COLOURS),
        shirt=shirt,
        shirt_accent=_pick(rng, CLOTH_COLOURS, avoid=shirt),
        shirt_pattern=PATTERNS[int(rng.integers(len(PATTERNS)))],
        trousers=trousers,
        trousers_accent=tuple(np.clip(np.asarray(trousers) * 1.6 + 0.08, 0, 1).tolist()),
        trousers_pattern=("solid", "stripes", "blotches")[int(rng.integers(3))],
        shoes=_pick(rng, ((0.08, 0.08, 0.08), (0.9, 0.9, 0.9), (0.45, 0.25, 0.12), (0.7, 0.1, 0.1))),
        long_sleeves=bool(rng.random() < 0.5),
        long_trousers=bool(rng.random() < 0.7),
        hair_length=float(rng.uniform(0.1, 1.0)),
        pattern_size=float(rng.uniform(0.035, 0.08)),
    )


def hash_noise(cells: Int[Tensor, "*bs 3"]) -> Float[Tensor, "*bs"]:
    """Deterministic pseudo-random value in [0, 1) per integer lattice cell."""
    h = cells[..., 0] * 73856093 ^ cells[..., 1] * 19349663 ^ cells[..., 2] * 83492791
    h = (h ^ (h >> 13)) * 1274126177
    h = h ^ (h >> 16)
    return (h & 0xFFFF).double() / 65536.0


def value_noise(points: Float[Tensor, "*bs 3"], frequency: float) -> Float[Tensor, "*bs"]:
    """Smooth 3D value noise in [0, 1] with features about 1 / frequency metres apart."""
    q = points.double() * frequency
    base = torch.floor(q)
    f = q - base
    w = f * f * (3 - 2 * f)
    cell = base.long()
    out = torch.zeros(q.shape[:-1], dtype=torch.float64)
    for corner in range(8):
        offset = torch.tensor([(corner >> 0) & 1, (corner >> 1) & 1, (corner >> 2) & 1])
        weight = torch.prod(torch.where(offset.bool(), w, 1 - w), dim=-1)
        out = out + weight * hash_noise(cell + offset)
    return out.float()


@dataclass
class CanonicalLandmarks:
    """Reference points of the rest-pose body that place clothing edges and facial features."""

    joints: Float[Tensor, "24 3"]
    head_centre: Float[Tensor, "3"]
    head_radii: Float[Tensor, "3"]
    eyes: Float[Tensor, "2 3"]

    @classmethod
    def from_body(cls, body: BodyModel) -> "CanonicalLandmarks":
        verts = torch.from_numpy(body.v_template).float()
        head_faces = body.faces[body.face_parts == PART_NAMES.index("head")]
        head = verts[torch.from_numpy(np.unique(head_faces))]
        lo, hi = head.amin(0), head.amax(0)
        eye_ids = [body.landmark_vertex_ids["LEye"], body.landmark_vertex_ids["REye"]]
        return cls(
            joints=verts[torch.from_numpy(body.joint_vertex_ids)],
            head_centre=(lo + hi) / 2,
            head_radii=(hi - lo) / 2,
            eyes=verts[eye_ids],
        )


MATERIALS = ("skin", "hair", "shirt", "trousers", "shoes", "eye")


def _j(name: str) -> int:
    return SMPL_JOINT_NAMES.index(name)


def material_ids(
    canonical: Float[Tensor, "N 3"], parts: Int[Tensor, " N"], outfit: Outfit, marks: CanonicalLandmarks
) -> Int[Tensor, " N"]:
    """Index into MATERIALS of each surface point."""
    part = {name: parts == i for i, name in enumerate(PART_NAMES)}
    on = lambda *names: torch.stack([part[n] for n in names]).any(0)
    x, y = canonical[:, 0].abs(), canonical[:, 1]
    j = marks.joints
    mat = torch.full_like(parts, MATERIALS.index("skin"))

    waist = j[_j("spine1"), 1] - 0.04
    mat[on("torso") & (y <= waist)] = MATERIALS.index("trousers")
    mat[(on("torso") & (y > waist)) | on("left_collar", "right_collar")] = MATERIALS.index("shirt")
    arm = on("left_upper_arm", "right_upper_arm", "left_forearm", "right_forearm")
    cuff = (
        j[_j("left_wrist"), 0] - 0.02
        if outfit.long_sleeves
        else (j[_j("left_shoulder"), 0] + j[_j("left_elbow"), 0]) / 2
    )
    mat[arm & (x < cuff)] = MATERIALS.index("shirt")
    leg = on("left_thigh", "right_thigh", "left_calf", "right_calf")
    hem = j[_j("left_ankle"), 1] + 0.03 if outfit.long_trousers else j[_j("left_knee"), 1] + 0.1
    mat[leg & (y > hem)] = MATERIALS.index("trousers")
    mat[on("left_foot", "right_foot")] = MATERIALS.index("shoes")

    q = (canonical - marks.head_centre) / marks.head_radii
    back = q[:, 2] < -0.1
    hair = (q[:, 1] > 0.4 - 0.25 * q[:, 2].clamp(max=0)) | (back & (q[:, 1] > 0.35 - 1.2 * outfit.hair_length))
    mat[on("head") & hair] = MATERIALS.index("hair")
    eye = torch.cdist(canonical, marks.eyes).amin(dim=1) < 0.012
    mat[on("head") & eye] = MATERIALS.index("eye")
    return mat


def _pattern(points: Float[Tensor, "N 3"], kind: str, size: float) -> Float[Tensor, " N"]:
    """Mix factor in [0, 1] between a base colour (0) and its accent (1)."""
    if kind == "stripes":
        return (torch.sin(2 * np.pi * points[:, 1] / size) > 0.3).float()
    if kind == "checker":
        cells = torch.floor(points / size).long().sum(-1)
        return (cells % 2).float()
    if kind == "blotches":
        return (value_noise(points, 1.0 / size) > 0.55).float() * 0.8
    return torch.zeros(len(points))


def albedo(
    canonical: Float[Tensor, "N 3"], parts: Int[Tensor, " N"], outfit: Outfit, marks: CanonicalLandmarks
) -> Float[Tensor, "N 3"]:
    """Surface colour of canonical points."""
    mat = material_ids(canonical, parts, outfit, marks)
    colour = torch.zeros(len(canonical), 3)
    rgb = lambda c: torch.tensor(c, dtype=torch.float32)
    shirt_mix = _pattern(canonical, outfit.shirt_pattern, outfit.pattern_size)[:, None]
    trouser_points = canonical * torch.tensor([1.0, 0.0, 1.0]) if outfit.trousers_pattern == "stripes" else canonical
    trouser_mix = _pattern(trouser_points, outfit.trousers_pattern, outfit.pattern_size * 0.6)[:, None] * 0.35
    table: Dict[str, Tensor] = {
        "skin": rgb(outfit.skin).expand(len(canonical), 3),
        "hair": rgb(outfit.hair).expand(len(canonical), 3),
        "shirt": torch.lerp(rgb(outfit.shirt), rgb(outfit.shirt_accent), shirt_mix),
        "trousers": torch.lerp(rgb(outfit.trousers), rgb(outfit.trousers_accent), trouser_mix),
        "shoes": rgb(outfit.shoes).expand(len(canonical), 3),
        "eye": rgb((0.05, 0.04, 0.04)).expand(len(canonical), 3),
    }
    for index, name in enumerate(MATERIALS):
        sel = mat == index
        colour[sel] = table[name][sel]
    grain = 0.9 + 0.2 * value_noise(canonical, 90.0)[:, None]
    return (colour * grain).clamp(0, 1)


def lambertian(
    colour: Float[Tensor, "*bs 3"],
    normal: Float[Tensor, "*bs 3"],
    light: Float[Tensor, "3"],
    ambient: float = 0.45,
) -> Float[Tensor, "*bs 3"]:
    """Diffuse shading under a directional light (unit vector towards the light) plus ambient light."""
    cos = (F.normalize(normal, dim=-1) * light).sum(-1, keepdim=True).clamp(min=0)
    return (colour * (ambient + (1 - ambient) * cos)).clamp(0, 1)
