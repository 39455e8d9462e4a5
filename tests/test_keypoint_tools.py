"""3D keypoints from the heatmap field, the keypoint exporter and the benchmark table, on a real tiny ns-train run."""

from __future__ import annotations

import copy
import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import imageio_ffmpeg
import mediapy
import numpy as np
import pytest
import torch
from nerfstudio.plugins.registry import discover_methods
from nerfstudio.utils.eval_utils import eval_setup

from nerfstudio_humanfeat.data.dataparsers.zju_mocap_dataparser import cameras_of_views
from nerfstudio_humanfeat.data.world import translate_keypoints
from nerfstudio_humanfeat.keypoints import (
    draw_skeleton,
    extract_keypoints_2d,
    heatmap_image,
    keypoint_valid,
    volume_grid,
)
from nerfstudio_humanfeat.model_components.projection import project_points
from nerfstudio_humanfeat.scripts.bench import COLUMNS, Bench
from nerfstudio_humanfeat.scripts.export_keypoints import openpose_keypoints
from nerfstudio_humanfeat.skeleton import BODY25_NAMES

TINY_ARGS = "--pipeline.datamanager.train-num-rays-per-batch 128 --pipeline.model.keypoints-3d-voxel-size 0.04"


def run_module(module: str, *args: str, cwd: Path) -> None:
    result = subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, capture_output=True, text=True)
    assert result.returncode == 0, f"{module} failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"


