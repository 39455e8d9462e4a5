"""Tests of the shared body component (nerfstudio_humanfeat.body) on the generated SMPL-format body."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from nerfstudio_humanfeat.body import (
    CanonicalBox,
    ForwardWeightField,
    SMPLBody,
    SurfaceWeights,
    WeightGrid,
    backward_skin,
    blend_weight_grid,
    forward_skin,
    frame_weight_source,
    nearest_surface,
    project,
    resolve_smpl_model,
    sample_weights,
    smplx_to_zju,
    triangulate_consistent,
    triangulate_dlt,
)
from nerfstudio_humanfeat.body.smpl import SMPL_MODEL_ENV, big_pose
from nerfstudio_humanfeat.synth.body_model import build_body_model, load_smpl, pose_body


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_body_model().save(tmp_path_factory.mktemp("body") / "SMPL_NEUTRAL.pkl")


@pytest.fixture(scope="module")
def body(model_path: Path) -> SMPLBody:
    return SMPLBody.from_file(model_path)


def bent_pose() -> torch.Tensor:
    """Knees, hips, elbows, shoulder, spine and head bent: a non-trivial pose."""
    poses = torch.zeros(1, 72)
    for joint, axis, angle in [(4, 0, 0.9), (5, 0, 0.4), (1, 0, -0.5), (2, 0, 0.3), (18, 1, -1.2), (19, 1, 0.8),
                               (16, 2, -0.6), (3, 1, 0.3), (15, 0, 0.3)]:  # fmt: skip
        poses[0, 3 * joint + axis] = angle
    return poses


@pytest.fixture(scope="module")
def params() -> dict:
    return {
        "poses": bent_pose(),
        "shapes": torch.linspace(-1.0, 1.0, 10)[None],
        "Rh": torch.tensor([[0.3, 1.0, -0.2]]),
        "Th": torch.tensor([[0.5, -0.3, 2.0]]),
    }


@pytest.fixture(scope="module")
def frame_grid(body: SMPLBody, params: dict):
    """The posed frame's SMPL-space weight grid (AniNeRF bweights)."""
    pose = body(**params)
    return blend_weight_grid(pose.world_to_smpl(pose.vertices)[0], body.faces, body.lbs_weights)


def surface_ids(body: SMPLBody) -> torch.Tensor:
    return torch.unique(body.faces)


def vertex_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    tri = vertices[faces]
    face_normals = torch.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=-1)
    normals = torch.zeros_like(vertices).index_add_(0, faces.reshape(-1), face_normals.repeat_interleave(3, 0))
    return normals / normals.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def test_resolve_smpl_model(model_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SMPL_MODEL_ENV, raising=False)
    assert resolve_smpl_model(model_path) == model_path
    monkeypatch.setenv(SMPL_MODEL_ENV, str(model_path.parent))
    assert resolve_smpl_model(None, tmp_path) == model_path
    monkeypatch.delenv(SMPL_MODEL_ENV)
    data_root = tmp_path / "data"
    build_body_model().save(data_root / "body_model" / "SMPL_NEUTRAL.pkl")
    assert resolve_smpl_model(None, data_root) == data_root / "body_model" / "SMPL_NEUTRAL.pkl"
    with pytest.raises(FileNotFoundError, match="missing.pkl.*HUMANFEAT_SMPL_MODEL.*nowhere"):
        resolve_smpl_model(tmp_path / "missing.pkl", tmp_path / "nowhere")


def test_vertices_match_pose_body(body: SMPLBody, model_path: Path) -> None:
    torch.manual_seed(0)
    poses, shapes = torch.randn(3, 72) * 0.4, torch.randn(3, 10)
    rh, th = torch.randn(3, 3), torch.randn(3, 3)
    pose = body(poses, shapes, rh, th)
    verts, joints = pose_body(load_smpl(model_path), poses, shapes, rh, th)
    assert pose.vertices.shape == (3, 6890, 3) and pose.transforms.shape == (3, 24, 4, 4)
    assert torch.allclose(pose.vertices, verts, atol=1e-5)
    assert torch.allclose(pose.joints, joints, atol=1e-5)


def test_bone_transforms_map_rest_joints_to_smplx_joints(body: SMPLBody, model_path: Path, params: dict) -> None:
    smpl = load_smpl(model_path)
    pose = body(**params)
    out = smpl(betas=params["shapes"], body_pose=params["poses"][:, 3:], global_orient=torch.zeros(1, 3))
    rot = pose.global_transform[0, :3, :3]
    smplx_world = out.joints[0, :24] @ rot.T + params["Th"][0]
    mapped = (
        torch.einsum("jab,jb->ja", pose.transforms[0, :, :3, :3], pose.canonical_joints[0])
        + pose.transforms[0, :, :3, 3]
    )
    assert torch.allclose(mapped, smplx_world, atol=1e-5)
    # rest joints are the joint regressor on the shaped template, and inverse transforms undo the bones
    assert torch.allclose(pose.canonical_joints, body.rest(params["shapes"])[1])
    eye = pose.inverse_transforms @ pose.transforms
    assert torch.allclose(eye, torch.eye(4).expand_as(eye), atol=1e-5)
    # SMPL space is world without Rh/Th
    assert torch.allclose(pose.smpl_to_world(pose.world_to_smpl(pose.vertices)), pose.vertices, atol=1e-5)


