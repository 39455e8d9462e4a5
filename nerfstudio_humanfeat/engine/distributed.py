"""Several training processes on the CPU through nerfstudio's own launcher.

``ns-train <method> ... --machine.num-devices 2 --machine.device-type cpu`` spawns one process per device with
nerfstudio's ``launch``, but nerfstudio 1.1.5's spawned worker asserts that CUDA is available (and that there are as
many GPUs as processes) before it starts gloo, and its pipeline wraps the model in DistributedDataParallel with
``device_ids=[rank]``, which torch rejects for a CPU model. This plugin fixes both without touching nerfstudio:

- ``HumanTrainerConfig`` (``engine.trainer``, the trainer config of every registered method) swaps nerfstudio's
  spawned worker for ``cpu_distributed_worker`` when ns-train saves the config, just before it launches the processes;
  the worker
  starts a gloo process group for CPU (and MPS) devices and hands CUDA to nerfstudio's worker unchanged.
- ``HumanPipeline`` wraps its model in DistributedDataParallel without device ids on the CPU (see
  ``ddp_wrap``), so gradients are averaged over the processes by gloo.

Each rank trains on its own subjects (``HumanDataManager.setup_train``); rank 0 alone evaluates, logs and writes
checkpoints (nerfstudio's ``check_main_thread``).
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any, Callable

import torch
import torch.distributed as dist
from nerfstudio.engine.trainer import TrainerConfig
from torch.nn.parallel import DistributedDataParallel as DDP

DEFAULT_TIMEOUT = timedelta(minutes=30)
"""nerfstudio's timeout of the process group (``nerfstudio.scripts.train.DEFAULT_TIMEOUT``)."""


def cpu_distributed_worker(
    local_rank: int,
    main_func: Callable,
    world_size: int,
    num_devices_per_machine: int,
    machine_rank: int,
    dist_url: str,
    config: TrainerConfig,
    timeout: timedelta = DEFAULT_TIMEOUT,
    device_type: str = "cuda",
) -> Any:
    """nerfstudio's ``_distributed_worker`` (same arguments) for CPU and MPS processes: a gloo process group and
    nerfstudio's local groups, without its CUDA assertions; CUDA goes to nerfstudio's own worker."""
    from nerfstudio.scripts import train as ns_train
    from nerfstudio.utils import comms

    if device_type == "cuda":
        original = getattr(ns_train, "_nerfstudio_distributed_worker", ns_train._distributed_worker)
        args = (main_func, world_size, num_devices_per_machine, machine_rank, dist_url, config, timeout, device_type)
        return original(local_rank, *args)
    if "OMP_NUM_THREADS" not in os.environ:  # share the cores instead of each process taking all of them
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // num_devices_per_machine))
    global_rank = machine_rank * num_devices_per_machine + local_rank
    dist.init_process_group(
        backend="gloo", init_method=dist_url, world_size=world_size, rank=global_rank, timeout=timeout
    )
    assert comms.LOCAL_PROCESS_GROUP is None
    for machine in range(world_size // num_devices_per_machine):
        ranks = list(range(machine * num_devices_per_machine, (machine + 1) * num_devices_per_machine))
        group = dist.new_group(ranks)
        if machine == machine_rank:
            comms.LOCAL_PROCESS_GROUP = group
    try:
        output = main_func(local_rank, world_size, config, global_rank)
        comms.synchronize()
    finally:
        dist.destroy_process_group()
    return output


def install_cpu_launcher() -> bool:
    """Make ns-train's launcher spawn ``cpu_distributed_worker``; False when ns-train is not the running script.

    nerfstudio's ``launch`` hands ``nerfstudio.scripts.train._distributed_worker`` to ``torch.multiprocessing.spawn``
    by name when it runs, so the swap must happen after that module is loaded (the plugin itself is imported while it
    loads) and before ``launch``: ``HumanTrainerConfig.save_config`` is that moment.
    """
    import sys

    ns_train = sys.modules.get("nerfstudio.scripts.train")
    if ns_train is None or not hasattr(ns_train, "_distributed_worker"):
        return False
    if ns_train._distributed_worker is not cpu_distributed_worker:
        ns_train._nerfstudio_distributed_worker = ns_train._distributed_worker
        ns_train._distributed_worker = cpu_distributed_worker
    return True


def ddp_wrap(model: torch.nn.Module, device: str, local_rank: int) -> DDP:
    """The model in DistributedDataParallel, as nerfstudio's VanillaPipeline wraps it on a GPU (``device_ids`` of the
    rank) and as torch requires on the CPU (no ``device_ids``), after a barrier of all ranks."""
    on_gpu = torch.device(device).type == "cuda"
    wrapped = DDP(model, device_ids=[local_rank] if on_gpu else None, find_unused_parameters=True)
    if on_gpu:
        dist.barrier(device_ids=[local_rank])
    else:
        dist.barrier()
    return wrapped


def __getattr__(name: str) -> Any:
    """``HumanTrainerConfig`` lived here before ``engine.trainer``: config.yml files saved then still load."""
    if name == "HumanTrainerConfig":
        from nerfstudio_humanfeat.engine.trainer import HumanTrainerConfig

        return HumanTrainerConfig
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
