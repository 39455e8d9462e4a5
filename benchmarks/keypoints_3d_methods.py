"""MPJPE of a checkpoint's 3D keypoints by each extraction method (``keypoints_3d_method``): the peaks of the
volumetric heatmap field and the triangulation of the rendered heatmaps' 2D peaks, on the held-out frames.

    python benchmarks/keypoints_3d_methods.py --load-config outputs/<run>/anipixel/<ts>/config.yml --max-frames 4
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import tyro

from nerfstudio_humanfeat.keypoints import keypoint_valid
from nerfstudio_humanfeat.metrics import mpjpe
from nerfstudio_humanfeat.models.human_model import evenly_spread

METHODS = ("volume", "triangulated")


@dataclass
class Compare:
    load_config: Path
    """config.yml of an ns-train run."""
    split: str = "test"
    max_frames: Optional[int] = 4
    """Frames of the split, evenly spread (None: all)."""


def main(args: Compare) -> Dict[str, List[Optional[float]]]:
    from nerfstudio.utils.eval_utils import eval_setup

    _, pipeline, _, _ = eval_setup(args.load_config, test_mode="test")
    model = pipeline.model
    keys = evenly_spread(model.catalog.frame_keys_of_split(args.split), args.max_frames)
    errors: Dict[str, List[Optional[float]]] = {method: [] for method in METHODS}
    print(f"{'frame':32s} " + " ".join(f"{m + ' (mm)':>18s}" for m in METHODS))
    seconds = {method: 0.0 for method in METHODS}
    for key in keys:
        truth = model.catalog.frame(key).keypoints3d
        if truth is None or not bool(keypoint_valid(truth).any()):
            continue
        for method in METHODS:
            model.config.keypoints_3d_method = method
            start = time.perf_counter()
            errors[method].append(mpjpe(model.keypoints_3d(key).cpu(), truth.cpu()))
            seconds[method] += time.perf_counter() - start
        row = " ".join(f"{e[-1]:18.1f}" if e[-1] is not None else f"{'none found':>18s}" for e in errors.values())
        print(f"{model.catalog.describe(key):32s} {row}")
    for method, values in errors.items():
        found = [v for v in values if v is not None]
        mean = sum(found) / len(found) if found else float("nan")
        print(f"{method:>12s}: MPJPE {mean:.1f} mm over {len(found)} frames, {seconds[method]:.1f} s")
    return errors


if __name__ == "__main__":
    main(tyro.cli(Compare, description=__doc__))
