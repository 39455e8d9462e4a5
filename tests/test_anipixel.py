"""AniPixel (paper 004): parts against closed forms, skinning consistency, the novel-pose path, the real tools."""

from __future__ import annotations

import copy
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
import torch
from layout_helpers import train_and_eval
from nerfstudio.plugins.registry import discover_methods

from nerfstudio_humanfeat.body import CanonicalBox, SMPLBody
from nerfstudio_humanfeat.configs.cli import with_dataparser
from nerfstudio_humanfeat.configs.cpu import cpu_overrides, cpu_variant
from nerfstudio_humanfeat.data.dataparsers.zju_mocap_dataparser import ZJUMocapDataParserConfig
from nerfstudio_humanfeat.fields.anipixel_field import neutral_coordinates
from nerfstudio_humanfeat.fields.sdf_field import (
    LaplaceDensity,
    SDFNetwork,
    eikonal_loss,
    laplace_density,
    min_sdf_mask_loss,
    sdf_gradient,
)
from nerfstudio_humanfeat.models.anipixel import mask_warmup_steps
from nerfstudio_humanfeat.scripts import anipixel_mesh
from nerfstudio_humanfeat.synth.body_model import build_body_model
from nerfstudio_humanfeat.synth.generator import generate, make_spec

BIN = Path(sys.executable).parent
SMALL = dict(
    num_coarse_samples=8, num_fine_samples=4, encoder_width=32, texture_base_channels=16, fusion_width=32,
    blend_num_layers=3, weight_hidden_dim=32, displacement_hidden_dim=32, hash_num_levels=4, hash_log2_size=12,
    hash_max_res=64, latent_dim=8, eval_num_rays_per_chunk=2048, shape_points=64, normal_smooth_points=64,
)  # fmt: skip


# ---------------------------------------------------------------------------------------------- closed forms
def test_neutral_canonical_box_maps_every_subject_onto_the_neutral_body(tmp_path: Path) -> None:
    body = SMPLBody.from_file(build_body_model().save(tmp_path / "SMPL_NEUTRAL.pkl"))
    neutral = body.big_pose_transforms(torch.zeros(1, 10))[0][0]
    neutral_box = CanonicalBox.from_vertices(neutral, padding=0.0)
    centre = (neutral_box.lower + neutral_box.upper) / 2
    used = torch.unique(body.faces)
    for sign in (-2.0, 2.0):  # a slim and a broad subject
        vertices = body.big_pose_transforms(torch.full((1, 10), sign))[0][0]
        box = CanonicalBox.from_vertices(vertices, padding=0.0)
        assert not torch.allclose(box.size, neutral_box.size, atol=1e-3)  # the shapes do differ
        mapped = neutral_coordinates(vertices, box, neutral_box)
        # the subject's minimum box lands exactly on the neutral body's, centred on the origin
        assert torch.allclose(mapped.amin(0), neutral_box.lower - centre, atol=1e-5)
        assert torch.allclose(mapped.amax(0), neutral_box.upper - centre, atol=1e-5)
        # and corresponding vertices of the two bodies land close together (the same body part)
        gap = (mapped[used] - (neutral[used] - centre)).norm(dim=-1).median()
        unscaled = (vertices[used] - (box.lower + box.upper) / 2 - (neutral[used] - centre)).norm(dim=-1).median()
        print(f"betas {sign}: median vertex gap to the neutral body {gap:.4f} m resized, {unscaled:.4f} m not")
        assert gap < 0.05 and gap < 0.8 * unscaled


def test_laplace_density_matches_volsdf_closed_form() -> None:
    b = 0.05
    s = torch.linspace(-0.3, 0.3, 61)[:, None]
    expected = torch.where(s > 0, 0.5 * torch.exp(-s / b), 1.0 - 0.5 * torch.exp(s / b)) / b
    assert torch.allclose(laplace_density(s, b), expected, rtol=1e-5, atol=1e-6)
    laplace_cdf = torch.distributions.Laplace(0.0, b).cdf(-s)  # alpha Psi_b(-s), alpha = 1 / b
    assert torch.allclose(laplace_density(s, b), laplace_cdf / b, rtol=1e-4, atol=1e-5)
    assert laplace_density(torch.zeros(1, 1), b).item() == pytest.approx(0.5 / b)
    density = LaplaceDensity(init_b=b)
    assert density.b.item() == pytest.approx(b)
    density(s).sum().backward()
    assert density.b_param.grad is not None and density.b_param.grad.abs() > 0  # b is learned
    capped = LaplaceDensity(init_b=b, b_max=b)
    with torch.no_grad():
        capped.b_param.fill_(0.2)
    assert capped.b.item() == pytest.approx(b)  # never wider than b_max
    with torch.no_grad():
        capped.b_param.fill_(0.02)
    assert capped.b.item() == pytest.approx(0.02 + capped.b_min)  # free below it


