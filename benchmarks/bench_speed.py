"""Speed and memory of the registered methods: full-frame render time with heatmaps, training steps/s, peak memory.

    python benchmarks/bench_speed.py                               # CPU, 256 and 512 px, all methods
    python benchmarks/bench_speed.py --device cuda --methods ghnerf hfnerf --resolutions 512

Each (method, resolution) runs in a fresh process so that peak memory is its own. Data: a small synthetic set
generated at each resolution (3 subjects, 1 frame, 8 cameras). Models use their registered (paper) settings;
training uses `--train-rays` rays per step. Results go to stdout (a Markdown table) and to `--output` (JSON).
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing as mp
import os
import resource
import statistics
import time
from pathlib import Path
from typing import Dict, List

from nerfstudio_humanfeat.engine.cpu_allocator import ENVIRONMENT, allocator_environment

DEFAULT_METHODS = ["ghnerf", "ghnerf-dino", "enerf-heatmap", "hfnerf"]


def make_data(root: Path, resolution: int) -> Path:
    from nerfstudio_humanfeat.synth.generator import generate, make_spec

    path = root / f"bench-data-{resolution}"
    if not (path / "splits.json").exists():
        spec = make_spec("tiny", seed=0, num_frames=1, num_cameras=8, resolution=resolution)
        generate(spec, path, progress=False)
    return path


def measure(
    method: str,
    data: Path,
    device: str,
    train_steps: int,
    render_repeats: int,
    train_rays: int,
    overrides: Dict,
    allocator: str,
) -> Dict:
    """Runs in a child process: builds the pipeline, times training steps and full-frame renders."""
    import torch
    from nerfstudio.plugins.registry import discover_methods

    from nerfstudio_humanfeat.engine.cpu_allocator import keep_freed_memory

    if allocator == "tuned" and device == "cpu":
        keep_freed_memory()  # as ns-train does on the CPU; the child's environment brings the huge pages

    specs, _ = discover_methods()
    config = specs[method]
    config.pipeline.datamanager.data = data
    config.pipeline.datamanager.train_num_rays_per_batch = train_rays
    config.pipeline.datamanager.num_patches = 0
    config.pipeline.model.eval_num_rays_per_chunk = 1 << 16 if device == "cuda" else 4096
    for key, value in overrides.items():
        setattr(config.pipeline.model, key, type(getattr(config.pipeline.model, key))(value))
    pipeline = config.pipeline.setup(device=device, test_mode="val")
    params = [p for group in pipeline.get_param_groups().values() for p in group]
    optimizer = torch.optim.Adam(params, lr=1e-4)

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    pipeline.train()
    step_times: List[float] = []
    for step in range(train_steps + 1):
        sync()
        start = time.perf_counter()
        _, loss_dict, _ = pipeline.get_train_loss_dict(step)
        optimizer.zero_grad()
        sum(loss_dict.values()).backward()
        optimizer.step()
        sync()
        if step > 0:  # the first step pays for lazy initialisation
            step_times.append(time.perf_counter() - start)

    pipeline.eval()
    camera, _ = next(iter(pipeline.datamanager.fixed_indices_eval_dataloader))
    frame_times: List[float] = []
    with torch.no_grad():
        for repeat in range(render_repeats + 1):
            sync()
            start = time.perf_counter()
            outputs = pipeline.model.get_outputs_for_camera(camera)
            sync()
            if repeat > 0:
                frame_times.append(time.perf_counter() - start)
    assert outputs["heatmap"].shape[:2] == (int(camera.height), int(camera.width))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    gpu_peak_mb = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None
    frame = statistics.median(frame_times)
    return {
        "method": method,
        "resolution": int(camera.height),
        "device": device,
        "frame_s": frame,
        "fps": 1.0 / frame,
        "train_steps_per_s": 1.0 / statistics.median(step_times),
        "train_rays": train_rays,
        "peak_rss_mb": peak_mb,
        "peak_gpu_mb": gpu_peak_mb,
        "overrides": overrides,
    }


def _child(queue, *args) -> None:
    try:
        queue.put(measure(*args))
    except Exception as error:  # reported in the table, the other runs go on
        queue.put({"method": args[0], "error": f"{type(error).__name__}: {error}"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=DEFAULT_METHODS)
    parser.add_argument("--resolutions", nargs="+", type=int, default=[256, 512])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--train-steps", type=int, default=5)
    parser.add_argument("--train-rays", type=int, default=1024)
    parser.add_argument("--render-repeats", type=int, default=2)
    parser.add_argument(
        "--allocators",
        nargs="+",
        default=["tuned"],
        choices=["default", "tuned"],
        help="CPU memory allocator of each run: glibc's and torch's defaults, or the settings of "
        "nerfstudio_humanfeat/engine/cpu_allocator.py (what ns-train, make demo and the benchmarks use)",
    )
    parser.add_argument("--data-root", type=Path, default=Path("data"))
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/speed.json"))
    parser.add_argument(
        "--override",
        nargs="*",
        default=[],
        metavar="METHOD:FIELD=VALUE",
        help="model config overrides, e.g. hfnerf:num_coarse_samples=24 (default: the registered paper settings)",
    )
    args = parser.parse_args()

    context = mp.get_context("spawn")
    results = []
    user_env = {k: v for k, v in os.environ.items() if k not in ENVIRONMENT}
    for resolution in args.resolutions:
        data = make_data(args.data_root, resolution)
        for method, allocator in itertools.product(args.methods, args.allocators):
            queue = context.Queue()
            overrides = dict(o.split(":", 1)[1].split("=", 1) for o in args.override if o.split(":", 1)[0] == method)
            run_args = (method, data, args.device, args.train_steps, args.render_repeats, args.train_rays, overrides)
            os.environ.clear()  # a spawned child starts with this environment
            os.environ.update(allocator_environment(user_env) if allocator == "tuned" else user_env)
            process = context.Process(target=_child, args=(queue, *run_args, allocator))
            process.start()
            result = queue.get()
            process.join()
            result.setdefault("resolution", resolution)
            result["allocator"] = allocator
            results.append(result)
            print(json.dumps(result), flush=True)

    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=1))
    print(
        "\n| method (overrides) | res | device | allocator | frame (s) | FPS | train steps/s "
        f"({args.train_rays} rays) | peak RSS MB | peak GPU MB |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        if "error" in r:
            print(f"| {r['method']} | {r['resolution']} | {args.device} | {r['allocator']} | error: {r['error']} |||||")
            continue
        gpu = f"{r['peak_gpu_mb']:.0f}" if r["peak_gpu_mb"] is not None else "-"
        name = r["method"] + "".join(f" {k}={v}" for k, v in r["overrides"].items())
        print(
            f"| {name} | {r['resolution']} | {r['device']} | {r['allocator']} | {r['frame_s']:.2f} | {r['fps']:.3f} | "
            f"{r['train_steps_per_s']:.2f} | {r['peak_rss_mb']:.0f} | {gpu} |"
        )
    for resolution in args.resolutions:
        rows = [r for r in results if r["resolution"] == resolution and r["allocator"] == args.allocators[-1]]
        times = {r["method"]: r["frame_s"] for r in rows if "frame_s" in r}
        for slow, fast in (("hfnerf", "ghnerf"), ("ghnerf", "enerf-heatmap")):
            if slow in times and fast in times:
                print(f"{resolution} px: {slow} / {fast} frame-time ratio = {times[slow] / times[fast]:.2f}")


if __name__ == "__main__":
    main()
