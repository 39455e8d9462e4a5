"""SIGINT/SIGTERM during a real ns-train: the last step is checkpointed, and --load-dir resumes from it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from nerfstudio_humanfeat.configs.cpu import cpu_overrides
from nerfstudio_humanfeat.engine.interrupt import INTERRUPT_EXIT_CODE

BIN = Path(sys.executable).parent
FAST = [
    "--pipeline.datamanager.train-num-rays-per-batch",
    "128",
    "--pipeline.datamanager.eval-num-rays-per-batch",
    "128",
]


def ns_train(data: Path, work: Path, *extra: str) -> subprocess.Popen:
    args = [
        str(BIN / "ns-train"), "enerf-heatmap", "--data", str(data), "--output-dir", str(work / "outputs"),
        "--experiment-name", "interrupt", "--timestamp", "run", *cpu_overrides("enerf-heatmap"), *FAST,
        "--steps-per-eval-batch", "100000", "--steps-per-eval-image", "100000", *extra,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(args, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def wait_for(process: subprocess.Popen, text: str, timeout: float) -> str:
    seen, start = [], time.time()
    assert process.stdout is not None
    while time.time() - start < timeout:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        seen.append(line)
        if text in line:
            return "".join(seen)
    process.kill()
    raise AssertionError(f"{text!r} not printed within {timeout} s:\n{''.join(seen)[-4000:]}")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_checkpoints_the_last_step_and_load_dir_resumes(tiny_dataset: Path, tmp_path: Path, signum):
    models = tmp_path / "outputs" / "interrupt" / "enerf-heatmap" / "run" / "nerfstudio_models"
    process = ns_train(tiny_dataset, tmp_path, "--max-num-iterations", "100000", "--steps-per-save", "100000")
    wait_for(process, "training views", timeout=300)
    time.sleep(8.0)  # a few steps
    process.send_signal(signum)
    output, _ = process.communicate(timeout=300)
    assert process.returncode == INTERRUPT_EXIT_CODE, output[-4000:]
    assert "saving a checkpoint after this step" in output and "Resume with" in output
    checkpoints = sorted(models.iterdir())
    assert len(checkpoints) == 1, checkpoints
    state = torch.load(checkpoints[0], map_location="cpu")
    step = state["step"]
    assert checkpoints[0].name == f"step-{step:09d}.ckpt" and step >= 1
    adam_steps = {int(s["step"]) for s in state["optimizers"]["fields"]["state"].values()}
    assert adam_steps == {step + 1}  # every step taken is in the optimiser state
    if signum == signal.SIGINT:
        return  # resuming does not depend on the signal: once is enough
    resumed = ns_train(tiny_dataset, tmp_path, "--max-num-iterations", "2", "--load-dir", str(models))
    output, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, output[-4000:]
    assert "Done loading Nerfstudio checkpoint" in output
    final = torch.load(models / f"step-{step + 2:09d}.ckpt", map_location="cpu")
    assert {int(s["step"]) for s in final["optimizers"]["fields"]["state"].values()} == {step + 3}
