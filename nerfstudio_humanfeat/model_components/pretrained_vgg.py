"""Locating and loading ImageNet VGG16 weights for the perceptual loss and the LPIPS metric, without downloading.

Both the VGG perceptual loss and LPIPS-VGG need torchvision's ImageNet VGG16 weights. They are looked up in the
file torchvision itself would cache (``<torch hub dir>/checkpoints/vgg16-397923af.pth``) or at an explicit path.
When the file is absent, callers turn themselves off instead of using random weights: nothing here downloads.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple, Union

import torch
from torch import nn

VGG16_URL = "https://download.pytorch.org/models/vgg16-397923af.pth"
"""torchvision's ``VGG16_Weights.IMAGENET1K_V1`` URL; its basename is the cache file name."""
VGG16_FILENAME = os.path.basename(VGG16_URL)

PathLike = Union[str, Path]


@dataclass(frozen=True)
class WeightsLookup:
    """Where VGG16 weights were looked for and what was found."""

    path: Optional[Path]
    """The weights file, or None when none was found."""
    searched: Tuple[Path, ...]
    """Every location that was checked, in order."""

    @property
    def available(self) -> bool:
        return self.path is not None

    def reason(self, user: str) -> str:
        """One line saying why ``user`` is off (empty when weights were found)."""
        if self.available:
            return ""
        places = ", ".join(str(p) for p in self.searched)
        return f"{user} disabled: ImageNet VGG16 weights not found (looked at {places}); nothing is downloaded."


def torchvision_cache_path() -> Path:
    """The file torchvision would download VGG16's ImageNet weights to."""
    return Path(torch.hub.get_dir()) / "checkpoints" / VGG16_FILENAME


def find_vgg16_weights(path: Optional[PathLike] = None) -> WeightsLookup:
    """Looks for VGG16 ImageNet weights: at ``path`` when given (and only there), else in torchvision's cache."""
    candidates = (Path(path).expanduser(),) if path is not None else (torchvision_cache_path(),)
    found = next((c for c in candidates if c.is_file()), None)
    return WeightsLookup(path=found, searched=candidates)


def warn_unavailable(lookup: WeightsLookup, user: str) -> None:
    """Emits the one-line warning for a user of missing weights."""
    warnings.warn(lookup.reason(user), RuntimeWarning, stacklevel=3)


def _features_state_dict(path: Path) -> dict:
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    features = {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")}
    if not features:
        raise ValueError(f"{path} holds no 'features.*' tensors: not a torchvision VGG16 state dict.")
    return features


def load_vgg16_features(path: PathLike) -> nn.Sequential:
    """torchvision's VGG16 convolutional trunk (``vgg16().features``), frozen, in eval mode, loaded from ``path``."""
    from torchvision.models.vgg import cfgs, make_layers

    features = make_layers(cfgs["D"])
    features.load_state_dict(_features_state_dict(Path(path)))
    return features.eval().requires_grad_(False)


def build_lpips_vgg(path: PathLike) -> nn.Module:
    """``lpips.LPIPS(net='vgg')`` with its shipped linear heads and the VGG16 trunk loaded from ``path``.

    The trunk is built with ``pnet_rand=True`` (torchvision ``weights=None``: no download) and then loaded from the
    file, so the result equals ``lpips.LPIPS(pretrained=True, net='vgg')`` on a machine with the hub cache.
    """
    import lpips

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torchvision's deprecation notes about `pretrained=False`
        model = lpips.LPIPS(pretrained=True, net="vgg", pnet_rand=True, verbose=False)
    trunk = load_vgg16_features(path)
    for stage in (model.net.slice1, model.net.slice2, model.net.slice3, model.net.slice4, model.net.slice5):
        for name, module in stage.named_children():
            module.load_state_dict(trunk[int(name)].state_dict())
    return model.eval().requires_grad_(False)
