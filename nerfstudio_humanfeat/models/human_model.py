"""The base of every generalizable human model: source-view lookup, feature rendering, losses and metrics.

A subclass implements two things, as the papers' figures do: ``condition`` (encode the source views of a
target camera: image features, a cost volume...) and ``render_rays`` (sample, query the field, render).
This base finds the source views for training batches, evaluation cameras, render paths and the viewer.
"""

from __future__ import annotations

import os
from abc import abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Literal, Optional, Tuple, Type

import torch
import torch.nn.functional as F
from jaxtyping import Float
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.model_components.renderers import AccumulationRenderer, DepthRenderer, RGBRenderer, SemanticRenderer
from nerfstudio.models.base_model import Model, ModelConfig
from nerfstudio.utils import colors
from nerfstudio.viewer.viewer_elements import ViewerCheckbox, ViewerDropdown, ViewerSlider
from torch import Tensor
from torch.nn import Parameter

from nerfstudio_humanfeat.body.smpl import BodyPose
from nerfstudio_humanfeat.body.triangulation import triangulate_consistent
from nerfstudio_humanfeat.camera_utils import opencv_from_cameras
from nerfstudio_humanfeat.data.bodies import FrameBody
from nerfstudio_humanfeat.data.catalog import HumanCatalog, HumanDataError
from nerfstudio_humanfeat.keypoints import (
    draw_skeleton,
    embedding_to_color,
    extract_keypoints_2d,
    extract_keypoints_3d,
    heatmap_to_color,
    volume_grid,
)
from nerfstudio_humanfeat.metrics import ImageMetrics
from nerfstudio_humanfeat.model_components.losses import PerceptualLoss, densepose_loss, masked_heatmap_mse
from nerfstudio_humanfeat.model_components.normalization import set_eval_batch_statistics
from nerfstudio_humanfeat.model_components.outputs import LazyOutputs
from nerfstudio_humanfeat.model_components.ray_samplers import ray_aabb_near_far
from nerfstudio_humanfeat.model_components.views import (
    SourceViews,
    TargetView,
    crop_target_to_box,
    crop_to_box,
    load_source_views,
)
from nerfstudio_humanfeat.skeleton import BODY25_NAMES
from nerfstudio_humanfeat.viewer.inspector import HumanInspector, opening_view


