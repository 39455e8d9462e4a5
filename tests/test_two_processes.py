"""Two training processes on the CPU (gloo) through nerfstudio's own launcher.

``ns-train ghnerf ... --machine.num-devices 2 --machine.device-type cpu``: each rank trains on its own subjects, rank 0
alone writes the checkpoint and the logs, and the checkpoint loads. A second check runs nerfstudio's ``launch`` on
the same config with a probe as the per-process function: after one DistributedDataParallel step on different
subjects (different losses) both ranks hold the same gradients, which are the mean of the ranks' own gradients.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import yaml
from nerfstudio.utils.eval_utils import eval_setup

from nerfstudio_humanfeat.configs.cli import with_dataparser
from nerfstudio_humanfeat.configs.cpu import cpu_overrides
from nerfstudio_humanfeat.engine.distributed import install_cpu_launcher
from nerfstudio_humanfeat.engine.trainer import HumanTrainerConfig

BIN = Path(sys.executable).parent
TINY = [
    "--pipeline.datamanager.train-num-rays-per-batch", "128",
    "--pipeline.datamanager.eval-num-rays-per-batch", "128",
    "--pipeline.datamanager.dataparser.eval-max-views", "2",
]  # fmt: skip
STEPS = 4


@pytest.fixture(scope="module")
def two_process_run(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory):
    """(config.yml, console output) of 4 ns-train steps of ghnerf with two CPU processes."""
    work = tmp_path_factory.mktemp("ddp")
    run = ["--output-dir", str(work / "outputs"), "--experiment-name", "ddp", "--timestamp", "run"]
    args = [
        "ghnerf", "--data", str(tiny_dataset), *run,
        *with_dataparser([*cpu_overrides("ghnerf"), *TINY]),
    ]  # fmt: skip
    # Options after the dataparser's: the process count and a short run (cpu_overrides sets the device to cpu).
    split = args.index("zju-mocap")
    args[split:split] = ["--machine.num-devices", "2", "--max-num-iterations", str(STEPS), "--steps-per-save", "2"]
    start = time.monotonic()
    result = subprocess.run(
        [str(BIN / "ns-train"), *args],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")},
    )
    seconds = time.monotonic() - start
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"two-process ns-train failed:\n{output[-6000:]}"
    print(f"two-process ns-train, {STEPS} steps: {seconds:.1f} s wall")
    return work / "outputs" / "ddp" / "ghnerf" / "run" / "config.yml", output


def test_two_processes_train_on_their_own_subjects_and_rank_0_alone_writes(two_process_run, tiny_dataset: Path):
    config_path, output = two_process_run
    config = yaml.load(config_path.read_text(), Loader=yaml.Loader)
    assert isinstance(config, HumanTrainerConfig) and config.machine.num_devices == 2
    ranks = dict(re.findall(r"rank (\d) of 2 \(([^)]*)\)", output))
    assert sorted(ranks) == ["0", "1"], output[-4000:]
    train_subjects = json.loads((tiny_dataset / "splits.json").read_text())["train_subjects"]
    assert sorted(ranks.values()) == sorted(train_subjects)  # one each: disjoint, and together all of them
    run_dir = config_path.parent
    checkpoints = sorted(p.name for p in (run_dir / "nerfstudio_models").iterdir())
    assert checkpoints == [f"step-{STEPS - 1:09d}.ckpt"]  # save_only_latest_checkpoint, written once (rank 0)
    events = list(run_dir.glob("events.out.tfevents.*"))
    assert len(events) == 1, events  # rank 0 alone has the tensorboard writer
    _, loaded, _, step = eval_setup(config_path, test_mode="test")
    assert step == STEPS - 1
    assert not any(key.startswith("module.") for key in loaded.model.state_dict())  # DDP's prefix is gone


def probe_ranks(local_rank: int, world_size: int, config, global_rank: int = 0) -> None:
    """Per-process function for nerfstudio's ``launch``: one DDP step; rank 0 writes what both ranks saw."""
    torch.manual_seed(config.machine.seed + global_rank)
    trainer = config.setup(local_rank=local_rank, world_size=world_size)
    trainer.setup()
    pipeline = trainer.pipeline
    pipeline.train()
    params = [p for p in pipeline.model.parameters() if p.requires_grad]
    ddp = pipeline._model

    def step(sync: bool):
        for p in params:
            p.grad = None
        _, losses, _ = pipeline.get_train_loss_dict(0) if sync else no_sync_loss(pipeline, ddp)
        loss = sum(losses.values())
        loss.backward()
        grads = [(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in params]
        return float(loss), torch.cat(grads)

    # The same batch twice: first each rank's own gradient (no all-reduce), then DDP's.
    pipeline.datamanager.config.prefetch = False
    state = pipeline.datamanager._rng.getstate(), pipeline.datamanager._torch_rng.get_state(), torch.get_rng_state()
    loss, own = step(sync=False)
    pipeline.datamanager._rng.setstate(state[0])
    pipeline.datamanager._torch_rng.set_state(state[1])
    torch.set_rng_state(state[2])
    _, synced = step(sync=True)
    losses = [torch.zeros(1) for _ in range(world_size)]
    owns = [torch.zeros_like(own) for _ in range(world_size)]
    synceds = [torch.zeros_like(synced) for _ in range(world_size)]
    dist.all_gather(losses, torch.tensor([loss]))
    dist.all_gather(owns, own)
    dist.all_gather(synceds, synced)
    if global_rank == 0:
        mean = torch.stack(owns).mean(0)
        report = {
            "losses": [float(x) for x in losses],
            "ranks_equal": bool(torch.equal(synceds[0], synceds[1])),
            "own_differ": float((owns[0] - owns[1]).abs().max()),
            "mean_error": float((synceds[0] - mean).abs().max()),
            "scale": float(mean.abs().max()),
        }
        Path(os.environ["HUMANFEAT_DDP_PROBE"]).write_text(json.dumps(report))


def no_sync_loss(pipeline, ddp):
    with ddp.no_sync():
        return pipeline.get_train_loss_dict(0)


def test_gradients_are_averaged_over_the_processes(two_process_run, tmp_path: Path, monkeypatch):
    from nerfstudio.scripts import train as ns_train

    config_path, _ = two_process_run
    config = yaml.load(config_path.read_text(), Loader=yaml.Loader)
    config.output_dir = tmp_path
    config.vis = "tensorboard"
    report = tmp_path / "probe.json"
    monkeypatch.setenv("HUMANFEAT_DDP_PROBE", str(report))
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "1"))
    assert install_cpu_launcher()  # what ns-train's HumanTrainerConfig.save_config does before launching
    ns_train.launch(probe_ranks, num_devices_per_machine=2, device_type="cpu", config=config)
    result = json.loads(report.read_text())
    print(f"DDP probe: {result}")
    assert result["losses"][0] != result["losses"][1], result  # the ranks trained on different subjects
    assert result["own_differ"] > 0, result  # so their own gradients differ,
    assert result["ranks_equal"], result  # but after DDP's backward both hold the same gradient:
    assert result["mean_error"] <= 1e-5 * max(result["scale"], 1.0), result  # the mean of theirs
