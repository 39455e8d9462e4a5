"""ns-train with a wall-clock budget: the same command line, and training stops, saving its checkpoint, in time.

    python -m nerfstudio_humanfeat.scripts.train_budget 300 ghnerf --data data/synth-bench [ns-train flags...]

The first argument is the budget in seconds of training (after setup; 0: none), the rest is an ns-train command
line, parsed by ns-train's own parser. When the budget is spent, nerfstudio's ``Trainer.shutdown`` ends the loop
after the current step and the trainer saves its final checkpoint as usual. One process (no multi-GPU launch).
"""

from __future__ import annotations

import sys
import threading
from typing import List, Optional

import tyro
from nerfstudio.configs.method_configs import AnnotatedBaseConfigUnion
from nerfstudio.engine.trainer import TrainerConfig
from nerfstudio.scripts.train import _set_random_seed


def train_with_budget(config: TrainerConfig, seconds: Optional[float]) -> None:
    """ns-train's main for one process; with ``seconds``, training stops once that much time has passed."""
    if config.data:
        config.pipeline.datamanager.data = config.data
    config.set_timestamp()
    config.save_config()
    _set_random_seed(config.machine.seed)
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    timer = threading.Timer(seconds, trainer.shutdown) if seconds else None
    if timer is not None:
        timer.start()
    try:
        trainer.train()
    finally:
        if timer is not None:
            timer.cancel()
            timer.join()  # a timer thread left at interpreter exit aborts the process


def main(argv: List[str]) -> None:
    if not argv:
        raise SystemExit(__doc__)
    seconds = float(argv[0])
    train_with_budget(tyro.cli(AnnotatedBaseConfigUnion, args=argv[1:]), seconds if seconds > 0 else None)


if __name__ == "__main__":
    main(sys.argv[1:])