def test_eikonal_and_mask_losses_on_constructed_sdfs() -> None:
    points = (torch.rand(500, 3) * 2 - 1).requires_grad_(True)
    sphere = points.norm(dim=-1, keepdim=True) - 0.5
    assert eikonal_loss(sdf_gradient(sphere, points)).item() < 1e-10  # a true distance: |grad| = 1
    doubled = 2.0 * sphere
    assert eikonal_loss(sdf_gradient(doubled, points)).item() == pytest.approx(1.0, abs=1e-5)  # (2 - 1)^2
    # IDR's mask loss: BCE(sigmoid(-alpha min s), mask) / alpha
    alpha = 50.0
    min_sdf = torch.tensor([[-0.1], [0.1], [-0.1], [0.1]])
    mask = torch.tensor([[1.0], [0.0], [0.0], [1.0]])
    loss = min_sdf_mask_loss(min_sdf, mask, alpha)
    manual = torch.nn.functional.softplus(alpha * min_sdf) * mask + torch.nn.functional.softplus(-alpha * min_sdf) * (
        1 - mask
    )
    assert loss.item() == pytest.approx(float(manual.mean() / alpha), rel=1e-5)
    agreeing = min_sdf_mask_loss(min_sdf[:2], mask[:2], alpha)
    disagreeing = min_sdf_mask_loss(min_sdf[2:], mask[2:], alpha)
    assert agreeing < 1e-3 < disagreeing  # a hit ray on the mask / a missed ray off it cost nothing


def test_sdf_network_starts_as_a_sphere_whatever_the_conditioning() -> None:
    torch.manual_seed(0)
    net = SDFNetwork(condition_dim=5, feature_dim=4, num_levels=4, log2_hashmap_size=10, max_res=32,
                     init_radius=0.6, bound=1.2, implementation="torch")  # fmt: skip
    points = (torch.rand(256, 3) * 2 - 1) * 1.1
    sdf_a, features = net(points, torch.randn(256, 5))
    sdf_b, _ = net(points, torch.randn(256, 5) * 10)
    assert torch.allclose(sdf_a, sdf_b) and features.shape == (256, 4)
    assert torch.allclose(sdf_a[:, 0], points.norm(dim=-1) - 0.6, atol=1e-6)
    (sdf_a.sum() + features.sum()).backward()
    assert net.out.weight.grad[0].abs().sum() > 0  # the residual learns from the start


# ---------------------------------------------------------------------------------------------- a model
@pytest.fixture(scope="module")
def pipeline(tiny_dataset: Path):
    config = copy.deepcopy(discover_methods()[0]["anipixel"])
    config.pipeline.datamanager.data = tiny_dataset
    for key, value in SMALL.items():
        setattr(config.pipeline.model, key, value)
    torch.manual_seed(0)
    pipeline = config.pipeline.setup(device="cpu", test_mode="val")
    pipeline.eval()
    return pipeline


def test_config_is_the_papers() -> None:
    config = discover_methods()[0]["anipixel"]
    model = config.pipeline.model
    assert (model.num_coarse_samples, model.num_fine_samples) == (64, 16)
    assert config.pipeline.datamanager.dataparser.novel_pose
    assert config.max_num_iterations == 150_000 and model.mask_warmup_fraction == pytest.approx(30 / 150)
    assert "--pipeline.model.hash-num-levels" in cpu_overrides("anipixel")


def test_mask_warmup_is_a_fraction_of_the_run_unless_its_steps_are_given() -> None:
    """The paper's 30k of 150k; a run ended by a time budget (the CPU variant, with the benchmarks' large
    max_num_iterations) warms up for a fixed number of steps instead of never leaving the warm-up."""
    config = discover_methods()[0]["anipixel"]
    assert mask_warmup_steps(config.pipeline.model, config.max_num_iterations) == 30_000
    cpu = cpu_variant(config)
    assert cpu.pipeline.model.mask_warmup_steps == 100
    assert mask_warmup_steps(cpu.pipeline.model, 100_000) == 100


