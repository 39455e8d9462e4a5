"""Pre-undistorted view copies: written on first load, identical to a fresh decode, read back without the originals."""

from __future__ import annotations

from pathlib import Path

import torch
from test_real_data_paths import setup_pipeline

from nerfstudio_humanfeat.data import zju_io
from nerfstudio_humanfeat.data.view_cache import DiskViewCache


def test_view_copies_match_the_decoded_views_and_replace_the_originals(tiny_dataset: Path, tmp_path: Path, monkeypatch):
    copies = tmp_path / "copies"
    direct = setup_pipeline("enerf-heatmap", tiny_dataset).datamanager.catalog
    cached = setup_pipeline("enerf-heatmap", tiny_dataset, view_copies=copies).datamanager.catalog
    assert isinstance(cached.view_loader, DiskViewCache)
    views = [(0, 1), (cached.num_frames - 1, 2)]
    first = [cached.load_view(*view) for view in views]
    written = sorted(copies.rglob("*.png"))
    assert len(written) == 2 and not list(copies.rglob(".*"))
    assert "black-d0-union" in written[0].parts[-4]  # the settings, the dilation resolved (splits.json: 0)
    # a fresh catalog reads the copies: decoding an original would now fail
    again = setup_pipeline("enerf-heatmap", tiny_dataset, view_copies=copies).datamanager.catalog
    again._cache.clear()
    monkeypatch.setattr(zju_io, "read_image", lambda path: (_ for _ in ()).throw(AssertionError(f"decoded {path}")))
    read_back_views = [again.load_view(*view) for view in views]
    monkeypatch.undo()
    for view, fresh, read_back in zip(views, first, read_back_views):
        reference = direct.load_view(*view)
        for loaded in (fresh, read_back):
            assert torch.equal(loaded.rgb8, reference.rgb8) and torch.equal(loaded.mask, reference.mask)
            assert torch.equal(loaded.keypoints2d, reference.keypoints2d)
            assert loaded.densepose is not None and torch.equal(loaded.densepose, reference.densepose)
    assert reference.mask.any() and not reference.mask.all()
