"""CPU-sized settings: every method trains on a CPU in minutes at the synthetic data's resolution.

They are registered as size variants of each method, as nerfstudio's ``nerfacto-big``: ``ns-train ghnerf-cpu --data
data/synth-demo``. The same settings as ns-train flags (for scripts that add them to another method name):
``python -m nerfstudio_humanfeat.configs.cpu ghnerf``.
"""

from __future__ import annotations

import copy
import sys
import types
import typing
from typing import Any, List, Sequence

from nerfstudio.engine.trainer import TrainerConfig

COMMON = [
    "--machine.device-type", "cpu",
    "--vis", "tensorboard",
    "--viewer.quit-on-train-completion", "True",
    "--pipeline.datamanager.train-num-rays-per-batch", "1024",
    "--pipeline.datamanager.eval-num-rays-per-batch", "512",
    "--pipeline.datamanager.num-patches", "0",
    "--pipeline.model.eval-num-rays-per-chunk", "8192",
    "--steps-per-eval-batch", "100",
    "--steps-per-eval-image", "250",
    "--steps-per-eval-all-images", "1000000",
    "--steps-per-save", "250",
    "--pipeline.model.keypoints-3d-cameras", "1",
    # On 2 cores the prefetching worker competes with torch for them: ghnerf 0.84 steps/s without it, 0.75 with
    # (benchmarks/bench_data_paths.py, issue-16 note); it pays where a GPU computes while the CPU decodes.
    "--pipeline.datamanager.prefetch", "False",
]  # fmt: skip

# ghnerf and enerf-heatmap (ENeRF+Heatmap is ghnerf without f_h, so both share them): 4x ENeRF's lr of 5e-4, and
# BatchNorm with each render's batch statistics (HumanFeatureModelConfig.eval_batchnorm): the running statistics of
# these short, fast-moving trainings drift from the batches, and a held-out box then fills with fog. Held-out PSNR /
# PCK@0.2 (issue-8 note): make-demo settings, 800 steps, seeds 0 and 1: 25.78 / 0.430 and 26.42 / 0.430 at 5e-4,
# 26.53 / 0.487 and 26.57 / 0.477 with both; bench split, 60 CPU minutes: ghnerf 25.90 / 0.587 at 5e-4, 24.90 / 0.773
# with both (23.64 / 0.640 at 2e-3 with running statistics).
GHNERF_FAMILY = ["--optimizers.fields.optimizer.lr", "2e-3", "--pipeline.model.eval-batchnorm", "batch"]

PER_METHOD = {
    "ghnerf": GHNERF_FAMILY,
    "enerf": GHNERF_FAMILY,
    # anipixel: one 16x16 patch and 320 rays (as keypointnerf: overfit PSNR 29.5 in 5 CPU minutes against 27.0 with
    # one 24x24 patch; 33.0 in 10), 16 + 8 samples, narrow encoders, a small hash grid and networks (every sample
    # runs KD-tree skinning, two skinning MLPs, the SDF with its gradient and a 3-layer blending MLP per view).
    "anipixel": [
        "--pipeline.datamanager.num-patches", "1",
        "--pipeline.datamanager.perceptual-patch-size", "16",
        "--pipeline.datamanager.train-num-rays-per-batch", "320",
        "--pipeline.model.num-coarse-samples", "16",
        "--pipeline.model.num-fine-samples", "8",
        "--pipeline.model.encoder-width", "32",
        "--pipeline.model.texture-base-channels", "16",
        "--pipeline.model.fusion-width", "64",
        "--pipeline.model.blend-num-layers", "3",
        "--pipeline.model.weight-hidden-dim", "64",
        "--pipeline.model.displacement-hidden-dim", "64",
        "--pipeline.model.hash-num-levels", "8",
        "--pipeline.model.hash-log2-size", "15",
        "--pipeline.model.hash-max-res", "256",
        "--pipeline.model.latent-dim", "16",
        "--pipeline.model.normal-smooth-points", "256",
        "--pipeline.model.shape-points", "256",
        "--pipeline.model.eval-num-rays-per-chunk", "1024",
        # CPU runs stop on a time budget, not at max_num_iterations: 20 % of 150k steps would never end the warm-up
        "--pipeline.model.mask-warmup-steps", "100",
    ],
    # hfnerf: the paper's lr of 1e-4 reached overfit PSNR 19.1 in 4 CPU minutes, 5e-4 reached 24.2 in 3 (the
    # learning benchmark's overfit run); KeypointNeRF's reference code trains its PixelNeRF-style model at 5e-4.
    "hfnerf": [
        "--pipeline.model.num-coarse-samples", "24",
        "--pipeline.model.num-fine-samples", "16",
        "--pipeline.model.hidden-dim", "64",
        "--optimizers.fields.optimizer.lr", "5e-4",
    ],
    # keypointnerf: one 16x16 patch and 320 rays per step (576 rays, as one 24x24 patch): overfit PSNR 32.5 and PCK
    # 0.14 at 251 steps (5 CPU minutes) against 21.4-26.0 and 0.00-0.03 at 150-300 steps with the patch alone, which
    # shows the heatmap loss a few joints per step (learning benchmark, issue-10 note); 16 + 16 samples, narrower
    # encoders (a 256-filter hourglass is most of a CPU step), smaller render chunks (each ray holds 3 views x K x 7
    # encodings per sample).
    "keypointnerf": [
        "--pipeline.datamanager.num-patches", "1",
        "--pipeline.datamanager.perceptual-patch-size", "16",
        "--pipeline.datamanager.train-num-rays-per-batch", "320",
        "--pipeline.model.num-coarse-samples", "16",
        "--pipeline.model.num-fine-samples", "16",
        "--pipeline.model.encoder-width", "32",
        "--pipeline.model.texture-base-channels", "16",
        "--pipeline.model.eval-num-rays-per-chunk", "1024",
    ],
}  # fmt: skip


