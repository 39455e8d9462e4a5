"""Compatibility fixes for the pinned nerfstudio / torch pair."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

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


def find_venv_ffmpeg() -> None:
    """Put the environment's own ffmpeg (``make install`` links imageio-ffmpeg's) on PATH when none is there.

    ns-render checks PATH for ffmpeg before writing a video; a venv's bin folder is not on PATH unless activated.
    """
    venv_bin = Path(sys.prefix) / "bin"
    if shutil.which("ffmpeg") is None and (venv_bin / "ffmpeg").exists():
        os.environ["PATH"] = f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}"


UPSTREAM_NOISE = (
    (FutureWarning, r"`torch\.jit\.script` is deprecated"),
    (FutureWarning, r"`torch\.cuda\.amp\.(custom_fwd|custom_bwd|GradScaler)\(args\.\.\.\)` is deprecated"),
    (UserWarning, r"Using a non-tuple sequence for multidimensional indexing is deprecated"),
    (UserWarning, r"Converting a tensor with requires_grad=True to a scalar may lead to unexpected behavior"),
)
"""Warnings raised inside nerfstudio 1.1.5 and torch by code a user cannot change: torch's deprecations of what
nerfstudio calls, nerfstudio's camera indexing, and its writer logging losses that still carry gradients."""


def silence_upstream_noise() -> None:
    """Ignore exactly the ``UPSTREAM_NOISE`` warnings; every other warning (ours included) still shows."""
    import warnings

    for category, message in UPSTREAM_NOISE:
        warnings.filterwarnings("ignore", message=message, category=category)