def test_big_pose_spreads_legs(body: SMPLBody, params: dict) -> None:
    _, rest_joints = body.rest(params["shapes"])
    verts, joints, _ = body.big_pose_transforms(params["shapes"])
    left_ankle, right_ankle = 7, 8
    assert joints[0, left_ankle, 0] > rest_joints[0, left_ankle, 0] + 0.2  # left leg (+x) moves further left
    assert joints[0, right_ankle, 0] < rest_joints[0, right_ankle, 0] - 0.2

    def leg_angle(j: torch.Tensor) -> float:  # angle of the hip->ankle line from straight down, in the xy plane
        d = j[0, left_ankle] - j[0, 1]
        return math.degrees(math.atan2(float(d[0]), -float(d[1])))

    assert leg_angle(joints) - leg_angle(rest_joints) == pytest.approx(30.0, abs=1e-3)
    # world points from the big-pose canonical: transforms are world @ inv(big), joints land on the posed joints
    pose = body(**params, canonical="big")
    mapped = torch.einsum("jab,jb->ja", pose.transforms[0, :, :3, :3], joints[0]) + pose.transforms[0, :, :3, 3]
    assert torch.allclose(mapped, pose.joints[0], atol=1e-5)
    assert torch.allclose(pose.canonical_vertices, verts)


def test_smplx_to_zju(body: SMPLBody, model_path: Path) -> None:
    smpl = load_smpl(model_path)
    torch.manual_seed(1)
    orient, transl, body_pose = torch.randn(4, 3), torch.randn(4, 3), torch.randn(4, 69) * 0.3
    betas = torch.randn(1, 10) * 2.0
    out = smpl(betas=betas.expand(4, -1), global_orient=orient, body_pose=body_pose, transl=transl)
    rh, th = smplx_to_zju(body, orient, transl, betas)
    poses = torch.cat([torch.zeros(4, 3), body_pose], dim=-1)
    zju = body(poses, betas.expand(4, -1), rh, th)
    assert torch.allclose(zju.vertices, out.vertices, atol=1e-5)
    naive = body(poses, betas.expand(4, -1), orient, transl)  # ignoring the root offset is visibly wrong
    assert (naive.vertices - out.vertices).norm(dim=-1).mean() > 0.05


def test_round_trip_vertices_and_off_surface(body: SMPLBody, params: dict, frame_grid: WeightGrid) -> None:
    """Canonical -> world -> canonical: exact on vertices (KD path); 2 cm off the surface mostly exact."""
    pose = body(**params)
    ids = surface_ids(body)
    canonical = pose.canonical_vertices[0]
    weights = body.lbs_weights
    world = forward_skin(canonical[ids], weights[ids], pose)
    assert torch.allclose(world, pose.vertices[0, ids], atol=1e-5)
    back = backward_skin(world, pose, SurfaceWeights.from_body(weights, body.faces))
    assert (back.points - canonical[ids]).norm(dim=-1).max() < 1e-4
    assert isinstance(frame_weight_source(pose, weights, body.faces, "kdtree"), SurfaceWeights)
    with pytest.raises(ValueError):
        frame_weight_source(pose, weights, body.faces, "octree")
    grid_back = backward_skin(world, pose, frame_grid)
    grid_err = (grid_back.points - canonical[ids]).norm(dim=-1)
    assert grid_err.mean() < 2e-3 and grid_err.median() < 1e-4  # trilinear blur only near part junctions

    off = (canonical + 0.02 * vertex_normals(canonical, body.faces))[ids]
    w_off, _ = nearest_surface(off.numpy(), canonical[ids].numpy(), weights[ids].numpy())
    off_world = forward_skin(off, torch.from_numpy(w_off), pose)
    err = (backward_skin(off_world, pose, SurfaceWeights.from_body(weights, body.faces)).points - off).norm(dim=-1)
    # the nearest surface point changes only near bent joints (knees, elbows)
    assert err.quantile(0.9) < 1e-4 and err.mean() < 3e-3
    assert backward_skin(off_world, pose, SurfaceWeights.from_body(weights, body.faces)).background.max() == 0


