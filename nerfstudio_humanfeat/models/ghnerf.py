"""GHNeRF: generalizable human features with an efficient (ENeRF) NeRF backbone (paper 001, Fig. 2).

Source images -> FPN features (8/16/32 ch) -> two-level plane-sweep cost volume (variance of warped
features, 3D U-Net) -> depth probabilities -> depth-guided samples near the surface. Per sample:
f_img (pixel-aligned features pooled over views), f_voxel (cost-volume features) -> g_NeRF -> V_NeRF;
g_sigma(V_NeRF) density; g_c(V_NeRF, d) colour (or ENeRF's IBR blending); g_h(V_NeRF, f_h) joint
heatmaps and dense pose, with f_h the pooled pixel-aligned features of a ResNet/DINO human encoder.
Everything is volume rendered with nerfstudio's renderers. ``enerf-heatmap`` is the same model without f_h.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Literal, Optional, Tuple, Type

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float
from nerfstudio.cameras.rays import RayBundle, RaySamples
from nerfstudio.field_components.encodings import SHEncoding
from torch import Tensor, nn

from nerfstudio_humanfeat.keypoints import feature_map_heatmaps
from nerfstudio_humanfeat.model_components.cost_volume import (
    CascadeCostVolume,
    CostVolumeOutput,
    next_level_range,
    sample_volume_features,
)
from nerfstudio_humanfeat.model_components.heads import (
    ColorHead,
    CoordinateHead,
    DensePoseHead,
    DensityHead,
    HeatmapHead,
    IBRBlendingHead,
    NeRFFeatureMLP,
)
from nerfstudio_humanfeat.model_components.image_encoders import FPNEncoder, build_human_encoder
from nerfstudio_humanfeat.model_components.losses import coordinate_loss, masked_heatmap_mse
from nerfstudio_humanfeat.model_components.pooling import ViewPoolingMLP, mean_variance_pool, relative_view_directions
from nerfstudio_humanfeat.model_components.projection import (
    grid_sample_pixels,
    pixel_centres,
    project_points,
    transform_points,
)
from nerfstudio_humanfeat.model_components.ray_samplers import DepthGuidedSampler, ray_aabb_near_far, sample_weights
from nerfstudio_humanfeat.model_components.views import SourceViews, TargetView, sample_source_features
from nerfstudio_humanfeat.models.human_model import HumanFeatureModel, HumanFeatureModelConfig

FPN_CHANNELS = (8, 16, 32)
"""FPN channels at strides 1, 2, 4: level 0 renders with the stride-4 map, level 1 with the full-resolution map."""


@dataclass
class GHNeRFModelConfig(HumanFeatureModelConfig):
    """GHNeRF; with ``human_encoder='none'`` it is the paper's ENeRF+Heatmap baseline."""

    _target: Type = field(default_factory=lambda: GHNeRFModel)
    human_encoder: Literal["resnet34", "resnet18", "dino_vits8", "none"] = "resnet34"
    """The human-feature encoder f_h ('none': ENeRF+Heatmap)."""
    human_encoder_weights: Optional[Path] = None
    """ImageNet/DINO checkpoint; default: the torch hub cache, else random initialisation with a warning."""
    freeze_human_encoder: bool = False
    """Keep f_h's encoder fixed (the paper's 'Pre'); fine-tuning ('Fine') is better in its Table 6."""
    num_planes: Tuple[int, int] = (32, 8)
    """Depth planes of the cost volume per cascade level."""
    volume_channels: Tuple[int, int] = (8, 8)
    """Channels of the cost-volume feature f_voxel per level (ENeRF's code: 8 and 8; an earlier reading: 32 and 8)."""
    num_samples: Tuple[int, int] = (8, 4)
    """Depth-guided samples per ray per level (GHNeRF: 8 and 4; ENeRF: 8 and 2)."""
    level_weights: Tuple[float, float] = (0.1, 1.0)
    """Loss weight of each cascade level."""
    color_mode: Literal["mlp", "ibr"] = "ibr"
    """'ibr': ENeRF's blending of source colours (the default: it learned faster in the learning benchmark, see the
    issue-16 note); 'mlp': g_c(V_NeRF, d) as in GHNeRF's Eq. 3."""
    ibr_context: Literal["nerf", "enerf"] = "nerf"
    """Per-point context of the IBR blending weights: V_NeRF ('nerf') or, as ENeRF's code, f_voxel ⊕ pooled f_img."""
    nerf_dim: int = 64
    """Width of V_NeRF and of the heads' hidden layers."""
    pooled_image_dim: int = 16
    """Channels of f_img after view pooling (ENeRF: 16)."""
    lambda_source_heatmap: float = 0.0
    """Weight of an auxiliary heatmap loss on the source views: a 1x1 convolution on f_h's map predicts the source
    images' joint heatmaps, supervised by their 2D keypoints (Gaussians of ``source_heatmap_sigma``, the heatmap
    loss's positive weighting). Not in GHNeRF, whose f_h comes from a pretrained (DINO/ImageNet) encoder; from
    random initialisation it stands in for that pretraining, and rendering is unchanged. 0 disables it."""
    source_heatmap_sigma: float = 3.0
    """Standard deviation (source-image pixels) of the auxiliary loss's heatmap targets."""
    lambda_coordinate: float = 0.0
    """Weight of the coordinate loss through the g_co head (supplementary: 0.01 or 0.05; 0 disables the head)."""
    opacity: Literal["enerf", "interval"] = "enerf"
    """Opacity of a depth-guided sample: 'enerf' 1 - exp(-sigma) (ENeRF's code: the few samples stand for the
    surface, whatever their spacing), 'interval' 1 - exp(-sigma * delta) (NeRF's quadrature; with the narrow
    intervals of confident pixels the density must grow as 1 / std)."""
    human_feature_dim: Optional[int] = 64
    """f_h is projected to this many channels by a learned 1x1 convolution on the encoder's map, before it is sampled
    and pooled per point; None samples the encoder's channels (512 for ResNet, GHNeRF as written). The projection is
    a linear layer the paper's g_h would apply after pooling's mean; here it comes before the variance, so it is a
    named deviation that cuts the per-sample cost of f_h by the channel ratio."""
    min_depth_std: float = 0.01
    """Lower bound (m) of the depth interval's half-width, so confident pixels still get an interval."""
    point_query_level: Literal[0, 1] = 1
    """Cascade level whose heads answer ``query_points`` (3D keypoints). Level 1 renders the outputs (loss weight 1,
    full-resolution features), but its cost volume spans only a band around the predicted surface and points
    outside it read the band's border; level 0's spans the whole box (weight 0.1, 1/4-resolution features).
    Level 1 is the default; ``--pipeline.model.point-query-level 0`` evaluates the other choice."""