@dataclass
class HumanFeatureModelConfig(ModelConfig):
    """Options shared by every generalizable human model of this plugin."""

    _target: Type = field(default_factory=lambda: HumanFeatureModel)
    eval_num_rays_per_chunk: int = 1 << 15
    """Rays rendered at once by get_outputs_for_camera (only those that hit the subject's box are rendered)."""
    enable_collider: bool = False
    """Near/far come from each frame's SMPL box, not from a collider."""
    num_source_views: int = 2
    """Source views used to render a camera at evaluation, in ns-render and in the viewer (GHNeRF: 2)."""
    crop_to_box: bool = True
    """Encode each source view, and build the target's per-camera volumes, only in a window around the projection
    of the frame's box (principal points shift; sampling stays exact), not over the whole, mostly empty, image."""
    num_joints: int = 25
    """Heatmap channels (BODY_25 by default)."""
    densepose_dim: int = 3
    """Channels of the dense-pose (continuous surface embedding) head; 0 disables the head."""
    lambda_heatmap: float = 0.5
    lambda_densepose: float = 0.5
    heatmap_positive_weight: float = 10.0
    """Weight w of the heatmap loss's entries near joints: each squared error counts 1 + w * target. 0 is the papers'
    plain MSE, dominated by the many samples far from every joint: on the demo data, 300 CPU steps reached PCK@0.2
    0.003 with it and 0.32 with w = 10 (the issue-8 note gives the commands)."""
    lambda_mask: float = 0.5
    """Weight of the mask loss, MSE between each ray's accumulated opacity and the foreground mask (AniPixel's mask
    loss; GHNeRF and ENeRF have none, 0 gives the papers' loss). Without it the empty space of the subject's box is
    learned from black pixels alone, and short trainings end in a fog filling the box."""
    lambda_perceptual: float = 0.01
    """Weight of the VGG perceptual loss on patches; off (with a warning) when VGG weights are unavailable."""
    perceptual_weights: Optional[Path] = None
    """Local VGG16 checkpoint for the perceptual loss and LPIPS (default: the torch hub cache)."""
    keypoint_threshold: float = 0.1
    """Heatmap peak below which a joint is reported missing (the keypoint tools' default). Rendered heatmaps are
    volume-rendered, so short trainings give peaks well below 1: 0.3 reported joints missing that 0.1 finds near the
    truth (800-step ghnerf on the demo split: held-out PCK@0.2 0.400 -> 0.433, issue-8 note)."""
    eval_protocol: str = "enerf"
    """Masked-metric protocol: 'enerf' (projected SMPL box polygon) or 'neuralbody'."""
    eval_keypoints_3d: bool = True
    """ns-eval: MPJPE of 3D keypoints (``keypoints_3d_method``), computed once per evaluated frame."""
    keypoints_3d_voxel_size: float = 0.02
    """Spacing (m) of the grid on which the heatmap field is queried inside the frame's box."""
    keypoints_3d_threshold: float = 0.1
    """Volumetric-heatmap peak below which a 3D joint is reported missing."""
    keypoints_3d_cameras: Optional[int] = None
    """How many of the frame's target cameras (evenly spread) condition the volumetric heatmap, averaged over them
    (the field depends on the camera it is conditioned for, and averaging smooths that dependence out);
    None: all (the CPU overrides use 1)."""
    keypoints_3d_method: Literal["volume", "triangulated"] = "volume"
    """3D keypoints: the peaks of the volumetric heatmap field (GHNeRF 3.4), or the confidence-weighted DLT
    triangulation of the 2D peaks of heatmaps rendered at ``keypoints_3d_triangulation_views`` of the frame's target
    cameras (what the rendered heatmaps, the supervised quantity, say; the field inside the body is never supervised
    and can peak anywhere there)."""
    keypoints_3d_triangulation_views: int = 4
    """Target cameras (evenly spread, at least 2) whose rendered heatmaps are triangulated."""
    keypoints_3d_max_reprojection: float = 0.05
    """Triangulation: views whose 2D peak lies further than this fraction of the image height from the joint's
    reprojection are dropped, worst first, down to two; a joint still beyond it is reported missing."""
    keypoints_3d_weighting: Literal["none", "occupancy"] = "none"
    """Volumetric heatmap: h(x) alone ('none'), or h(x) times the voxel's occupancy 1 - exp(-sigma(x) * voxel_size).
    Joints lie inside the body, where the density learned from renders is no higher than at the surface, so the
    occupancy pulls the peaks towards the surface. Compare both on a checkpoint with ns-humanfeat-bench
    --train-args "--pipeline.model.keypoints-3d-weighting occupancy"."""
    eval_batchnorm: Literal["running", "batch"] = "running"
    """Statistics of the trained BatchNorm layers when the model renders (ns-eval, ns-render, the viewer):
    'running' is PyTorch's eval mode; 'batch' normalises with each render's own batch (one camera's source views,
    its cost volume), as training does. In short CPU trainings the running statistics lag behind the weights: on
    the demo's held-out views one 800-step ghnerf run rendered a fog filling the box (mean opacity 0.28 outside the
    person) with them and 0.035 with batch statistics, full-image PSNR 29.70 -> 31.58 (issue-8 note). Not in the
    papers, which evaluate in eval mode after ~200k steps."""


RENDER_FRAME_ENV = "HUMANFEAT_FRAME"
"""Environment variable choosing the subject/frame of cameras that carry none (ns-render interpolate/spiral)."""
SOURCE_FRAME_ENV = "HUMANFEAT_SOURCE_FRAME"
"""Environment variable choosing, for animatable methods, the frame (index into the subject's frames) whose images
condition every render: the pose comes from the rendered frame, the appearance from this one (novel pose)."""


