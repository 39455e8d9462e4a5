"""Test helpers for the VGG-based loss and metric: an empty hub cache, no downloads, a stand-in weights file."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest
import torch
import torchvision.models._api
from torchvision.models.vgg import cfgs, make_layers

from nerfstudio_humanfeat.model_components.pretrained_vgg import VGG16_FILENAME


def _refuse(*args, **kwargs):
    raise AssertionError(f"attempted download: {args[:1]}")


def isolate_hub_and_forbid_downloads(monkeypatch: pytest.MonkeyPatch, torch_home: Path) -> Path:
    """Points torch's hub cache at ``torch_home`` and makes every download path raise; returns the cache file."""
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", _refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", _refuse)
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", _refuse)
    monkeypatch.setattr(urllib.request, "urlopen", _refuse)
    return torch_home / "hub" / "checkpoints" / VGG16_FILENAME


def write_stand_in_vgg16(path: Path, seed: int = 0) -> dict:
    """Writes a torchvision-format VGG16 state dict (features only, seeded random values) and returns it."""
    torch.manual_seed(seed)
    state = {f"features.{k}": v for k, v in make_layers(cfgs["D"]).state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return state
