"""Where the time goes: torch profiler of training steps and one full-frame render of a registered method.

    python benchmarks/profile_step.py --method ghnerf --data data/synth-demo            # demo settings, 512 rays
    python benchmarks/profile_step.py --method enerf-heatmap --data data/synth-demo --top 15

Training uses the CPU overrides of ``nerfstudio_humanfeat.configs.cpu`` (the demo's settings); the render is one
held-out camera through ``get_outputs_for_camera`` (what ns-eval, ns-render and the viewer call). Prints the mean
step time, the frame time and the top operators by self CPU time for each.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Callable, List

import torch
from torch.profiler import ProfilerActivity, profile


def build_pipeline(method: str, data: Path, device: str, rays: int, overrides: List[str]):
    """The method's pipeline at the CPU-override settings (tyro parses them as ns-train would)."""
    import tyro
    from nerfstudio.configs.method_configs import all_methods

    from nerfstudio_humanfeat.configs.cpu import cpu_overrides

    args = ["--data", str(data), *cpu_overrides(method)]
    args += ["--pipeline.datamanager.train-num-rays-per-batch", str(rays), *overrides]
    config = tyro.cli(tyro.conf.FlagConversionOff[type(all_methods[method])], default=all_methods[method], args=args)
    config.machine.device_type = device
    config.pipeline.datamanager.data = data
    return config.pipeline.setup(device=device, test_mode="val")


def profiled(fn: Callable[[], None], repeats: int, top: int, label: str) -> float:
    """Mean seconds of `fn` (after one warm-up call) and the profiler's top operators."""
    fn()
    start = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(repeats):
            fn()
    seconds = (time.perf_counter() - start) / repeats
    print(f"\n== {label}: {seconds:.3f} s (mean of {repeats}, profiler on)")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=top))
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", default="ghnerf")
    parser.add_argument("--data", type=Path, default=Path("data/synth-demo"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rays", type=int, default=512, help="training rays per step")
    parser.add_argument("--steps", type=int, default=5, help="profiled training steps")
    parser.add_argument("--top", type=int, default=10, help="operators listed")
    parser.add_argument("--no-render", action="store_true", help="profile training only")
    parser.add_argument("overrides", nargs="*", help="further ns-train flags, after --")
    args = parser.parse_args()

    pipeline = build_pipeline(args.method, args.data, args.device, args.rays, args.overrides)
    params = [p for group in pipeline.get_param_groups().values() for p in group]
    optimizer = torch.optim.Adam(params, lr=1e-4)
    pipeline.train()

    def train_step() -> None:
        _, loss_dict, _ = pipeline.get_train_loss_dict(step=0)
        optimizer.zero_grad()
        sum(loss_dict.values()).backward()
        optimizer.step()

    step = profiled(train_step, args.steps, args.top, f"{args.method} training step ({args.rays} rays)")
    if not args.no_render:
        pipeline.eval()
        camera, _ = next(iter(pipeline.datamanager.fixed_indices_eval_dataloader))
        frame = profiled(
            lambda: pipeline.model.get_outputs_for_camera(camera),
            1,
            args.top,
            f"{args.method} full-frame render {int(camera.height)}x{int(camera.width)}",
        )
        print(f"{args.method}: step {step:.3f} s, frame {frame:.3f} s")


if __name__ == "__main__":
    main()
