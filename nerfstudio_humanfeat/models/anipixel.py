"""AniPixel: an animatable, generalizable pixel-aligned human avatar (paper 004, Fig. 1).

Target points x_t (rays of the target camera, in the target pose theta_t)
  -> backward skinning with nearest-surface SMPL weights and a background weight (eq. 1; ``body.backward_skin``),
     minus the displacement Delta_t = F_d(phi, l_idt, theta_t)                                          -> x_c
  -> forward skinning with the learnable weight field softmax(MLP(x_c, l_idt) + log w_init) into the observation
     pose theta_o of the source images, plus Delta_o = F_d(phi, l_idt, theta_o) (eq. 2-3)                 -> x_o
  -> pixel-aligned geometry (hourglass) and appearance (residual) features of x_o in the source views; the relative
     spatial encoding of x_o to the observation joints J_o; fused geometry feature f_geo (``AppearanceFusion``)
  -> canonical SDF s = F_s(hash(x_n), beta, l_idt, f_geo) on the neutral-size normalised canonical body x_n (eq. 4)
     -> VolSDF density (eq. 5, learnable b); normal n_c = grad s / |grad s|, rotated by the skinning into n_o, n_t
  -> colour c_o = sum_i w_i c_i, blending weights from [f_geo, f_rgb^i, c_i, n_o] (eq. 6)
  -> shading c_t = alpha(v, theta_t, n_t, l_idt, L) c_o (eq. 7); volume rendering, 64 coarse + 16 fine samples.
This plugin adds heatmap and dense-pose heads on the canonical SDF features, rendered like colour (``feature_heads``).
"""

from __future__ import annotations

import random
from collections import OrderedDict
from dataclasses import dataclass, field, fields, replace
from typing import Dict, List, Literal, Optional, Tuple, Type

import torch
import torch.nn.functional as F
from jaxtyping import Float
from nerfstudio.cameras.rays import RayBundle, RaySamples
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.model_components.ray_samplers import PDFSampler, UniformSampler
from torch import Tensor, nn

from nerfstudio_humanfeat.body.canonical_box import CanonicalBox
from nerfstudio_humanfeat.body.skinning import (
    BACKGROUND_THRESHOLD,
    SurfaceWeights,
    WeightGrid,
    backward_skin,
    blend_weight_grid,
    forward_skin,
    sample_weights,
)
from nerfstudio_humanfeat.body.smpl import BodyPose, invert_rigid
from nerfstudio_humanfeat.body.weight_field import ForwardWeightField
from nerfstudio_humanfeat.fields.anipixel_field import (
    AppearanceFusion,
    DisplacementField,
    neutral_coordinates,
    normals_in_views,
)
from nerfstudio_humanfeat.fields.sdf_field import (
    LaplaceDensity,
    SDFNetwork,
    eikonal_loss,
    min_sdf_mask_loss,
    normal_smoothness_loss,
    sdf_gradient,
)
from nerfstudio_humanfeat.model_components.conv_encoders import HourglassEncoder, ResidualTextureEncoder
from nerfstudio_humanfeat.model_components.heads import DensePoseHead, HeatmapHead
from nerfstudio_humanfeat.model_components.keypoint_encoding import RelativeKeypointEncoding
from nerfstudio_humanfeat.model_components.projection import project_points, sample_pixel_aligned
from nerfstudio_humanfeat.model_components.ray_samplers import ray_aabb_near_far
from nerfstudio_humanfeat.model_components.shading import ShadingModule
from nerfstudio_humanfeat.model_components.views import SourceViews, TargetView
from nerfstudio_humanfeat.models.human_model import HumanFeatureModel, HumanFeatureModelConfig

NUM_SMPL_JOINTS = 24
POSE_DIM = 69
"""theta: the 23 body joints' axis-angles (the global rotation is Rh, not a pose input)."""
NUM_BETAS = 10


