"""Backward-skinning accuracy and cost on the generated SMPL-format body (nerfstudio_humanfeat.body).

    OMP_NUM_THREADS=1 python benchmarks/bench_skinning.py [--points 100000] [--repeats 3]

Prints the canonical -> world -> canonical round-trip error (mm) on the surface vertices and on points 2 cm off the
surface for each backward-skinning path, then the cost per 100k points (uniform in the posed body's box padded by
0.1 m, as ray samples are) at 1 and 2 threads: the grid path (query of a precomputed per-frame grid, plus the
per-frame grid build) and the KD-tree paths (tree built per call; nearest vertex, or closest triangle).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from nerfstudio_humanfeat.body import SMPLBody, SurfaceWeights, backward_skin, blend_weight_grid, forward_skin
from nerfstudio_humanfeat.body.skinning import nearest_surface
from nerfstudio_humanfeat.synth.body_model import build_body_model


def bent_pose() -> torch.Tensor:
    poses = torch.zeros(1, 72)
    for joint, axis, angle in [(4, 0, 0.9), (5, 0, 0.4), (1, 0, -0.5), (2, 0, 0.3), (18, 1, -1.2), (19, 1, 0.8),
                               (16, 2, -0.6), (3, 1, 0.3), (15, 0, 0.3)]:  # fmt: skip
        poses[0, 3 * joint + axis] = angle
    return poses


def timed(fn, repeats: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    path = build_body_model().save(Path(tempfile.mkdtemp()) / "SMPL_NEUTRAL.pkl")
    body = SMPLBody.from_file(path)
    params = dict(poses=bent_pose(), shapes=torch.linspace(-1, 1, 10)[None], Rh=torch.tensor([[0.3, 1.0, -0.2]]))
    pose = body(**params, Th=torch.tensor([[0.5, -0.3, 2.0]]))
    ids = torch.unique(body.faces)
    weights = body.lbs_weights
    canonical = pose.canonical_vertices[0]
    tri = canonical[body.faces]
    fn = torch.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=-1)
    normals = torch.zeros_like(canonical).index_add_(0, body.faces.reshape(-1), fn.repeat_interleave(3, 0))
    normals = normals / normals.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    off = (canonical + 0.02 * normals)[ids]
    w_off, _ = nearest_surface(off.numpy(), canonical[ids].numpy(), weights[ids].numpy())
    world_vertices = forward_skin(canonical[ids], weights[ids], pose)
    world_off = forward_skin(off, torch.from_numpy(w_off), pose)

    start = time.perf_counter()
    grid = blend_weight_grid(pose.world_to_smpl(pose.vertices)[0], body.faces, weights)
    build_grid_s = time.perf_counter() - start
    sources = {
        "grid (0.025 m, barycentric)": grid,
        "kdtree nearest vertex": SurfaceWeights.from_body(weights, body.faces),
        "kdtree closest triangle": SurfaceWeights.from_body(weights, body.faces, use_faces=True),
    }
    print(f"generated body, bent pose with Rh/Th; {len(ids)} surface vertices; grid {tuple(grid.shape)}")
    print("round trip canonical -> world -> canonical, error in mm")
    print(f"{'path':30s} {'vert mean':>10s} {'vert max':>10s} {'off mean':>10s} {'off p90':>10s} {'off max':>10s}")
    for name, source in sources.items():
        ev = (backward_skin(world_vertices, pose, source).points - canonical[ids]).norm(dim=-1) * 1e3
        eo = (backward_skin(world_off, pose, source).points - off).norm(dim=-1) * 1e3
        print(
            f"{name:30s} {ev.mean():10.3f} {ev.max():10.2f} {eo.mean():10.3f} {eo.quantile(0.9):10.3f} {eo.max():10.2f}"
        )

    gen = torch.Generator().manual_seed(0)
    lower, upper = pose.vertices[0].amin(0) - 0.1, pose.vertices[0].amax(0) + 0.1
    points = lower + torch.rand(args.points, 3, generator=gen) * (upper - lower)
    scale = 100_000 / args.points
    print(f"\nbackward skinning cost per 100k points (ms), {args.points} points in the padded body box")
    print(f"{'path':30s} {'1 thread':>10s} {'2 threads':>10s}")
    rows = {name: [] for name in list(sources) + ["grid build per frame"]}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for name, source in sources.items():
            rows[name].append(timed(lambda s=source: backward_skin(points, pose, s), args.repeats) * 1e3 * scale)
        start = time.perf_counter()
        blend_weight_grid(pose.world_to_smpl(pose.vertices)[0], body.faces, weights)
        rows["grid build per frame"].append((time.perf_counter() - start) * 1e3)
    for name, values in rows.items():
        print(f"{name:30s} {values[0]:10.1f} {values[1]:10.1f}")
    print(f"(first grid build: {build_grid_s * 1e3:.0f} ms; the build is per frame, not per 100k points)")


if __name__ == "__main__":
    main()
