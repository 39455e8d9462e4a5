"""ns-humanfeat-inspect on good and broken datasets in the ZJU-MoCap layout."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Dict

import numpy as np
import pytest
from zju_fixtures import SequenceSpec, SequenceTruth, rewrite_annots, write_dataset

from nerfstudio_humanfeat.scripts.inspect import InspectConfig, entrypoint, main


@pytest.fixture
def dataset(tmp_path) -> Dict[str, SequenceTruth]:
    specs = [
        SequenceSpec(name="CoreView_377", densepose=True),
        SequenceSpec(name="CoreView_313", naming="legacy", keypoints=("openpose",), masks=("mask_cihp",)),
    ]
    return write_dataset(tmp_path, specs)


def run(root: Path, capsys, **kwargs) -> tuple:
    code = main(InspectConfig(data=root, **kwargs))
    return code, capsys.readouterr().out


def test_good_dataset_exits_zero_and_describes_it(tmp_path, dataset, capsys):
    code, out = run(tmp_path, capsys)
    assert code == 0, out
    assert "No problem found" in out and "full decode" in out
    row_377 = next(line for line in out.splitlines() if "CoreView_377" in line and "train" in line)
    assert "annots" in row_377 and "276/300" in row_377 and "mask+cihp" in row_377 and "64>64" in row_377
    row_313 = next(line for line in out.splitlines() if "CoreView_313" in line and "test" in line)
    assert "openpose" in row_313 and "276/300" in row_313 and "cihp" in row_313 and "mask+cihp" not in row_313
    assert "GHNeRF defaults" in out


def test_command_line_flags(tmp_path, dataset, capsys):
    with pytest.raises(SystemExit) as exit_info:
        entrypoint(["--data", str(tmp_path), "--no-check-images", "--subjects", "CoreView_313"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0 and "Checked 12 views (headers only)" in out
    with pytest.raises(SystemExit) as exit_info:
        entrypoint(["--data", str(tmp_path), "--check-images", "--subjects", "CoreView_999"])
    assert exit_info.value.code == 1 and str(tmp_path / "CoreView_999") in capsys.readouterr().out


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-300])


def _write_nan_params(path: Path) -> None:
    params = np.load(path, allow_pickle=True).item()
    params["Th"][0, 1] = np.nan
    np.save(path, params)


Breakage = Callable[[Dict[str, SequenceTruth], Path], Path]
"""Breaks a dataset; returns the file the report must name."""

BREAKAGES: Dict[str, Breakage] = {
    "corrupt image": lambda d, _: _garbage(d["CoreView_377"].root / d["CoreView_377"].image_rel[1][2]),
    "unreadable first image": lambda d, _: _garbage(d["CoreView_313"].root / d["CoreView_313"].image_rel[0][0]),
    "truncated image": lambda d, _: _do(_truncate, d["CoreView_313"].root / d["CoreView_313"].image_rel[2][0]),
    "missing image": lambda d, _: _do(Path.unlink, d["CoreView_377"].root / d["CoreView_377"].image_rel[2][3]),
    "missing mask": lambda d, _: _do(Path.unlink, d["CoreView_377"].root / "mask" / "Camera_B2" / "000001.png"),
    "mask of another size": lambda d, _: _small_png(
        d["CoreView_313"].root / "mask_cihp" / d["CoreView_313"].image_rel[0][1]
    ),
    "nan params": lambda d, _: _do(_write_nan_params, d["CoreView_313"].root / "params" / "2.npy"),
    "camera count mismatch": lambda d, _: _annots(d["CoreView_377"].root, lambda a: a["cams"]["R"].pop()),
    "split names a missing subject": lambda _, root: _splits(root),
}


def _do(action: Callable[[Path], None], path: Path) -> Path:
    action(path)
    return path


def _garbage(path: Path) -> Path:
    path.write_bytes(b"\x00garbage")
    return path


def _small_png(path: Path) -> Path:
    import cv2

    path = path.with_suffix(".png")
    cv2.imwrite(str(path), np.zeros((10, 12), np.uint8))
    return path


def _annots(root: Path, change) -> Path:
    rewrite_annots(root, change)
    return root / "annots.npy"


def _splits(root: Path) -> Path:
    splits = {"train_subjects": ["CoreView_377", "CoreView_400"], "test_subjects": ["CoreView_313"]}
    (root / "splits.json").write_text(json.dumps(splits))
    return root / "CoreView_400"


@pytest.mark.parametrize("breakage", list(BREAKAGES))
def test_broken_dataset_exits_non_zero_naming_the_file(tmp_path, dataset, capsys, breakage):
    path = BREAKAGES[breakage](dataset, tmp_path)
    code, out = run(tmp_path, capsys)
    assert code == 1, out
    assert str(path) in out, out


def test_every_problem_is_reported(tmp_path, dataset, capsys):
    paths = [BREAKAGES[name](dataset, tmp_path) for name in ("corrupt image", "missing mask", "nan params")]
    code, out = run(tmp_path, capsys)
    assert code == 1
    assert "3 problem(s)" in out
    for path in paths:
        assert str(path) in out, out


def test_headers_only_still_catch_unreadable_images(tmp_path, dataset, capsys):
    path = BREAKAGES["corrupt image"](dataset, tmp_path)
    code, out = run(tmp_path, capsys, check_images=False)
    assert code == 1 and "headers only" in out and str(path) in out


def test_synthetic_dataset_is_clean(tiny_dataset, capsys):
    code, out = run(tiny_dataset, capsys)
    assert code == 0, out
    assert "No problem found" in out
    splits = json.loads((tiny_dataset / "splits.json").read_text())
    assert f"Split (splits.json): train {splits['train_subjects']}, test {splits['test_subjects']}" in out
    views = 0
    for split in ("train", "test"):
        for name in splits[f"{split}_subjects"]:
            annots = np.load(tiny_dataset / name / "annots.npy", allow_pickle=True).item()
            keypoints = np.stack([entry["kpts2d"] for entry in annots["ims"]])  # (frames, cameras, 25, 3)
            views += keypoints.shape[0] * keypoints.shape[1]
            row = next(line.split() for line in out.splitlines() if line.startswith(name))
            assert row[1] == split, row
            assert f"{int((keypoints[..., 2] > 0).sum())}/{keypoints[..., 2].size}" in row, row
    assert f"Checked {views} views (full decode)" in out
