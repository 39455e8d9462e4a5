"""KeypointNeRF's Table 2 on our data: robustness of a trained checkpoint to noisy 3D keypoints at test time.

    python benchmarks/keypoint_noise.py --load-config outputs/.../keypointnerf/<run>/config.yml
    python benchmarks/keypoint_noise.py --load-config ... --noise-mm 0 10 20 50 --seeds 0 1 2 --max-views 8

For every noise level the 3D keypoints of every evaluated frame (SMPL joints, dataset keypoints or triangulated,
as the run was trained) get Gaussian noise of that standard deviation per coordinate, drawn once per frame and
seed (``keypoint_noise_mm``); the held-out views are then rendered through nerfstudio's eval path (as ns-eval).
Prints PSNR, SSIM and PCK@0.2 (the heatmap head's 2D keypoints) per level, averaged over the seeds, and writes
them as JSON with ``--output``. The paper perturbs facial keypoints and reports PSNR/SSIM (10 mm: -0.5 dB).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path
from typing import Dict, List, Optional

import torch
from nerfstudio.utils.eval_utils import eval_setup

METRICS = (("psnr", "PSNR ↑", ".2f"), ("ssim", "SSIM ↑", ".3f"), ("pck", "PCK@0.2 ↑", ".3f"))


def mean_of(values: List[Optional[float]]) -> Optional[float]:
    numbers = [v for v in values if isinstance(v, (int, float)) and not math.isnan(v)]
    return statistics.mean(numbers) if numbers else None


def run(config_path: Path, noise_levels: List[float], seeds: List[int], max_views: Optional[int]) -> Dict:
    """{noise mm: {metric: mean over seeds}} on the held-out views of a trained KeypointNeRF run."""
    _, pipeline, _, step = eval_setup(config_path, test_mode="test")
    model = pipeline.model
    if not hasattr(model.config, "keypoint_noise_mm"):
        raise SystemExit(f"{config_path}: not a KeypointNeRF run (its model has no keypoint_noise_mm option)")
    model.config.eval_keypoints_3d = False  # MPJPE is not part of this table, and costs a volume per frame
    loader = pipeline.datamanager.fixed_indices_eval_dataloader
    if max_views is not None and len(loader.indices) > max_views:
        total = len(loader.indices)
        loader.indices = [loader.indices[i * total // max_views] for i in range(max_views)]
    table: Dict = {"checkpoint_step": step, "views": len(loader.indices), "keypoints": model.config.keypoints}
    for noise in noise_levels:
        per_seed = []
        for seed in seeds if noise > 0 else seeds[:1]:
            model.config.keypoint_noise_mm, model.config.keypoint_noise_seed = noise, seed
            torch.manual_seed(seed)
            results = pipeline.get_average_image_metrics(loader, "noise", get_std=False)
            per_seed.append(results)
        table[str(noise)] = {key: mean_of([r.get(key) for r in per_seed]) for key, _, _ in METRICS}
        row = "  ".join(f"{key} {format_cell(table[str(noise)][key], spec)}" for key, _, spec in METRICS)
        print(f"noise {noise:5.1f} mm: {row}", flush=True)
    model.config.keypoint_noise_mm = 0.0
    return table


def format_cell(value: Optional[float], spec: str) -> str:
    return "–" if value is None else format(value, spec)


def markdown(table: Dict, noise_levels: List[float]) -> str:
    lines = ["| Noise [mm] | " + " | ".join(h for _, h, _ in METRICS) + " |", "|---" * (len(METRICS) + 1) + "|"]
    for noise in noise_levels:
        row = table[str(noise)]
        lines.append(f"| {noise:g} | " + " | ".join(format_cell(row[k], s) for k, _, s in METRICS) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--load-config", type=Path, required=True, help="config.yml of a trained keypointnerf run")
    parser.add_argument("--noise-mm", type=float, nargs="+", default=[0.0, 10.0, 20.0, 50.0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="noise draws averaged per level")
    parser.add_argument("--max-views", type=int, default=None, help="evaluate at most this many held-out views")
    parser.add_argument("--output", type=Path, default=None, help="write the table as JSON here")
    args = parser.parse_args()
    table = run(args.load_config, args.noise_mm, args.seeds, args.max_views)
    print(f"\nKeypoint noise robustness (checkpoint step {table['checkpoint_step']}, {table['views']} held-out views, "
          f"keypoints: {table['keypoints']}, seeds {args.seeds})")  # fmt: skip
    print(markdown(table, args.noise_mm))
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(table, indent=2))


if __name__ == "__main__":
    main()
