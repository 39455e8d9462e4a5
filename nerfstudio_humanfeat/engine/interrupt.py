"""Ctrl-C or SIGTERM during ns-train: finish the step, save a checkpoint of it, then stop.

nerfstudio's launcher catches KeyboardInterrupt mid-step and exits without a checkpoint, and SIGTERM (a cluster's
pre-emption, `kill`) ends the process at once; either loses everything since the last periodic save. Resume with
``ns-train <method> ... --load-dir <run>/nerfstudio_models``: step count, optimisers and schedulers continue.
"""

from __future__ import annotations

import signal
import threading
from typing import Optional

from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackLocation
from nerfstudio.utils.rich_utils import CONSOLE

INTERRUPT_EXIT_CODE = 130
"""Exit status after a checkpointed interrupt (the shell's 128 + SIGINT)."""


class CheckpointOnInterrupt:
    """Signal handlers that defer SIGINT/SIGTERM to the end of the current step; a second signal stops at once."""

    def __init__(self, trainer) -> None:
        self.trainer = trainer
        self.received: Optional[int] = None
        self._previous = {}

    def install(self) -> bool:
        """Installs the handlers (only possible from the main thread); False where they cannot be."""
        if threading.current_thread() is not threading.main_thread():
            return False
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._handle)
        return True

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum, frame) -> None:
        if self.received is not None:
            self.restore()
            raise KeyboardInterrupt
        self.received = signum
        name = signal.Signals(signum).name
        CONSOLE.print(
            f"[bold yellow]humanfeat[/bold yellow]: {name}: saving a checkpoint after this step (again: quit now)"
        )

    def after_step(self, step: int) -> None:
        if self.received is None:
            return
        self.trainer.save_checkpoint(step)
        path = self.trainer.checkpoint_dir / f"step-{step:09d}.ckpt"
        CONSOLE.print(
            f"[bold yellow]humanfeat[/bold yellow]: stopped after step {step}; checkpoint {path}. Resume with the same "
            f"command plus --load-dir {self.trainer.checkpoint_dir}"
        )
        self.restore()
        raise SystemExit(INTERRUPT_EXIT_CODE)

    def callback(self) -> TrainingCallback:
        return TrainingCallback(
            [TrainingCallbackLocation.AFTER_TRAIN_ITERATION], self.after_step, update_every_num_iters=1
        )