@dataclass
class AniPixelModelConfig(HumanFeatureModelConfig):
    """AniPixel with this plugin's heatmap and dense-pose heads (``feature_heads``; False: the paper's method).

    Where the paper (its supplementary is not available) is silent, the choices and their sources:
    - canonical space: SMPL's big pose (legs spread; Animatable NeRF's canonical space, whose nearest-surface
      weights do not mix the legs); w_init = nearest-surface weights on a grid around each subject's canonical body
      (Animatable NeRF's ``tbw``); background threshold 0.1 m (HumanNeRF's background weight). Background points
      (w_bg = 1) carry no density: the SDF describes the body only.
    - neutral-sized body: SMPL with zero betas in the big pose; every subject's minimum canonical box is mapped
      onto its box (Sec. 3.2) before the hash grid.
    - Delta is applied as eqs. 1 and 3 write it (subtracted in canonical space, added in observation space), to
      foreground points only; its network takes the neutral canonical point.
    - identity codes: one learned code per training subject (DeepSDF-style N(0, 0.01) initialisation); an unseen
      subject takes the code of the training subject nearest in SMPL shape (L2 distance of the betas of the
      observed frame) -- the paper's "l_idt is selected as the nearest person".
    - the fusion network's trunk and blending branch follow KeypointNeRF (per-view Softplus fusion, mean/variance
      pooling; IBRNet's 9-layer ELU blending MLP with view statistics), the normal in the view-direction slot.
    - the per-image global feature L: the hourglass' deep map averaged over the image, a linear layer, averaged over
      the source views (PHORHUM's global feature).
    - SDF network: IDR/VolSDF geometric initialisation (a sphere of ``sdf_init_radius``), Softplus(100), 2 x 64
      (Instant-NSR); b starts at 0.05 m (VolSDF's 0.1 is for scenes in a unit sphere).
    - losses: L1 colour on both passes + VGG perceptual (KeypointNeRF's 1 : 0.05 ratio of L1 to VGG per pass);
      mask = MSE(accumulation, mask) + IDR's min-SDF BCE (alpha 50); Eikonal 0.1 (VolSDF) on the foreground
      samples; normal smoothness (UNISURF: normals at samples near the surface and at 1 cm perturbations) and a
      shape loss (SMPL's canonical surface: s = 0 and normals along SMPL's, which is how MPS-NeRF constrains shape);
      displacement L2 of Delta_t and Delta_o.
    - training pairs: with ``train_novel_pose_probability`` the source images come from another frame of the same
      subject (training the animation path, as MPS-NeRF does), else from the target's frame.
    - the mask-only warm-up is ``mask_warmup_fraction`` of the run (the paper: 30k of 150k steps), or
      ``mask_warmup_steps`` where a time budget ends the run (the CPU variant: 100 steps).
    """

    _target: Type = field(default_factory=lambda: AniPixelModel)
    num_source_views: int = 3
    """Source views at evaluation and render time (Human3.6M: 3 of its 4 cameras)."""
    eval_num_rays_per_chunk: int = 1024
    canonical_pose: Literal["big", "rest"] = "big"
    background_threshold: float = BACKGROUND_THRESHOLD
    """Nearest-surface distance (m) beyond which a point is background (w_bg = 1)."""
    canonical_voxel_size: float = 0.025
    """Spacing (m) of each subject's canonical w_init grid (built once per subject)."""
    latent_dim: int = 32
    """Channels of the identity code l_idt."""
    weight_hidden_dim: int = 128
    weight_num_layers: int = 4
    displacement: bool = True
    """The residual displacement field (False: the "w/o displacement" ablation)."""
    displacement_hidden_dim: int = 128
    displacement_num_layers: int = 4
    hash_num_levels: int = 16
    hash_min_res: int = 16
    hash_max_res: int = 1024
    hash_log2_size: int = 19
    hash_features_per_level: int = 2
    hash_implementation: Literal["tcnn", "torch"] = "tcnn"
    """tinycudann when installed (and on a GPU), else nerfstudio's torch implementation."""
    sdf_hidden_dim: int = 64
    sdf_num_layers: int = 2
    sdf_feature_dim: int = 32
    """Channels of the SDF network's feature vector (input of the heatmap and dense-pose heads)."""
    sdf_init_radius: float = 0.6
    """Radius (m) of the initial sphere of the SDF around the neutral body's centre."""
    init_b: float = 0.05
    """Initial Laplace scale b (m) of the density."""
    max_b: Optional[float] = None
    """Upper bound of b (m); None: free (VolSDF). Trained on several subjects, b grew from 0.05 to 0.12-0.14 m in 6
    CPU minutes (one subject: 0.052), a translucent body whose silhouette is 10 cm too wide on each side."""
    encoder_width: int = 256
    geometry_channels: int = 64
    high_channels: int = 8
    texture_channels: int = 8
    texture_base_channels: int = 64
    keypoint_frequencies: int = 3
    keypoint_sigma: float = 0.1
    fusion_width: int = 128
    blend_hidden_dim: int = 64
    blend_num_layers: int = 9
    normals_in_blending: bool = True
    """Surface normals in the blending weights (False: zeros, the "w/o normals" ablation)."""
    global_dim: int = 16
    """Channels of the per-image global feature L."""
    shading: bool = True
    """The shading module (False: alpha = 1, the "w/o shading" ablation)."""
    shading_hidden_dim: int = 64
    shading_num_layers: int = 2
    num_coarse_samples: int = 64
    num_fine_samples: int = 16
    """Importance samples; the fine pass renders them with the coarse ones."""
    feature_heads: bool = True
    """Heatmap and dense-pose heads on the canonical SDF features (this plugin); False: the paper's exact method."""
    keypoints_3d_method: Literal["volume", "triangulated"] = "triangulated"
    """Triangulated: the heads are supervised through renders only, and the canonical heatmap field peaks where no
    render looks (inside the body, the soles): on the 6-minute demo-split checkpoint MPJPE 733 mm from the field's
    peaks, 614 mm triangulated (benchmarks/keypoints_3d_methods.py, 4 held-out frames)."""
    train_novel_pose_probability: float = 0.5
    mask_warmup_fraction: float = 0.2
    """Share of ``max_num_iterations`` with only the mask loss (the paper: 30k of 150k)."""
    mask_warmup_steps: Optional[int] = None
    """Mask-only steps, overriding ``mask_warmup_fraction`` (runs stopped by a time budget rather than by
    ``max_num_iterations``: the CPU variant and the benchmarks)."""
    lambda_rgb: float = 1.0
    lambda_rgb_coarse: float = 1.0
    lambda_perceptual: float = 0.05
    lambda_mask: float = 0.1
    """MSE(accumulated opacity, mask), both passes."""
    lambda_mask_sdf: float = 0.1
    mask_sdf_alpha: float = 50.0
    lambda_eikonal: float = 0.1
    lambda_normal_smooth: float = 0.005
    normal_smooth_offset: float = 0.01
    normal_smooth_points: int = 1024
    lambda_shape_sdf: float = 0.1
    lambda_shape_normal: float = 0.01
    shape_points: int = 512
    """SMPL canonical vertices per step in the shape loss."""
    lambda_displacement: float = 1.0
    coarse_feature_weight: float = 0.1
    """Weight of the coarse pass's heatmap and dense-pose losses relative to the fine pass's."""
    body_cache_size: int = 64


