"""Every registered method through nerfstudio's real tools: ns-train, its checkpoint, ns-eval and ns-render."""

from __future__ import annotations

import gzip
import json
import math
import os
import statistics
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Dict, List

import imageio_ffmpeg
import matplotlib
import mediapy
import numpy as np
import pytest
import torch
from nerfstudio.utils.eval_utils import eval_setup

from nerfstudio_humanfeat.capture.estimator import mediapipe_available
from nerfstudio_humanfeat.configs.cli import with_dataparser
from nerfstudio_humanfeat.configs.cpu import cpu_overrides
from nerfstudio_humanfeat.keypoints import draw_skeleton, extract_keypoints_2d, keypoint_valid
from nerfstudio_humanfeat.metrics import masked_ssim
from nerfstudio_humanfeat.skeleton import BODY25_TORSO

BIN = Path(sys.executable).parent
METHODS = ["ghnerf", "ghnerf-dino", "ghnerf-resnet18", "enerf-heatmap", "hfnerf", "hfnerf-dino"]
TINY = [
    "--pipeline.datamanager.train-num-rays-per-batch", "128",
    "--pipeline.datamanager.eval-num-rays-per-batch", "128",
    "--pipeline.datamanager.dataparser.eval-max-views", "2",
]  # fmt: skip
TINY_METHOD = {"hfnerf": ["--pipeline.model.num-coarse-samples", "8", "--pipeline.model.num-fine-samples", "8"]}


def run(args: List[str], cwd: Path, env: Dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [str(BIN / args[0]), *args[1:]],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, **(env or {})},
    )
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    return result.stdout + result.stderr


@pytest.fixture(scope="module", params=METHODS)
def trained(request, tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory):
    """(method, config path, work dir) after 3 real ns-train steps on the tiny synthetic data."""
    method = request.param
    work = tmp_path_factory.mktemp(method)
    run(
        ["ns-train", method, "--data", str(tiny_dataset), "--output-dir", str(work / "outputs"),
         "--experiment-name", "e2e", "--timestamp", "run", "--max-num-iterations", "3", "--steps-per-save", "2",
         *with_dataparser([*cpu_overrides(method), *TINY, *TINY_METHOD.get(method.split("-")[0], [])])],
        cwd=work,
    )  # fmt: skip
    config = work / "outputs" / "e2e" / method / "run" / "config.yml"
    assert config.exists()
    assert sorted(p.name for p in config.parent.joinpath("nerfstudio_models").iterdir())[-1] == "step-000000002.ckpt"
    return method, config, work


@pytest.fixture(scope="module")
def loaded(trained):
    """The trained pipeline loaded in this process from its latest checkpoint, as ns-eval and ns-render load it."""
    _, config, _ = trained
    _, pipeline, _, step = eval_setup(config, test_mode="test")
    assert step == 2
    pipeline.eval()
    return pipeline


TURBO = torch.tensor(matplotlib.colormaps["turbo"].colors, dtype=torch.float32)
"""ns-render's colour map of single-channel outputs (and ours of heatmaps): 256 entries indexed by value * 255."""


def uint8(image: torch.Tensor) -> torch.Tensor:
    """A float image as ns-render and ns-eval write it (8 bits), as ints."""
    return torch.from_numpy(mediapy.to_uint8(image.detach().cpu().numpy())).int()


def assert_mean_and_std(results: Dict, key: str, per_view: List[float], tolerance: float) -> None:
    """ns-eval's mean and sample standard deviation of a metric are those of the per-view values given."""
    assert results[key] == pytest.approx(statistics.mean(per_view), abs=tolerance), key
    assert results[f"{key}_std"] == pytest.approx(statistics.stdev(per_view), abs=tolerance), key