def test_backward_then_forward_skinning_returns_the_point_at_initialisation(pipeline) -> None:
    model, catalog = pipeline.model, pipeline.datamanager.catalog
    frame_key = catalog.frame_keys_of_split("test")[0]
    target = model.target_of_dataset_view(frame_key, catalog.subject(frame_key).target_cameras[0])
    sources = model.sources_for(target)
    cond = model.condition(target, sources)  # target pose = observation pose
    assert torch.equal(cond.target_pose.transforms, cond.observation_pose.transforms)
    torch.manual_seed(1)
    surface = cond.target_pose.vertices[0][torch.unique(catalog.bodies.model.faces)]
    points = surface + torch.randn_like(surface) * 0.01  # near the body
    with torch.no_grad():
        canonical, backward_weights, delta_t, _ = model.skin_to_canonical(points, cond)
        observed, forward_weights, delta_o = model.skin_to_observation(canonical, backward_weights[:, -1], cond)
    assert delta_t.abs().max() == 0 and delta_o.abs().max() == 0  # the displacement starts at zero
    assert (canonical - points).norm(dim=-1).median() > 0.1  # canonical space is elsewhere
    error = (observed - points).norm(dim=-1)
    print("x_t -> x_c -> x_o error (m): median", error.median().item(), "p95", error.quantile(0.95).item())
    assert error.median() < 0.005 and error.quantile(0.95) < 0.03
    # at initialisation the learnable forward weights are the canonical body's SMPL weights (w_init)
    grid_weights = model.weight_field.initial_weights(canonical, cond.subject.grid)
    foreground = backward_weights[:, -1] == 0
    assert torch.allclose(forward_weights[foreground, :24], grid_weights[foreground], atol=1e-5)
    # ... and a different observation pose moves the points with the body
    other = catalog.frame_key(catalog.frame_keys[frame_key][0], 1)
    target.source_frame_key = other
    moved = model.condition(target, model.sources_for(target))
    with torch.no_grad():
        canonical, w, _, _ = model.skin_to_canonical(points, moved)
        observed, _, _ = model.skin_to_observation(canonical, w[:, -1], moved)
    expected = moved.observation_pose.vertices[0][torch.unique(catalog.bodies.model.faces)]
    assert (observed - expected).norm(dim=-1).median() < 0.02


def test_body_features_vanish_off_the_body_like_density(pipeline) -> None:
    """Heatmaps and dense pose are body features: zero where the backward skinning says background (so the volumetric
    heatmap of the 3D keypoints has no peaks there), untouched on the body."""
    model, catalog = pipeline.model, pipeline.datamanager.catalog
    frame_key = catalog.frame_keys_of_split("test")[0]
    target = model.target_of_dataset_view(frame_key, catalog.subject(frame_key).target_cameras[0])
    sources = model.sources_for(target)
    cond = model.condition(target, sources)
    surface = cond.target_pose.vertices[0][torch.unique(catalog.bodies.model.faces)][:200]
    box = catalog.frame(frame_key).bbox.to(surface)
    corners = box[0] + (box[1] - box[0]) * torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.0, 1.0, 0.0]])
    with torch.no_grad():
        fields_ = model.query_points(target, sources, cond, torch.cat([surface, corners]))
        background = model.skin_to_canonical(corners, cond)[1][:, -1]
    assert torch.equal(background, torch.ones(3))  # the box's corners are far from the body
    for name in ("density", "heatmap", "densepose"):
        assert fields_[name][200:].abs().max() == 0, name
        assert fields_[name][:200].abs().min() > 0, name  # sigmoid heads and the SDF density are positive on the body


def test_novel_pose_renders_frame_t_from_the_source_views_of_frame_s(pipeline, monkeypatch) -> None:
    model, manager = pipeline.model, pipeline.datamanager
    catalog, dataset = manager.catalog, manager.eval_dataset
    index = dataset.protocols.index("novel_pose")
    frame_key, camera_index = dataset.views[index]
    observed = dataset.source_frame_keys[index]
    assert observed != frame_key
    camera, _ = manager.image_batch(dataset, index)
    loaded: List[int] = []
    source_images = catalog.source_images
    monkeypatch.setattr(catalog, "source_images", lambda key, cams: loaded.append(key) or source_images(key, cams))
    conditions = []
    condition = model.condition
    monkeypatch.setattr(model, "condition", lambda t, s: conditions.append(condition(t, s)) or conditions[-1])
    novel = model.get_outputs_for_camera(camera)
    assert loaded == [observed] and len(conditions) == 1
    cond = conditions[0]
    # the rendered body is frame t's pose, the observed one frame s's
    assert torch.allclose(cond.target_pose.joints, model.frame_body(frame_key).joints[None], atol=1e-5)
    assert torch.allclose(cond.observation_pose.joints, model.frame_body(observed).joints[None], atol=1e-5)
    assert not torch.allclose(cond.target_pose.joints, cond.observation_pose.joints, atol=1e-3)
    own = next(
        i for i, (view, protocol) in enumerate(zip(dataset.views, dataset.protocols))
        if view == (frame_key, camera_index) and protocol == "novel_view"
    )  # fmt: skip
    same = model.get_outputs_for_camera(manager.image_batch(dataset, own)[0])
    assert novel["rgb"].shape == same["rgb"].shape and not torch.allclose(novel["rgb"], same["rgb"])
    assert novel["accumulation"].amax() > 0.5  # the body is rendered


