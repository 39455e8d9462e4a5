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
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes
from nerfstudio.pipelines.base_pipeline import VanillaPipeline, VanillaPipelineConfig
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from nerfstudio_humanfeat.data.datamanagers.human_datamanager import HumanDataManagerConfig
from nerfstudio_humanfeat.engine.interrupt import CheckpointOnInterrupt
from nerfstudio_humanfeat.metrics import average_metrics


@dataclass
class HumanPipelineConfig(VanillaPipelineConfig):
    """VanillaPipeline with the human data manager and null-aware, per-subject evaluation."""

    _target: Type = field(default_factory=lambda: HumanPipeline)
    datamanager: HumanDataManagerConfig = field(default_factory=HumanDataManagerConfig)


def metric_std(per_view: List[Dict[str, Optional[float]]], key: str) -> Optional[float]:
    """Sample standard deviation of a metric over the views that have it."""
    values = [float(m[key]) for m in per_view if m.get(key) is not None]
    if len(values) < 2:
        return None
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def scalar_summary(metrics: Dict[str, Optional[float]]) -> Dict[str, float]:
    """The defined, whole-image metrics of a view (no per-joint keys), as nerfstudio's writers need them."""
    return {k: float(v) for k, v in metrics.items() if v is not None and "/" not in k}


class HumanPipeline(VanillaPipeline):
    """Evaluation over held-out subjects with per-subject breakdowns."""

    def get_training_callbacks(
        self, training_callback_attributes: TrainingCallbackAttributes
    ) -> List[TrainingCallback]:
        """The datamanager's and model's callbacks, plus a checkpoint of the last step on SIGINT/SIGTERM."""
        callbacks = super().get_training_callbacks(training_callback_attributes)
        trainer = training_callback_attributes.trainer
        if trainer is not None:
            guard = CheckpointOnInterrupt(trainer)
            if guard.install():
                callbacks.append(guard.callback())
        return callbacks

    def get_eval_image_metrics_and_images(self, step: int):
        metrics, images = super().get_eval_image_metrics_and_images(step)
        return scalar_summary(metrics), images

    def get_average_eval_image_metrics(
        self, step: Optional[int] = None, output_path: Optional[Path] = None, get_std: bool = False
    ):
        """All held-out views (ns-eval, a loaded checkpoint); during training a fixed, evenly spread sample of
        ``training_eval_views`` of them, so that periodic full evaluations stay minutes, not hours, at ZJU scale."""
        loader = self.datamanager.fixed_indices_eval_dataloader
        if self.training and step is not None:
            loader = self.datamanager.training_eval_dataloader
        return self.get_average_image_metrics(loader, "eval", step, output_path, get_std)

    def evaluates_keypoints_3d(self) -> bool:
        """Whether evaluation extracts 3D keypoints (once per frame, outside the timed render) for MPJPE."""
        return bool(getattr(self.model.config, "eval_keypoints_3d", False)) and hasattr(self.model, "keypoints_3d")

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
        per_view: List[Dict[str, Optional[float]]] = []
        per_protocol: Dict[str, List[Dict[str, Optional[float]]]] = defaultdict(list)
        skipped_novel_pose = 0
        animatable = bool(getattr(self.model, "supports_novel_pose", False))
        per_subject: Dict[str, List[Dict[str, Optional[float]]]] = defaultdict(list)
        keypoints_3d: Dict[int, torch.Tensor] = {}
        if output_path is not None:
            output_path.mkdir(exist_ok=True, parents=True)
        columns = (TextColumn("[progress.description]{task.description}"), BarColumn(), TimeElapsedColumn())
        with Progress(*columns, MofNCompleteColumn(), transient=True) as progress:
            task = progress.add_task("[green]Evaluating held-out views...", total=len(data_loader))
            for idx, (camera, batch) in enumerate(data_loader):
                frame_key = int(batch["frame_key"])
                protocol = batch.get("protocol", "novel_view")
                if protocol == "novel_pose" and not animatable:
                    skipped_novel_pose += 1
                    progress.advance(task)
                    continue
                if self.evaluates_keypoints_3d() and frame_key not in keypoints_3d:
                    keypoints_3d[frame_key] = self.model.keypoints_3d(frame_key)
                start = time()
                outputs = self.model.get_outputs_for_camera(camera=camera)
                seconds = time() - start  # the render alone, as GHNeRF's Table 5 times it: no metric, no keypoints
                if frame_key in keypoints_3d:
                    outputs["keypoints3d"] = keypoints_3d[frame_key]
                metrics, images = self.model.get_image_metrics_and_images(outputs, batch)
                metrics["fps"] = 1.0 / max(seconds, 1e-9)
                metrics["num_rays_per_sec"] = int(camera.height * camera.width) / max(seconds, 1e-9)
                if output_path is not None:
                    for key, image in images.items():
                        path = output_path / f"{image_prefix}_{key}_{idx:04d}.png"
                        vutils.save_image(image.permute(2, 0, 1).cpu(), path)
                per_protocol[protocol].append(metrics)
                if protocol == "novel_view":
                    per_view.append(metrics)
                    per_subject[catalog.subject(frame_key).name].append(metrics)
                progress.advance(task)
        result: Dict[str, object] = dict(average_metrics(per_view))
        if get_std:
            for key in [k for k in result if "/" not in k]:
                result[f"{key}_std"] = metric_std(per_view, key)
        for name, views in per_subject.items():
            for key, value in average_metrics(views).items():
                if "/" not in key:
                    result[f"subject/{name}/{key}"] = value
        if "novel_pose" in per_protocol:
            for protocol, views in per_protocol.items():
                for key, value in average_metrics(views).items():
                    if "/" not in key:
                        result[f"{protocol}/{key}"] = value
        notes = getattr(self.model, "metric_notes", None)
        if notes is not None:
            result.update({f"notes/{key}": text for key, text in notes().items()})
        if "novel_pose" in per_protocol:
            result["notes/novel_pose"] = (
                "top-level and subject/ metrics: novel views (each frame from its own source views); novel_pose/: "
                "frames rendered from the source views of the subject's observation frame, their SMPL pose driving "
                f"the render ({len(per_protocol['novel_pose'])} views)"
            )
        elif skipped_novel_pose:
            result["notes/novel_pose"] = (
                f"{skipped_novel_pose} novel-pose views not evaluated: {type(self.model).__name__} is not animatable"
            )
        self.train()
        return result
