"""Ray casting of triangle meshes on the CPU with torch.

Pixels follow OpenCV's convention: pixel (x, y) has its centre at (x, y) in the coordinates that
K maps camera points to, and its ray goes through K^-1 (x, y, 1). Triangles are binned by their
projected 2D bounding boxes into candidate (triangle, pixel) pairs, each pair is intersected with
Möller–Trumbore, and the nearest hit per pixel wins (ties: lowest triangle id).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Tuple

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int, Shaped
from torch import Tensor

_EDGE_TOLERANCE = 1e-6


@dataclass
class RayHits:
    """Per-pixel result of casting one camera's rays at a mesh."""

    mask: Bool[Tensor, "H W"]
    depth: Float[Tensor, "H W"]
    """Camera-space z of the nearest hit, 0 where the ray misses."""
    triangle: Int[Tensor, "H W"]
    """Index of the hit triangle, -1 where the ray misses."""
    barycentric: Float[Tensor, "H W 3"]
    """Weights of the hit triangle's three vertices."""
    normal: Float[Tensor, "H W 3"]
    """Unit geometric normal of the hit triangle in camera space, facing the camera."""

    @property
    def shape(self) -> Tuple[int, int]:
        return tuple(self.mask.shape)


def world_to_camera(
    points: Float[Tensor, "*bs 3"], rotation: Float[Tensor, "3 3"], translation: Float[Tensor, "3"]
) -> Float[Tensor, "*bs 3"]:
    """OpenCV camera coordinates of world points: R x + t."""
    return points @ rotation.T.to(points) + translation.to(points)


def _triangle_terms(tri: Float[Tensor, "F 3 3"]) -> Tuple[Float[Tensor, "F 10"], Float[Tensor, "F 3"]]:
    """Per-triangle factors of Möller–Trumbore for rays from the origin, and the face normals.

    With the ray origin at the camera centre, T = -v0, so the triple products become dot products of
    the ray direction d with vectors that depend on the triangle only: det = d.(e2 x e1),
    u = d.(v0 x e2) / det, v = d.(e1 x v0) / det and t = e2.(e1 x v0) / det.
    """
    v0, v1, v2 = tri.unbind(1)
    e1, e2 = v1 - v0, v2 - v0
    normal = torch.cross(e1, e2, dim=-1)
    q = torch.cross(e1, v0, dim=-1)
    terms = torch.cat(
        [-normal, torch.cross(v0, e2, dim=-1), q, (e2 * q).sum(-1, keepdim=True)],
        dim=-1,
    )
    return terms, normal


def _pixel_boxes(
    tri: Float[Tensor, "F 3 3"], intrinsics: Float[Tensor, "3 3"], height: int, width: int
) -> Tuple[Int[Tensor, " F"], Int[Tensor, " F"], Int[Tensor, " F"], Int[Tensor, " F"]]:
    """First pixel column / row and the number of columns / rows each triangle's 2D box covers."""
    proj = tri @ intrinsics.T
    xy = proj[..., :2] / proj[..., 2:3]
    lo = torch.ceil(xy.amin(dim=1) - 1e-4)
    hi = torch.floor(xy.amax(dim=1) + 1e-4)
    lo = torch.maximum(lo, torch.zeros_like(lo))
    limit = torch.tensor([width - 1, height - 1], dtype=hi.dtype)
    hi = torch.minimum(hi, limit)
    span = (hi - lo + 1).clamp(min=0).long()
    return lo[:, 0].long(), lo[:, 1].long(), span[:, 0], span[:, 1]


def _chunks(counts: Int[Tensor, " N"], max_pairs: int) -> Iterator[Tuple[int, int]]:
    """Consecutive index ranges whose summed counts stay under max_pairs (one item at least)."""
    ends = torch.cumsum(counts, 0)
    start, done = 0, 0
    n = len(counts)
    while start < n:
        stop = int(torch.searchsorted(ends, done + max_pairs, right=True))
        stop = max(stop, start + 1)
        yield start, stop
        done = int(ends[stop - 1])
        start = stop