@dataclass
class CanonicalSubject:
    """One subject's canonical body (in ``canonical_pose``) and what the canonical SDF needs of it."""

    vertices: Float[Tensor, "V 3"]
    normals: Float[Tensor, "V 3"]
    box: CanonicalBox
    """The minimum box of the canonical SMPL mesh (no padding)."""
    grid: WeightGrid
    """w_init: nearest-surface blend weights and surface distance around the canonical body."""


@dataclass
class AniPixelConditioning:
    """Everything computed once per target camera."""

    sources: SourceViews
    low: Tensor
    high: Tensor
    texture: Tensor
    target_pose: BodyPose
    observation_pose: BodyPose
    target_theta: Float[Tensor, "1 69"]
    observation_theta: Float[Tensor, "1 69"]
    betas: Float[Tensor, "1 10"]
    latent: Float[Tensor, "1 L"]
    global_feature: Float[Tensor, "1 G"]
    subject: CanonicalSubject
    surface: SurfaceWeights
    observation_joints: Float[Tensor, "24 3"]


class AniPixelModel(HumanFeatureModel):
    """AniPixel on nerfstudio: novel views and novel poses of unseen people from sparse source views."""

    config: AniPixelModelConfig
    supports_novel_pose = True
    needs_smpl = True

    def populate_modules(self) -> None:
        super().populate_modules()
        cfg = self.config
        if not cfg.feature_heads:
            cfg.eval_keypoints_3d = False  # 3D keypoints come from the heatmap field, which the paper's method lacks
        self._poses: "OrderedDict[Tuple, BodyPose]" = OrderedDict()
        self._subjects: Dict[Tuple, CanonicalSubject] = {}
        self._step = 0
        self._warmup_steps = 0
        self._pairing = random.Random(0)
        smpl = self.catalog.bodies.model
        neutral = self._canonical_vertices(torch.zeros(1, NUM_BETAS))
        self.neutral_box = CanonicalBox.from_vertices(neutral, padding=0.0)
        bound = float(self.neutral_box.size.max()) * 0.5 + 0.15
        self.surface_weights = SurfaceWeights.from_body(smpl.lbs_weights, smpl.faces)
        # identities: one code per training subject; the betas of each pick the nearest one for unseen subjects
        self.train_subjects = [i for i, s in enumerate(self.catalog.subjects) if s.split == "train"]
        self.identity = nn.Embedding(max(len(self.train_subjects), 1), cfg.latent_dim)
        nn.init.normal_(self.identity.weight, 0.0, 0.01)
        self.train_betas = torch.stack([self._subject_betas(i) for i in self.train_subjects] or [torch.zeros(10)])
        # encoders (KeypointNeRF's)
        self.geometry_encoder = HourglassEncoder(cfg.encoder_width, cfg.geometry_channels, cfg.high_channels)
        self.texture_encoder = ResidualTextureEncoder(cfg.texture_channels, cfg.texture_base_channels)
        self.global_head = nn.Linear(cfg.geometry_channels, cfg.global_dim)
        self.keypoint_encoding = RelativeKeypointEncoding(NUM_SMPL_JOINTS, cfg.keypoint_frequencies, cfg.keypoint_sigma)
        # skinning
        placeholder = WeightGrid(torch.full((2, 2, 2, 25), 1.0 / 24), torch.tensor([[-1.0] * 3, [1.0] * 3]))
        self.weight_field = ForwardWeightField(  # w_init comes from each subject's grid (``CanonicalSubject.grid``)
            placeholder, cfg.latent_dim, cfg.weight_hidden_dim, cfg.weight_num_layers
        )
        self.displacement_field = (
            DisplacementField(cfg.latent_dim, POSE_DIM, cfg.displacement_hidden_dim, cfg.displacement_num_layers)
            if cfg.displacement
            else None
        )
        # appearance
        self.fusion = AppearanceFusion(
            self.keypoint_encoding.out_dim, cfg.geometry_channels, cfg.high_channels, cfg.texture_channels,
            width=cfg.fusion_width, blend_hidden=cfg.blend_hidden_dim, blend_layers=cfg.blend_num_layers,
        )  # fmt: skip
        # canonical geometry
        self.sdf = SDFNetwork(
            condition_dim=NUM_BETAS + cfg.latent_dim + self.fusion.out_dim,
            feature_dim=cfg.sdf_feature_dim,
            hidden_dim=cfg.sdf_hidden_dim,
            num_layers=cfg.sdf_num_layers,
            num_levels=cfg.hash_num_levels,
            min_res=cfg.hash_min_res,
            max_res=cfg.hash_max_res,
            log2_hashmap_size=cfg.hash_log2_size,
            features_per_level=cfg.hash_features_per_level,
            init_radius=cfg.sdf_init_radius,
            bound=bound,
            implementation=cfg.hash_implementation if torch.cuda.is_available() else "torch",
        )
        self.density = LaplaceDensity(cfg.init_b, b_max=cfg.max_b)
        self.shading = (
            ShadingModule(3 + POSE_DIM + 3 + cfg.latent_dim + cfg.global_dim, cfg.shading_hidden_dim,
                          cfg.shading_num_layers)
            if cfg.shading
            else None
        )  # fmt: skip
        heads = cfg.feature_heads
        self.heatmap = HeatmapHead(cfg.sdf_feature_dim, 0, cfg.num_joints, 64) if heads else None
        self.densepose = (
            DensePoseHead(cfg.sdf_feature_dim, 0, cfg.densepose_dim, 64) if heads and cfg.densepose_dim > 0 else None
        )
        self.sampler_uniform = UniformSampler(num_samples=cfg.num_coarse_samples)
        self.sampler_pdf = PDFSampler(num_samples=cfg.num_fine_samples)

    # ------------------------------------------------------------------ bodies and identities
    def _canonical_vertices(self, betas: Float[Tensor, "1 10"]) -> Float[Tensor, "V 3"]:
        smpl = self.catalog.bodies.model
        with torch.no_grad():
            if self.config.canonical_pose == "big":
                return smpl.big_pose_transforms(betas.float())[0][0]
            return smpl.rest(betas.float())[0][0]

    def _subject_betas(self, subject_index: int) -> Float[Tensor, "10"]:
        frames = self.catalog.subjects[subject_index].frames
        params = frames[0].smpl_params if frames else None
        if params is None:
            return torch.zeros(NUM_BETAS)
        return params["shapes"].float().reshape(-1)[:NUM_BETAS]

    def identity_index(self, frame_key: int) -> int:
        """The identity code of a frame's subject: its own for a training subject, else the training subject's
        nearest in SMPL shape (L2 distance of the betas)."""
        subject_index = self.catalog.frame_keys[frame_key][0]
        if subject_index in self.train_subjects:
            return self.train_subjects.index(subject_index)
        betas = self.frame_body(frame_key).params["shapes"].float().reshape(-1)[:NUM_BETAS].cpu()
        return int((self.train_betas - betas).norm(dim=-1).argmin())

    def posed(self, params: Dict[str, Tensor]) -> BodyPose:
        """A body posed from ZJU-convention parameters, its transforms starting from ``canonical_pose`` (cached)."""
        key = tuple(torch.cat([params[k].reshape(-1).float().cpu() for k in ("poses", "shapes", "Rh", "Th")]).tolist())
        if key in self._poses:
            self._poses.move_to_end(key)
            return self._poses[key]
        smpl = self.catalog.bodies.model
        b = {k: params[k].float().reshape(1, -1).cpu() for k in ("poses", "shapes", "Rh", "Th")}
        with torch.no_grad():
            pose = smpl(b["poses"], b["shapes"], b["Rh"], b["Th"], canonical=self.config.canonical_pose)
        pose = _pose_to(pose, self.device)
        self._poses[key] = pose
        while len(self._poses) > self.config.body_cache_size:
            self._poses.popitem(last=False)
        return pose

    def as_canonical(self, pose: BodyPose, betas: Float[Tensor, "1 10"]) -> BodyPose:
        """A given target pose re-expressed from ``canonical_pose`` (it was posed with the observed subject's betas)."""
        if pose.canonical == self.config.canonical_pose:
            return pose
        smpl = self.catalog.bodies.model
        with torch.no_grad():
            big_vertices, big_joints, big = smpl.big_pose_transforms(betas.float().cpu())
            rest_vertices, rest_joints = smpl.rest(betas.float().cpu())
        if self.config.canonical_pose == "big":
            transforms = pose.transforms @ invert_rigid(big.to(pose.transforms))
            vertices, joints = big_vertices, big_joints
        else:
            transforms = pose.transforms @ big.to(pose.transforms)
            vertices, joints = rest_vertices, rest_joints
        return replace(
            pose, transforms=transforms, canonical_vertices=vertices.to(pose.transforms),
            canonical_joints=joints.to(pose.transforms), canonical=self.config.canonical_pose,
        )  # fmt: skip

    def canonical_subject(self, betas: Float[Tensor, "1 10"]) -> CanonicalSubject:
        """The canonical body of a shape (cached): vertices, normals, minimum box and the w_init grid."""
        key = tuple(round(v, 5) for v in betas.reshape(-1).tolist())
        if key not in self._subjects:
            smpl = self.catalog.bodies.model
            vertices = self._canonical_vertices(betas.cpu())
            grid = blend_weight_grid(
                vertices, smpl.faces, smpl.lbs_weights, voxel_size=self.config.canonical_voxel_size
            )
            used = torch.unique(smpl.faces)  # the generated body hides joint vertices that no face uses
            self._subjects[key] = CanonicalSubject(
                vertices[used].to(self.device),
                vertex_normals(vertices, smpl.faces)[used].to(self.device),
                CanonicalBox.from_vertices(vertices, padding=0.0),
                grid.to(self.device),
            )
        return self._subjects[key]

    # ------------------------------------------------------------------ per target camera
    def condition(self, target: TargetView, sources: SourceViews) -> AniPixelConditioning:
        observed = self.frame_body(target.sources_key)
        betas = observed.params["shapes"].float().reshape(1, -1)[:, :NUM_BETAS]
        observation_pose = self.posed(observed.params)
        if target.target_pose is not None:
            target_pose = self.as_canonical(target.target_pose, betas)
            # theta of a given pose: the shading and displacement inputs take the target frame's pose parameters
            target_theta = self.frame_body(target.frame_key).params["poses"].reshape(1, -1)[:, 3:].float()
        else:
            params = dict(self.frame_body(target.frame_key).params)
            params["shapes"] = observed.params["shapes"]  # the observed person in the target frame's pose
            target_pose = self.posed(params)
            target_theta = params["poses"].reshape(1, -1)[:, 3:].float()
        low, high = self.geometry_encoder(sources.images)
        texture = self.texture_encoder(sources.images)
        global_feature = self.global_head(low.mean(dim=(-2, -1))).mean(dim=0, keepdim=True)
        index = torch.tensor([self.identity_index(target.sources_key)], device=self.device)
        return AniPixelConditioning(
            sources=sources,
            low=low,
            high=high,
            texture=texture,
            target_pose=target_pose,
            observation_pose=observation_pose,
            target_theta=target_theta.to(self.device),
            observation_theta=observed.params["poses"].reshape(1, -1)[:, 3:].float(),
            betas=betas,
            latent=self.identity(index),
            global_feature=global_feature,
            subject=self.canonical_subject(betas),
            surface=self.surface_weights,
            observation_joints=observation_pose.joints[0],
        )

    # ------------------------------------------------------------------ per point
    def skin_to_canonical(
        self, points: Float[Tensor, "N 3"], cond: AniPixelConditioning
    ) -> Tuple[Float[Tensor, "N 3"], Float[Tensor, "N 25"], Float[Tensor, "N 3"], Float[Tensor, " N"]]:
        """Eq. 1: x_c = LBS^-1(x_t) - Delta_t; also the backward weights, Delta_t and the surface distance."""
        skinned = backward_skin(points, cond.target_pose, cond.surface, self.config.background_threshold)
        displacement = self.displacement(skinned.points, skinned.background, cond, cond.target_theta)
        return skinned.points - displacement, skinned.weights, displacement, skinned.distance

    def displacement(
        self, canonical: Float[Tensor, "N 3"], background: Float[Tensor, " N"], cond: AniPixelConditioning, theta
    ) -> Float[Tensor, "N 3"]:
        if self.displacement_field is None:
            return torch.zeros_like(canonical)
        neutral = neutral_coordinates(canonical, cond.subject.box, self.neutral_box)
        return self.displacement_field(neutral, cond.latent, theta) * (1.0 - background)[:, None]

    def skin_to_observation(
        self, canonical: Float[Tensor, "N 3"], background: Float[Tensor, " N"], cond: AniPixelConditioning
    ) -> Tuple[Float[Tensor, "N 3"], Float[Tensor, "N 25"], Float[Tensor, "N 3"]]:
        """Eq. 2-3: x_o = LBS_f(x_c) + Delta_o with the learnable forward weights; the weights and Delta_o."""
        weights = self.weight_field(canonical, cond.latent, background=background, grid=cond.subject.grid)
        displacement = self.displacement(canonical, background, cond, cond.observation_theta)
        return forward_skin(canonical, weights, cond.observation_pose) + displacement, weights, displacement

    def source_features(self, observed: Float[Tensor, "N 3"], cond: AniPixelConditioning) -> Dict[str, Tensor]:
        """Pixel-aligned features and colours of observation-space points, and the fused f_geo."""
        sources = cond.sources
        uv, depth = project_points(observed, sources.intrinsics, sources.world_to_camera)
        size = sources.image_size
        low, valid = sample_pixel_aligned(cond.low, uv, size, depth)
        high, _ = sample_pixel_aligned(cond.high, uv, size, depth)
        texture, _ = sample_pixel_aligned(cond.texture, uv, size, depth)
        rgb, _ = sample_pixel_aligned(sources.images, uv, size, depth)
        encoding = self.keypoint_encoding(observed, cond.observation_joints, sources.world_to_camera)
        f_geo = self.fusion.geometry(encoding, low, high, valid)
        return {"texture": texture, "rgb": rgb, "valid": valid, "f_geo": f_geo}

    def canonical_sdf(
        self, canonical: Float[Tensor, "N 3"], f_geo: Float[Tensor, "N G"], cond: AniPixelConditioning, grad: bool
    ) -> Tuple[Float[Tensor, "N 1"], Float[Tensor, "N F"], Optional[Float[Tensor, "N 3"]]]:
        """Eq. 4: s, the SDF features and (with ``grad``) ds/dx_c by autograd (create_graph while training)."""
        condition = torch.cat([cond.betas, cond.latent], dim=-1).expand(canonical.shape[0], -1)
        condition = torch.cat([condition, f_geo], dim=-1)
        if not grad:
            return (*self.sdf(neutral_coordinates(canonical, cond.subject.box, self.neutral_box), condition), None)
        with torch.enable_grad():
            offset = torch.zeros_like(canonical, requires_grad=True)  # the partial derivative in x_c (f_geo fixed)
            neutral = neutral_coordinates(canonical + offset, cond.subject.box, self.neutral_box)
            sdf, features = self.sdf(neutral, condition)
            gradient = sdf_gradient(sdf, offset, create_graph=self.training and torch.is_grad_enabled())
        if not (self.training and torch.is_grad_enabled()):
            sdf, features, gradient = sdf.detach(), features.detach(), gradient.detach()
        return sdf, features, gradient

    def point_fields(
        self,
        points: Float[Tensor, "N 3"],
        cond: AniPixelConditioning,
        view_directions: Optional[Float[Tensor, "N 3"]] = None,
    ) -> Dict[str, Tensor]:
        """Everything at target-space points: sdf (background points: their surface distance), density, features
        and, with ``view_directions``, the shaded colour."""
        canonical, backward_weights, delta_t, distance = self.skin_to_canonical(points, cond)
        background = backward_weights[:, -1]
        observed, forward_weights, delta_o = self.skin_to_observation(canonical, background, cond)
        feats = self.source_features(observed, cond)
        with_color = view_directions is not None
        sdf, features, gradient = self.canonical_sdf(canonical, feats["f_geo"], cond, grad=with_color or self.training)
        foreground = (1.0 - background)[:, None]
        out = {
            "sdf": torch.where(foreground > 0, sdf, distance[:, None]),
            "density": self.density(sdf) * foreground,
            "canonical": canonical,
            "foreground": foreground,
            "delta_t": delta_t,
            "delta_o": delta_o,
            "features": features,
            "f_geo": feats["f_geo"],
        }
        if gradient is not None:
            out["gradient"] = gradient
        # body features, like density, exist on the body only: no spurious peaks in the volumetric heatmap's background
        if self.heatmap is not None:
            out["heatmap"] = self.heatmap(features) * foreground
        if self.densepose is not None:
            out["densepose"] = self.densepose(features) * foreground
        if with_color:
            normal = F.normalize(gradient, dim=-1)
            normal_o = rotate_normals(normal, forward_weights, cond.observation_pose)
            normal_t = rotate_normals(normal, backward_weights, cond.target_pose)
            view_normals = (
                normals_in_views(normal_o, observed, cond.sources.world_to_camera)
                if self.config.normals_in_blending
                else None
            )
            weights = self.fusion.blend_weights(
                feats["f_geo"], feats["texture"], feats["rgb"], view_normals, feats["valid"]
            )
            color = (weights * feats["rgb"]).sum(dim=0)
            if self.shading is not None:
                n = points.shape[0]
                inputs = [view_directions, cond.target_theta.expand(n, -1), normal_t, cond.latent.expand(n, -1)]
                inputs.append(cond.global_feature.expand(n, -1))
                color = self.shading(torch.cat(inputs, dim=-1)) * color
            out["rgb"] = color
            out["normal"] = normal_t
        return out

    # ------------------------------------------------------------------ rendering
    def render_samples(
        self, ray_samples: RaySamples, cond: AniPixelConditioning, suffix: str
    ) -> Tuple[Dict[str, Tensor], Tensor, Dict[str, Tensor]]:
        positions = ray_samples.frustums.get_positions()
        shape = positions.shape[:-1]
        directions = ray_samples.frustums.directions.reshape(-1, 3)
        fields_ = self.point_fields(positions.reshape(-1, 3), cond, directions)
        per_sample = {k: v.reshape(*shape, -1) for k, v in fields_.items()}
        weights = ray_samples.get_weights(per_sample["density"])
        outputs = {
            f"rgb{suffix}": self.renderer_rgb(rgb=per_sample["rgb"], weights=weights),
            f"accumulation{suffix}": self.renderer_accumulation(weights=weights),
            f"depth{suffix}": self.renderer_depth(weights=weights, ray_samples=ray_samples),
            f"min_sdf{suffix}": per_sample["sdf"].amin(dim=-2),
        }
        for name in ("heatmap", "densepose"):
            if name in per_sample:
                outputs[f"{name}{suffix}"] = self.renderer_features(semantics=per_sample[name], weights=weights)
        if not self.training:
            outputs[f"normal{suffix}"] = (weights * per_sample["normal"]).sum(dim=-2) * 0.5 + 0.5 * outputs[
                f"accumulation{suffix}"
            ]
        return outputs, weights, fields_

    def render_rays(
        self,
        ray_bundle: RayBundle,
        pixels: Float[Tensor, "N 2"],
        target: TargetView,
        sources: SourceViews,
        conditioning: AniPixelConditioning,
    ) -> Dict[str, Tensor]:
        near, far, _ = ray_aabb_near_far(ray_bundle.origins, ray_bundle.directions, target.bbox)
        ray_bundle.nears, ray_bundle.fars = near, far
        coarse_samples = self.sampler_uniform(ray_bundle)
        coarse, weights, coarse_fields = self.render_samples(coarse_samples, conditioning, "_coarse")
        fine_samples = self.sampler_pdf(ray_bundle, coarse_samples, weights.detach())
        fine, _, fine_fields = self.render_samples(fine_samples, conditioning, "")
        outputs = {**fine, **coarse}
        if self.training:
            outputs.update(self.regularisers(fine_fields, conditioning))
        return outputs

    def regularisers(self, fields_: Dict[str, Tensor], cond: AniPixelConditioning) -> Dict[str, Tensor]:
        """Training-only loss terms (scalars): Eikonal, normal smoothness, shape, displacement."""
        cfg = self.config
        foreground = fields_["foreground"][:, 0] > 0
        out: Dict[str, Tensor] = {}
        gradient = fields_["gradient"][foreground]
        zero = fields_["sdf"].sum() * 0.0
        out["reg_eikonal"] = eikonal_loss(gradient) if len(gradient) else zero
        delta = torch.cat([fields_["delta_t"], fields_["delta_o"]])
        out["reg_displacement"] = (delta**2).sum(-1).mean()
        if cfg.lambda_normal_smooth > 0:
            near = torch.nonzero(foreground & (fields_["sdf"][:, 0].abs() < 0.05)).squeeze(-1)
            near = near[torch.randperm(len(near), device=near.device)[: cfg.normal_smooth_points]]
            if len(near):
                points = fields_["canonical"][near]
                shifted = points + torch.randn_like(points) * cfg.normal_smooth_offset
                _, _, shifted_grad = self.canonical_sdf(shifted, fields_["f_geo"][near], cond, grad=True)
                out["reg_normal_smooth"] = normal_smoothness_loss(
                    F.normalize(fields_["gradient"][near], dim=-1), F.normalize(shifted_grad, dim=-1)
                )
            else:
                out["reg_normal_smooth"] = zero
        if cfg.lambda_shape_sdf > 0 or cfg.lambda_shape_normal > 0:
            subject = cond.subject
            ids = torch.randperm(len(subject.vertices), device=subject.vertices.device)[: cfg.shape_points]
            vertices = subject.vertices[ids]
            background = torch.zeros(len(vertices), device=vertices.device)
            observed, _, _ = self.skin_to_observation(vertices, background, cond)
            f_geo = self.source_features(observed, cond)["f_geo"]
            sdf, _, grad = self.canonical_sdf(vertices, f_geo, cond, grad=True)
            out["reg_shape_sdf"] = sdf.abs().mean()
            out["reg_shape_normal"] = (1.0 - F.cosine_similarity(grad, subject.normals[ids], dim=-1)).mean()
        return out

    def query_points(
        self, target: TargetView, sources: SourceViews, conditioning: AniPixelConditioning, points: Float[Tensor, "N 3"]
    ) -> Dict[str, Tensor]:
        """Density, SDF, heatmaps and dense pose at target-space points (no colour)."""
        fields_ = self.point_fields(points, conditioning)
        return {k: fields_[k] for k in ("density", "sdf", "heatmap", "densepose") if k in fields_}

    def canonical_query(self, points: Float[Tensor, "N 3"], cond: AniPixelConditioning) -> Float[Tensor, "N 1"]:
        """The SDF at canonical points (mesh export): background (beyond the threshold from the canonical surface)
        gets its surface distance, as in ``point_fields``."""
        _, distance = sample_weights(cond.subject.grid, points)
        background = (distance > self.config.background_threshold).to(points.dtype)
        observed, _, _ = self.skin_to_observation(points, background, cond)
        sdf, _, _ = self.canonical_sdf(points, self.source_features(observed, cond)["f_geo"], cond, grad=False)
        return torch.where(background[:, None] > 0, distance[:, None], sdf)

    # ------------------------------------------------------------------ training
    def get_outputs(self, ray_bundle: RayBundle) -> Dict[str, Tensor]:
        """Training: with ``train_novel_pose_probability``, the source images come from another frame of the
        subject (the animation path), the target's pose and image from this one."""
        if self.training and self.config.train_novel_pose_probability > 0:
            meta = ray_bundle.metadata
            frame_key = int(meta["frame_key"].reshape(-1)[0])
            subject_index, frame_index = self.catalog.frame_keys[frame_key]
            count = len(self.catalog.subjects[subject_index].frames)
            if count > 1 and self._pairing.random() < self.config.train_novel_pose_probability:
                other = self._pairing.choice([f for f in range(count) if f != frame_index])
                meta["source_frame_key"] = torch.full_like(
                    meta["frame_key"], self.catalog.frame_key(subject_index, other)
                )
        return super().get_outputs(ray_bundle)

    def get_training_callbacks(self, attrs: TrainingCallbackAttributes) -> List[TrainingCallback]:
        trainer = attrs.trainer
        total = trainer.config.max_num_iterations if trainer is not None else 0
        self._warmup_steps = mask_warmup_steps(self.config, total)

        def set_step(step: int) -> None:
            self._step = step

        return [TrainingCallback([TrainingCallbackLocation.BEFORE_TRAIN_ITERATION], set_step)]

    @property
    def warming_up(self) -> bool:
        return self._step < self._warmup_steps

    def mask_losses(self, outputs: Dict[str, Tensor], batch: Dict, suffix: str = "") -> Dict[str, Tensor]:
        """MSE of the accumulation and IDR's min-SDF loss against the foreground mask."""
        losses = super().mask_losses(outputs, batch, suffix)
        if self.config.lambda_mask_sdf > 0 and "foreground" in batch and f"min_sdf{suffix}" in outputs:
            losses[f"mask_sdf_loss{suffix}"] = self.config.lambda_mask_sdf * min_sdf_mask_loss(
                outputs[f"min_sdf{suffix}"], batch["foreground"], self.config.mask_sdf_alpha
            )
        return losses

    def get_loss_dict(self, outputs, batch, metrics_dict=None) -> Dict[str, Tensor]:
        cfg = self.config
        losses = {**self.mask_losses(outputs, batch), **self.mask_losses(outputs, batch, "_coarse")}
        if self.warming_up:
            return losses
        losses["rgb_loss"] = cfg.lambda_rgb * F.l1_loss(outputs["rgb"], batch["image"])
        losses["rgb_loss_coarse"] = cfg.lambda_rgb_coarse * F.l1_loss(outputs["rgb_coarse"], batch["image"])
        losses.update(self.feature_losses(outputs, batch))
        for key, value in self.feature_losses(outputs, batch, suffix="_coarse").items():
            losses[key] = cfg.coarse_feature_weight * value
        losses.update(self.perceptual_losses(outputs, batch))
        weights = {
            "reg_eikonal": cfg.lambda_eikonal,
            "reg_displacement": cfg.lambda_displacement,
            "reg_normal_smooth": cfg.lambda_normal_smooth,
            "reg_shape_sdf": cfg.lambda_shape_sdf,
            "reg_shape_normal": cfg.lambda_shape_normal,
        }
        for key, weight in weights.items():
            if key in outputs and weight > 0:
                losses[key.replace("reg_", "") + "_loss"] = weight * outputs[key]
        return losses

    def get_metrics_dict(self, outputs: Dict[str, Tensor], batch: Dict) -> Dict[str, Tensor]:
        metrics = super().get_metrics_dict(outputs, batch)
        metrics["laplace_b"] = self.density.b.detach()
        return metrics