def evenly_spread(items: List[int], count: Optional[int]) -> List[int]:
    """``count`` of the items (cameras, frame keys; None or 0: all), evenly spread over the list."""
    count = min(count or len(items), len(items))
    return [items[i * len(items) // count] for i in range(count)]


def default_render_frame(catalog: HumanCatalog, spec: Optional[str]) -> Tuple[str, int, bool]:
    """(subject name, frame index, explicitly chosen) from a 'subject[:frame]' spec or the first test subject."""
    names = [s.name for s in catalog.subjects]
    if spec:
        name, _, frame = spec.partition(":")
        if name not in names:
            raise ValueError(f"${RENDER_FRAME_ENV}={spec!r}: unknown subject {name!r}; subjects are {names}")
        if frame and not frame.isdigit():
            raise ValueError(f"${RENDER_FRAME_ENV}={spec!r}: the frame must be an index, e.g. {name}:0")
        return name, int(frame or 0), True
    test = [s.name for s in catalog.subjects if s.split == "test"]
    return (test or names)[0], 0, False


def check_smpl_fits(catalog: HumanCatalog, method: str, hint: str = "") -> None:
    """Raise, naming the subjects and the files expected, when frames of the catalog have no SMPL fit."""
    missing: Dict[str, List[int]] = {}
    for key in range(catalog.num_frames):
        if catalog.frame(key).smpl_params is None:
            missing.setdefault(str(catalog.subject(key).root), []).append(catalog.frame(key).frame_id)
    if missing:
        where = "; ".join(f"{root}: frames {ids[:5]}{' ...' if len(ids) > 5 else ''}" for root, ids in missing.items())
        raise HumanDataError(
            f"{method} poses an SMPL fit per frame, and these frames have none (expected params/<i>.npy or "
            f"new_params/<i>.npy): {where}. A capture from ns-humanfeat-process has keypoints but no SMPL fit: fit "
            "SMPL to it first (e.g. EasyMocap, written as params/), or train a method without a body model "
            f"(ghnerf, enerf-heatmap, hfnerf){hint}"
        )


def check_source_cameras(catalog: HumanCatalog, num_source_views: int, method: str) -> None:
    """Raise at set-up, naming the subjects, when one has fewer source cameras than a render is conditioned on (else
    the first evaluation fails, after training)."""
    short = {s.name: list(s.source_cameras) for s in catalog.subjects if len(s.source_cameras) < num_source_views}
    if short:
        where = "; ".join(f"{name}: {cameras}" for name, cameras in short.items())
        raise HumanDataError(
            f"{method} renders each view from num_source_views={num_source_views} source cameras, and these subjects "
            f"have fewer ({where}); lower --pipeline.model.num-source-views or give them more source cameras "
            "(--pipeline.datamanager.dataparser.source-cameras)"
        )


class HumanFeatureModel(Model):
    """Generalizable NeRF conditioned on source views that renders colour, depth, joint heatmaps and dense pose."""

    config: HumanFeatureModelConfig
    catalog: HumanCatalog
    supports_novel_pose: bool = False
    """Whether the model renders a frame's pose from the source views of another frame (animatable methods)."""
    needs_smpl: bool = False
    """Whether the model poses each frame's SMPL fit (skinning): it refuses datasets without one at set-up."""
    smpl_hint: str = ""
    """Appended to the refusal: how this method runs without an SMPL fit, where it can."""

    def train(self, mode: bool = True) -> "HumanFeatureModel":
        super().train(mode)
        set_eval_batch_statistics(self, self.config.eval_batchnorm == "batch")
        return self

    def populate_modules(self) -> None:
        super().populate_modules()
        metadata = self.kwargs.get("metadata") or {}
        if "catalog" not in metadata:
            raise ValueError(
                f"{type(self).__name__} needs the human catalog in the dataset metadata: train it with the "
                "'zju-mocap' dataparser through HumanDataManager (pipeline: HumanPipelineConfig)"
            )
        self.catalog = metadata["catalog"]
        check_source_cameras(self.catalog, self.config.num_source_views, type(self).__name__)
        if self.needs_smpl:
            check_smpl_fits(self.catalog, type(self).__name__, self.smpl_hint)
        self.renderer_rgb = RGBRenderer(background_color=colors.BLACK)
        self.renderer_accumulation = AccumulationRenderer()
        self.renderer_depth = DepthRenderer(method="expected")
        self.renderer_features = SemanticRenderer()
        self.perceptual = PerceptualLoss(self.config.perceptual_weights) if self.config.lambda_perceptual > 0 else None
        self.image_metrics = ImageMetrics(
            protocol=self.config.eval_protocol,
            given_bbox_padding=self.catalog.bbox_padding,
            lpips_weights=self.config.perceptual_weights,
            keypoint_threshold=self.config.keypoint_threshold,
        )
        self._add_viewer_elements()

    def _add_viewer_elements(self) -> None:
        """Subject/frame pickers; defaults from $HUMANFEAT_FRAME ('subject' or 'subject:frame'), else a test subject.
        The inspector (3D skeleton, source views, the opening camera on that subject) follows the pick."""
        names = [s.name for s in self.catalog.subjects]
        max_frames = max(len(s.frames) for s in self.catalog.subjects)
        subject, frame, picked = default_render_frame(self.catalog, os.environ.get(RENDER_FRAME_ENV))
        first_key = self.catalog.frame_key(names.index(subject), frame)
        self.inspector = HumanInspector(
            self.catalog,
            self.config.num_source_views,
            opening_view(self.catalog, first_key),
            self.picked_frame_key,
            self.keypoints_3d,
            on_viewer=self._viewer_opened,
        )
        redraw = lambda _: self.inspector.refresh()  # noqa: E731
        self.viewer_pick_frame = ViewerCheckbox(
            "Pick subject/frame here", picked, hint="Unchecked: the time slider walks through all subjects and frames"
        )
        self.viewer_subject = ViewerDropdown("Subject", subject, names, cb_hook=redraw)
        self.viewer_frame = ViewerSlider("Frame", frame, 0, max(max_frames - 1, 1), 1, cb_hook=redraw)
        if self.supports_novel_pose:
            self.viewer_source_frame = ViewerSlider(
                "Source frame",
                -1,
                -1,
                max(max_frames - 1, 1),
                1,
                hint="Frame whose images condition the render (-1: the rendered frame); another frame animates it",
            )

    def _viewer_opened(self) -> None:
        """In the viewer, Subject/Frame pick what renders (it opens on that subject); ns-render keeps the time."""
        self.viewer_pick_frame.value = True

    def picked_frame_key(self) -> int:
        """The frame the viewer's Subject and Frame controls pick."""
        names = [s.name for s in self.catalog.subjects]
        subject = names.index(self.viewer_subject.value)
        frame = min(int(self.viewer_frame.value), len(self.catalog.subjects[subject].frames) - 1)
        return self.catalog.frame_key(subject, frame)

    # ---------------------------------------------------------------- conditioning, implemented by methods
    @abstractmethod
    def condition(self, target: TargetView, sources: SourceViews) -> Any:
        """Per-target work done once per camera: encode the source views (and build a cost volume)."""

    @abstractmethod
    def render_rays(
        self,
        ray_bundle: RayBundle,
        pixels: Float[Tensor, "N 2"],
        target: TargetView,
        sources: SourceViews,
        conditioning: Any,
    ) -> Dict[str, Tensor]:
        """Render rays of the target camera through the given pixel centres (x, y)."""

    def query_points(
        self, target: TargetView, sources: SourceViews, conditioning: Any, points: Float[Tensor, "N 3"]
    ) -> Dict[str, Tensor]:
        """Fields at world points seen from the target camera, without rendering: density (N, 1), heatmap (N, J)
        and, with a dense-pose head, densepose (N, D)."""
        raise NotImplementedError(f"{type(self).__name__} does not query points")

    # ---------------------------------------------------------------- 3D keypoints
    def keypoint_cameras(self, frame_key: int, count: Optional[int] = None) -> List[int]:
        """``count`` target cameras of the frame, evenly spread (default: ``keypoints_3d_cameras``, None: all)."""
        subject = self.catalog.subject(frame_key)
        count = count if count is not None else self.config.keypoints_3d_cameras
        return evenly_spread(subject.target_cameras or subject.source_cameras, count)

    @torch.no_grad()
    def heatmap_volume(self, frame_key: int, voxel_size: float, camera: int) -> Float[Tensor, "J X Y Z"]:
        """The volumetric heatmap of a frame on ``volume_grid(box, voxel_size)``, conditioned as for rendering one of
        its dataset cameras; see ``keypoints_3d_weighting``."""
        target = self.target_of_dataset_view(frame_key, camera)
        sources = self.sources_for(target, exclude=(camera,))
        target, _, conditioning = self.conditioned(target, sources)
        grid = volume_grid(target.bbox, voxel_size)
        pieces = []
        for points in grid.reshape(-1, 3).split(self.config.eval_num_rays_per_chunk):
            fields = self.query_points(target, sources, conditioning, points)
            heatmap = fields["heatmap"]
            if self.config.keypoints_3d_weighting == "occupancy":
                heatmap = heatmap * (1.0 - torch.exp(-fields["density"] * voxel_size))
            pieces.append(heatmap)
        return torch.cat(pieces).reshape(*grid.shape[:3], -1).permute(3, 0, 1, 2)

    def keypoints_3d(self, frame_key: int) -> Float[Tensor, "J 4"]:
        """World 3D keypoints (x, y, z, confidence; missing: nan, 0) of a frame, as ``keypoints_3d_method`` says."""
        if self.config.keypoints_3d_method == "triangulated":
            return self.triangulated_keypoints_3d(frame_key)
        size = self.config.keypoints_3d_voxel_size
        cameras = self.keypoint_cameras(frame_key)
        volume = sum(self.heatmap_volume(frame_key, size, camera) for camera in cameras) / len(cameras)
        origin = self.catalog.frame(frame_key).bbox[0]
        return extract_keypoints_3d(volume, origin, size, threshold=self.config.keypoints_3d_threshold)

    @torch.no_grad()
    def triangulated_keypoints_3d(self, frame_key: int) -> Float[Tensor, "J 4"]:
        """The DLT triangulation of the 2D heatmap peaks of the frame rendered at its keypoint cameras."""
        views = self.config.keypoints_3d_triangulation_views
        cameras = self.keypoint_cameras(frame_key, views)
        subject = self.catalog.subject(frame_key)
        if len(cameras) < 2:  # too few target cameras: source cameras too, each rendered from the others
            cameras = evenly_spread(sorted(set(subject.target_cameras) | set(subject.source_cameras)), views)
        others = [len([c for c in subject.source_cameras if c != camera]) for camera in cameras]
        if len(cameras) < 2 or min(others) == 0:
            raise ValueError(
                f"keypoints_3d_method='triangulated': {self.catalog.describe(frame_key)} has cameras {cameras}; "
                "triangulation renders at least 2 of them, each from another source camera; use "
                "keypoints_3d_method='volume'"
            )
        detections, projections, height = [], [], 0
        for camera, available in zip(cameras, others):
            target = self.target_of_dataset_view(frame_key, camera)
            sources = self.sources_for(target, exclude=(camera,), count=min(self.config.num_source_views, available))
            heatmap = self.render_image(target.rays(target.pixel_grid()), target, sources)["heatmap"]
            detections.append(extract_keypoints_2d(heatmap.permute(2, 0, 1), threshold=self.config.keypoint_threshold))
            projections.append((target.intrinsics @ target.world_to_camera).cpu())
            height = max(height, target.height)
        max_error = self.config.keypoints_3d_max_reprojection * height
        points = triangulate_consistent(
            torch.stack(detections), torch.stack(projections), max_error, self.config.keypoint_threshold
        )
        missing = points[:, 3] <= 0
        points[missing, :3] = float("nan")
        return points

    # ---------------------------------------------------------------- bodies
    def frame_body(self, frame_key: int) -> FrameBody:
        """A frame's SMPL body (parameters, posed vertices, joints, bone transforms) on the model's device. For a
        target view, ``target.frame_key`` gives the pose to render and ``target.sources_key`` the observed one."""
        return self.catalog.body(frame_key).to(self.device)

    def target_body(self, target: TargetView) -> BodyPose:
        """The pose to render (target space): ``target.target_pose`` when given, else the fit of its frame."""
        return target.target_pose if target.target_pose is not None else self.frame_body(target.frame_key).pose

    def observation_body(self, target: TargetView) -> BodyPose:
        """The pose seen in the source views (observation space): the fit of the source frame."""
        return self.frame_body(target.sources_key).pose

    # ---------------------------------------------------------------- finding source views
    def target_of_dataset_view(self, frame_key: int, camera: int) -> TargetView:
        rig = self.catalog.subject(frame_key).rig
        return TargetView(
            frame_key=frame_key,
            intrinsics=rig.intrinsics[camera].to(self.device),
            world_to_camera=rig.world_to_camera[camera].to(self.device),
            height=rig.height,
            width=rig.width,
            bbox=self.catalog.frame(frame_key).bbox.to(self.device),
        )

    def resolve_frame_key(self, camera: Cameras) -> int:
        """The (subject, frame) a camera renders: its metadata, else the viewer's pick, else its time."""
        if camera.metadata is not None and "frame_key" in camera.metadata:
            return int(camera.metadata["frame_key"].reshape(-1)[0])
        if camera.times is not None and not self.viewer_pick_frame.value:
            return self.catalog.frame_key_from_time(float(camera.times.reshape(-1)[0]))
        return self.picked_frame_key()

    def resolve_source_frame_key(self, camera: Cameras, frame_key: int) -> Optional[int]:
        """The frame whose images condition a camera: its metadata, else the viewer's or $HUMANFEAT_SOURCE_FRAME's
        source frame (an index into the subject's frames) for animatable methods, else the rendered frame itself."""
        if camera.metadata is not None and "source_frame_key" in camera.metadata:
            return int(camera.metadata["source_frame_key"].reshape(-1)[0])
        if not self.supports_novel_pose:
            return None
        index = int(self.viewer_source_frame.value)
        env = os.environ.get(SOURCE_FRAME_ENV)
        if env:
            if not env.lstrip("-").isdigit():
                raise ValueError(f"${SOURCE_FRAME_ENV}={env!r}: expected a frame index of the subject, e.g. 0")
            index = int(env)
        if index < 0:
            return None
        subject_index = self.catalog.frame_keys[frame_key][0]
        frames = len(self.catalog.subjects[subject_index].frames)
        return self.catalog.frame_key(subject_index, min(index, frames - 1))

    def sources_for(
        self, target: TargetView, exclude: Tuple[int, ...] = (), count: Optional[int] = None
    ) -> SourceViews:
        """The ``count`` (default ``num_source_views``) cameras nearest to the target, of its source frame."""
        count = self.config.num_source_views if count is None else count
        ids = self.catalog.nearest_cameras(target.sources_key, target.camera_to_world.cpu(), count, exclude)
        return self.load_sources(target, ids)

    def load_sources(self, target: TargetView, camera_ids: List[int]) -> SourceViews:
        """The source views of the target's source frame, cropped to that frame's box with ``crop_to_box``."""
        sources = load_source_views(self.catalog, target.sources_key, camera_ids, self.device)
        if not self.config.crop_to_box:
            return sources
        return crop_to_box(sources, self.catalog.frame(target.sources_key).bbox.to(self.device))

    def check_novel_pose(self, target: TargetView) -> None:
        """Methods that cannot animate render a frame only from its own source views."""
        if target.novel_pose and not self.supports_novel_pose:
            raise ValueError(
                f"{type(self).__name__} renders a frame only from its own source views (it is not animatable): "
                f"cannot render the pose of {self.catalog.describe(target.frame_key)} from the images of "
                f"{self.catalog.describe(target.sources_key)}"
            )

    def conditioned(self, target: TargetView, sources: SourceViews) -> Tuple[TargetView, Tensor, Any]:
        """The target as conditioned (cropped to its box with ``crop_to_box``), the corner (x, y) to subtract from
        its full-image pixels, and the conditioning."""
        offset = target.intrinsics.new_zeros(2)
        if self.config.crop_to_box:
            target, offset = crop_target_to_box(target)
        return target, offset, self.condition(target, sources)

    # ---------------------------------------------------------------- nerfstudio entry points
    def get_outputs(self, ray_bundle: RayBundle) -> Dict[str, Tensor]:
        meta = ray_bundle.metadata
        frame_key = int(meta["frame_key"].reshape(-1)[0])
        target = self.target_of_dataset_view(frame_key, int(meta["target_camera"].reshape(-1)[0]))
        if "source_frame_key" in meta:
            target.source_frame_key = int(meta["source_frame_key"].reshape(-1)[0])
        self.check_novel_pose(target)
        source_ids = [int(c) for c in meta["source_cameras"].reshape(-1, meta["source_cameras"].shape[-1])[0]]
        sources = self.load_sources(target, source_ids)
        target, offset, conditioning = self.conditioned(target, sources)
        return self.render_rays(ray_bundle, meta["pixels"] - offset, target, sources, conditioning)

    @torch.no_grad()
    def get_outputs_for_camera(self, camera: Cameras, obb_box=None) -> Dict[str, Tensor]:
        """Render a whole camera: its frame's nearest source views are chosen here, for any camera."""
        camera = camera.to(self.device)
        intrinsics, world_to_camera, height, width = opencv_from_cameras(camera)
        frame_key = self.resolve_frame_key(camera)
        target = TargetView(
            frame_key,
            intrinsics,
            world_to_camera,
            height,
            width,
            self.catalog.frame(frame_key).bbox.to(self.device),
            self.resolve_source_frame_key(camera, frame_key),
        )
        self.check_novel_pose(target)
        sources = self.sources_for(target, count=int(self.inspector.num_source_views.value))
        self.inspector.show_sources(target.sources_key, sources.camera_ids)
        rays = camera.generate_rays(camera_indices=0, keep_shape=True).flatten()
        outputs = self.render_image(rays, target, sources)
        return LazyOutputs(outputs, self.feature_visualizations(outputs))

    @torch.no_grad()
    def render_image(self, rays: RayBundle, target: TargetView, sources: SourceViews) -> Dict[str, Tensor]:
        """Every output of a whole target image (H, W, C), ``rays`` one per pixel in row-major order. Rays that miss
        the frame's box see only the (black) background: like ENeRF, only the others are rendered."""
        pixels = target.pixel_grid()
        height, width = target.height, target.width
        target, offset, conditioning = self.conditioned(target, sources)
        pixels = pixels - offset
        hit = ray_aabb_near_far(rays.origins, rays.directions, target.bbox)[2].reshape(-1)
        inside = torch.nonzero(hit).squeeze(-1)
        chunk = self.config.eval_num_rays_per_chunk
        pieces: Dict[str, List[Tensor]] = {}
        for start in range(0, len(inside), chunk):
            index = inside[start : start + chunk]
            out = self.render_rays(rays[index], pixels[index], target, sources, conditioning)
            for key, value in out.items():
                if isinstance(value, Tensor) and value.shape[:1] == index.shape:
                    pieces.setdefault(key, []).append(value)
        if not pieces:  # nothing of the box in view: render one ray for the output names and channel counts
            out = self.render_rays(rays[:1], pixels[:1], target, sources, conditioning)
            pieces = {k: [v[:0]] for k, v in out.items() if isinstance(v, Tensor) and v.shape[:1] == (1,)}
        outputs = {}
        for key, values in pieces.items():
            rendered = torch.cat(values)
            full = rendered.new_zeros(height * width, *rendered.shape[1:])
            full[inside] = rendered
            outputs[key] = full.reshape(height, width, -1)
        return outputs

    def feature_visualizations(self, outputs: Dict[str, Tensor]) -> Dict[str, Callable[[], Tensor]]:
        """Viewer/render outputs, each made when asked for: coloured heatmaps, each joint's heatmap, dense pose
        colours and the skeleton (2D keypoints extracted from the heatmaps, drawn on rgb)."""
        vis: Dict[str, Callable[[], Tensor]] = {}
        if "heatmap" in outputs:
            heatmaps = outputs["heatmap"]
            vis["joint_heatmap"] = lambda: heatmap_to_color(heatmaps)
            names = BODY25_NAMES if heatmaps.shape[-1] == len(BODY25_NAMES) else None
            for j in range(heatmaps.shape[-1]):
                vis[f"joint_{j:02d}_{names[j] if names else j}"] = lambda j=j: heatmaps[..., j : j + 1]

            def skeleton() -> Tensor:
                keypoints = extract_keypoints_2d(heatmaps.permute(2, 0, 1), threshold=self.config.keypoint_threshold)
                return draw_skeleton(outputs["rgb"], keypoints).to(heatmaps)

            vis["skeleton"] = skeleton
        if "densepose" in outputs:
            vis["densepose_color"] = lambda: embedding_to_color(outputs["densepose"])
        return vis

    def get_param_groups(self) -> Dict[str, List[Parameter]]:
        return {"fields": [p for p in self.parameters() if p.requires_grad]}

    # ---------------------------------------------------------------- losses and metrics
    def get_metrics_dict(self, outputs: Dict[str, Tensor], batch: Dict[str, Any]) -> Dict[str, Tensor]:
        metrics = {"psnr": -10.0 * torch.log10(F.mse_loss(outputs["rgb"].detach(), batch["image"]).clamp_min(1e-10))}
        if "heatmap" in outputs and "heatmap" in batch:
            metrics["heatmap_mse"] = F.mse_loss(outputs["heatmap"], batch["heatmap"]).detach()
        return metrics

    def get_loss_dict(self, outputs, batch, metrics_dict=None) -> Dict[str, Tensor]:
        losses = {"rgb_loss": F.mse_loss(outputs["rgb"], batch["image"])}
        losses.update(self.level_losses(outputs, batch))
        losses.update(self.perceptual_losses(outputs, batch))
        return losses

    def perceptual_losses(self, outputs: Dict[str, Tensor], batch: Dict[str, Any]) -> Dict[str, Tensor]:
        """``lambda_perceptual`` x the perceptual loss of the rendered patches (the batch's first rays), when there
        are patches and VGG weights."""
        if self.perceptual is None or not self.perceptual.available or batch.get("num_patches", 0) <= 0:
            return {}
        num, size = int(batch["num_patches"]), int(batch["patch_size"])
        count = num * size * size
        pred = outputs["rgb"][:count].reshape(num, size, size, 3).permute(0, 3, 1, 2)
        gt = batch["image"][:count].reshape(num, size, size, 3).permute(0, 3, 1, 2)
        return {"perceptual_loss": self.config.lambda_perceptual * self.perceptual(pred, gt)}

    def level_losses(self, outputs: Dict[str, Tensor], batch: Dict[str, Any], suffix: str = "") -> Dict[str, Tensor]:
        """Feature and mask losses of the outputs named with `suffix` (a cascade level or a coarse pass)."""
        return {**self.feature_losses(outputs, batch, suffix), **self.mask_losses(outputs, batch, suffix)}

    def mask_losses(self, outputs: Dict[str, Tensor], batch: Dict[str, Any], suffix: str = "") -> Dict[str, Tensor]:
        """Accumulated opacity against the foreground mask (``lambda_mask``), for the outputs named with `suffix`."""
        if self.config.lambda_mask <= 0 or "foreground" not in batch or f"accumulation{suffix}" not in outputs:
            return {}
        accumulation = outputs[f"accumulation{suffix}"].clamp(0.0, 1.0)
        return {f"mask_loss{suffix}": self.config.lambda_mask * F.mse_loss(accumulation, batch["foreground"])}

    def feature_losses(self, outputs: Dict[str, Tensor], batch: Dict[str, Any], suffix: str = "") -> Dict[str, Tensor]:
        """Heatmap MSE over visible joints and dense-pose loss, for the outputs named with `suffix`."""
        losses = {}
        if f"heatmap{suffix}" in outputs and "heatmap" in batch:
            losses[f"heatmap_loss{suffix}"] = self.config.lambda_heatmap * masked_heatmap_mse(
                outputs[f"heatmap{suffix}"], batch["heatmap"], batch["joint_valid"], self.config.heatmap_positive_weight
            )
        if f"densepose{suffix}" in outputs and "densepose" in batch:
            losses[f"densepose_loss{suffix}"] = self.config.lambda_densepose * densepose_loss(
                outputs[f"densepose{suffix}"], batch["densepose"], batch["densepose_valid"]
            )
        return losses

    def get_image_metrics_and_images(
        self, outputs: Dict[str, Tensor], batch: Dict[str, Any]
    ) -> Tuple[Dict[str, Optional[float]], Dict[str, Tensor]]:
        """Metrics of one held-out view (None where unavailable or undefined) and comparison images."""
        rig = self.catalog.subject(int(batch["frame_key"])).rig
        camera = int(batch["target_camera"])
        height, width = batch["image"].shape[:2]
        mask = self.image_metrics.evaluation_mask(
            batch["bbox"], rig.intrinsics[camera], rig.world_to_camera[camera], height, width
        ).to(self.device)
        frame = self.catalog.frame(int(batch["frame_key"]))
        metrics = self.image_metrics(
            outputs["rgb"],
            batch["image"],
            mask,
            gt_keypoints=batch.get("keypoints2d"),
            pred_heatmaps=outputs.get("heatmap"),
            gt_heatmaps=batch.get("heatmap"),
            pred_densepose=outputs.get("densepose"),
            gt_densepose=batch.get("densepose"),
            densepose_mask=batch.get("densepose_valid"),
            gt_keypoints_3d=frame.keypoints3d,
            pred_keypoints_3d=outputs.get("keypoints3d"),
        )
        images = {"img": torch.cat([batch["image"], outputs["rgb"]], dim=1)}
        if "heatmap" in outputs and "heatmap" in batch:
            images["heatmap"] = torch.cat([heatmap_to_color(batch["heatmap"]), outputs["joint_heatmap"]], dim=1)
            images["skeleton"] = outputs["skeleton"]
        if "densepose" in outputs and "densepose" in batch:
            images["densepose"] = torch.cat([embedding_to_color(batch["densepose"]), outputs["densepose_color"]], dim=1)
        return metrics, images

    def metric_notes(self) -> Dict[str, str]:
        """Strings that explain the evaluation (protocol, unavailable metrics), merged into ns-eval's JSON."""
        notes = self.image_metrics.notes()
        if self.config.eval_keypoints_3d:
            cfg = self.config
            heatmap = "h(x) (1 - exp(-sigma dx))" if cfg.keypoints_3d_weighting == "occupancy" else "h(x)"
            if cfg.keypoints_3d_method == "triangulated":
                source = (
                    f"DLT triangulation of the 2D peaks of heatmaps rendered at {cfg.keypoints_3d_triangulation_views} "
                    f"target cameras (threshold {cfg.keypoint_threshold}), views further than "
                    f"{cfg.keypoints_3d_max_reprojection} of the image height from the reprojection dropped"
                )
            else:
                source = (
                    f"peaks of the volumetric heatmap {heatmap} on a {cfg.keypoints_3d_voxel_size} m grid in the "
                    f"frame's box (threshold {cfg.keypoints_3d_threshold}), averaged over the volumes conditioned for "
                    f"{cfg.keypoints_3d_cameras or 'all'} target camera(s)"
                )
            notes["mpjpe_mm"] = (
                f"3D keypoints: {source}; MPJPE over the joints found and present in the ground truth, "
                "keypoints3d_detected = the share of ground-truth joints found"
            )
        return notes
