"""The trainer config of every registered method: nerfstudio's, plus what a CPU-only machine needs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from nerfstudio.engine.trainer import TrainerConfig
from nerfstudio.utils.rich_utils import CONSOLE

from nerfstudio_humanfeat.engine.cpu_allocator import keep_freed_memory
from nerfstudio_humanfeat.engine.distributed import install_cpu_launcher


@dataclass
class HumanTrainerConfig(TrainerConfig):
    """nerfstudio's trainer config. Without CUDA, ns-train trains on the CPU (and says so) instead of failing, and
    ``--machine.num-devices N`` also runs N processes on the CPU."""

    cpu_keep_freed_memory: bool = True
    """On the CPU, keep freed memory in the process instead of returning it to the kernel at every step (glibc's
    malloc thresholds; +16 % ghnerf-cpu steps/s, engine/cpu_allocator.py, which also says how to add huge pages)."""

    def use_cpu_without_cuda(self) -> bool:
        """Switch ``machine.device_type`` from cuda to cpu when torch sees no CUDA device; True when it switched."""
        if self.machine.device_type != "cuda" or torch.cuda.is_available():
            return False
        self.machine.device_type = "cpu"
        CONSOLE.print(
            "[bold yellow]humanfeat[/bold yellow]: no CUDA device, training on the CPU "
            f"(CPU-sized settings: ns-train {self.method_name}-cpu)"
            if not self.method_name.endswith("-cpu")
            else "[bold yellow]humanfeat[/bold yellow]: no CUDA device, training on the CPU"
        )
        return True

    def setup(self, **kwargs: Any) -> Any:
        """nerfstudio's trainer, after the CPU allocator settings of ``cpu_keep_freed_memory``."""
        self.use_cpu_without_cuda()
        if self.machine.device_type == "cpu" and self.cpu_keep_freed_memory:
            keep_freed_memory()
        return super().setup(**kwargs)

    def print_to_terminal(self) -> None:
        """nerfstudio's, after the device is settled (ns-train calls this first, then save_config, then launch)."""
        self.use_cpu_without_cuda()
        super().print_to_terminal()

    def save_config(self) -> None:
        """Save config.yml (nerfstudio), and let ns-train's launcher start CPU processes (it is called just before)."""
        self.use_cpu_without_cuda()
        if self.machine.num_devices * self.machine.num_machines > 1 and self.machine.device_type != "cuda":
            install_cpu_launcher()
        super().save_config()