RUN_FLAGS = ("--vis", "--viewer.quit-on-train-completion")
"""Flags of COMMON that say how a run is watched rather than how big it is: the ``-cpu`` variants keep nerfstudio's
defaults for them (the viewer), scripts that must end on their own pass them."""


def cpu_overrides(method: str) -> List[str]:
    """The CPU override flags for a registered method name."""
    family = method.split("-")[0]
    return COMMON + PER_METHOD.get(family, [])


def split_flags(flags: Sequence[str]) -> List[tuple]:
    """``["--a.b", "1", "--c", "x", "y"]`` as ``[("a.b", ["1"]), ("c", ["x", "y"])]``."""
    pairs: List[tuple] = []
    for arg in flags:
        if arg.startswith("--"):
            pairs.append((arg[2:], []))
        elif not pairs:
            raise ValueError(f"value {arg!r} before any --flag in {list(flags)}")
        else:
            pairs[-1][1].append(arg)
    return pairs


def _scalar(value: str, kind: Any) -> Any:
    if kind is bool:
        if value not in ("True", "False"):
            raise ValueError(f"expected True or False, got {value!r}")
        return value == "True"
    if value == "None":
        return None
    return kind(value) if kind in (int, float) else value


def _parse(values: List[str], annotation: Any, current: Any) -> Any:
    """Values given on the command line, typed by the field's annotation (or its current value)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        options = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        annotation = options[0] if len(options) == 1 else None
    origin = typing.get_origin(annotation)
    if origin in (tuple, list) or (annotation is None and isinstance(current, (tuple, list))):
        element = next(iter(typing.get_args(annotation)), str) if origin else type(current[0]) if current else str
        return (tuple if origin is tuple or isinstance(current, tuple) else list)(_scalar(v, element) for v in values)
    (value,) = values
    if annotation in (bool, int, float):
        return _scalar(value, annotation)
    return _scalar(value, type(current) if isinstance(current, (bool, int, float)) else str)


def apply_flags(config: Any, flags: Sequence[str]) -> Any:
    """Set ns-train style dotted flags (``--pipeline.model.hidden-dim 64``) on a config in place; returns it."""
    for path, values in split_flags(flags):
        *parents, name = path.replace("-", "_").split(".")
        target = config
        for part in parents:
            target = target[part] if isinstance(target, dict) else getattr(target, part)
        if isinstance(target, dict):
            target[name] = _parse(values, None, target[name])
        elif not hasattr(target, name):
            raise AttributeError(f"--{path}: {type(target).__name__} has no field {name!r}")
        else:
            annotation = typing.get_type_hints(type(target)).get(name)
            setattr(target, name, _parse(values, annotation, getattr(target, name)))
    return config


def cpu_variant(config: TrainerConfig) -> TrainerConfig:
    """A copy of a method's trainer config with its CPU-sized settings, registered as ``<method>-cpu``."""
    flags = cpu_overrides(config.method_name)
    pairs = split_flags(flags)
    sized = [arg for flag, values in pairs if f"--{flag}" not in RUN_FLAGS for arg in (f"--{flag}", *values)]
    variant = apply_flags(copy.deepcopy(config), sized)
    variant.method_name = f"{config.method_name}-cpu"
    return variant


if __name__ == "__main__":
    print(" ".join(cpu_overrides(sys.argv[1] if len(sys.argv) > 1 else "ghnerf")))