def test_ns_eval_loads_the_checkpoint_and_reports_metrics_on_held_out_subjects(trained, loaded, tiny_dataset: Path):
    method, config, work = trained
    args = ["--load-config", str(config), "--output-path", "eval.json", "--render-output-path", "renders"]
    out = run(["ns-eval", *args], cwd=work)
    assert "Done loading checkpoint" in out
    report = json.loads((work / "eval.json").read_text())
    assert Path(report["checkpoint"]).name == "step-000000002.ckpt"
    results = report["results"]
    assert results["lpips"] is None and "VGG16" in results["notes/lpips"]  # no weights here: null, with reason
    pipeline = loaded
    model, catalog, views = pipeline.model, pipeline.datamanager.catalog, pipeline.datamanager.eval_dataset.views
    assert len(views) == 2  # --eval-max-views 2
    per_view: Dict[str, List[float]] = {key: [] for key in ("psnr", "ssim", "heatmap_mse", "densepose_mse")}
    pck_joints, pck_correct = [], []
    for index, (camera, batch) in enumerate(pipeline.datamanager.fixed_indices_eval_dataloader):
        frame_key, camera_index = views[index]
        # ns-eval's saved image: [ground truth | render], 8 bits. The truth is this view's, exactly; the render is
        # what the checkpoint renders here (to the 8-bit rounding), so the metrics below use this process's render.
        saved = torch.from_numpy(mediapy.read_image(work / "renders" / f"eval_img_{index:04d}.png")).int()
        gt = batch["image"].double()
        assert torch.equal(saved[:, : gt.shape[1]], uint8(gt)) and saved.shape[1] == 2 * gt.shape[1]
        assert torch.equal(gt, catalog.load_view(frame_key, camera_index).image.double())
        outputs = model.get_outputs_for_camera(camera)
        rendered = outputs["rgb"].double()
        assert (saved[:, gt.shape[1] :] - uint8(rendered)).abs().max() <= 1
        rig = catalog.subject(frame_key).rig
        mask = model.image_metrics.evaluation_mask(
            catalog.frame(frame_key).bbox,
            rig.intrinsics[camera_index],
            rig.world_to_camera[camera_index],
            *gt.shape[:2],
        )
        assert 0 < int(mask.sum()) < mask.numel()
        per_view["psnr"].append(-10 * math.log10(float(((rendered - gt) ** 2)[mask].mean())))
        per_view["ssim"].append(masked_ssim(rendered, gt, mask))
        valid = keypoint_valid(batch["keypoints2d"])
        heatmap_error = (outputs["heatmap"].double() - batch["heatmap"].double()) ** 2
        per_view["heatmap_mse"].append(float(heatmap_error[mask][:, valid].mean()))
        gt_keypoints = batch["keypoints2d"]
        assert bool(valid[list(BODY25_TORSO)].all())  # PCK is defined: both torso joints are in the ground truth
        torso = float((gt_keypoints[BODY25_TORSO[0], :2] - gt_keypoints[BODY25_TORSO[1], :2]).norm())
        found = extract_keypoints_2d(outputs["heatmap"].permute(2, 0, 1), threshold=model.config.keypoint_threshold)
        close = (found[:, :2] - gt_keypoints[:, :2]).norm(dim=-1) < 0.2 * torso  # nan (missing) is never close
        pck_joints.append(int(valid.sum()))
        pck_correct.append(int((valid & keypoint_valid(found) & close).sum()))
        if "densepose" in outputs:
            densepose_valid = batch["densepose_valid"].reshape(mask.shape).bool()
            densepose_error = (outputs["densepose"].double() - batch["densepose"].double()) ** 2
            per_view["densepose_mse"].append(float(densepose_error[densepose_valid].mean()))
    assert_mean_and_std(results, "psnr", per_view["psnr"], 1e-4)
    assert_mean_and_std(results, "ssim", per_view["ssim"], 1e-5)
    assert_mean_and_std(results, "heatmap_mse", per_view["heatmap_mse"], 1e-6)
    if per_view["densepose_mse"]:
        assert_mean_and_std(results, "densepose_mse", per_view["densepose_mse"], 1e-6)
    else:
        assert results.get("densepose_mse") is None
    assert results["pck_joints"] == pytest.approx(statistics.mean(pck_joints)) and results["pck_joints"] > 0
    assert results["pck_correct"] == pytest.approx(statistics.mean(pck_correct))
    assert results["pck"] == pytest.approx(statistics.mean(c / n for c, n in zip(pck_correct, pck_joints)))
    assert results["pck_pooled"] == pytest.approx(results["pck_correct"] / results["pck_joints"])
    held_out = json.loads((tiny_dataset / "splits.json").read_text())["test_subjects"]
    assert {k.split("/")[1] for k in results if k.startswith("subject/")} == set(held_out)
    views_of = Counter(catalog.subject(frame_key).name for frame_key, _ in views)
    for key in ("psnr", "ssim", "heatmap_mse", "pck", "fps"):  # per-subject means, weighted by their view counts
        weighted = sum(count * results[f"subject/{name}/{key}"] for name, count in views_of.items()) / len(views)
        assert weighted == pytest.approx(results[key]), key
    if mediapipe_available():  # GHNeRF Table 3's baseline beside the rendered keypoints, on the estimator's joints
        assert "mediapipe" in results["notes/pose_baseline"] and 0 <= results["baseline_detected"] <= 1
        assert 0 <= results["pck_baseline_joints"] <= 1 and "baseline_pck" in results
    else:
        assert "not computed" in results["notes/pose_baseline"] and "baseline_pck" not in results