def test_weight_grid_sampling_axis_order(body: SMPLBody, params: dict) -> None:
    pose = body(**params)
    smpl_vertices = pose.world_to_smpl(pose.vertices)[0]
    grid = blend_weight_grid(smpl_vertices, body.faces, body.lbs_weights, voxel_size=0.05)
    assert grid.weights.shape[-1] == 25 and len(set(grid.shape)) == 3  # anisotropic: axis order matters
    points = grid.points()
    assert torch.allclose(points[0, 0, 0], grid.bounds[0]) and torch.allclose(points[-1, -1, -1], grid.bounds[1])
    # at grid points, sampling returns the stored values exactly
    idx = torch.tensor([[1, 2, 3], [5, 9, 2], [grid.shape[0] - 2, 4, 1]])
    w, d = sample_weights(grid, points[idx[:, 0], idx[:, 1], idx[:, 2]])
    stored = grid.weights[idx[:, 0], idx[:, 1], idx[:, 2]]
    assert torch.allclose(w, stored[:, :24], atol=1e-5) and torch.allclose(d, stored[:, 24], atol=1e-5)
    assert sample_weights(grid, grid.bounds[1:] + 0.1)[1].item() > 100.0
    # from_array recomputes the same bounds from the vertices (AniNeRF readers)
    again = grid.from_array(grid.weights.numpy(), smpl_vertices)
    assert torch.allclose(again.bounds, grid.bounds)
    # distances are true point-to-surface distances: never above the nearest-vertex distance
    ids = surface_ids(body)
    _, vertex_d = nearest_surface(
        points.reshape(-1, 3).numpy(), smpl_vertices[ids].numpy(), body.lbs_weights[ids].numpy()
    )
    assert (grid.weights[..., 24].reshape(-1).numpy() <= vertex_d + 1e-6).all()


def test_background_weight(body: SMPLBody, params: dict, frame_grid: WeightGrid) -> None:
    pose = body(**params)
    ids = surface_ids(body)
    normals = vertex_normals(pose.vertices[0], body.faces)[ids]
    on_surface = pose.vertices[0, ids]
    # outward offsets land near the body anywhere except between limbs; keep those whose nearest surface is 0.5 m away
    far = on_surface + 0.5 * normals
    for source in (SurfaceWeights.from_body(body.lbs_weights, body.faces), frame_grid):
        near = backward_skin(on_surface, pose, source)
        assert near.background.max() < 1e-6
        assert torch.allclose(near.weights.sum(-1), torch.ones(len(ids)), atol=1e-5)
        away = backward_skin(far, pose, source)
        really_far = away.distance > 0.3
        assert really_far.float().mean() > 0.3
        assert (away.background[really_far] > 0.99).all()
        # background points are moved rigidly with the global frame (identity in SMPL space)
        assert torch.allclose(away.points[really_far], pose.world_to_smpl(far[None])[0][really_far], atol=1e-5)


