"""Blend-weight grids, nearest-surface blend weights, and backward / forward linear blend skinning (AniPixel 3.1).

Backward skinning (AniPixel eq. 1): a point takes the blend weights of its nearest body-surface point; points farther
than a threshold from the surface are background (w_fg = 0, w_bg = 1). The background bone is the identity in SMPL
space (world with Rh/Th removed), so background points move rigidly with the body's global frame and never land on
the canonical body's limbs through a limb transform.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from scipy.spatial import cKDTree
from torch import Tensor

from nerfstudio_humanfeat.body.smpl import BodyPose

NUM_WEIGHTS = 24
OUTSIDE_DISTANCE = 1.0e3
"""Surface distance reported for points outside a weight grid, metres."""
BACKGROUND_THRESHOLD = 0.1
"""Default nearest-surface distance beyond which a point is background, metres."""

KD_MARGIN = 0.05
"""The KD-tree path looks for surface vertices up to background threshold + this margin (metres)."""

ArrayLike = Union[np.ndarray, Tensor]


def _np(x: ArrayLike) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)


@dataclass
class WeightGrid:
    """A dense grid of 24 nearest-surface blend weights + surface distance (AniNeRF `lbs/bweights/{i}.npy`)."""

    weights: Float[Tensor, "X Y Z 25"]
    """Channels 0-23: blend weights; channel 24: distance to the body surface, metres."""
    bounds: Float[Tensor, "2 3"]
    """Min and max corner; grid point (i, j, k) is at linspace(min, max, size) on each axis."""

    @classmethod
    def from_array(cls, array: ArrayLike, vertices_smpl_space: ArrayLike, padding: float = 0.05) -> "WeightGrid":
        """Grid from a stored (X, Y, Z, 25) array; bounds = the vertex box padded by `padding` metres."""
        verts = torch.as_tensor(_np(vertices_smpl_space), dtype=torch.float32).reshape(-1, 3)
        bounds = torch.stack([verts.min(0).values - padding, verts.max(0).values + padding])
        return cls(torch.as_tensor(_np(array), dtype=torch.float32), bounds)

    @property
    def shape(self) -> Tuple[int, int, int]:
        return tuple(self.weights.shape[:3])  # type: ignore[return-value]

    def points(self) -> Float[Tensor, "X Y Z 3"]:
        """Coordinates of the grid points."""
        axes = [torch.linspace(float(self.bounds[0, i]), float(self.bounds[1, i]), n) for i, n in enumerate(self.shape)]
        return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)

    def to(self, device) -> "WeightGrid":
        return WeightGrid(self.weights.to(device), self.bounds.to(device))


def grid_axes(lower: np.ndarray, upper: np.ndarray, voxel_size: float) -> list[np.ndarray]:
    """Per-axis grid coordinates linspace(min, max, n) with spacing close to `voxel_size`."""
    return [np.linspace(lo, hi, int(math.ceil((hi - lo) / voxel_size)) + 1) for lo, hi in zip(lower, upper)]


def closest_point_barycentric(
    p: Float[np.ndarray, "M 3"], a: Float[np.ndarray, "M 3"], b: Float[np.ndarray, "M 3"], c: Float[np.ndarray, "M 3"]
) -> Float[np.ndarray, "M 3"]:
    """Barycentric coordinates of the closest point on triangle (a, b, c) to p (Ericson, Real-Time Collision Det.)."""
    dot = lambda u, v: np.einsum("ij,ij->i", u, v)  # noqa: E731
    ab, ac, ap, bp, cp = b - a, c - a, p - a, p - b, p - c
    d1, d2, d3, d4, d5, d6 = dot(ab, ap), dot(ac, ap), dot(ab, bp), dot(ac, bp), dot(ab, cp), dot(ac, cp)
    va, vb, vc = d3 * d6 - d5 * d4, d5 * d2 - d1 * d6, d1 * d4 - d3 * d2
    with np.errstate(divide="ignore", invalid="ignore"):
        denom = va + vb + vc
        v, w = vb / denom, vc / denom
        bary = np.stack([1.0 - v - w, v, w], axis=1)
        t_bc = (d4 - d3) / ((d4 - d3) + (d5 - d6))
        t_ac = d2 / (d2 - d6)
        t_ab = d1 / (d1 - d3)
    zeros, ones = np.zeros_like(d1), np.ones_like(d1)
    regions = [  # later regions take precedence (vertex regions last)
        ((va <= 0) & (d4 - d3 >= 0) & (d5 - d6 >= 0), np.stack([zeros, 1 - t_bc, t_bc], 1)),
        ((vb <= 0) & (d2 >= 0) & (d6 <= 0), np.stack([1 - t_ac, zeros, t_ac], 1)),
        ((vc <= 0) & (d1 >= 0) & (d3 <= 0), np.stack([1 - t_ab, t_ab, zeros], 1)),
        ((d6 >= 0) & (d5 <= d6), np.stack([zeros, zeros, ones], 1)),
        ((d3 >= 0) & (d4 <= d3), np.stack([zeros, ones, zeros], 1)),
        ((d1 <= 0) & (d2 <= 0), np.stack([ones, zeros, zeros], 1)),
    ]
    for mask, value in regions:
        bary = np.where(mask[:, None], value, bary)
    return np.nan_to_num(bary, nan=1.0 / 3.0)


def nearest_surface(
    points: Float[np.ndarray, "N 3"],
    vertices: Float[np.ndarray, "V 3"],
    weights: Float[np.ndarray, "V 24"],
    faces: Optional[Int[np.ndarray, "F 3"]] = None,
    candidates: int = 8,
    workers: int = 1,
    max_distance: float = math.inf,
    chunk: int = 65536,
) -> Tuple[Float[np.ndarray, "N 24"], Float[np.ndarray, " N"]]:
    """Blend weights and distance of each point's nearest surface point.

    Without faces: the nearest vertex. With faces: the closest point on the `candidates` triangles with the nearest
    centroids (or the nearest used vertex if closer), weights interpolated barycentrically; vertices no face uses
    are ignored. Points whose nearest vertex is farther than `max_distance` get zero weights and OUTSIDE_DISTANCE
    (a bounded KD-tree query is 2x faster on ray samples, most of which are far from the body).
    """
    if faces is not None:
        used = np.unique(faces)
        vertices_used, weights_used = vertices[used], weights[used]
    else:
        vertices_used, weights_used = vertices, weights
    dist, idx = cKDTree(vertices_used).query(points, k=1, workers=workers, distance_upper_bound=max_distance)
    hit = idx < len(vertices_used)
    out_w = np.zeros((len(points), weights.shape[1]), dtype=weights.dtype)
    out_w[hit] = weights_used[idx[hit]]
    out_d = np.where(hit, dist, OUTSIDE_DISTANCE).astype(points.dtype)
    if faces is None:
        return out_w, out_d
    tri = vertices[faces]
    tree = cKDTree(tri.mean(axis=1))
    hit_ids = np.flatnonzero(hit)
    for start in range(0, len(hit_ids), chunk):
        rows_of = hit_ids[start : start + chunk]
        p = points[rows_of]
        _, cand = tree.query(p, k=candidates, workers=workers)
        cand = cand.reshape(-1)
        pp = np.repeat(p, candidates, axis=0)
        bary = closest_point_barycentric(pp, tri[cand, 0], tri[cand, 1], tri[cand, 2])
        closest = np.einsum("mk,mkd->md", bary, tri[cand])
        d = np.linalg.norm(pp - closest, axis=1).reshape(len(p), candidates)
        best = d.argmin(axis=1)
        rows = np.arange(len(p)) * candidates + best
        face_d = d[np.arange(len(p)), best]
        closer = face_d < out_d[rows_of]  # else a triangle at the nearest vertex was not among the candidates
        face_w = np.einsum("mk,mkj->mj", bary[rows], weights[faces[cand[rows]]])
        out_w[rows_of[closer]] = face_w[closer]
        out_d[rows_of[closer]] = face_d[closer]
    return out_w, out_d


def blend_weight_grid(
    vertices: ArrayLike,
    faces: Optional[ArrayLike],
    weights: ArrayLike,
    padding: float = 0.05,
    voxel_size: float = 0.025,
) -> WeightGrid:
    """The (X, Y, Z, 25) nearest-surface weight grid over the vertex box padded by `padding` (AniNeRF bweights/tbw).

    Pass SMPL-space vertices for a frame's `bweights` grid and canonical vertices for `tbw`.
    """
    verts = _np(vertices).astype(np.float64)
    lower, upper = verts.min(axis=0) - padding, verts.max(axis=0) + padding
    axes = grid_axes(lower, upper, voxel_size)
    pts = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)
    tris = None if faces is None else _np(faces).astype(np.int64)
    w, d = nearest_surface(
        pts.reshape(-1, 3), verts, _np(weights).astype(np.float64), tris, workers=torch.get_num_threads()
    )
    array = np.concatenate([w, d[:, None]], axis=1).reshape(*pts.shape[:3], NUM_WEIGHTS + 1)
    return WeightGrid(torch.from_numpy(array).float(), torch.from_numpy(np.stack([lower, upper])).float())


def sample_weights(grid: WeightGrid, points: Float[Tensor, "N 3"]) -> Tuple[Float[Tensor, "N 24"], Float[Tensor, " N"]]:
    """Trilinearly interpolated blend weights and surface distance; points outside get distance OUTSIDE_DISTANCE."""
    bounds = grid.bounds.to(points)
    norm = (points - bounds[0]) / (bounds[1] - bounds[0]) * 2.0 - 1.0
    volume = grid.weights.to(points).permute(3, 0, 1, 2)[None]  # (1, 25, X, Y, Z): D=X, H=Y, W=Z
    coords = norm[:, [2, 1, 0]].reshape(1, -1, 1, 1, 3)  # grid_sample reads (W, H, D) = (z, y, x)
    sampled = F.grid_sample(volume, coords, mode="bilinear", padding_mode="border", align_corners=True)
    sampled = sampled.reshape(NUM_WEIGHTS + 1, -1).T
    outside = (norm.abs() > 1.0).any(dim=-1)
    distance = torch.where(outside, torch.full_like(sampled[:, -1], OUTSIDE_DISTANCE), sampled[:, -1])
    return sampled[:, :NUM_WEIGHTS], distance


def with_background(
    weights: Float[Tensor, "N 24"], distance: Float[Tensor, " N"], threshold: float = BACKGROUND_THRESHOLD
) -> Float[Tensor, "N 25"]:
    """25 weights (AniPixel eq. 1): foreground weights renormalised, or all background beyond `threshold`."""
    fg = weights / weights.sum(dim=-1, keepdim=True).clamp_min(1e-8)
    is_bg = (distance > threshold)[:, None]
    return torch.cat([torch.where(is_bg, torch.zeros_like(fg), fg), is_bg.to(fg)], dim=-1)


def _bones(pose: BodyPose) -> Float[Tensor, "25 4 4"]:
    """The pose's 24 canonical-to-world transforms plus the background one (identity in SMPL space)."""
    if pose.transforms.shape[0] != 1:
        raise ValueError("skinning takes one body at a time (index the BodyPose batch)")
    return torch.cat([pose.transforms[0], pose.global_transform[0][None]], dim=0)


