"""Issue 16, items 5 and 6, measured: frame time with and without the rays that miss the box, and training steps/s
with and without the view cache and the prefetching worker, on synthetic data with a textured background.

    python benchmarks/bench_data_paths.py                        # bench preset at 256 px, 3 subjects, dome background
    python benchmarks/bench_data_paths.py --methods ghnerf --steps 20

Frame time: one held-out camera, rendered (a) as ``get_outputs_for_camera`` does (only rays that hit the frame's
box; the rest is background) and (b) every ray of the image, as before the change; same conditioning. Steps/s:
``ghnerf`` at its CPU overrides, with (a) no cache and no prefetch (every view decoded synchronously per step, as a
ZJU-scale run whose cache misses), (b) no cache with the prefetching worker, (c) the uint8 view cache and prefetch,
(d) the cache without the worker (the CPU overrides: on 2 cores the worker competes with torch for them).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Dict, List

import torch

sys.path.insert(0, str(Path(__file__).parent))
from profile_step import build_pipeline  # noqa: E402

DATA_PATHS = {
    "no cache, no prefetch (before)": (False, 0.0),
    "no cache, prefetch": (True, 0.0),
    "uint8 cache + prefetch (after)": (True, 2.0),
    "uint8 cache, no prefetch": (False, 2.0),
}
"""Name -> (prefetch, view cache GB)."""


def make_data(root: Path, resolution: int) -> Path:
    from nerfstudio_humanfeat.synth.generator import generate, make_spec

    path = root / f"synth-bench-dome-{resolution}"
    if not (path / "splits.json").exists():
        spec = make_spec("bench", seed=0, num_subjects=3, num_test_subjects=1, num_frames=2, resolution=resolution)
        generate(spec, path, progress=True)
    return path


def data_path_flags(prefetch: bool, cache_gb: float) -> List[str]:
    return ["--pipeline.datamanager.prefetch", str(prefetch), "zju-mocap", "--pipeline.datamanager.dataparser.cache-gb",
            str(cache_gb)]  # fmt: skip


@torch.no_grad()
def frame_times(method: str, data: Path, repeats: int) -> Dict[str, float]:
    """Median seconds of one held-out frame: in-box rays only, and every ray."""
    pipeline = build_pipeline(method, data, "cpu", 512, [])
    pipeline.eval()
    model = pipeline.model
    camera, _ = next(iter(pipeline.datamanager.fixed_indices_eval_dataloader))
    camera = camera.to(model.device)

    def every_ray() -> None:
        from nerfstudio_humanfeat.camera_utils import opencv_from_cameras
        from nerfstudio_humanfeat.model_components.views import TargetView

        intrinsics, world_to_camera, height, width = opencv_from_cameras(camera)
        frame_key = model.resolve_frame_key(camera)
        target = TargetView(frame_key, intrinsics, world_to_camera, height, width, model.catalog.frame(frame_key).bbox)
        sources = model.sources_for(target)
        rays = camera.generate_rays(camera_indices=0, keep_shape=True).flatten()
        pixels = target.pixel_grid()
        target, offset, conditioning = model.conditioned(target, sources)
        chunk = model.config.eval_num_rays_per_chunk
        for start in range(0, len(rays), chunk):
            model.render_rays(rays[start : start + chunk], pixels[start : start + chunk] - offset, target, sources,
                              conditioning)  # fmt: skip

    def timed(fn) -> float:
        fn()
        values = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            values.append(time.perf_counter() - start)
        return statistics.median(values)

    inside = timed(lambda: model.get_outputs_for_camera(camera)["rgb"])
    return {"in_box_s": inside, "every_ray_s": timed(every_ray), "pixels": int(camera.height * camera.width)}


def steps_per_second(data: Path, flags: List[str], steps: int) -> float:
    pipeline = build_pipeline("ghnerf", data, "cpu", 512, flags)
    params = [p for group in pipeline.get_param_groups().values() for p in group]
    optimizer = torch.optim.Adam(params, lr=1e-4)
    pipeline.train()
    times = []
    for step in range(steps + 1):
        start = time.perf_counter()
        _, loss_dict, _ = pipeline.get_train_loss_dict(step)
        optimizer.zero_grad()
        sum(loss_dict.values()).backward()
        optimizer.step()
        if step > 0:
            times.append(time.perf_counter() - start)
    return 1.0 / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=["ghnerf", "enerf-heatmap"])
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--data-root", type=Path, default=Path("data"))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--skip-frames", action="store_true")
    parser.add_argument("--skip-steps", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    data = make_data(args.data_root, args.resolution)
    if not args.skip_frames:
        print(f"\n| method | pixels | in-box rays only (s) | every ray (s) | speed-up |  ({data}, CPU overrides)")
        print("| --- | ---: | ---: | ---: | ---: |")
        for method in args.methods:
            t = frame_times(method, data, args.repeats)
            speedup = t["every_ray_s"] / t["in_box_s"]
            print(f"| {method} | {t['pixels']} | {t['in_box_s']:.2f} | {t['every_ray_s']:.2f} | {speedup:.2f}x |")
    if not args.skip_steps:
        print(f"\n| ghnerf data path | steps/s | s/step |  ({data}, CPU overrides, 512 rays, median of {args.steps})")
        print("| --- | ---: | ---: |")
        for name, (prefetch, cache_gb) in DATA_PATHS.items():
            rate = steps_per_second(data, data_path_flags(prefetch, cache_gb), args.steps)
            print(f"| {name} | {rate:.2f} | {1 / rate:.3f} |")


if __name__ == "__main__":
    main()
