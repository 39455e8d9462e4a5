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
def trained_model(bench_dir: Path):
    _, pipeline, _, _ = eval_setup(bench_dir / "runs" / "bench" / "ghnerf" / "run" / "config.yml", test_mode="test")
    pipeline.eval()
    return pipeline.model


def test_bench_writes_the_table_csv_curves_and_plot(bench_dir: Path):
    table = (bench_dir / "table.md").read_text()
    assert "| Method | PSNR ↑ | SSIM ↑ | LPIPS ↓ | MSE ↓ | PCK ↑ | MPJPE (mm) ↓ | FPS ↑ |" in table
    assert "| GHNeRF+ResNet34 |" in table and "0.438" in table  # our row, then the paper's for reference
    with (bench_dir / "table.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["method"] for r in rows] == ["ghnerf"]
    assert {key for key, _, _ in COLUMNS} <= set(rows[0]) and math.isfinite(float(rows[0]["psnr"]))
    with (bench_dir / "curves.csv").open() as handle:
        assert [int(r["step"]) for r in csv.DictReader(handle)] == [2, 3]
    assert mediapy.read_image(bench_dir / "curves.png").shape[-1] in (3, 4)
    curve = json.loads((bench_dir / "evals" / "ghnerf.json").read_text())
    assert "keypoints3d_detected" in curve[-1][1] and "mpjpe_mm/Neck" in curve[-1][1]


def test_bench_runs_the_budgeted_ns_train_command_line():
    bench = Bench(methods=("hfnerf",), device="cuda", max_steps=None, minutes=5, eval_every=500, eval_max_views=None)
    command = bench.train_command("hfnerf", Path("data"))
    assert command[:3] == ["hfnerf", "--data", "data"]
    assert "--max-num-iterations" not in command and "--pipeline.model.hidden-dim" not in command  # paper settings
    assert command[command.index("--steps-per-save") + 1] == "500"
    cpu = Bench(methods=("hfnerf",), train_args="--pipeline.model.hidden-dim 32").train_command("hfnerf", Path("d"))
    assert cpu[cpu.index("--max-num-iterations") + 1] == "1000" and cpu[-2:] == ["--pipeline.model.hidden-dim", "32"]


def test_keypoints_3d_of_a_trained_model_are_finite_and_inside_the_box(trained_model, monkeypatch):
    model = trained_model
    frame_key = model.catalog.frame_keys_of_split("test")[0]
    monkeypatch.setattr(model.config, "keypoints_3d_threshold", 0.0)  # 4 training steps: keep every peak
    keypoints = model.keypoints_3d(frame_key)
    box = model.catalog.frame(frame_key).bbox
    size = model.config.keypoints_3d_voxel_size
    assert keypoints.shape == (25, 4) and torch.isfinite(keypoints).all() and (keypoints[:, 3] > 0).all()
    assert (keypoints[:, :3] >= box[0] - 1e-5).all() and (keypoints[:, :3] <= box[1] + size).all()


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
    volume = model.heatmap_volume(frame_key, 0.1, camera=model.catalog.subject(frame_key).target_cameras[0])
    assert volume.shape[0] == 25 and volume.dim() == 4 and torch.isfinite(volume).all()
    assert model.keypoint_cameras(frame_key) == [1, 3, 5, 7]  # all target cameras by default, else evenly spread
    model.config.keypoints_3d_cameras = 2
    assert model.keypoint_cameras(frame_key) == [1, 5]


def test_openpose_keypoints_shift_to_integer_pixel_centres_and_zero_missing_joints():
    keypoints = torch.tensor([[10.5, 20.5, 0.75], [math.nan, math.nan, 0.0], [3.0, 4.0, 0.0]])
    assert openpose_keypoints(keypoints).tolist() == [[10.0, 20.0, 0.75], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]


def test_exporter_writes_openpose_json_3d_keypoints_overlays_and_videos(bench_dir: Path, tiny_dataset: Path):
    config = bench_dir / "runs" / "bench" / "ghnerf" / "run" / "config.yml"
    out = bench_dir / "export"
    args = ["--load-config", str(config), "--output-dir", str(out), "--frames", "0", "1", "--cameras", "1"]
    run_module("nerfstudio_humanfeat.scripts.export_keypoints", *args, cwd=bench_dir)
    subject = json.loads((tiny_dataset / "splits.json").read_text())["test_subjects"][0]
    root = out / subject
    (camera_dir,) = (root / "keypoints2d").iterdir()
    openpose = json.loads((camera_dir / "000000_keypoints.json").read_text())
    assert openpose["version"] == 1.3
    pose = np.asarray(openpose["people"][0]["pose_keypoints_2d"]).reshape(25, 3)
    assert np.isfinite(pose).all() and (pose[pose[:, 2] == 0, :2] == 0).all()
    entry = json.loads((root / "keypoints3d" / "000001.json").read_text())
    assert entry[0]["id"] == 0 and np.asarray(entry[0]["keypoints3d"]).shape == (25, 4)
    saved = np.load(root / "keypoints3d" / "000001.npz")
    assert saved["keypoints3d"].shape == (25, 4) and saved["joint_names"].tolist() == BODY25_NAMES
    overlay = mediapy.read_image(root / "overlays" / camera_dir.name / "000001.png")
    assert overlay.shape == (96, 96, 3)
    video = root / "videos" / f"{camera_dir.name}.mp4"
    assert imageio_ffmpeg.count_frames_and_secs(str(video))[0] == 2  # mediapy's reader needs an older ffmpeg
    assert next(imageio_ffmpeg.read_frames(str(video)))["size"] == (96, 96)