def _inverse3(m: Float[Tensor, "N 3 3"]) -> Float[Tensor, "N 3 3"]:
    """Closed-form 3x3 inverse (rows r0, r1, r2 -> columns r1 x r2, r2 x r0, r0 x r1 over det)."""
    r0, r1, r2 = m[:, 0], m[:, 1], m[:, 2]
    cols = torch.stack([torch.cross(r1, r2, dim=-1), torch.cross(r2, r0, dim=-1), torch.cross(r0, r1, dim=-1)], -1)
    det = (r0 * cols[..., 0]).sum(-1)
    return cols / det[:, None, None]


@dataclass
class SurfaceWeights:
    """Per-vertex blend weights of the body surface, for KD-tree backward skinning on the posed vertices."""

    weights: Float[Tensor, "V 24"]
    faces: Optional[Int[Tensor, "F 3"]] = None
    """With faces: barycentric weights on the closest triangle (slower); without: nearest surface vertex."""
    surface_ids: Optional[Int[Tensor, " S"]] = None
    """Vertices on the surface (the generated body hides joint vertices that no face uses)."""

    @classmethod
    def from_body(cls, lbs_weights: Tensor, faces: Tensor, use_faces: bool = False) -> "SurfaceWeights":
        ids = torch.unique(faces.reshape(-1))
        return cls(lbs_weights, faces if use_faces else None, ids)


