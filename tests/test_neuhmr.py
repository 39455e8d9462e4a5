"""NeuHMR (nerfstudio_humanfeat.refine): anchors, visibility, motion field, a refinement and the I/O formats."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from nerfstudio_humanfeat.body.smpl import SMPLBody
from nerfstudio_humanfeat.refine.anchors import farthest_point_sampling, orientation_directions, select_anchors
from nerfstudio_humanfeat.refine.io import (
    MonocularVideo,
    SmplSequence,
    load_npz,
    load_params_dir,
    load_sequence,
    save_npz,
    save_params_dir,
)
from nerfstudio_humanfeat.refine.losses import match_joints
from nerfstudio_humanfeat.refine.metrics import pose_errors
from nerfstudio_humanfeat.refine.motion_field import MotionField, apply_residual, compose_axis_angle
from nerfstudio_humanfeat.refine.refine import NeuHMR, RefineConfig, without_view_axis
from nerfstudio_humanfeat.refine.renderer import SplatRenderer
from nerfstudio_humanfeat.refine.visibility import depth_at, joint_visibility, register_joint_features
from nerfstudio_humanfeat.synth.body_model import axis_angle_to_matrix, build_body_model


@pytest.fixture(scope="module")
def body(tmp_path_factory: pytest.TempPathFactory) -> SMPLBody:
    return SMPLBody.from_file(build_body_model().save(tmp_path_factory.mktemp("body") / "SMPL_NEUTRAL.pkl"))


def yaw(angle: float) -> torch.Tensor:
    """Rh of a y-up SMPL body stood up in a z-up world (+90 degrees about x), then turned by ``angle`` about z."""
    up = axis_angle_to_matrix(torch.tensor([math.pi / 2, 0.0, 0.0]))
    turn = axis_angle_to_matrix(torch.tensor([0.0, 0.0, angle]))
    rot = turn @ up
    angle_ = torch.arccos(((rot.trace() - 1) / 2).clamp(-1, 1))
    axis = torch.stack([rot[2, 1] - rot[1, 2], rot[0, 2] - rot[2, 0], rot[1, 0] - rot[0, 1]])
    return axis / (2 * torch.sin(angle_)) * angle_


# ----------------------------------------------------------------------------------------------- anchors
def test_farthest_point_sampling_spreads_over_the_sphere() -> None:
    # Three clusters of near-identical directions (+x, -x, +y) and one lone -y direction.
    base = torch.tensor([[1.0, 0, 0], [1, 0.01, 0], [1, -0.01, 0], [-1, 0, 0], [-1, 0.02, 0], [0, 1, 0],
                         [0.01, 1, 0], [0, -1, 0]])  # fmt: skip
    points = base / base.norm(dim=-1, keepdim=True)
    chosen = farthest_point_sampling(points, 4, start=0)
    assert chosen[0] == 0 and chosen[1] == 3  # the opposite direction comes next
    assert {int(torch.argmax(points[i] @ torch.eye(3)[1])) for i in chosen}  # sanity
    clusters = [0 if i < 3 else 1 if i < 5 else 2 if i < 7 else 3 for i in chosen]
    assert sorted(clusters) == [0, 1, 2, 3]  # one frame per orientation cluster, none twice


def test_select_anchors_uses_orientations_then_losses() -> None:
    angles = [0.0, 0.05, math.pi, math.pi + 0.05, math.pi / 2, math.pi / 2 + 0.05, -math.pi / 2, -math.pi / 2 + 0.05]
    rh = torch.stack([yaw(a) for a in angles])
    directions = orientation_directions(rh)
    assert torch.allclose(directions.norm(dim=-1), torch.ones(8), atol=1e-5)
    # the body's forward axis (SMPL +z) stood up faces world -y, then turns about z
    assert torch.allclose(directions[0], torch.tensor([0.0, -1.0, 0.0]), atol=1e-5)
    losses = torch.tensor([5.0, 1.0, 1.0, 5.0, 5.0, 1.0, 1.0, 5.0])
    # FPS finds one frame per heading (4 candidates), all of loss 5 but one; keep the 2 of least loss.
    anchors = select_anchors(directions, losses, num_anchors=2, num_candidates=4, start=1)
    candidates = farthest_point_sampling(directions, 4, start=1)
    assert {round(angles[i] / (math.pi / 2)) % 4 for i in candidates} == {0, 1, 2, 3}
    assert len(anchors) == 2 and all(i in candidates for i in anchors)
    assert all(losses[i] <= min(losses[c] for c in candidates if c not in anchors) for i in anchors)


# ----------------------------------------------------------------------------------------------- visibility
def test_zbuffer_visibility_and_registration() -> None:
    depth = torch.full((4, 6), float("inf"))
    depth[:, :3] = 2.0  # a surface at 2 m on the left half of the image
    uv = torch.tensor([[0.5, 0.5], [1.5, 2.5], [2.9, 3.9], [4.5, 1.5], [7.0, 1.0]])
    surface = depth_at(depth, uv)
    assert surface[:3].eq(2.0).all() and torch.isinf(surface[3:]).all()
    joint_z = torch.tensor([2.1, 2.5, 1.85, 2.0, 2.0])
    visible = joint_visibility(surface, joint_z, eps=0.2)
    # 0.1 behind the surface: visible; 0.5 behind: occluded; in front within eps: visible; no surface: not visible
    assert visible.tolist() == [True, False, True, False, False]

    feats = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[3.0, 0.0], [5.0, 5.0]], [[2.0, 2.0], [7.0, 7.0]]])
    vis = torch.tensor([[True, False], [True, False], [False, False]])
    registered, valid = register_joint_features(feats, vis)
    assert torch.allclose(registered[0], torch.tensor([2.0, 0.0]))  # mean over the visible anchors only
    assert valid.tolist() == [True, False] and registered[1].abs().sum() == 0


# ----------------------------------------------------------------------------------------------- motion field
def test_motion_field_is_identity_at_initialisation(body: SMPLBody) -> None:
    field = MotionField(num_rbf=100, hidden=64, num_layers=4)
    assert sum(isinstance(m, torch.nn.Linear) for m in field.mlp) == 4
    times = torch.linspace(0, 1, 5)
    residual = field(times)
    for value in (residual.joint_rotations, residual.global_rotation, residual.translation):
        assert value.abs().max() == 0
    generator = torch.Generator().manual_seed(0)
    poses = torch.randn(5, 72, generator=generator) * 0.4
    poses[:, :3] = 0
    poses[0, 3:6] = 0  # a joint at exactly the zero rotation
    rh, th = torch.randn(5, 3, generator=generator), torch.randn(5, 3, generator=generator)
    poses.requires_grad_(True)
    new_poses, new_rh, new_th = apply_residual(poses, rh, th, residual)
    assert torch.allclose(new_poses, poses, atol=1e-5) and torch.allclose(new_rh, rh, atol=1e-5)
    assert torch.equal(new_th, th)
    shapes = torch.zeros(5, 10)
    assert torch.allclose(
        body(new_poses, shapes, new_rh, new_th).vertices, body(poses, shapes, rh, th).vertices, atol=1e-5
    )
    # gradients flow to the field's last layer and are finite at the identity
    loss = body(*apply_residual(poses.detach(), rh, th, field(times))[:1], shapes, rh, th).joints.sum()
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in field.parameters() if p.grad is not None)
    assert field.mlp[-1].weight.grad.abs().sum() > 0


def test_compose_axis_angle_matches_matrices() -> None:
    generator = torch.Generator().manual_seed(1)
    a, b = torch.randn(16, 3, generator=generator), torch.randn(16, 3, generator=generator)
    composed = axis_angle_to_matrix(compose_axis_angle(a, b))
    assert torch.allclose(composed, axis_angle_to_matrix(a) @ axis_angle_to_matrix(b), atol=1e-5)


# ----------------------------------------------------------------------------------------------- refinement
def constructed_video(body: SMPLBody, truth: SmplSequence, size: int = 64) -> MonocularVideo:
    """Images and masks of the true poses drawn by the splatting renderer, coloured by canonical position."""
    world_to_camera = torch.tensor([[1.0, 0, 0, 0], [0, 0, -1, -0.3], [0, 1, 0, 3.0]])
    intrinsics = torch.tensor([[70.0, 0, size / 2], [0, 70.0, size / 2], [0, 0, 1]])
    count = len(truth)
    video = MonocularVideo(torch.zeros(count, size, size, 3), None, intrinsics, world_to_camera, truth.frame_ids)
    poses = body(truth.poses, truth.shapes, truth.Rh, truth.Th)
    painter = SplatRenderer(video, num_points=1500, num_vertices=poses.vertices.shape[1])
    canonical = poses.canonical_vertices[0, painter._choose_subset(poses.vertices.shape[1])]
    low, high = canonical.min(0).values, canonical.max(0).values
    painter.colors = 0.15 + 0.8 * (canonical - low) / (high - low)
    ys, xs = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    pixels = torch.stack([xs, ys], -1).reshape(-1, 2).float() + 0.5
    masks = []
    with torch.no_grad():
        for t in range(count):
            out = painter.render(t, poses[t], pixels)
            video.images[t] = out.rgb.reshape(size, size, 3)
            masks.append(out.accumulation.reshape(size, size) > 0.5)
    video.masks = torch.stack(masks)
    return video


def test_refinement_reduces_a_known_pose_offset(body: SMPLBody) -> None:
    count = 6
    poses = torch.zeros(count, 72)
    poses[:, 3 * 4] = torch.linspace(0.0, 0.6, count)  # left knee bends over time
    poses[:, 3 * 16 + 2] = -1.0  # left shoulder down
    poses[:, 3 * 17 + 2] = 1.0
    truth = SmplSequence(poses, torch.zeros(count, 10), yaw(0.4)[None].repeat(count, 1), torch.zeros(count, 3),
                         list(range(count)))  # fmt: skip
    video = constructed_video(body, truth)
    initial = truth.clone()
    initial.Th = initial.Th + torch.tensor([0.05, 0.0, 0.03])  # a known offset: 5 cm sideways, 3 cm up
    initial.poses[:, 3 * 18 + 1] += 0.35  # and the left elbow twisted
    config = RefineConfig(epochs=25, batch_frames=3, num_rays=256, report_rays=512, num_candidates=32, progress=False)
    result = NeuHMR(body, SplatRenderer(video, num_points=1500), config).refine(initial)
    before = pose_errors(body, initial, truth, video.world_to_camera)["mpjpe_mm"].mean()
    after = pose_errors(body, result.refined, truth, video.world_to_camera)["mpjpe_mm"].mean()
    assert after < 0.7 * before, (float(before), float(after))
    report = result.report()
    assert len(report["frames"]) == count and report["anchors"]
    assert report["mean"]["refined"]["total"] < report["mean"]["initial"]["total"]


def test_joint_matching_moves_towards_the_registered_feature() -> None:
    size, target = 32, torch.tensor([16.0, 16.0])
    ys, xs = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    bump = torch.exp(-((xs - target[0]) ** 2 + (ys - target[1]) ** 2) / (2 * 3.0**2))
    feature_map = torch.stack([1.0 - bump, bump])  # (1 - g, g): cosine similarity to (0, 1) peaks at the target
    registered = torch.tensor([[0.0, 1.0]])
    current = torch.tensor([[20.0, 16.0]])
    generator = torch.Generator().manual_seed(0)
    matched, similarity = match_joints(feature_map, (size, size), current, registered, 128, 2.0, generator)
    assert (matched - target).norm() < 0.5 * (current - target).norm()
    assert float(similarity) > 0.9
    kept, _ = match_joints(feature_map, (size, size), target[None], registered, 128, 2.0, generator)
    assert torch.equal(kept, target[None])  # a joint already at the best match stays


def test_held_depth_removes_only_the_optical_axis_component() -> None:
    world_to_camera = torch.cat([axis_angle_to_matrix(torch.tensor([0.3, -1.1, 0.4])), torch.zeros(3, 1)], dim=1)
    translation = torch.tensor([[0.1, -0.2, 0.3], [0.0, 0.05, 0.0]])
    held = without_view_axis(translation, world_to_camera)
    in_camera = held @ world_to_camera[:, :3].T
    original = translation @ world_to_camera[:, :3].T
    assert torch.allclose(in_camera[:, 2], torch.zeros(2), atol=1e-6)
    assert torch.allclose(in_camera[:, :2], original[:, :2], atol=1e-6)


# ----------------------------------------------------------------------------------------------- I/O
def test_smpl_formats_round_trip(tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(2)
    sequence = SmplSequence(torch.randn(3, 72, generator=generator), torch.randn(3, 10, generator=generator),
                            torch.randn(3, 3, generator=generator), torch.randn(3, 3, generator=generator),
                            [4, 7, 12])  # fmt: skip
    save_params_dir(sequence, tmp_path / "params")
    save_npz(sequence, tmp_path / "smpl.npz")
    record = np.load(tmp_path / "params" / "7.npy", allow_pickle=True).item()
    assert record["poses"].shape == (1, 72) and record["Rh"].shape == (1, 3)
    for loaded in (
        load_params_dir(tmp_path / "params"),
        load_npz(tmp_path / "smpl.npz"),
        load_sequence(tmp_path / "smpl.npz"),
    ):
        assert loaded.frame_ids == [4, 7, 12]
        for key in ("poses", "shapes", "Rh", "Th"):
            assert torch.allclose(getattr(loaded, key), getattr(sequence, key))
    assert load_sequence(tmp_path / "params").select_ids([12, 4]).frame_ids == [12, 4]
