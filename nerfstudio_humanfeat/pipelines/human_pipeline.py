"""The nerfstudio pipeline for generalizable human models: evaluation that keeps unavailable metrics null."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from time import time
from typing import Dict, List, Optional, Type

import torch
import torchvision.utils as vutils
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from nerfstudio.pipelines.base_pipeline import VanillaPipeline, VanillaPipelineConfig
from nerfstudio_humanfeat.data.datamanagers.human_datamanager import HumanDataManagerConfig


@dataclass
class HumanPipelineConfig(VanillaPipelineConfig):
    """VanillaPipeline with the human data manager and null-aware, per-subject evaluation."""

    _target: Type = field(default_factory=lambda: HumanPipeline)
    datamanager: HumanDataManagerConfig = field(default_factory=HumanDataManagerConfig)


def aggregate_metrics(per_view: List[Dict[str, object]], get_std: bool = False) -> Dict[str, object]:
    """Mean of each metric over views, ignoring views where it is NaN or None; None when no view has it."""
    values: Dict[str, List[object]] = defaultdict(list)
    for metrics in per_view:
        for key, value in metrics.items():
            values[key].append(value)
    out: Dict[str, object] = {}
    for key, items in values.items():
        numbers = [float(v) for v in items if isinstance(v, (int, float)) and not math.isnan(float(v))]
        if not numbers:
            out[key] = None
            continue
        mean = sum(numbers) / len(numbers)
        out[key] = mean
        if get_std:
            out[f"{key}_std"] = (sum((n - mean) ** 2 for n in numbers) / max(len(numbers) - 1, 1)) ** 0.5
    return out


class HumanPipeline(VanillaPipeline):
    """Evaluation over held-out subjects with per-subject breakdowns."""

    @torch.no_grad()
    def get_average_image_metrics(
        self,
        data_loader,
        image_prefix: str,
        step: Optional[int] = None,
        output_path: Optional[Path] = None,
        get_std: bool = False,
    ):
        self.eval()
        catalog = self.datamanager.catalog
        per_view: List[Dict[str, object]] = []
        per_subject: Dict[str, List[Dict[str, object]]] = defaultdict(list)
        if output_path is not None:
            output_path.mkdir(exist_ok=True, parents=True)
        columns = (TextColumn("[progress.description]{task.description}"), BarColumn(), TimeElapsedColumn())
        with Progress(*columns, MofNCompleteColumn(), transient=True) as progress:
            task = progress.add_task("[green]Evaluating held-out views...", total=len(data_loader))
            for idx, (camera, batch) in enumerate(data_loader):
                start = time()
                outputs = self.model.get_outputs_for_camera(camera=camera)
                metrics, images = self.model.get_image_metrics_and_images(outputs, batch)
                seconds = time() - start
                metrics["fps"] = 1.0 / max(seconds, 1e-9)
                metrics["num_rays_per_sec"] = int(camera.height * camera.width) / max(seconds, 1e-9)
                if output_path is not None:
                    for key, image in images.items():
                        path = output_path / f"{image_prefix}_{key}_{idx:04d}.png"
                        vutils.save_image(image.permute(2, 0, 1).cpu(), path)
                per_view.append(metrics)
                per_subject[catalog.subject(int(batch["frame_key"])).name].append(metrics)
                progress.advance(task)
        result = aggregate_metrics(per_view, get_std)
        for name, views in per_subject.items():
            for key, value in aggregate_metrics(views).items():
                if not key.startswith("pck_joint/"):
                    result[f"subject/{name}/{key}"] = value
        notes = getattr(self.model, "metric_notes", None)
        if notes is not None:
            result.update(notes())
        self.train()
        return result