@pytest.mark.parametrize("trained", ["ghnerf", "hfnerf"], indirect=True)
def test_ns_render_writes_features_for_dataset_cameras_and_a_chosen_frame(trained, loaded, tiny_dataset: Path):
    _, config, work = trained
    outputs = ["rgb", "skeleton", "joint_heatmap", "densepose_color", "joint_04_RWrist", "depth"]
    run(
        ["ns-render", "dataset", "--load-config", str(config), "--split", "test", "--output-path", "dataset",
         "--image-format", "png", "--rendered-output-names", *outputs, "raw-heatmap"],
        cwd=work,
    )  # fmt: skip
    split_dir = work / "dataset" / "test"
    dataset, model = loaded.datamanager.eval_dataset, loaded.model
    root = Path(os.path.commonpath(dataset.image_filenames))
    names = [path.relative_to(root).with_suffix(".png") for path in dataset.image_filenames]
    assert len(names) == 2
    for output in outputs:
        assert sorted(p.relative_to(split_dir / output) for p in (split_dir / output).rglob("*.png")) == sorted(names)
    for index, name in enumerate(names):
        rendered = model.get_outputs_for_camera(dataset.cameras[index : index + 1])
        with gzip.open(split_dir / "raw-heatmap" / name.with_suffix(".npy.gz")) as handle:
            heatmap = torch.from_numpy(np.load(handle))
        assert torch.allclose(heatmap, rendered["heatmap"], atol=1e-5)  # this view's frame, with the checkpoint
        written = {output: torch.from_numpy(mediapy.read_image(split_dir / output / name)).int() for output in outputs}
        assert (written["rgb"] - uint8(rendered["rgb"])).abs().max() <= 1
        wrist = TURBO[(heatmap[..., 4].clamp(0, 1) * 255).long()]  # BODY_25 joint 4, the right wrist
        assert (written["joint_04_RWrist"] - uint8(wrist)).abs().max() <= 1
        peak = TURBO[(heatmap.amax(dim=-1).clamp(0, 1) * 255).long()]  # the maximum over joints
        assert (written["joint_heatmap"] - uint8(peak)).abs().max() <= 1
        assert (written["densepose_color"] - uint8(rendered["densepose"][..., :3].clamp(0, 1))).abs().max() <= 1
        keypoints = extract_keypoints_2d(heatmap.permute(2, 0, 1), threshold=model.config.keypoint_threshold)
        skeleton = uint8(draw_skeleton(rendered["rgb"], keypoints))
        assert ((written["skeleton"] - skeleton).abs() > 1).float().mean() < 0.01  # anti-aliased edges aside
    run(["ns-humanfeat-orbit", "--data", str(tiny_dataset), "--output", "orbit.json", "--num-views", "3"], cwd=work)
    orbit = json.loads((work / "orbit.json").read_text())
    assert len(orbit["camera_path"]) == 3
    run(
        ["ns-render", "camera-path", "--load-config", str(config), "--camera-path-filename", "orbit.json",
         "--rendered-output-names", "rgb", "skeleton", "--output-path", "orbit.mp4"],
        cwd=work,
    )  # fmt: skip
    video = str(work / "orbit.mp4")
    assert imageio_ffmpeg.count_frames_and_secs(video)[0] == 3  # one frame per camera of the path
    size = (2 * orbit["render_width"], orbit["render_height"])  # rgb and skeleton side by side
    assert next(imageio_ffmpeg.read_frames(video))["size"] == size