def mask_warmup_steps(config: AniPixelModelConfig, max_num_iterations: int) -> int:
    """The mask-only warm-up in steps: ``mask_warmup_steps`` when set, else the fraction of the run."""
    if config.mask_warmup_steps is not None:
        return config.mask_warmup_steps
    return int(round(config.mask_warmup_fraction * max_num_iterations))


def rotate_normals(
    normals: Float[Tensor, "N 3"], weights: Float[Tensor, "N W"], pose: BodyPose
) -> Float[Tensor, "N 3"]:
    """n = normalize(sum_i w_i R_i n_c): canonical normals carried by the rotations of the blended bone transforms
    (the background bone's rotation is the global one)."""
    bones = torch.cat([pose.transforms[0], pose.global_transform[0][None]], dim=0)[: weights.shape[-1], :3, :3]
    rotation = (weights @ bones.reshape(len(bones), 9).to(weights)).reshape(-1, 3, 3)
    return F.normalize((rotation @ normals[..., None])[..., 0], dim=-1)


def vertex_normals(vertices: Float[Tensor, "V 3"], faces: Tensor) -> Float[Tensor, "V 3"]:
    """Area-weighted vertex normals of a mesh (unused vertices get a zero vector)."""
    tri = vertices[faces]
    face_normals = torch.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=-1)
    normals = torch.zeros_like(vertices).index_add_(0, faces.reshape(-1), face_normals.repeat_interleave(3, 0))
    return F.normalize(normals, dim=-1)


def _pose_to(pose: BodyPose, device) -> BodyPose:
    return replace(pose, **{f.name: getattr(pose, f.name).to(device) for f in fields(pose) if f.name != "canonical"})