@dataclass
class GHNeRFConditioning:
    """Everything computed once per target camera."""

    image_features: List[Tensor]
    """Per level: source features with RGB appended, (V, C + 3, h, w)."""
    human_features: Optional[Tensor]
    volumes: List[CostVolumeOutput]


@dataclass
class PointFeatures:
    """What one cascade level computes per sample point before its heads."""

    nerf: Tensor
    """V_NeRF, (R, S, C)."""
    human: Optional[Tensor]
    """Pooled human features f_h, (R, S, H); None for ENeRF+Heatmap."""
    view_features: Tensor
    """Pixel-aligned source features, (V, R, S, C')."""
    directions: Tensor
    """Relative view directions, (V, R, S, 4)."""
    valid: Tensor
    """Where a sample projects inside a source view, (V, R, S)."""
    nerf_inputs: Tuple[Tensor, Tensor]
    """(f_voxel, pooled f_img), the inputs of g_NeRF, (R, S, C1) and (R, S, C2)."""


class GHNeRFModel(HumanFeatureModel):
    """GHNeRF / ENeRF+Heatmap on nerfstudio."""

    config: GHNeRFModelConfig

    def populate_modules(self) -> None:
        super().populate_modules()
        cfg = self.config
        self.feature_net = FPNEncoder()
        self.cost_volumes = nn.ModuleList(
            [CascadeCostVolume.enerf(level, cfg.num_planes[level], cfg.volume_channels[level]) for level in range(2)]
        )
        self.samplers = nn.ModuleList(
            [DepthGuidedSampler(cfg.num_samples[level], min_std=cfg.min_depth_std) for level in range(2)]
        )
        self.human_encoder = None
        self.source_heatmap_head: Optional[nn.Module] = None
        human_dim = 0
        if cfg.human_encoder != "none":
            self.human_encoder = build_human_encoder(
                cfg.human_encoder, cfg.human_encoder_weights, cfg.freeze_human_encoder
            )
            channels = self.human_encoder.out_channels
            if cfg.human_feature_dim is not None:
                self.human_projection = nn.Conv2d(channels, cfg.human_feature_dim, 1)
                channels = cfg.human_feature_dim
            human_dim = 2 * channels
            if cfg.lambda_source_heatmap > 0:
                self.source_heatmap_head = nn.Sequential(nn.Conv2d(channels, cfg.num_joints, 1), nn.Sigmoid())
        self.levels = nn.ModuleList([self._level_heads(level, human_dim) for level in range(2)])

    def _level_heads(self, level: int, human_dim: int) -> nn.ModuleDict:
        cfg = self.config
        view_dim = (FPN_CHANNELS[2] if level == 0 else FPN_CHANNELS[0]) + 3
        heads = nn.ModuleDict(
            {
                "pool": ViewPoolingMLP(view_dim, hidden_channels=32, out_channels=cfg.pooled_image_dim),
                "g_nerf": NeRFFeatureMLP(
                    cfg.pooled_image_dim, self.cost_volumes[level].out_channels, cfg.nerf_dim, cfg.nerf_dim
                ),
                "g_sigma": DensityHead(cfg.nerf_dim),
                "g_h": HeatmapHead(cfg.nerf_dim, human_dim, cfg.num_joints, cfg.nerf_dim),
            }
        )
        if cfg.color_mode == "mlp":
            heads["g_c"] = ColorHead(cfg.nerf_dim, SHEncoding(levels=4, implementation="torch"), cfg.nerf_dim)
        else:
            context_dim = cfg.nerf_dim
            if cfg.ibr_context == "enerf":
                context_dim = self.cost_volumes[level].out_channels + cfg.pooled_image_dim
            heads["g_c"] = IBRBlendingHead(view_dim, context_dim=context_dim, hidden_dim=cfg.nerf_dim)
        if cfg.densepose_dim > 0:
            heads["g_dp"] = DensePoseHead(cfg.nerf_dim, human_dim, cfg.densepose_dim, cfg.nerf_dim)
        if cfg.lambda_coordinate > 0:
            heads["g_co"] = CoordinateHead(cfg.nerf_dim, cfg.nerf_dim)
        return heads

    # ------------------------------------------------------------------ per target camera
    def condition(self, target: TargetView, sources: SourceViews) -> GHNeRFConditioning:
        full, half, quarter = self.feature_net(sources.images)
        level_maps = []
        for features in (quarter, full):
            rgb = F.interpolate(sources.images, size=features.shape[-2:], mode="bilinear", align_corners=False)
            level_maps.append(torch.cat([features, rgb], dim=1))
        human = None
        if self.human_encoder is not None:
            human = self.human_encoder(sources.images)
            if self.config.human_feature_dim is not None:
                human = self.human_projection(human)
        target_size = (target.height, target.width)
        near, far = frustum_depth_range(target, self.cost_volumes[0].volume_size(target_size))
        volumes = []
        for level, source_features in enumerate((quarter, half)):
            volume = self.cost_volumes[level](
                source_features,
                sources.intrinsics,
                sources.world_to_camera,
                target.intrinsics,
                target.world_to_camera,
                near,
                far,
                image_size=sources.image_size,
                target_image_size=target_size,
            )
            volumes.append(volume)
            near, far = next_level_range(volume.depth_mean, volume.depth_std, volume.near, volume.far)
        return GHNeRFConditioning(level_maps, human, volumes)

    # ------------------------------------------------------------------ per ray chunk
    def render_rays(
        self,
        ray_bundle: RayBundle,
        pixels: Float[Tensor, "N 2"],
        target: TargetView,
        sources: SourceViews,
        conditioning: GHNeRFConditioning,
    ) -> Dict[str, Tensor]:
        near, far, _ = ray_aabb_near_far(ray_bundle.origins, ray_bundle.directions, target.bbox)
        ray_bundle.nears, ray_bundle.fars = near, far
        outputs: Dict[str, Tensor] = {}
        if self.training and self.source_heatmap_head is not None and conditioning.human_features is not None:
            loss = self.source_heatmap_loss(target, sources, conditioning.human_features)
            if loss is not None:
                outputs["source_heatmap_loss"] = loss
        levels = (0, 1) if self.training else (1,)
        for level in levels:
            suffix = "" if level == 1 else "_level0"
            outputs.update(self.render_level(level, ray_bundle, pixels, target, sources, conditioning, suffix))
        return outputs

    def render_level(
        self,
        level: int,
        ray_bundle: RayBundle,
        pixels: Float[Tensor, "N 2"],
        target: TargetView,
        sources: SourceViews,
        conditioning: GHNeRFConditioning,
        suffix: str,
    ) -> Dict[str, Tensor]:
        volume = conditioning.volumes[level]
        maps = torch.stack([volume.depth_mean, volume.depth_std])[None]
        mean, std = grid_sample_pixels(maps, pixels[None], (target.height, target.width))[0]
        ray_samples: RaySamples = self.samplers[level](
            ray_bundle, depth_mean=mean[:, None], depth_std=std[:, None], world_to_camera=target.world_to_camera
        )
        positions = ray_samples.frustums.get_positions()
        point = self.point_features(level, positions, pixels, ray_bundle.origins, target, sources, conditioning)
        heads = self.levels[level]
        fields = self.point_fields(level, point)
        if self.config.color_mode == "mlp":
            rgb = heads["g_c"](point.nerf, ray_samples.frustums.directions)
        else:
            view_features = point.view_features
            context = point.nerf if self.config.ibr_context == "nerf" else torch.cat(point.nerf_inputs, dim=-1)
            rgb = heads["g_c"](view_features, point.directions, view_features[..., -3:], point.valid, context=context)
        weights = sample_weights(ray_samples, fields["density"], self.config.opacity)
        outputs = {
            f"rgb{suffix}": self.renderer_rgb(rgb=rgb, weights=weights),
            f"accumulation{suffix}": self.renderer_accumulation(weights=weights),
            f"depth{suffix}": self.renderer_depth(weights=weights, ray_samples=ray_samples),
        }
        for name in ("heatmap", "densepose"):
            if name in fields:
                outputs[f"{name}{suffix}"] = self.renderer_features(semantics=fields[name], weights=weights)
        if "g_co" in heads and self.training:
            lo, hi = target.bbox[0], target.bbox[1]
            outputs[f"coordinate_loss{suffix}"] = coordinate_loss(
                heads["g_co"](point.nerf), (positions - lo) / (hi - lo)
            )
        return outputs

    def source_heatmap_loss(
        self, target: TargetView, sources: SourceViews, human_features: Float[Tensor, "V C h w"]
    ) -> Optional[Tensor]:
        """The auxiliary loss of ``lambda_source_heatmap``: source heatmaps predicted from f_h against Gaussians at
        the source views' 2D keypoints; None without keypoints."""
        height, width = human_features.shape[-2:]
        targets = self.source_heatmap_targets(target, sources, height, width)
        if targets is None:
            return None
        assert self.source_heatmap_head is not None, "the head exists when lambda_source_heatmap > 0"
        pred = self.source_heatmap_head(human_features).permute(0, 2, 3, 1)
        return masked_heatmap_mse(pred, targets[0], targets[1], self.config.heatmap_positive_weight)

    def source_heatmap_targets(
        self, target: TargetView, sources: SourceViews, height: int, width: int
    ) -> Optional[Tuple[Float[Tensor, "V h w J"], Bool[Tensor, "V 1 1 J"]]]:
        """Heatmap targets on an (h, w) map spanning each source image (as cropped by ``crop_to_box``) and which
        joints are annotated; None when the source frame has no 2D keypoints of ``num_joints`` joints."""
        keypoints = self.catalog.frame(target.sources_key).keypoints2d
        if keypoints is None or keypoints.shape[-2] != self.config.num_joints:
            return None
        rig = self.catalog.subject(target.sources_key).rig
        ids = torch.tensor(sources.camera_ids, dtype=torch.long)
        keypoints = keypoints[ids].to(sources.images)
        corners = rig.intrinsics[ids, :2, 2].to(sources.images) - sources.intrinsics[:, :2, 2]
        stride = sources.image_size[0] / height
        maps = feature_map_heatmaps(keypoints, corners, stride, height, width, self.config.source_heatmap_sigma)
        return maps, keypoints[:, None, None, :, 2] > 0

    def point_features(
        self,
        level: int,
        positions: Float[Tensor, "R S 3"],
        pixels: Float[Tensor, "R 2"],
        origins: Float[Tensor, "R 3"],
        target: TargetView,
        sources: SourceViews,
        conditioning: GHNeRFConditioning,
    ) -> PointFeatures:
        """f_voxel (at each point's target pixel and depth), pooled f_img through g_NeRF, and pooled f_h of points
        seen from ``origins`` through target ``pixels``."""
        volume = conditioning.volumes[level]
        target_size = (target.height, target.width)
        ranges = torch.stack([volume.near, volume.far])[None]
        vol_near, vol_far = grid_sample_pixels(ranges, pixels[None], target_size)[0]
        num_rays, num_samples = positions.shape[:2]
        depth = transform_points(positions, target.world_to_camera[None])[0, ..., 2]
        voxel = sample_volume_features(
            volume.features,
            pixels[:, None].expand(-1, num_samples, -1).reshape(-1, 2),
            depth.reshape(-1),
            vol_near[:, None].expand(-1, num_samples).reshape(-1),
            vol_far[:, None].expand(-1, num_samples).reshape(-1),
            target_size,
            inverse=volume.inverse,
        ).reshape(num_rays, num_samples, -1)
        view_features, valid = sample_source_features(sources, conditioning.image_features[level], positions)
        directions = relative_view_directions(positions, origins[:, None].expand_as(positions), sources.world_to_camera)
        heads = self.levels[level]
        pooled = heads["pool"](view_features, directions, valid)
        nerf = heads["g_nerf"](pooled, voxel)
        human = None
        if conditioning.human_features is not None:
            human_views, human_valid = sample_source_features(sources, conditioning.human_features, positions)
            weights = human_valid[..., None].float()
            human = mean_variance_pool(human_views.flatten(1, 2), weights.flatten(1, 2)).reshape(
                num_rays, num_samples, -1
            )
        return PointFeatures(nerf, human, view_features, directions, valid, (voxel, pooled))

    def point_fields(self, level: int, point: PointFeatures) -> Dict[str, Tensor]:
        """Density g_sigma, heatmaps g_h and dense pose g_dp of sample points."""
        heads = self.levels[level]
        fields = {"density": heads["g_sigma"](point.nerf), "heatmap": heads["g_h"](point.nerf, point.human)}
        if "g_dp" in heads:
            fields["densepose"] = heads["g_dp"](point.nerf, point.human)
        return fields

    def query_points(
        self, target: TargetView, sources: SourceViews, conditioning: GHNeRFConditioning, points: Float[Tensor, "N 3"]
    ) -> Dict[str, Tensor]:
        """Fields of level ``point_query_level`` at world points, each looked up like a ray sample of the target
        camera through the pixel it projects to."""
        level = self.config.point_query_level
        pixels = project_points(points, target.intrinsics[None], target.world_to_camera[None])[0][0]
        origins = target.camera_to_world[:, 3].expand_as(points)
        point = self.point_features(level, points[:, None], pixels, origins, target, sources, conditioning)
        return {name: value[:, 0] for name, value in self.point_fields(level, point).items()}

    # ------------------------------------------------------------------ losses
    def get_loss_dict(self, outputs, batch, metrics_dict=None) -> Dict[str, Tensor]:
        weight0, weight1 = self.config.level_weights
        losses = {key: weight1 * value for key, value in super().get_loss_dict(outputs, batch).items()}
        if "rgb_level0" in outputs:
            losses["rgb_loss_level0"] = weight0 * F.mse_loss(outputs["rgb_level0"], batch["image"])
            for key, value in self.level_losses(outputs, batch, suffix="_level0").items():
                losses[key] = weight0 * value
        if "source_heatmap_loss" in outputs:
            losses["source_heatmap_loss"] = self.config.lambda_source_heatmap * outputs["source_heatmap_loss"]
        for suffix, weight in (("", weight1), ("_level0", weight0)):
            if f"coordinate_loss{suffix}" in outputs:
                losses[f"coordinate_loss{suffix}"] = (
                    weight * self.config.lambda_coordinate * outputs[f"coordinate_loss{suffix}"]
                )
        return losses


