"""The nerfstudio pipeline for generalizable human models: evaluation that keeps unavailable metrics null."""

from __future__ import annotations

import inspect
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from time import time
from typing import Any, Dict, List, Literal, Optional, Type

import torch
import torchvision.utils as vutils
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes
from nerfstudio.pipelines.base_pipeline import VanillaPipeline, VanillaPipelineConfig
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from nerfstudio_humanfeat.data.datamanagers.human_datamanager import HumanDataManagerConfig
from nerfstudio_humanfeat.engine.distributed import ddp_wrap
from nerfstudio_humanfeat.engine.interrupt import CheckpointOnInterrupt
from nerfstudio_humanfeat.metrics import average_metrics
from nerfstudio_humanfeat.pose_baseline import PoseBaseline, PoseBaselineName, make_pose_baseline, mean_over_joints


@dataclass
class HumanPipelineConfig(VanillaPipelineConfig):
    """VanillaPipeline with the human data manager and null-aware, per-subject evaluation."""

    _target: Type = field(default_factory=lambda: HumanPipeline)
    datamanager: HumanDataManagerConfig = field(default_factory=HumanDataManagerConfig)
    pose_baseline: PoseBaselineName = "auto"
    """GHNeRF Table 3's baseline in evaluation: a 2D pose estimator (mediapipe) on each ground-truth target image,
    scored on the joints it can detect beside the rendered keypoints (``baseline_pck``, ``pck_baseline_joints``).
    auto: when mediapipe is installed; mediapipe: required; off."""


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


class CheckpointMismatchError(RuntimeError):
    """A checkpoint whose weights do not fit the model the config builds (another method, or other settings)."""


def _checkpoint_path_of_caller() -> str:
    """The checkpoint file being loaded, from the frame of nerfstudio's loader (eval_load_checkpoint and the trainer
    name it `load_path`, or `load_checkpoint` for --load-checkpoint); 'the checkpoint' when not found."""
    frame = inspect.currentframe()
    for _ in range(6):
        frame = frame.f_back if frame is not None else None
        if frame is None:
            break
        for name in ("load_path", "load_checkpoint"):
            value = frame.f_locals.get(name)
            if isinstance(value, (str, Path)):
                return str(value)
    return "the checkpoint"


def check_checkpoint_fits(model: torch.nn.Module, loaded_state: Dict[str, Any], step: int, where: str) -> None:
    """Raise a readable CheckpointMismatchError when the checkpoint's model weights are not the model's: missing or
    unexpected names, or other shapes (instead of torch's list of every key)."""
    found = {}
    for key, value in loaded_state.items():
        key = key[len("module.") :] if key.startswith("module.") else key
        if key.startswith("_model."):
            key = key[len("_model.") :]
            found[key[len("module.") :] if key.startswith("module.") else key] = value
    expected = model.state_dict()
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    reshaped = [
        f"{k} {tuple(found[k].shape)} in the checkpoint, {tuple(expected[k].shape)} in the model"
        for k in expected
        if k in found and hasattr(found[k], "shape") and tuple(found[k].shape) != tuple(expected[k].shape)
    ]
    if not (missing or unexpected or reshaped):
        return
    parts = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("of another shape", reshaped)):
        if keys:
            parts.append(f"{len(keys)} {label} (e.g. {'; '.join(keys[:2])})")
    raise CheckpointMismatchError(
        f"{where}: the checkpoint (step {step}) does not hold the weights of {type(model).__name__}: "
        f"{', '.join(parts)} of the model's {len(expected)} weights. Expected a checkpoint written by the same method "
        "with the same model settings: this one is of another method (or settings); check --load-config / --load-dir."
    )


class HumanPipeline(VanillaPipeline):
    """Evaluation over held-out subjects with per-subject breakdowns."""

    def __init__(
        self,
        config: HumanPipelineConfig,
        device: str,
        test_mode: Literal["test", "val", "inference"] = "val",
        world_size: int = 1,
        local_rank: int = 0,
        grad_scaler: Optional[torch.amp.GradScaler] = None,
    ):
        """VanillaPipeline's set-up, except that several processes wrap the model with ``ddp_wrap``, which also runs
        on the CPU (nerfstudio's passes the rank as a GPU id, which DistributedDataParallel rejects for CPU models)."""
        super(VanillaPipeline, self).__init__()
        self.config = config
        self.test_mode = test_mode
        self.datamanager = config.datamanager.setup(
            device=device, test_mode=test_mode, world_size=world_size, local_rank=local_rank
        )
        self.datamanager.to(device)
        dataset = self.datamanager.train_dataset
        self._model = config.model.setup(
            scene_box=dataset.scene_box,
            num_train_data=len(dataset),
            metadata=dataset.metadata,
            device=device,
            grad_scaler=grad_scaler,
            seed_points=None,
        )
        self.model.to(device)
        self.world_size = world_size
        if world_size > 1:
            self._model = ddp_wrap(self._model, device, local_rank)

    def load_pipeline(self, loaded_state: Dict[str, Any], step: int) -> None:
        """nerfstudio's loading, after a check that the checkpoint is this model's (a readable error otherwise)."""
        check_checkpoint_fits(self.model, loaded_state, step, _checkpoint_path_of_caller())
        super().load_pipeline(loaded_state, step)

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

    _pose_baseline: Optional[PoseBaseline] = None
    _pose_baseline_note: Optional[str] = None

    def pose_baseline_metrics(
        self, frame_key: int, batch: Dict[str, Any], metrics: Dict[str, Optional[float]]
    ) -> Dict[str, Optional[float]]:
        """The pose estimator's PCK and error on this view's ground-truth image, and the rendered keypoints' PCK on
        the same joints (empty without ground-truth keypoints or with the baseline off)."""
        if batch.get("keypoints2d") is None:
            return {}
        if self._pose_baseline_note is None:
            setting = getattr(self.config, "pose_baseline", "auto")  # configs saved before the option: auto
            threshold = getattr(getattr(self.model, "image_metrics", None), "pck_threshold", 0.2)
            self._pose_baseline, self._pose_baseline_note = make_pose_baseline(setting, threshold)
        if self._pose_baseline is None:
            return {}
        view = (frame_key, int(batch["target_camera"]))
        out = self._pose_baseline(view, batch["image"], batch["keypoints2d"])
        if metrics.get("pck") is not None:
            joints = self._pose_baseline.joints
            out["pck_baseline_joints"] = mean_over_joints(metrics, "pck", joints)
            out["joint_error_px_baseline_joints"] = mean_over_joints(metrics, "joint_error_px", joints)
        return out

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
                if protocol == "novel_view":
                    metrics.update(self.pose_baseline_metrics(frame_key, batch, metrics))
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
        if self._pose_baseline_note is not None:
            result["notes/pose_baseline"] = self._pose_baseline_note
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
