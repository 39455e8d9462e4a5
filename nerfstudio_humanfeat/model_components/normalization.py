"""Which statistics the BatchNorm layers of a model normalise with when it renders (eval mode)."""

from __future__ import annotations

from typing import List

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


def trainable_batchnorms(module: nn.Module) -> List[_BatchNorm]:
    """The BatchNorm layers of ``module`` that are trained (a frozen encoder's layers keep their statistics)."""
    return [m for m in module.modules() if isinstance(m, _BatchNorm) and any(p.requires_grad for p in m.parameters())]


def set_eval_batch_statistics(module: nn.Module, enabled: bool) -> None:
    """With ``enabled``, the trained BatchNorm layers of an eval-mode ``module`` normalise with the statistics of
    the batch they see, as in training, and leave their running statistics untouched; otherwise they are restored
    to PyTorch's behaviour (running statistics in eval mode). Call after ``module.train(mode)``.

    A generalizable model's batch at a render is what it is at a training step (one camera's source views, one
    cost volume), so batch statistics make both compute the same function. Running statistics lag behind weights
    that move fast (short, high-lr CPU trainings from random initialisation) and then differ from every batch.
    """
    batch_statistics = enabled and not module.training
    for layer in trainable_batchnorms(module):
        layer.train(module.training or batch_statistics)
        layer.track_running_stats = not batch_statistics