def frustum_depth_range(target: TargetView, size: Tuple[int, int]) -> Tuple[Tensor, Tensor]:
    """Per-cell near/far camera z-depths of the frame's box on an (h, w) grid spanning the target image.

    Cells whose ray misses the box take the depth range of the box's corners.
    """
    uv = pixel_centres(size[0], size[1], (target.height, target.width), device=target.intrinsics.device)
    homogeneous = torch.cat([uv, torch.ones_like(uv[..., :1])], dim=-1)
    camera_dirs = homogeneous @ torch.linalg.inv(target.intrinsics).T
    rotation = target.world_to_camera[:, :3]
    world_dirs = camera_dirs @ rotation  # R^T d, row-vector form; camera z of the direction is 1, so t is z-depth
    origin = target.camera_to_world[:, 3].expand_as(world_dirs)
    near, far, hit = ray_aabb_near_far(origin, world_dirs, target.bbox)
    corners = torch.stack(torch.meshgrid(*[target.bbox[:, i] for i in range(3)], indexing="ij"), -1).reshape(-1, 3)
    corner_depth = transform_points(corners, target.world_to_camera[None])[0, :, 2].clamp_min(1e-3)
    near = torch.where(hit[..., None], near, corner_depth.min()).squeeze(-1)
    far = torch.where(hit[..., None], far, corner_depth.max()).squeeze(-1)
    return near, far
