"""Issue 16, items 5 and 6, measured: frame time with and without the rays that miss the box, and training steps/s
with and without the view cache and the prefetching worker, on synthetic data with a textured background.

    python benchmarks/bench_data_paths.py                        # bench preset at 256 px, 3 subjects, dome background
    python benchmarks/bench_data_paths.py --methods ghnerf --steps 20

Frame time: one held-out camera, rendered (a) as ``get_outputs_for_camera`` does (only rays that hit the frame's
box; the rest is background) and (b) every ray of the image, as before the change; same conditioning. Steps/s:
``ghnerf`` at its CPU overrides, with (a) no cache and no prefetch (every view decoded synchronously per step, as a
ZJU-scale run whose cache misses), (b) no cache with the prefetching worker, (c) the uint8 view cache and prefetch,
(d) the cache without the worker (the CPU overrides: on 2 cores the worker competes with torch for them), (e) no
cache and no worker but pre-undistorted view copies (``view_copies``: what a ZJU-scale run whose cache misses reads).
View loads: seconds to decode one view from the originals (image decode, undistortion, resize, mask union,
background) and from its view copy.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

import torch

sys.path.insert(0, str(Path(__file__).parent))
from profile_step import build_pipeline  # noqa: E402

DATA_PATHS = {
    "no cache, no prefetch (before)": (False, 0.0, False),
    "no cache, prefetch": (True, 0.0, False),
    "uint8 cache + prefetch (after)": (True, 2.0, False),
    "uint8 cache, no prefetch": (False, 2.0, False),
    "view copies, no cache, no prefetch": (False, 0.0, True),
}
"""Name -> (prefetch, view cache GB, pre-undistorted view copies)."""


def make_data(root: Path, resolution: int) -> Path:
    from nerfstudio_humanfeat.synth.generator import generate, make_spec

    path = root / f"synth-bench-dome-{resolution}"
    if not (path / "splits.json").exists():
        spec = make_spec("bench", seed=0, num_subjects=3, num_test_subjects=1, num_frames=2, resolution=resolution)
        generate(spec, path, progress=True)
    return path


def data_path_flags(prefetch: bool, cache_gb: float, copies: Optional[Path] = None) -> List[str]:
    prefix = "--pipeline.datamanager."
    flags = [f"{prefix}prefetch", str(prefetch), "zju-mocap", f"{prefix}dataparser.cache-gb", str(cache_gb)]
    return flags + (["--pipeline.datamanager.dataparser.view-copies", str(copies)] if copies else [])


def view_load_times(data: Path, copies: Path, views: int) -> Dict[str, float]:
    """Median seconds to load one view from the originals and from its pre-undistorted copy (no memory cache)."""
    from nerfstudio_humanfeat.data.dataparsers.zju_mocap_dataparser import ZJUMocapDataParserConfig, view_reader

    config = ZJUMocapDataParserConfig(data=data, cache_gb=0.0, view_copies=copies)
    catalog = config.setup().catalog
    keys = [(key, camera) for key in range(catalog.num_frames) for camera in catalog.subject(key).source_cameras]
    keys = keys[:views]
    originals, cached = view_reader(ZJUMocapDataParserConfig(data=data)), view_reader(config)
    times: Dict[str, List[float]] = {"originals": [], "copies": []}
    for key, camera in keys:
        cached(catalog.subject(key), catalog.frame(key), camera)  # writes the copy
    for name, reader in (("originals", originals), ("copies", cached)):
        for key, camera in keys:
            start = time.perf_counter()
            reader(catalog.subject(key), catalog.frame(key), camera)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


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
    parser.add_argument("--views", type=int, default=24, help="views timed by the view-load table")
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
    copies = Path(tempfile.mkdtemp(prefix="view_copies_"))
    try:
        t = view_load_times(data, copies / "load", args.views)
        print(f"\n| view load | originals (ms) | view copy (ms) |  ({data}, median of {args.views} views)")
        print(f"| --- | ---: | ---: |\n| one view | {1e3 * t['originals']:.1f} | {1e3 * t['copies']:.1f} |")
        if not args.skip_steps:
            setting = f"{data}, CPU overrides, 512 rays, median of {args.steps}"
            print(f"\n| ghnerf data path | steps/s | s/step |  ({setting})")
            print("| --- | ---: | ---: |")
            for name, (prefetch, cache_gb, use_copies) in DATA_PATHS.items():
                flags = data_path_flags(prefetch, cache_gb, copies / "steps" if use_copies else None)
                rate = steps_per_second(data, flags, args.steps)
                print(f"| {name} | {rate:.2f} | {1 / rate:.3f} |")
    finally:
        shutil.rmtree(copies, ignore_errors=True)


if __name__ == "__main__":
    main()
