"""Every registered method through nerfstudio's real tools: ns-train, its checkpoint, ns-eval and ns-render."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest

from nerfstudio_humanfeat.configs.cpu import cpu_overrides

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
        ["ns-train", method, "--data", str(tiny_dataset), "--output-dir", "outputs", "--experiment-name", "e2e",
         "--timestamp", "run", "--max-num-iterations", "3", "--steps-per-save", "2", *cpu_overrides(method), *TINY,
         *TINY_METHOD.get(method.split("-")[0], [])],
        cwd=work,
    )  # fmt: skip
    config = work / "outputs" / "e2e" / method / "run" / "config.yml"
    assert config.exists()
    assert sorted(p.name for p in config.parent.joinpath("nerfstudio_models").iterdir())[-1] == "step-000000002.ckpt"
    return method, config, work


def test_ns_eval_loads_the_checkpoint_and_reports_metrics_on_held_out_subjects(trained, tiny_dataset: Path):
    method, config, work = trained
    out = run(["ns-eval", "--load-config", str(config), "--output-path", "eval.json"], cwd=work)
    assert "Done loading checkpoint" in out
    results = json.loads((work / "eval.json").read_text())["results"]
    held_out = json.loads((tiny_dataset / "splits.json").read_text())["test_subjects"]
    assert all(math.isfinite(results[k]) for k in ("psnr", "ssim", "heatmap_mse", "densepose_mse"))
    assert 0.0 <= results["pck"] <= 1.0
    assert results["lpips"] is None and "VGG16" in results["notes/lpips"]  # no weights here: null, with reason
    assert {k.split("/")[1] for k in results if k.startswith("subject/")} == set(held_out)


@pytest.mark.parametrize("trained", ["ghnerf", "hfnerf"], indirect=True)
def test_ns_render_writes_features_for_dataset_cameras_and_a_chosen_frame(trained, tiny_dataset: Path):
    _, config, work = trained
    outputs = ["rgb", "skeleton", "joint_heatmap", "densepose_color", "joint_04_RWrist", "depth"]
    run(
        ["ns-render", "dataset", "--load-config", str(config), "--split", "test", "--output-path", "dataset",
         "--rendered-output-names", *outputs],
        cwd=work,
    )  # fmt: skip
    split_dir = work / "dataset" / "test"
    rendered = {p.relative_to(split_dir).parts[0] for p in split_dir.rglob("*.jpg")}
    assert set(outputs) <= rendered
    run(["ns-humanfeat-orbit", "--data", str(tiny_dataset), "--output", "orbit.json", "--num-views", "3"], cwd=work)
    run(
        ["ns-render", "camera-path", "--load-config", str(config), "--camera-path-filename", "orbit.json",
         "--rendered-output-names", "rgb", "skeleton", "--output-path", "orbit.mp4"],
        cwd=work,
    )  # fmt: skip
    assert (work / "orbit.mp4").stat().st_size > 1000