def test_posed_point_gradient_matches_finite_differences(model_path: Path) -> None:
    body = SMPLBody.from_file(model_path).double()
    ids = torch.tensor([100, 2500, 4000])
    canonical_shapes = torch.zeros(1, 10, dtype=torch.float64)
    rh = torch.tensor([[0.1, 0.4, -0.2]], dtype=torch.float64)

    def posed(poses: torch.Tensor, th: torch.Tensor) -> torch.Tensor:
        return body(poses, canonical_shapes, rh, th).vertices[0, ids]

    poses = (bent_pose().double() * 0.7).requires_grad_()
    th = torch.tensor([[0.2, 0.1, 1.0]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(posed, (poses, th), eps=1e-6, atol=1e-6)


def test_triangulate_dlt() -> None:
    gen = torch.Generator().manual_seed(0)
    points = torch.rand(20, 3, generator=gen) * torch.tensor([0.8, 1.7, 0.5]) - torch.tensor([0.4, 0.8, 0.25])
    projections = []
    for angle in (0.0, 0.5 * math.pi, math.pi, 1.5 * math.pi):  # 4 cameras on a 3 m ring looking at the origin
        centre = torch.tensor([3.0 * math.sin(angle), 0.0, 3.0 * math.cos(angle)])
        forward = -centre / centre.norm()
        right = torch.linalg.cross(torch.tensor([0.0, -1.0, 0.0]), forward)
        rot = torch.stack([right, torch.linalg.cross(forward, right), forward])
        k = torch.tensor([[1000.0, 0, 512], [0, 1000.0, 512], [0, 0, 1]])
        projections.append(k @ torch.cat([rot, -(rot @ centre)[:, None]], dim=1))
    proj = torch.stack(projections)
    pixels = project(points, proj) + torch.randn(4, 20, 2, generator=gen)  # 1 px noise
    conf = torch.full((4, 20, 1), 0.9)
    conf[1:, 0] = 0.0  # joint 0 seen in one view only
    conf[2:, 1] = 0.05  # joint 1 in two views (others below the threshold)
    out = triangulate_dlt(torch.cat([pixels, conf], dim=-1), proj)
    err = (out[1:, :3] - points[1:]).norm(dim=-1)
    assert err[1:].max() < 0.01 and err[0] < 0.02  # < 1 cm at 4 views, < 2 cm at 2
    assert out[0].abs().sum() == 0  # fewer than 2 views: confidence 0
    assert (out[1:, 3] > 0.85).all() and (out[1:, 3] <= 0.9).all()
    bad = pixels.clone()
    bad[0, 5] += 80.0  # an outlier view lowers the confidence
    assert triangulate_dlt(torch.cat([bad, conf], dim=-1), proj)[5, 3] < 0.6

    # consistent triangulation drops the outlying view and reports joints whose last two views disagree as missing
    bad[:2, 6] += torch.tensor([[60.0, 0.0], [0.0, -60.0]])  # joint 6: two of four views wrong, two right
    bad[0, 1] += 80.0  # joint 1: seen in two views, one wrong
    bad[2, 7] = float("nan")  # a missing detection: nan, confidence 0
    conf[2, 7] = 0.0
    detections = torch.cat([bad, conf], dim=-1)
    plain = triangulate_dlt(detections, proj)
    robust = triangulate_consistent(detections, proj, max_error_px=8.0)
    assert (plain[5, :3] - points[5]).norm() > 0.02 and (robust[5, :3] - points[5]).norm() < 0.01
    assert (robust[1] == 0).all() and (robust[0] == 0).all()
    assert (robust[6, :3] - points[6]).norm() < 0.02 and (plain[6, :3] - points[6]).norm() > 0.02
    assert (robust[7, :3] - points[7]).norm() < 0.01  # three views left
    rest = [j for j in range(20) if j not in (0, 1, 5, 6, 7)]
    assert torch.allclose(robust[rest], plain[rest])  # consistent joints are left alone


def test_forward_weight_field_initialises_to_smpl_weights(body: SMPLBody) -> None:
    canonical, _, _ = body.big_pose_transforms(torch.zeros(1, 10))
    ids = surface_ids(body)
    grid = blend_weight_grid(canonical[0], body.faces, body.lbs_weights)
    field = ForwardWeightField(grid, latent_dim=4)
    points = canonical[0, ids[::50]]
    latent = torch.randn(1, 4)
    weights = field(points, latent)
    expected = sample_weights(grid, points)[0]
    assert torch.allclose(weights, expected / expected.sum(-1, keepdim=True), atol=1e-5)
    # trilinear grid weights at the vertices are close to the vertices' own SMPL weights
    deviation = (weights - body.lbs_weights[ids[::50]]).abs().amax(-1)
    print("max |w - w_smpl| per vertex: median", deviation.median().item(), "max", deviation.max().item())
    assert deviation.median() < 0.05 and deviation.mean() < 0.1
    with_bg = field(points, latent, background=torch.full((len(points),), 0.25))
    assert with_bg.shape[-1] == 25 and torch.allclose(with_bg.sum(-1), torch.ones(len(points)), atol=1e-5)
    weights.sum().backward()  # the MLP is trainable
    assert any(p.grad is not None for p in field.mlp.parameters())


def test_canonical_box_round_trip(body: SMPLBody) -> None:
    torch.manual_seed(2)
    slim, _ = body.rest(torch.zeros(1, 10))
    tall, _ = body.rest(torch.full((1, 10), 1.5))
    box_a, box_b = CanonicalBox.from_vertices(slim), CanonicalBox.from_vertices(tall)
    normalized = box_a.normalize(slim[0])
    assert normalized.min() >= -1.0 and normalized.max() <= 1.0
    assert torch.allclose(normalized.amin(0), torch.full((3,), -1.0) + 0.1 / box_a.size, atol=1e-5)
    points = torch.randn(100, 3)
    assert torch.allclose(box_a.denormalize(box_a.normalize(points)), points, atol=1e-5)
    assert torch.allclose(box_b.to_box(box_a.to_box(points, box_b), box_a), points, atol=1e-5)
    tight_a, tight_b = CanonicalBox.from_vertices(slim, padding=0.0), CanonicalBox.from_vertices(tall, padding=0.0)
    resized = tight_b.to_box(tall[0], tight_a)
    assert torch.allclose(resized.amin(0), slim[0].amin(0), atol=1e-5)
    assert torch.allclose(resized.amax(0), slim[0].amax(0), atol=1e-5)


def test_big_pose_helper() -> None:
    poses = big_pose(2)
    assert poses.shape == (2, 72) and np.isclose(poses[0, 5].item(), math.radians(30)) and poses[0, 8] < 0