@pytest.fixture(scope="module")
def bench_dir(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ns-humanfeat-bench on the tiny data: ghnerf, 4 steps (a 5-minute budget never reached), checkpoints 2 and 3."""
    out = tmp_path_factory.mktemp("bench")
    args = ["--output-dir", str(out), "--data", str(tiny_dataset), "--methods", "ghnerf", "--max-steps", "4"]
    args += ["--minutes", "5", "--eval-every", "2", "--eval-max-views", "1", f"--train-args={TINY_ARGS}"]
    run_module("nerfstudio_humanfeat.scripts.bench", *args, cwd=out)
    return out


@pytest.fixture(scope="module")
def bench_pipeline(bench_dir: Path):
    """The benchmarked run loaded here, at its last checkpoint (step 3), as the bench evaluated it."""
    _, pipeline, _, step = eval_setup(bench_dir / "runs" / "bench" / "ghnerf" / "run" / "config.yml", test_mode="test")
    assert step == 3
    pipeline.eval()
    return pipeline


@pytest.fixture(scope="module")
def trained_model(bench_pipeline):
    return bench_pipeline.model


def _csv_value(text: str):
    return None if text == "" else float(text)


def test_bench_writes_the_table_csv_curves_and_plot(bench_dir: Path):
    curve = json.loads((bench_dir / "evals" / "ghnerf.json").read_text())
    assert [step for step, _ in curve] == [2, 3]
    assert curve[0][1]["psnr"] != curve[1][1]["psnr"]  # each checkpoint evaluated with its own weights
    final = curve[-1][1]
    table = (bench_dir / "table.md").read_text()
    headers = " | ".join(header for _, header, _ in COLUMNS)
    assert f"| {headers} | Steps | Train (min) |" in table  # the columns in COLUMNS' order
    row = next(line for line in table.splitlines() if line.startswith("| GHNeRF+ResNet34 |"))
    cells = [cell.strip() for cell in row.strip().strip("|").split("|")]
    expected = ["–" if final[key] is None else format(final[key], spec) for key, _, spec in COLUMNS]
    assert cells[1:-1] == [*expected, "3"] and final["lpips"] is None and "–" in cells  # the last checkpoint's
    assert "| 31.61 | 0.966 | 0.050 | 0.0003 | 0.691 |" in table  # the paper's Ours+DINO, for reference
    with (bench_dir / "table.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["method"] for r in rows] == ["ghnerf"] and rows[0]["steps"] == "3"
    for key, _, _ in COLUMNS:
        assert _csv_value(rows[0][key]) == (None if final[key] is None else pytest.approx(final[key])), key
    with (bench_dir / "curves.csv").open() as handle:
        curve_rows = list(csv.DictReader(handle))
    assert [int(r["step"]) for r in curve_rows] == [2, 3]
    for (_, metrics), curve_row in zip(curve, curve_rows):
        for key in ("psnr", "heatmap_mse", "pck", "mpjpe_mm", "keypoints3d_detected"):
            assert _csv_value(curve_row[key]) == (None if metrics[key] is None else pytest.approx(metrics[key]))
    assert mediapy.read_image(bench_dir / "curves.png").shape[-1] in (3, 4)


def test_bench_metrics_are_those_of_the_one_evaluated_view(bench_dir: Path, bench_pipeline):
    """--eval-max-views 1: the last checkpoint's metrics are those of one view, recomputed here from a render."""
    final = json.loads((bench_dir / "evals" / "ghnerf.json").read_text())[-1][1]
    pck_joints = [final[f"pck/{name}"] for name in BODY25_NAMES if final[f"pck/{name}"] is not None]
    assert final["pck_joints"] == len(pck_joints) > 0 and final["pck_correct"] == sum(pck_joints)
    assert final["pck"] == pytest.approx(sum(pck_joints) / len(pck_joints)) == final["pck_pooled"]
    model = bench_pipeline.model
    ((frame_key, camera),) = bench_pipeline.datamanager.eval_dataset.views
    view = model.catalog.load_view(frame_key, camera)
    frame, rig = model.catalog.frame(frame_key), model.catalog.subject(frame_key).rig
    outputs = model.get_outputs_for_camera(cameras_of_views(model.catalog, [(frame_key, camera)]).to(model.device))
    mask = model.image_metrics.evaluation_mask(
        frame.bbox, rig.intrinsics[camera], rig.world_to_camera[camera], rig.height, rig.width
    )
    assert 0 < int(mask.sum()) < mask.numel()
    mse = float(((outputs["rgb"].cpu().double() - view.image.double()) ** 2)[mask].mean())
    assert final["psnr"] == pytest.approx(-10 * math.log10(mse), abs=1e-3)
    sigma = bench_pipeline.datamanager.config.heatmap_sigma
    gt_heatmaps = heatmap_image(rig.height, rig.width, view.keypoints2d, sigma)
    heatmap_error = (outputs["heatmap"].cpu().double() - gt_heatmaps.double()) ** 2
    expected_mse = float(heatmap_error[mask][:, keypoint_valid(view.keypoints2d)].mean())
    assert final["heatmap_mse"] == pytest.approx(expected_mse, rel=1e-4)
    keypoints, truth = model.keypoints_3d(frame_key), frame.keypoints3d
    found = keypoint_valid(keypoints) & keypoint_valid(truth)
    assert final["keypoints3d_detected"] == pytest.approx(int(found.sum()) / int(keypoint_valid(truth).sum()))
    errors_mm = 1000 * (keypoints[found, :3] - truth[found, :3]).norm(dim=-1)
    assert final["mpjpe_mm"] == (pytest.approx(float(errors_mm.mean()), rel=1e-4) if bool(found.any()) else None)
    per_joint = [final[f"mpjpe_mm/{name}"] for name, present in zip(BODY25_NAMES, found.tolist()) if present]
    assert per_joint == pytest.approx(errors_mm.tolist(), rel=1e-4)


def test_bench_runs_the_budgeted_ns_train_command_line():
    bench = Bench(methods=("hfnerf",), device="cuda", max_steps=None, minutes=5, eval_every=500, eval_max_views=None)
    command = bench.train_command("hfnerf", Path("data"))
    assert command[:3] == ["hfnerf", "--data", "data"]
    assert "--max-num-iterations" not in command and "--pipeline.model.hidden-dim" not in command  # paper settings
    assert command[command.index("--steps-per-save") + 1] == "500"
    cpu = Bench(methods=("hfnerf",), train_args="--pipeline.model.hidden-dim 32").train_command("hfnerf", Path("d"))
    assert cpu[cpu.index("--max-num-iterations") + 1] == "1000"
    hidden = [cpu[i + 1] for i, arg in enumerate(cpu) if arg == "--pipeline.model.hidden-dim"]
    assert hidden[-1] == "32"  # the user's train args come last, so they win over the CPU overrides
    parser_at = cpu.index("zju-mocap")  # dataparser options follow the dataparser subcommand
    assert all(not arg.startswith("--pipeline.datamanager.dataparser.") for arg in cpu[:parser_at])


def test_keypoints_3d_are_the_peaks_of_the_heatmap_field_averaged_over_cameras(trained_model, monkeypatch):
    """A heatmap field with known peaks in place of the network: keypoints_3d must find them in world units."""
    model = trained_model
    frame_key = model.catalog.frame_keys_of_split("test")[0]
    box, rig = model.catalog.frame(frame_key).bbox, model.catalog.subject(frame_key).rig
    monkeypatch.setattr(model.config, "keypoints_3d_threshold", 0.1)  # OpenPose's: a realistic threshold
    monkeypatch.setattr(model.config, "keypoints_3d_cameras", 2)
    cameras = model.keypoint_cameras(frame_key)
    assert len(cameras) == 2
    fractions = 0.25 + 0.5 * torch.rand(25, 3, generator=torch.Generator().manual_seed(0))
    joints = box[0] + (box[1] - box[0]) * fractions  # well inside the box
    width = 2 * model.config.keypoints_3d_voxel_size  # Gaussian blobs two voxels wide
    amplitude = torch.ones(2, 25)  # per camera of `cameras`
    amplitude[:, 22] = 0.05  # below the threshold everywhere: missing
    amplitude[:, 23] = torch.tensor([0.24, 0.0])  # the mean over cameras (0.12, 0.086 after the filter) is below
    amplitude[:, 24] = torch.tensor([0.4, 0.0])  # mean 0.2: found, with confidence from the mean
    queried = []

    def field(target, sources, conditioning, points):
        (index,) = [i for i, c in enumerate(cameras) if torch.allclose(target.world_to_camera, rig.world_to_camera[c])]
        queried.append(cameras[index])
        sq_dist = ((points[:, None] - joints.to(points)) ** 2).sum(-1)
        heatmap = amplitude[index].to(points) * torch.exp(-sq_dist / (2 * width**2))
        return {"density": torch.full_like(points[:, :1], 1e3), "heatmap": heatmap, "densepose": points * 0}

    monkeypatch.setattr(model, "query_points", field)
    keypoints = model.keypoints_3d(frame_key)
    assert set(queried) == set(cameras)
    found = torch.ones(25, dtype=torch.bool)
    found[22:24] = False
    assert keypoint_valid(keypoints).tolist() == found.tolist()
    assert torch.isnan(keypoints[~found, :3]).all() and (keypoints[~found, 3] == 0).all()
    assert torch.allclose(keypoints[found, :3], joints[found], atol=width / 8)  # a quarter of a voxel
    size = model.config.keypoints_3d_voxel_size
    nearest = box[0] + ((joints - box[0]) / size).round() * size  # the peak voxel: the grid point closest
    raw_peaks = amplitude.mean(0) * torch.exp(-((nearest - joints) ** 2).sum(-1) / (2 * width**2))
    assert torch.allclose(keypoints[found, 3], raw_peaks[found], atol=1e-5)
    assert keypoints[24, 3] == pytest.approx(0.2, abs=0.03)


def test_triangulated_keypoints_3d_lift_the_rendered_heatmap_peaks(trained_model, monkeypatch):
    """Rendered heatmaps with known 2D peaks (the projections of known joints) in place of the renderer: the
    triangulated 3D keypoints are those joints; a joint found in fewer than two views is missing."""
    model = trained_model
    frame_key = model.catalog.frame_keys_of_split("test")[0]
    box = model.catalog.frame(frame_key).bbox
    monkeypatch.setattr(model.config, "keypoints_3d_method", "triangulated")
    monkeypatch.setattr(model.config, "keypoints_3d_triangulation_views", 3)
    cameras = model.keypoint_cameras(frame_key, 3)
    assert len(cameras) == 3
    fractions = 0.3 + 0.4 * torch.rand(25, 3, generator=torch.Generator().manual_seed(1))
    joints = box[0] + (box[1] - box[0]) * fractions
    rendered = []

    def render_image(rays, target, sources):
        index = len(rendered)
        rendered.append(target.world_to_camera)
        pixels = target.pixel_grid()
        ray_through = rays.origins + rays.directions  # each ray must pass through its own pixel
        uv = project_points(ray_through, target.intrinsics[None], target.world_to_camera[None])[0][0]
        assert torch.allclose(uv, pixels, atol=1e-3)
        peaks = project_points(joints, target.intrinsics[None], target.world_to_camera[None])[0][0]
        amplitude = torch.ones(25)
        amplitude[24] = 0.0 if index > 0 else 1.0  # seen in one view only
        sq_dist = ((pixels[:, None] - peaks) ** 2).sum(-1)
        heatmap = amplitude * torch.exp(-sq_dist / (2 * 2.0**2))
        return {"heatmap": heatmap.reshape(target.height, target.width, 25)}

    monkeypatch.setattr(model, "render_image", render_image)
    keypoints = model.keypoints_3d(frame_key)
    assert len(rendered) == 3
    found = keypoint_valid(keypoints)
    assert found[:24].all() and not found[24] and torch.isnan(keypoints[24, :3]).all() and keypoints[24, 3] == 0
    assert torch.allclose(keypoints[:24, :3], joints[:24], atol=0.01)  # 1 cm at this resolution
    monkeypatch.setattr(model.config, "keypoints_3d_triangulation_views", 1)
    with pytest.raises(ValueError, match="renders at least 2"):
        model.keypoints_3d(frame_key)


def _assert_volume_holds_the_point_queries(model, frame_key: int, size: float) -> None:
    """heatmap_volume(frame, size, camera) at random grid points equals the field queried at those points."""
    camera = model.keypoint_cameras(frame_key)[0]
    volume = model.heatmap_volume(frame_key, size, camera=camera)
    grid = volume_grid(model.catalog.frame(frame_key).bbox, size)
    assert volume.shape == (model.config.num_joints, *grid.shape[:3])
    picks = torch.stack([torch.randint(n, (12,), generator=torch.Generator().manual_seed(n)) for n in grid.shape[:3]])
    picks = torch.cat([picks, torch.tensor(grid.shape[:3])[:, None] - 1], dim=1)  # and the last corner
    target = model.target_of_dataset_view(frame_key, camera)
    sources = model.sources_for(target, exclude=(camera,))
    with torch.no_grad():
        target, _, conditioning = model.conditioned(target, sources)
        fields = model.query_points(target, sources, conditioning, grid[tuple(picks)])
    expected = fields["heatmap"]
    if model.config.keypoints_3d_weighting == "occupancy":
        expected = expected * (1 - torch.exp(-fields["density"] * size))
    assert torch.allclose(volume[(slice(None), *picks)].T, expected, atol=1e-5)
    assert bool((volume >= 0).all()) and bool((volume <= 1).all())


def test_heatmap_volume_of_a_trained_model_holds_its_point_queries(trained_model):
    frame_key = trained_model.catalog.frame_keys_of_split("test")[0]
    _assert_volume_holds_the_point_queries(trained_model, frame_key, 0.1)


def test_ghnerf_point_queries_agree_with_the_samples_it_renders(trained_model):
    model = trained_model
    frame_key = model.catalog.frame_keys_of_split("test")[0]
    target = model.target_of_dataset_view(frame_key, model.catalog.subject(frame_key).target_cameras[0])
    sources = model.sources_for(target)
    centre = target.camera_to_world[:, 3]
    pixels = target.pixel_grid()[::97][:20]
    camera_rays = torch.cat([pixels, torch.ones_like(pixels[:, :1])], -1) @ torch.linalg.inv(target.intrinsics).T
    positions = centre + (camera_rays @ target.world_to_camera[:, :3])[:, None] * torch.linspace(2, 4, 5)[:, None]
    level = model.config.point_query_level
    with torch.no_grad():
        conditioning = model.condition(target, sources)
        origins = centre.expand(len(pixels), 3)
        samples = model.point_features(level, positions, pixels, origins, target, sources, conditioning)
        rendered = model.point_fields(level, samples)
        queried = model.query_points(target, sources, conditioning, positions.reshape(-1, 3))
    for name in ("density", "heatmap", "densepose"):
        assert torch.allclose(queried[name], rendered[name].reshape(len(queried[name]), -1), atol=1e-4), name


def test_hfnerf_point_queries_return_density_heatmaps_and_dense_pose(tiny_dataset: Path):
    config = copy.deepcopy(discover_methods()[0]["hfnerf"])
    config.pipeline.datamanager.data = tiny_dataset
    config.pipeline.model.hidden_dim = 32
    model = config.pipeline.setup(device="cpu", test_mode="val").model.eval()
    frame_key = model.catalog.frame_keys_of_split("test")[0]
    target = model.target_of_dataset_view(frame_key, model.catalog.subject(frame_key).target_cameras[0])
    sources = model.sources_for(target)
    points = target.bbox[0] + torch.rand(50, 3) * (target.bbox[1] - target.bbox[0])
    with torch.no_grad():
        fields = model.query_points(target, sources, model.condition(target, sources), points)
    assert fields["density"].shape == (50, 1) and (fields["density"] >= 0).all()
    assert fields["heatmap"].shape == (50, 25) and fields["densepose"].shape == (50, 3)
    assert bool(((fields["heatmap"] >= 0) & (fields["heatmap"] <= 1)).all())
    assert model.keypoint_cameras(frame_key) == [1, 3, 5, 7]  # all target cameras by default, else evenly spread
    _assert_volume_holds_the_point_queries(model, frame_key, 0.1)
    model.config.keypoints_3d_cameras = 2
    assert model.keypoint_cameras(frame_key) == [1, 5]


def test_openpose_keypoints_shift_to_integer_pixel_centres_and_zero_missing_joints():
    keypoints = torch.tensor([[10.5, 20.5, 0.75], [math.nan, math.nan, 0.0], [3.0, 4.0, 0.0]])
    assert openpose_keypoints(keypoints).tolist() == [[10.0, 20.0, 0.75], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]


def test_exporter_writes_openpose_json_3d_keypoints_overlays_and_videos(
    bench_dir: Path, tiny_dataset: Path, trained_model
):
    config = bench_dir / "runs" / "bench" / "ghnerf" / "run" / "config.yml"
    out = bench_dir / "export"
    args = ["--load-config", str(config), "--output-dir", str(out), "--frames", "0", "1", "--cameras", "1"]
    run_module("nerfstudio_humanfeat.scripts.export_keypoints", *args, cwd=bench_dir)
    model = trained_model
    name = json.loads((tiny_dataset / "splits.json").read_text())["test_subjects"][0]
    subject = next(s for s in model.catalog.subjects if s.name == name)
    frame_key = model.catalog.frame_key(model.catalog.subjects.index(subject), 1)
    stem = f"{subject.frames[1].frame_id:06d}"
    root = out / name
    (camera_dir,) = (root / "keypoints2d").iterdir()
    assert camera_dir.name == subject.rig.names[1]
    # 2D: this view rendered here, its heatmaps' peaks in OpenPose's convention (pixel centres at integers).
    outputs = model.get_outputs_for_camera(cameras_of_views(model.catalog, [(frame_key, 1)]).to(model.device))
    keypoints = extract_keypoints_2d(outputs["heatmap"].permute(2, 0, 1), threshold=model.config.keypoint_threshold)
    shifted = torch.cat([keypoints[:, :2] - 0.5, keypoints[:, 2:]], dim=1)
    expected = torch.where(keypoint_valid(keypoints)[:, None], shifted, torch.zeros_like(shifted))
    openpose = json.loads((camera_dir / f"{stem}_keypoints.json").read_text())
    assert openpose["version"] == 1.3 and len(openpose["people"]) == 1
    pose = torch.tensor(openpose["people"][0]["pose_keypoints_2d"], dtype=torch.float32).reshape(25, 3)
    assert torch.allclose(pose, expected, atol=1e-3)
    overlay = mediapy.read_image(root / "overlays" / camera_dir.name / f"{stem}.png").astype(int)
    drawn = mediapy.to_uint8(draw_skeleton(outputs["rgb"].cpu(), keypoints).numpy()).astype(int)
    assert overlay.shape == drawn.shape == (96, 96, 3)
    assert np.mean(np.abs(overlay - drawn) > 1) < 0.01  # the render with its skeleton (anti-aliased edges aside)
    # 3D: the model's keypoints of frame 1, as npz (nan: missing) and as the dataset's JSON (0: missing).
    keypoints3d = translate_keypoints(model.keypoints_3d(frame_key).cpu(), -model.catalog.world_offset)
    assert float(model.catalog.world_offset.norm()) > 0.1  # so the dataset's world differs from the model's
    saved = np.load(root / "keypoints3d" / f"{stem}.npz")
    assert saved["joint_names"].tolist() == BODY25_NAMES
    assert torch.allclose(torch.from_numpy(saved["keypoints3d"]), keypoints3d, atol=1e-4, equal_nan=True)
    entry = json.loads((root / "keypoints3d" / f"{stem}.json").read_text())
    assert len(entry) == 1 and entry[0]["id"] == 0
    zeroed = torch.where(keypoint_valid(keypoints3d)[:, None], keypoints3d, torch.zeros_like(keypoints3d))
    assert torch.allclose(torch.tensor(entry[0]["keypoints3d"]), zeroed, atol=1e-4)
    assert (root / "keypoints3d" / f"{subject.frames[0].frame_id:06d}.npz").is_file()
    video = root / "videos" / f"{camera_dir.name}.mp4"
    assert imageio_ffmpeg.count_frames_and_secs(str(video))[0] == 2  # mediapy's reader needs an older ffmpeg
    assert next(imageio_ffmpeg.read_frames(str(video)))["size"] == (96, 96)
