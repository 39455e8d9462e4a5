"""Compatibility fixes for the pinned nerfstudio / torch pair."""

from __future__ import annotations

import numpy as np
import torch


def allow_numpy_in_checkpoints() -> None:
    """Let ``torch.load(weights_only=True)`` read the numpy scalars nerfstudio writes into checkpoints.

    nerfstudio 1.1.5 loads checkpoints in ns-eval, ns-render, ns-viewer and on resume with torch's
    default ``weights_only=True`` (torch >= 2.6), which rejects the numpy scalars its trainer saves.
    Registering exactly those types as safe keeps the restricted unpickler for everything else.
    """
    add_safe_globals = getattr(torch.serialization, "add_safe_globals", None)
    if add_safe_globals is None:
        return
    numpy_core = np._core if int(np.__version__.split(".")[0]) >= 2 else np.core
    dtype_classes = {type(np.dtype(code)) for code in "?bBhHiIlLqQefdgFDG"}
    add_safe_globals([numpy_core.multiarray.scalar, np.dtype, *dtype_classes])