@dataclass
class SkinnedPoints:
    """Output of backward skinning."""

    points: Float[Tensor, "N 3"]
    """Canonical points (background points: their SMPL-space coordinates)."""
    weights: Float[Tensor, "N 25"]
    """24 bone weights + background weight."""
    distance: Float[Tensor, " N"]
    """Nearest-surface distance, metres."""

    @property
    def background(self) -> Float[Tensor, " N"]:
        return self.weights[:, -1]


def backward_skin(
    points: Float[Tensor, "N 3"],
    pose: BodyPose,
    source: Union[WeightGrid, SurfaceWeights],
    background_threshold: float = BACKGROUND_THRESHOLD,
) -> SkinnedPoints:
    """World points to canonical (AniPixel eq. 1 without the displacement): x_c = (sum_i w_i B_i)^-1 x.

    `source` is the frame's SMPL-space WeightGrid (grid path) or per-vertex SurfaceWeights (KD-tree path on the posed
    vertices; the tree is built per call). Differentiable in the pose's transforms and in `points` (weights are not).
    """
    bones = _bones(pose).to(points)
    with torch.no_grad():
        if isinstance(source, WeightGrid):
            smpl_points = pose.world_to_smpl(points.detach()[None])[0]
            w24, distance = sample_weights(source, smpl_points)
        else:
            verts = pose.vertices[0].detach()
            weights = source.weights
            if source.surface_ids is not None and source.faces is None:
                verts, weights = verts[source.surface_ids], weights[source.surface_ids]
            w, d = nearest_surface(
                _np(points).astype(np.float32), _np(verts), _np(weights).astype(np.float32),
                None if source.faces is None else _np(source.faces), workers=torch.get_num_threads(),
                max_distance=background_threshold + KD_MARGIN,
            )  # fmt: skip
            w24, distance = torch.from_numpy(w).to(points), torch.from_numpy(d).to(points)
        w25 = with_background(w24, distance, background_threshold)
    blended = (w25 @ bones.reshape(25, 16)).reshape(-1, 4, 4)
    canonical = (_inverse3(blended[:, :3, :3]) @ (points - blended[:, :3, 3])[..., None])[..., 0]
    return SkinnedPoints(canonical, w25, distance)


