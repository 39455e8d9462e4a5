"""A multi-view capture on disk: one folder per camera under the images folder, frames matched by file name."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from nerfstudio_humanfeat.data.catalog import HumanDataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")


@dataclass
class CaptureFolder:
    root: Path
    cameras: List[str]
    frames: List[str]
    """Frame names (file stems), sorted."""
    files: Dict[str, Dict[str, Path]]
    """camera -> frame name -> image file."""

    def image(self, camera: str, frame: str) -> Optional[Path]:
        return self.files[camera].get(frame)


def scan_capture(
    root: Path, cameras: Optional[Sequence[str]] = None, frames: Optional[Sequence[str]] = None
) -> CaptureFolder:
    """Camera folders (those holding images, or the named ones) and their frames by file stem; `frames` picks stems."""
    if not root.is_dir():
        raise HumanDataError(f"{root}: images folder not found (expected one sub-folder of images per camera)")
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    files: Dict[str, Dict[str, Path]] = {}
    for folder in folders:
        images = {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
        if images:
            files[folder.name] = images
    if cameras:
        missing = [c for c in cameras if c not in files]
        if missing:
            raise HumanDataError(f"{root}: camera folder(s) {missing} missing or without images (found {list(files)})")
        files = {c: files[c] for c in cameras}
    if len(files) < 2:
        raise HumanDataError(f"{root}: {len(files)} camera folder(s) with images; a multi-view capture needs 2 or more")
    every = sorted(set().union(*(set(f) for f in files.values())))
    if frames:
        unknown = [f for f in frames if f not in every]
        if unknown:
            raise HumanDataError(
                f"{root}: frame(s) {unknown} not found in any camera folder (frames: {every[:10]} ...)"
            )
        every = [f for f in every if f in set(frames)]
    return CaptureFolder(root=root, cameras=list(files), frames=every, files=files)
