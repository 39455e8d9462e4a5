"""AniPixel's networks besides the SDF (paper 004, Sec. 3.1-3.3), and the neutral-size canonical normalisation.

- ``neutral_coordinates``: a subject's canonical points resized into the neutral-sized body's minimum SMPL box
  (Sec. 3.2) and centred on it: the shared coordinates of the canonical SDF.
- ``DisplacementField``: F_sigma_d(phi(x), l_idt, theta) -> Delta, the subject-specific residual (eq. 1, 3).
- ``AppearanceFusion``: F_sigma_c. Per source view i: the relative spatial encoding phi'(x_o, J_o) (KeypointNeRF,
  ``model_components.keypoint_encoding``) fused with the pixel-aligned geometry features f_geo^i (KeypointNeRF's
  per-view fusion: spatial layer, then with the hourglass' deep map, then with its shallow map, Softplus), mean and
  variance pooled over the views into the fused f_geo that conditions the SDF; then IBRNet-style blending weights
  w_i from [f_geo, f_rgb^i, c_i, n_o] (``heads.IBRBlendingHead`` with the normal in place of KeypointNeRF's view
  directions). The paper gives both outputs to one network F_sigma_c; since n_o needs the SDF and the SDF needs
  f_geo, the network is split there: the trunk makes f_geo, the blending branch adds the normal.
"""

from __future__ import annotations

from typing import Optional

import torch
from jaxtyping import Bool, Float
from torch import Tensor, nn

from nerfstudio_humanfeat.body.canonical_box import CanonicalBox
from nerfstudio_humanfeat.body.weight_field import frequency_encoding
from nerfstudio_humanfeat.fields.keypointnerf_field import softplus_mlp
from nerfstudio_humanfeat.model_components.heads import IBRBlendingHead
from nerfstudio_humanfeat.model_components.pooling import weighted_mean_variance


def neutral_coordinates(
    points: Float[Tensor, "*bs 3"], subject_box: CanonicalBox, neutral_box: CanonicalBox
) -> Float[Tensor, "*bs 3"]:
    """Canonical points of a subject in the neutral-sized body's frame: the subject's minimum box mapped onto the
    neutral one (per axis), then centred on the neutral box (metres of the neutral body)."""
    centre = (neutral_box.lower + neutral_box.upper).to(points) * 0.5
    return subject_box.to_box(points, neutral_box) - centre


class DisplacementField(nn.Module):
    """Delta = F(phi(x), l_idt, theta): a ReLU MLP with a zero-initialised output (no displacement at first).

    Args:
        latent_dim: channels of l_idt.
        pose_dim: channels of theta (69: the body joints' axis-angles, the global rotation excluded).
        hidden_dim, num_layers: the MLP.
        num_frequencies: of the positional encoding phi (NeRF's).
    """

    def __init__(
        self, latent_dim: int, pose_dim: int = 69, hidden_dim: int = 128, num_layers: int = 4, num_frequencies: int = 6
    ) -> None:
        super().__init__()
        self.num_frequencies = num_frequencies
        dims = [3 * (1 + 2 * num_frequencies) + latent_dim + pose_dim] + [hidden_dim] * (num_layers - 1)
        layers: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        last = nn.Linear(dims[-1], 3)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.mlp = nn.Sequential(*layers, last)

    def forward(
        self, points: Float[Tensor, "N 3"], latent: Float[Tensor, "1 L"], pose: Float[Tensor, "1 P"]
    ) -> Float[Tensor, "N 3"]:
        inputs = [frequency_encoding(points, self.num_frequencies), latent.expand(points.shape[0], -1)]
        inputs.append(pose.expand(points.shape[0], -1))
        return self.mlp(torch.cat(inputs, dim=-1))


class AppearanceFusion(nn.Module):
    """F_sigma_c: fused geometry features f_geo and per-view colour-blending weights.

    Args:
        encoding_dim: channels of the relative spatial encoding per view (24 joints x 7 = 168).
        low_dim, high_dim: channels of the hourglass' deep and shallow maps (f_geo^i).
        texture_dim: channels of the appearance encoder's map (f_rgb^i).
        width: width of the per-view fusion layers; f_geo has ``width`` channels (mean and variance of width / 2).
        blend_hidden, blend_layers: the blending MLP (IBRNet / KeypointNeRF: 64 wide, 9 layers, ELU).
        compressed_dim: f_geo's channels in the blending MLP's input (KeypointNeRF's reference code: 24).
        normal_dim: channels of the per-view normal input (0: no normals, the "w/o normals" ablation).
    """

    def __init__(
        self,
        encoding_dim: int,
        low_dim: int,
        high_dim: int,
        texture_dim: int,
        width: int = 128,
        blend_hidden: int = 64,
        blend_layers: int = 9,
        compressed_dim: int = 24,
        normal_dim: int = 4,
    ) -> None:
        super().__init__()
        self.spatial = softplus_mlp((encoding_dim, width))
        self.blend = softplus_mlp((width + low_dim, width, width))
        self.fuse = softplus_mlp((width + high_dim, width, width // 2))
        self.out_dim = 2 * (width // 2)
        self.compress = nn.Linear(self.out_dim, compressed_dim)
        self.normal_dim = normal_dim
        self.blending = IBRBlendingHead(
            texture_dim + 3, context_dim=compressed_dim, direction_dim=normal_dim, hidden_dim=blend_hidden,
            num_layers=blend_layers, activation="elu", view_statistics=True,
        )  # fmt: skip

    def geometry(
        self,
        encoding: Float[Tensor, "V N E"],
        low: Float[Tensor, "V N Cl"],
        high: Float[Tensor, "V N Ch"],
        valid: Bool[Tensor, "V N"],
    ) -> Float[Tensor, "N G"]:
        """The fused f_geo: per-view fusion, mean and variance over the views that see the point."""
        per_view = self.blend(torch.cat([self.spatial(encoding), low], dim=-1))
        per_view = self.fuse(torch.cat([per_view, high], dim=-1))
        mean, var = weighted_mean_variance(per_view, valid[..., None].to(per_view.dtype))
        return torch.cat([mean, var], dim=-1)

    def blend_weights(
        self,
        f_geo: Float[Tensor, "N G"],
        texture: Float[Tensor, "V N Ct"],
        rgb: Float[Tensor, "V N 3"],
        normals: Optional[Float[Tensor, "V N D"]],
        valid: Bool[Tensor, "V N"],
    ) -> Float[Tensor, "V N 1"]:
        """w_i: softmax over the views that see the point (zero elsewhere)."""
        if normals is None:
            normals = rgb.new_zeros(*rgb.shape[:-1], self.normal_dim)
        return self.blending.blend_weights(torch.cat([texture, rgb], dim=-1), normals, valid, self.compress(f_geo))


def normals_in_views(
    normals: Float[Tensor, "N 3"], points: Float[Tensor, "N 3"], world_to_camera: Float[Tensor, "V 3 4"]
) -> Float[Tensor, "V N 4"]:
    """Each source view's normal input: the unit normal in that camera's frame and its cosine with the direction
    from the point to the camera centre (how squarely the view sees the surface)."""
    rotation = world_to_camera[:, :, :3]
    in_camera = torch.einsum("vij,nj->vni", rotation, normals)
    centres = -torch.einsum("vji,vj->vi", rotation, world_to_camera[:, :, 3])
    to_camera = nn.functional.normalize(centres[:, None] - points[None], dim=-1)
    cosine = (to_camera * normals[None]).sum(-1, keepdim=True)
    return torch.cat([in_camera, cosine], dim=-1)
