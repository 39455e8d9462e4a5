"""Shared pieces of the Human3.6M and RenderPeople layout tests: the generator's truth and a short ns-train/ns-eval."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch

from nerfstudio_humanfeat.configs.cpu import cpu_overrides
from nerfstudio_humanfeat.synth.body_model import build_body_model, load_smpl
from nerfstudio_humanfeat.synth.generator import BODY_MODEL_PATH, SubjectMotion, SynthSpec, animate, plan_subject

BIN = Path(sys.executable).parent


def truth(root: Path, spec: SynthSpec) -> Dict[str, tuple]:
    """Subject name -> (plan, motion, BODY_25 world keypoints (F, 25, 3)) exactly as the generator made them."""
    body = build_body_model()
    smpl = load_smpl(root / BODY_MODEL_PATH)
    out = {}
    for index in range(spec.num_subjects):
        plan = plan_subject(spec, index)
        state: SubjectMotion = animate(plan, spec, smpl, body.surface_vertex_mask())
        out[plan.name] = (plan, state, state.vertices[:, body.body25_vertex_ids()])
    return out


def pinhole_keypoints(points: np.ndarray, K: np.ndarray, R: np.ndarray, T: np.ndarray) -> np.ndarray:
    """(N, 2) undistorted projections in the catalog's pixel convention (OpenCV + 0.5)."""
    cam = points @ R.T + T
    uv = cam @ K.T
    return uv[:, :2] / uv[:, 2:] + 0.5


def train_and_eval(data: Path, dataparser: str, work: Path, method: str = "enerf-heatmap") -> Dict:
    """Two ns-train steps of `method` on `data` through the `dataparser` subcommand, then ns-eval; its results."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def run(args: List[str]) -> str:
        result = subprocess.run(
            [str(BIN / args[0]), *args[1:]], cwd=work, capture_output=True, text=True, timeout=900, env=env
        )
        assert result.returncode == 0, f"{' '.join(args)}:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
        return result.stdout + result.stderr

    out = run(
        ["ns-train", method, "--data", str(data), "--output-dir", str(work / "outputs"), "--experiment-name", "e2e",
         "--timestamp", "run", "--max-num-iterations", "2", "--steps-per-save", "1", *cpu_overrides(method),
         "--pipeline.datamanager.train-num-rays-per-batch", "64",
         "--pipeline.datamanager.eval-num-rays-per-batch", "64",
         dataparser, "--pipeline.datamanager.dataparser.eval-max-views", "1"]
    )  # fmt: skip
    assert f"{dataparser}:" in out
    config = work / "outputs" / "e2e" / method / "run" / "config.yml"
    run(["ns-eval", "--load-config", str(config), "--output-path", "eval.json"])
    return json.loads((work / "eval.json").read_text())["results"]


def as_numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().double().numpy()
