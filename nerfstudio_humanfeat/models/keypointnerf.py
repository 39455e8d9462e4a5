"""KeypointNeRF: relative spatial encoding of 3D keypoints for generalizable human NeRFs (paper 003, Fig. 2).

Source images -> geometry encoder (hourglass: F^gl 64 ch at H/8, F^gh 8 ch at H/2) and appearance encoder
(residual: F^a 8 ch at H/4). 3D keypoints P (SMPL joints, the dataset's 3D keypoints, or DLT-triangulated from
the source views' 2D detections). Per sample X and source view n: relative encoding s_n(X | P) (Eq. 3) fused with
Phi_n(F^gl) and Phi_n(F^gh) into a per-view feature, mean/variance pooled to G_X -> density; colour by blending
the source colours Phi_n(I) (Eq. 4) with weights from [G_X, Phi_n(F^a), Phi_n(I), view directions]. 64 uniform
+ 64 importance samples in the frame's box, one network for both passes. This plugin adds heatmap and dense-pose
heads on G_X and the point's proximity to the 3D keypoints, rendered like colour (``feature_heads``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Literal, Optional, Tuple, Type

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float
from nerfstudio.cameras.rays import RayBundle, RaySamples
from nerfstudio.model_components.ray_samplers import PDFSampler, UniformSampler
from torch import Tensor

from nerfstudio_humanfeat.body.triangulation import triangulate_dlt
from nerfstudio_humanfeat.fields.keypointnerf_field import KeypointNeRFField
from nerfstudio_humanfeat.model_components.conv_encoders import HourglassEncoder, ResidualTextureEncoder
from nerfstudio_humanfeat.model_components.keypoint_encoding import RelativeKeypointEncoding, gaussian_keypoint_weights
from nerfstudio_humanfeat.model_components.pooling import relative_view_directions
from nerfstudio_humanfeat.model_components.projection import project_points, sample_pixel_aligned
from nerfstudio_humanfeat.model_components.ray_samplers import ray_aabb_near_far
from nerfstudio_humanfeat.model_components.views import SourceViews, TargetView, drop_source_views
from nerfstudio_humanfeat.models.human_model import HumanFeatureModel, HumanFeatureModelConfig
from nerfstudio_humanfeat.skeleton import BODY25_NAMES

NUM_SMPL_JOINTS = 24


@dataclass
class KeypointNeRFModelConfig(HumanFeatureModelConfig):
    """KeypointNeRF with this plugin's heatmap and dense-pose heads (``feature_heads``; False: the paper's method).

    Deviations from the paper and its reference code, by name: the VGG perceptual loss uses this plugin's VGG16
    (relu1_2..relu4_3, L1) instead of VGG19, and is off with a warning when no weights are available; the reference
    code's density noise (std 0.01 in training) is left out; with ``feature_heads`` the plugin's mask loss
    (``lambda_mask``) is on, and the heatmap and dense-pose losses are GHNeRF's; the heads also see the keypoint
    proximity (``head_keypoint_proximity``).
    """

    _target: Type = field(default_factory=lambda: KeypointNeRFModel)
    num_source_views: int = 3
    """Source views at evaluation and render time (the paper's body setting: 3)."""
    eval_num_rays_per_chunk: int = 1024
    """128 samples x 3 views of 168-dim encodings per ray: smaller chunks than the other methods."""
    keypoints: Literal["smpl", "dataset", "triangulated"] = "smpl"
    """3D keypoints P: the frame's 24 SMPL joints (the reference code's joints3d), the dataset's world 3D keypoints
    (BODY_25), or DLT-triangulated from the source views' BODY_25 2D detections (what a user with only 2D
    detections has; ``body.triangulation.triangulate_dlt``)."""
    keypoint_frequencies: int = 3
    """Frequencies of the positional encoding of the depth differences (7 values per keypoint)."""
    keypoint_sigma: float = 0.1
    """Width alpha (m) of the Gaussian weighting of each keypoint (bodies 0.1, faces 0.05)."""
    keypoint_noise_mm: float = 0.0
    """Test-time perturbation of the 3D keypoints (the paper's Table 2): Gaussian noise of this standard deviation per
    coordinate, in millimetres, drawn once per frame (seeded by ``keypoint_noise_seed`` and the frame)."""
    keypoint_noise_seed: int = 0
    source_dropout: float = 0.5
    """Training: each source view but the first (the nearest) is dropped with this probability (reference code)."""
    encoder_width: int = 256
    """Filters of the geometry encoder's conv blocks and hourglass (paper: 256)."""
    geometry_channels: int = 64
    """Channels of F^gl."""
    high_channels: int = 8
    """Channels of F^gh."""
    texture_channels: int = 8
    """Channels of F^a."""
    texture_base_channels: int = 64
    """Filters of the appearance encoder's first conv (ngf)."""
    num_coarse_samples: int = 64
    num_fine_samples: int = 64
    """Importance samples; the fine pass evaluates them with the coarse ones (NeRF)."""
    feature_heads: bool = True
    """Heatmap and dense-pose heads on G_X and the mask loss (this plugin); False: the paper's exact method."""
    keypoints_3d_method: Literal["volume", "triangulated"] = "triangulated"
    """Triangulated: the heads are supervised through renders only, and the heatmap field of G_X peaks where no
    render looks (inside the body): on the 6-minute demo-split checkpoint MPJPE 823 mm from the field's peaks, 394 mm
    triangulated (benchmarks/keypoints_3d_methods.py, 4 held-out frames)."""
    head_keypoint_proximity: bool = True
    """The heads also see exp(-||X - p_k||^2 / (2 keypoint_sigma^2)) for each 3D keypoint p_k, as GHNeRF's heads see
    its human features f_h: the keypoints this method is conditioned on, given to the heads directly rather than only
    through G_X. False: the heads see G_X alone (held-out PCK@0.2 0.065 after 6 CPU minutes on the demo split,
    issue 10)."""
    lambda_rgb_coarse: float = 1.0
    """Weight of the coarse pass's L1 colour loss (reference code: 1)."""
    lambda_rgb_fine: float = 10.0
    """Weight of the fine pass's L1 colour loss (reference code: 10)."""
    lambda_perceptual: float = 0.5
    """Weight of the VGG perceptual loss on the fine patches (reference code: 0.5)."""
    coarse_feature_weight: float = 0.1
    """Weight of the coarse pass's heatmap, dense-pose and mask losses relative to the fine pass's (as the colour
    losses' 1 : 10)."""


@dataclass
class KeypointNeRFConditioning:
    """Everything computed once per target camera."""

    sources: SourceViews
    """The source views used (training drops some, see ``source_dropout``)."""
    low: Float[Tensor, "V Cl h8 w8"]
    high: Float[Tensor, "V Ch h2 w2"]
    texture: Float[Tensor, "V Ct h4 w4"]
    keypoints: Float[Tensor, "K 3"]
    keypoint_valid: Bool[Tensor, " K"]


@dataclass
class PointFeatures:
    """What the field needs per sample point beyond G_X: the per-view appearance inputs."""

    geometry: Tensor
    """G_X, (*bs, 128)."""
    texture: Tensor
    """Phi_n(F^a), (V, *bs, 8)."""
    rgb: Tensor
    """Phi_n(I), (V, *bs, 3)."""
    valid: Tensor
    """Where a point projects into a source view, (V, *bs)."""
    proximity: Optional[Tensor]
    """Gaussian proximity to each 3D keypoint, (*bs, K), when the heads take it."""


class KeypointNeRFModel(HumanFeatureModel):
    """KeypointNeRF on nerfstudio."""

    config: KeypointNeRFModelConfig

    def populate_modules(self) -> None:
        super().populate_modules()
        cfg = self.config
        if not cfg.feature_heads:
            cfg.eval_keypoints_3d = False  # 3D keypoints come from the heatmap field, which the paper's method lacks
        self.geometry_encoder = HourglassEncoder(cfg.encoder_width, cfg.geometry_channels, cfg.high_channels)
        self.texture_encoder = ResidualTextureEncoder(cfg.texture_channels, cfg.texture_base_channels)
        self.keypoint_encoding = RelativeKeypointEncoding(
            self.num_keypoints, cfg.keypoint_frequencies, cfg.keypoint_sigma
        )
        self.field = KeypointNeRFField(
            self.keypoint_encoding.out_dim,
            cfg.geometry_channels,
            cfg.high_channels,
            cfg.texture_channels,
            num_joints=cfg.num_joints if cfg.feature_heads else 0,
            densepose_dim=cfg.densepose_dim if cfg.feature_heads else 0,
            proximity_dim=self.num_keypoints if cfg.feature_heads and cfg.head_keypoint_proximity else 0,
        )
        self.sampler_uniform = UniformSampler(num_samples=cfg.num_coarse_samples)
        self.sampler_pdf = PDFSampler(num_samples=cfg.num_fine_samples)

    smpl_hint = ", or keypointnerf with --pipeline.model.keypoints triangulated (or dataset)"

    @property
    def needs_smpl(self) -> bool:  # type: ignore[override]
        return self.config.keypoints == "smpl"

    @property
    def num_keypoints(self) -> int:
        return NUM_SMPL_JOINTS if self.config.keypoints == "smpl" else len(BODY25_NAMES)

    # ------------------------------------------------------------------ 3D keypoints
    def frame_keypoints(self, frame_key: int, source_cameras: Tuple[int, ...]) -> Tuple[Tensor, Tensor]:
        """The frame's 3D keypoints (K, 3) and which are present (K,), as ``keypoints`` says, perturbed by
        ``keypoint_noise_mm``."""
        cfg = self.config
        frame = self.catalog.frame(frame_key)
        if cfg.keypoints == "smpl":
            points = self.frame_body(frame_key).joints
            valid = torch.ones(points.shape[0], dtype=torch.bool, device=points.device)
        elif cfg.keypoints == "dataset":
            if frame.keypoints3d is None:
                raise ValueError(
                    f"keypoints='dataset': {self.catalog.describe(frame_key)} has no 3D keypoints; use 'smpl' or "
                    "'triangulated'"
                )
            points, valid = frame.keypoints3d[:, :3], frame.keypoints3d[:, 3] > 0
        else:
            if frame.keypoints2d is None:
                raise ValueError(
                    f"keypoints='triangulated': {self.catalog.describe(frame_key)} has no 2D keypoints to triangulate"
                )
            rig = self.catalog.subject(frame_key).rig
            index = torch.tensor(source_cameras, dtype=torch.long)
            projections = rig.intrinsics[index] @ rig.world_to_camera[index]
            triangulated = triangulate_dlt(frame.keypoints2d[index].float(), projections.float())
            points, valid = triangulated[:, :3], triangulated[:, 3] > 0
        points, valid = points.to(self.device).float(), valid.to(self.device)
        if cfg.keypoint_noise_mm > 0:
            generator = torch.Generator().manual_seed(cfg.keypoint_noise_seed * 1_000_003 + frame_key)
            points = perturb_keypoints(points, cfg.keypoint_noise_mm, generator)
        return points, valid

    # ------------------------------------------------------------------ per target camera
    def condition(self, target: TargetView, sources: SourceViews) -> KeypointNeRFConditioning:
        keypoints, valid = self.frame_keypoints(target.frame_key, tuple(sources.camera_ids))
        if self.training and self.config.source_dropout > 0:
            sources = drop_source_views(sources, self.config.source_dropout)
        low, high = self.geometry_encoder(sources.images)
        texture = self.texture_encoder(sources.images)
        return KeypointNeRFConditioning(sources, low, high, texture, keypoints, valid)

    # ------------------------------------------------------------------ per sample point
    def point_features(
        self, positions: Float[Tensor, "*bs 3"], conditioning: KeypointNeRFConditioning
    ) -> PointFeatures:
        """G_X and the per-view appearance inputs of world points."""
        sources = conditioning.sources
        uv, depth = project_points(positions, sources.intrinsics, sources.world_to_camera)
        size = sources.image_size
        low, valid = sample_pixel_aligned(conditioning.low, uv, size, depth)
        high, _ = sample_pixel_aligned(conditioning.high, uv, size, depth)
        texture, _ = sample_pixel_aligned(conditioning.texture, uv, size, depth)
        rgb, _ = sample_pixel_aligned(sources.images, uv, size, depth)
        encoding = self.keypoint_encoding(
            positions, conditioning.keypoints, sources.world_to_camera, conditioning.keypoint_valid
        )
        geometry = self.field.geometry(encoding, low, high, valid)
        proximity = None
        if self.config.feature_heads and self.config.head_keypoint_proximity:
            proximity = gaussian_keypoint_weights(positions, conditioning.keypoints, self.config.keypoint_sigma)
            proximity = proximity * conditioning.keypoint_valid.to(proximity.dtype)
        return PointFeatures(geometry, texture, rgb, valid, proximity)

    def render_samples(
        self,
        ray_samples: RaySamples,
        origins: Float[Tensor, "R 3"],
        conditioning: KeypointNeRFConditioning,
        suffix: str,
    ) -> Tuple[Dict[str, Tensor], Tensor]:
        positions = ray_samples.frustums.get_positions()
        point = self.point_features(positions, conditioning)
        fields = self.field.fields(point.geometry, point.proximity)
        directions = relative_view_directions(
            positions, origins[:, None].expand_as(positions), conditioning.sources.world_to_camera
        )
        rgb = self.field.color(point.geometry, point.texture, point.rgb, directions, point.valid)
        weights = ray_samples.get_weights(fields["density"])
        outputs = {
            f"rgb{suffix}": self.renderer_rgb(rgb=rgb, weights=weights),
            f"accumulation{suffix}": self.renderer_accumulation(weights=weights),
            f"depth{suffix}": self.renderer_depth(weights=weights, ray_samples=ray_samples),
        }
        for name in ("heatmap", "densepose"):
            if name in fields:
                outputs[f"{name}{suffix}"] = self.renderer_features(semantics=fields[name], weights=weights)
        return outputs, weights

    def render_rays(
        self,
        ray_bundle: RayBundle,
        pixels: Float[Tensor, "N 2"],
        target: TargetView,
        sources: SourceViews,
        conditioning: KeypointNeRFConditioning,
    ) -> Dict[str, Tensor]:
        near, far, _ = ray_aabb_near_far(ray_bundle.origins, ray_bundle.directions, target.bbox)
        ray_bundle.nears, ray_bundle.fars = near, far
        coarse_samples = self.sampler_uniform(ray_bundle)
        coarse, weights = self.render_samples(coarse_samples, ray_bundle.origins, conditioning, "_coarse")
        fine_samples = self.sampler_pdf(ray_bundle, coarse_samples, weights)
        fine, _ = self.render_samples(fine_samples, ray_bundle.origins, conditioning, "")
        return {**fine, **coarse}

    def query_points(
        self,
        target: TargetView,
        sources: SourceViews,
        conditioning: KeypointNeRFConditioning,
        points: Float[Tensor, "N 3"],
    ) -> Dict[str, Tensor]:
        """Density, heatmaps and dense pose at world points (none of them depends on the viewing direction)."""
        point = self.point_features(points, conditioning)
        return self.field.fields(point.geometry, point.proximity)

    # ------------------------------------------------------------------ losses
    def mask_losses(self, outputs: Dict[str, Tensor], batch: Dict, suffix: str = "") -> Dict[str, Tensor]:
        """The plugin's mask loss, with the feature heads only (the paper has none)."""
        return super().mask_losses(outputs, batch, suffix) if self.config.feature_heads else {}

    def get_loss_dict(self, outputs, batch, metrics_dict=None) -> Dict[str, Tensor]:
        cfg = self.config
        losses = {
            "rgb_loss": cfg.lambda_rgb_fine * F.l1_loss(outputs["rgb"], batch["image"]),
            "rgb_loss_coarse": cfg.lambda_rgb_coarse * F.l1_loss(outputs["rgb_coarse"], batch["image"]),
        }
        losses.update(self.level_losses(outputs, batch))
        for key, value in self.level_losses(outputs, batch, suffix="_coarse").items():
            losses[key] = cfg.coarse_feature_weight * value
        losses.update(self.perceptual_losses(outputs, batch))
        return losses


def perturb_keypoints(
    keypoints: Float[Tensor, "K 3"], noise_mm: float, generator: Optional[torch.Generator] = None
) -> Float[Tensor, "K 3"]:
    """Keypoints plus Gaussian noise of ``noise_mm`` millimetres standard deviation per coordinate."""
    noise = torch.randn(keypoints.shape, generator=generator) * (noise_mm / 1000.0)
    return keypoints + noise.to(keypoints)
