"""Two trainings with the same seed on the CPU take the same steps: same batches, same losses."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import List

from nerfstudio.plugins.registry import discover_methods
from nerfstudio.scripts.train import _set_random_seed


def first_losses(data: Path, output: Path, seed: int, steps: int = 3) -> List[float]:
    """Losses of the first steps of ghnerf, set up the way ns-train sets it up."""
    config = copy.deepcopy(discover_methods()[0]["ghnerf"])
    config.machine.device_type = "cpu"
    config.machine.seed = seed
    config.vis = "tensorboard"
    config.output_dir = output
    config.pipeline.datamanager.data = data
    config.pipeline.datamanager.train_num_rays_per_batch = 128
    config.pipeline.datamanager.num_patches = 0
    config.set_timestamp()
    _set_random_seed(config.machine.seed)
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    losses = []
    for step in range(steps):
        loss, _, _ = trainer.train_iteration(step)
        losses.append(float(loss))
    trainer.pipeline.datamanager._worker.shutdown(wait=True)
    return losses


def test_same_seed_same_losses_other_seed_other_losses(tiny_dataset: Path, tmp_path: Path):
    first = first_losses(tiny_dataset, tmp_path / "a", seed=42)
    again = first_losses(tiny_dataset, tmp_path / "b", seed=42)
    other = first_losses(tiny_dataset, tmp_path / "c", seed=7)
    assert first == again
    assert first != other