def test_unseen_subjects_take_the_code_of_the_nearest_training_subject_by_shape(pipeline) -> None:
    model, catalog = pipeline.model, pipeline.datamanager.catalog
    for subject_index, subject in enumerate(catalog.subjects):
        frame_key = catalog.frame_key(subject_index, 0)
        betas = catalog.frame(frame_key).smpl_params["shapes"].float().reshape(-1)[:10]
        distances = [float((model._subject_betas(t) - betas).norm()) for t in model.train_subjects]
        expected = int(np.argmin(distances))
        if subject.split == "train":
            assert distances[expected] == 0
        assert model.identity_index(frame_key) == expected


# ---------------------------------------------------------------------------------------------- real tools
def run(args: List[str], cwd: Path, env: Dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [str(BIN / args[0]), *args[1:]], cwd=cwd, capture_output=True, text=True, timeout=900,
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
    )  # fmt: skip
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    return result.stdout + result.stderr


TINY = [
    "--pipeline.datamanager.perceptual-patch-size", "8",
    "--pipeline.model.num-coarse-samples", "8",
    "--pipeline.model.num-fine-samples", "4",
    "--pipeline.model.keypoints-3d-voxel-size", "0.08",
    "--pipeline.datamanager.dataparser.eval-max-views", "2",
]  # fmt: skip


def test_ns_train_eval_render_and_mesh_export(tiny_dataset: Path, tmp_path: Path) -> None:
    work = tmp_path
    run(
        ["ns-train", "anipixel", "--data", str(tiny_dataset), "--output-dir", str(work / "outputs"),
         "--experiment-name", "e2e", "--timestamp", "run", "--max-num-iterations", "3", "--steps-per-save", "2",
         *with_dataparser([*cpu_overrides("anipixel"), *TINY])],
        cwd=work,
    )  # fmt: skip
    config = work / "outputs" / "e2e" / "anipixel" / "run" / "config.yml"
    assert (config.parent / "nerfstudio_models" / "step-000000002.ckpt").exists()
    run(["ns-eval", "--load-config", str(config), "--output-path", "eval.json"], cwd=work)
    results = json.loads((work / "eval.json").read_text())["results"]
    for key in ("psnr", "novel_view/psnr", "novel_pose/psnr", "novel_pose/ssim", "heatmap_mse"):
        assert results.get(key) is not None and math.isfinite(results[key]), key
    assert "novel_pose" in results["notes/novel_pose"]
    # ns-render: an orbit of the test subject's frame 1 animated from the images of its frame 0
    run(["ns-humanfeat-orbit", "--data", str(tiny_dataset), "--output", "orbit.json", "--num-views", "1"], cwd=work)
    run(
        ["ns-render", "camera-path", "--load-config", str(config), "--camera-path-filename", "orbit.json",
         "--rendered-output-names", "rgb", "--output-format", "images", "--output-path", "novel_pose"],
        cwd=work, env={"HUMANFEAT_FRAME": "synth_002:1", "HUMANFEAT_SOURCE_FRAME": "0"},
    )  # fmt: skip
    assert len(list((work / "novel_pose").glob("*.jpg")) + list((work / "novel_pose").glob("*.png"))) == 1
    # the posed SDF surface by marching cubes (ns-humanfeat-mesh's main, in this process)
    ply = anipixel_mesh.main(
        anipixel_mesh.MeshConfig(config, work / "posed.ply", frame=1, source_frame=0, space="posed", voxel_size=0.04)
    )
    header = ply.read_bytes().split(b"end_header\n")[0].decode()
    vertices, faces = (int(header.split(f"element {name} ")[1].split()[0]) for name in ("vertex", "face"))
    assert vertices > 100 and faces > 100
    assert ply.stat().st_size == len(header) + len(b"end_header\n") + 12 * vertices + 13 * faces
    # written in the dataset's world (the files'), not the dataparser's centred one: inside the frame's box there
    start = len(header) + len(b"end_header\n")
    points = np.frombuffer(ply.read_bytes()[start : start + 12 * vertices], dtype="<f4").reshape(-1, 3)
    files_world = ZJUMocapDataParserConfig(data=tiny_dataset, center_subjects=False).setup().catalog
    box = next(s for s in files_world.subjects if s.split == "test").frames[1].bbox.numpy()
    assert (points >= box[0] - 0.05).all() and (points <= box[1] + 0.05).all()


def test_ns_train_and_eval_in_the_human36m_layout(tmp_path: Path) -> None:
    root = tmp_path / "h36m"
    generate(make_spec("tiny", num_subjects=2, num_frames=2, resolution=64, supersample=1, layout="h36m"), root,
             progress=False)  # fmt: skip
    results = train_and_eval(root, "human36m", tmp_path, method="anipixel")
    assert results["psnr"] is not None and math.isfinite(results["psnr"])
