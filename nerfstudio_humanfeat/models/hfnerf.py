"""HFNeRF: a PixelNeRF-style generalizable human NeRF with a heatmap branch (paper 000).

Source images -> encoder (ResNet34 pyramid or DINO ViT-S/8) -> for each sample x and source view:
[gamma(x in that camera), f(I)_pi(x)] -> per-view MLP layers -> mean over views -> trunk with a skip ->
density, colour (view direction joins before the colour layer), heatmaps (and dense pose) from an
intermediate layer through a smaller MLP. Uniform coarse + PDF fine samples inside the subject's box.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Literal, Optional, Type

import torch
import torch.nn.functional as F
from jaxtyping import Float
from nerfstudio.cameras.rays import RayBundle, RaySamples
from nerfstudio.field_components.encodings import NeRFEncoding
from nerfstudio.model_components.ray_samplers import PDFSampler, UniformSampler
from torch import Tensor

from nerfstudio_humanfeat.fields.hfnerf_field import HFNeRFField
from nerfstudio_humanfeat.model_components.image_encoders import build_human_encoder
from nerfstudio_humanfeat.model_components.projection import transform_points
from nerfstudio_humanfeat.model_components.ray_samplers import ray_aabb_near_far
from nerfstudio_humanfeat.model_components.views import SourceViews, TargetView, sample_source_features
from nerfstudio_humanfeat.models.human_model import HumanFeatureModel, HumanFeatureModelConfig


@dataclass
class HFNeRFModelConfig(HumanFeatureModelConfig):
    """HFNeRF (PixelNeRF-style human feature NeRF)."""

    _target: Type = field(default_factory=lambda: HFNeRFModel)
    encoder: Literal["resnet34", "resnet18", "dino_vits8"] = "resnet34"
    encoder_weights: Optional[Path] = None
    """ImageNet/DINO checkpoint; default: the torch hub cache, else random initialisation with a warning."""
    freeze_encoder: bool = False
    num_coarse_samples: int = 64
    num_fine_samples: int = 64
    hidden_dim: int = 256
    num_view_layers: int = 3
    num_shared_layers: int = 3
    position_frequencies: int = 6
    direction_frequencies: int = 4
    coarse_loss_weight: float = 1.0
    """Weight of the coarse samples' colour and feature losses (PixelNeRF: 1)."""


class HFNeRFModel(HumanFeatureModel):
    """HFNeRF in nerfstudio: nerfstudio's uniform + PDF samplers and renderers, one field for both passes."""

    config: HFNeRFModelConfig

    def populate_modules(self) -> None:
        super().populate_modules()
        cfg = self.config
        self.encoder = build_human_encoder(cfg.encoder, cfg.encoder_weights, cfg.freeze_encoder)
        freqs = cfg.position_frequencies
        self.position_encoding = NeRFEncoding(3, freqs, 0.0, freqs - 1.0, include_input=True)
        freqs = cfg.direction_frequencies
        self.direction_encoding = NeRFEncoding(3, freqs, 0.0, freqs - 1.0, include_input=True)
        self.field = HFNeRFField(
            position_dim=self.position_encoding.get_out_dim(),
            feature_dim=self.encoder.out_channels + 3,
            direction_dim=self.direction_encoding.get_out_dim(),
            hidden_dim=cfg.hidden_dim,
            num_view_layers=cfg.num_view_layers,
            num_shared_layers=cfg.num_shared_layers,
            num_joints=cfg.num_joints,
            densepose_dim=cfg.densepose_dim,
        )
        self.sampler_uniform = UniformSampler(num_samples=cfg.num_coarse_samples)
        self.sampler_pdf = PDFSampler(num_samples=cfg.num_fine_samples)

    def condition(self, target: TargetView, sources: SourceViews) -> Tensor:
        """Encoder features of the source views with their colours appended, through the field's input layer."""
        features = self.encoder(sources.images)
        colors = F.interpolate(sources.images, size=features.shape[-2:], mode="bilinear", align_corners=False)
        return self.field.project_features(torch.cat([features, colors], dim=1))

    def query(self, ray_samples: RaySamples, sources: SourceViews, feature_maps: Tensor) -> Dict[str, Tensor]:
        frustums = ray_samples.frustums
        return self.query_positions(frustums.get_positions(), frustums.directions, sources, feature_maps)

    def query_positions(
        self,
        positions: Float[Tensor, "*bs 3"],
        directions: Float[Tensor, "*bs 3"],
        sources: SourceViews,
        feature_maps: Tensor,
    ) -> Dict[str, Tensor]:
        """The field at world points viewed along unit ``directions``."""
        features, valid = sample_source_features(sources, feature_maps, positions)
        local = transform_points(positions, sources.world_to_camera)
        encoded_directions = self.direction_encoding(directions.contiguous())
        return self.field(self.position_encoding(local.contiguous()), features, valid, encoded_directions)

    def query_points(
        self, target: TargetView, sources: SourceViews, conditioning: Tensor, points: Float[Tensor, "N 3"]
    ) -> Dict[str, Tensor]:
        """The field at world points, viewed from the target camera's centre."""
        directions = F.normalize(points - target.camera_to_world[:, 3], dim=-1)
        return self.query_positions(points, directions, sources, conditioning)

    def render_samples(self, ray_samples: RaySamples, field_out: Dict[str, Tensor], suffix: str) -> Dict[str, Tensor]:
        weights = ray_samples.get_weights(field_out["density"])
        outputs = {
            f"rgb{suffix}": self.renderer_rgb(rgb=field_out["rgb"], weights=weights),
            f"accumulation{suffix}": self.renderer_accumulation(weights=weights),
            f"depth{suffix}": self.renderer_depth(weights=weights, ray_samples=ray_samples),
            f"heatmap{suffix}": self.renderer_features(semantics=field_out["heatmap"], weights=weights),
        }
        if "densepose" in field_out:
            outputs[f"densepose{suffix}"] = self.renderer_features(semantics=field_out["densepose"], weights=weights)
        return outputs, weights

    def render_rays(
        self,
        ray_bundle: RayBundle,
        pixels: Float[Tensor, "N 2"],
        target: TargetView,
        sources: SourceViews,
        conditioning: Tensor,
    ) -> Dict[str, Tensor]:
        near, far, _ = ray_aabb_near_far(ray_bundle.origins, ray_bundle.directions, target.bbox)
        ray_bundle.nears, ray_bundle.fars = near, far
        coarse_samples = self.sampler_uniform(ray_bundle)
        coarse, coarse_weights = self.render_samples(
            coarse_samples, self.query(coarse_samples, sources, conditioning), "_coarse"
        )
        fine_samples = self.sampler_pdf(ray_bundle, coarse_samples, coarse_weights)
        fine, _ = self.render_samples(fine_samples, self.query(fine_samples, sources, conditioning), "")
        return {**fine, **coarse}

    def get_loss_dict(self, outputs, batch, metrics_dict=None) -> Dict[str, Tensor]:
        losses = super().get_loss_dict(outputs, batch, metrics_dict)
        weight = self.config.coarse_loss_weight
        losses["rgb_loss_coarse"] = weight * F.mse_loss(outputs["rgb_coarse"], batch["image"])
        for key, value in self.level_losses(outputs, batch, suffix="_coarse").items():
            losses[key] = weight * value
        return losses