def forward_skin(points: Float[Tensor, "N 3"], weights: Float[Tensor, "N W"], pose: BodyPose) -> Float[Tensor, "N 3"]:
    """Canonical points to world (AniPixel eq. 3 without the displacement): x = sum_i w_i B_i x_c.

    `weights` has 24 bone channels, or 25 with the background (SMPL-space identity) channel last.
    """
    bones = _bones(pose).to(points)[: weights.shape[-1]]
    blended = (weights @ bones.reshape(len(bones), 16)).reshape(-1, 4, 4)
    return (blended[:, :3, :3] @ points[..., None])[..., 0] + blended[:, :3, 3]


DEFAULT_BACKWARD_METHOD = "kdtree"
"""Measured on the CPU (benchmarks/bench_skinning.py, 100k ray samples in the body box, 1 thread): a bounded KD-tree
query costs ~170 ms, a precomputed grid's query ~120 ms, but building a frame's grid takes ~3 s. With a new frame
per batch (64-128 samples x ~1k rays) the KD-tree path is faster end to end; pass a cached or stored
(`lbs/bweights`) WeightGrid to `backward_skin` when frames repeat many times."""


def frame_weight_source(
    pose: BodyPose,
    lbs_weights: Float[Tensor, "V 24"],
    faces: Int[Tensor, "F 3"],
    method: str = DEFAULT_BACKWARD_METHOD,
    voxel_size: float = 0.025,
) -> Union[WeightGrid, SurfaceWeights]:
    """What `backward_skin` reads for one frame: its SMPL-space WeightGrid ("grid") or SurfaceWeights ("kdtree")."""
    if method == "grid":
        return blend_weight_grid(pose.world_to_smpl(pose.vertices)[0], faces, lbs_weights, voxel_size=voxel_size)
    if method == "kdtree":
        return SurfaceWeights.from_body(lbs_weights, faces)
    raise ValueError(f"unknown backward skinning method {method!r} (grid or kdtree)")