@torch.no_grad()
def raycast(
    vertices: Float[Tensor, "V 3"],
    faces: Int[Tensor, "F 3"],
    intrinsics: Float[Tensor, "3 3"],
    height: int,
    width: int,
    cull_backfaces: bool = False,
    near: float = 1e-3,
    max_pairs: int = 1 << 22,
) -> RayHits:
    """Nearest intersection of each pixel's ray with a mesh given in OpenCV camera coordinates.

    Triangles with a vertex closer than `near` are skipped. Back-face culling is exact for closed,
    outward-wound meshes seen from outside, and halves the work.
    """
    verts = vertices.float()
    k = intrinsics.float()
    tri = verts[faces.long()]
    terms, normal = _triangle_terms(tri)
    facing = (normal * tri[:, 0]).sum(-1)
    valid = (tri[..., 2] > near).all(dim=1) & (normal.norm(dim=-1) > 0)
    if cull_backfaces:
        valid &= facing < 0
    x0, y0, nx, ny = _pixel_boxes(tri, k, height, width)
    counts = torch.where(valid, nx * ny, torch.zeros_like(nx))
    tri_ids = torch.nonzero(counts).squeeze(1)
    counts = counts[tri_ids]
    k_inv = torch.linalg.inv(k)

    num_pixels = height * width
    best_depth = torch.full((num_pixels,), float("inf"))
    best_tri = torch.full((num_pixels,), -1, dtype=torch.long)
    best_uv = torch.zeros(num_pixels, 2)
    for start, stop in _chunks(counts, max_pairs):
        ids, c = tri_ids[start:stop], counts[start:stop]
        pair_tri = torch.repeat_interleave(ids, c)
        first = torch.repeat_interleave(torch.cumsum(c, 0) - c, c)
        local = torch.arange(len(pair_tri)) - first
        cols = nx[pair_tri]
        px = x0[pair_tri] + local % cols
        py = y0[pair_tri] + torch.div(local, cols, rounding_mode="floor")
        dx = k_inv[0, 0] * px + k_inv[0, 1] * py + k_inv[0, 2]
        dy = k_inv[1, 1] * py + k_inv[1, 2]
        t_pair = terms[pair_tri]
        det, u_num, v_num = (dx * t_pair[:, o] + dy * t_pair[:, o + 1] + t_pair[:, o + 2] for o in (0, 3, 6))
        safe = torch.where(det.abs() > 1e-20, det, torch.ones_like(det))
        u, v, t = u_num / safe, v_num / safe, t_pair[:, 9] / safe
        hit = (det.abs() > 1e-20) & (u >= -_EDGE_TOLERANCE) & (v >= -_EDGE_TOLERANCE)
        hit &= (u + v <= 1 + _EDGE_TOLERANCE) & (t > near)
        if not bool(hit.any()):
            continue
        pid = (py * width + px)[hit]
        pair_tri, u, v, t = pair_tri[hit], u[hit], v[hit], t[hit]
        chunk_depth = torch.full((num_pixels,), float("inf")).scatter_reduce(0, pid, t, "amin")
        nearest = t == chunk_depth[pid]
        chunk_tri = torch.full((num_pixels,), len(faces), dtype=torch.long)
        chunk_tri = chunk_tri.scatter_reduce(0, pid[nearest], pair_tri[nearest], "amin")
        win = nearest & (pair_tri == chunk_tri[pid])
        better = win & (t < best_depth[pid])
        pid = pid[better]
        best_depth[pid] = t[better]
        best_tri[pid] = pair_tri[better]
        best_uv[pid] = torch.stack([u[better], v[better]], dim=-1)

    mask = best_tri >= 0
    unit = F.normalize(normal, dim=-1) * torch.where(facing > 0, -1.0, 1.0)[:, None]
    tri_safe = best_tri.clamp(min=0)
    bary = torch.stack([1 - best_uv[:, 0] - best_uv[:, 1], best_uv[:, 0], best_uv[:, 1]], dim=-1)
    m = mask[:, None].float()
    return RayHits(
        mask=mask.reshape(height, width),
        depth=torch.where(mask, best_depth, torch.zeros_like(best_depth)).reshape(height, width),
        triangle=best_tri.reshape(height, width),
        barycentric=(bary * m).reshape(height, width, 3),
        normal=(unit[tri_safe] * m).reshape(height, width, 3),
    )


def interpolate_hits(
    hits: RayHits, attributes: Float[Tensor, "V C"], faces: Int[Tensor, "F 3"]
) -> Float[Tensor, "N C"]:
    """Barycentric interpolation of per-vertex attributes at the hit pixels (row-major order)."""
    sel = hits.mask.reshape(-1)
    tri = faces.long()[hits.triangle.reshape(-1)[sel]]
    bary = hits.barycentric.reshape(-1, 3)[sel].to(attributes)
    return torch.einsum("nkc,nk->nc", attributes[tri], bary)


def interpolate(hits: RayHits, attributes: Float[Tensor, "V C"], faces: Int[Tensor, "F 3"]) -> Float[Tensor, "H W C"]:
    """Barycentric interpolation of per-vertex attributes at each pixel, 0 where the ray misses."""
    height, width = hits.shape
    out = torch.zeros(height * width, attributes.shape[-1], dtype=attributes.dtype)
    out[hits.mask.reshape(-1)] = interpolate_hits(hits, attributes, faces)
    return out.reshape(height, width, -1)


def supersampled_intrinsics(intrinsics: Float[Tensor, "3 3"], factor: int) -> Float[Tensor, "3 3"]:
    """K of a grid `factor` times finer whose sample blocks tile the original pixels.

    For an odd factor the middle sample of each block lies exactly on the original pixel centre.
    """
    scale = torch.tensor([[factor, 0, 0], [0, factor, 0], [0, 0, 1]], dtype=intrinsics.dtype)
    shift = torch.tensor([[1, 0, (factor - 1) / 2], [0, 1, (factor - 1) / 2], [0, 0, 1]], dtype=intrinsics.dtype)
    return shift @ scale @ intrinsics


def downsample(image: Float[Tensor, "H W C"], factor: int) -> Float[Tensor, "h w C"]:
    """Box filter of a supersampled image back to the original pixels."""
    if factor == 1:
        return image
    pooled = F.avg_pool2d(image.permute(2, 0, 1)[None], factor)
    return pooled[0].permute(1, 2, 0)


def centre_samples(grid: Shaped[Tensor, "H W *C"], factor: int) -> Shaped[Tensor, "h w *C"]:
    """The samples of a supersampled grid that lie on the original pixel centres (odd factors)."""
    if factor % 2 == 0:
        raise ValueError(f"supersampling factor {factor} has no sample on the pixel centres")
    return grid[factor // 2 :: factor, factor // 2 :: factor]


def pixel_rays(
    intrinsics: Float[Tensor, "3 3"],
    rotation: Float[Tensor, "3 3"],
    translation: Float[Tensor, "3"],
    height: int,
    width: int,
) -> Tuple[Float[Tensor, "3"], Float[Tensor, "H W 3"]]:
    """World-space origin (the camera centre) and unit directions of each pixel's ray, in float64."""
    k, rot, trans = intrinsics.double(), rotation.double(), translation.double()
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64), indexing="ij"
    )
    pixels = torch.stack([xs, ys, torch.ones_like(xs)], dim=-1)
    directions = pixels @ torch.linalg.inv(k).T @ rot
    return -rot.T @ trans, F.normalize(directions, dim=-1)
