"""GHNeRF's field heads (supplementary 1.2 and 2.1) and ENeRF's image-based colour blending.

V_NeRF = g_NeRF(f_img, f_voxel); sigma = g_sigma(V_NeRF); c = g_c(V_NeRF, d); h = g_h(V_NeRF, f_h); dense pose
uses g_h's architecture with D outputs; g_co regresses the query point. Every head maps (*bs, in) to (*bs, out).
"""

from __future__ import annotations

from typing import Literal, Optional

import torch
from jaxtyping import Bool, Float
from nerfstudio.field_components.encodings import Encoding
from torch import Tensor, nn

from nerfstudio_humanfeat.model_components.pooling import weighted_mean_variance


class NeRFFeatureMLP(nn.Module):
    """g_NeRF: two fully connected layers (ReLU after each) from f_img ⊕ f_voxel to the NeRF feature V_NeRF.

    Args:
        image_dim: channels of the pooled image feature f_img.
        voxel_dim: channels of the cost-volume feature f_voxel (0 when there is none).
        hidden_dim: width of the first layer.
        out_dim: channels of V_NeRF.
    """

    def __init__(self, image_dim: int, voxel_dim: int, hidden_dim: int = 64, out_dim: int = 64) -> None:
        super().__init__()
        self.out_dim = out_dim
        self.layers = nn.Sequential(
            nn.Linear(image_dim + voxel_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, out_dim), nn.ReLU()
        )

    def forward(
        self, image_features: Float[Tensor, "*bs Ci"], voxel_features: Optional[Float[Tensor, "*bs Cv"]] = None
    ) -> Float[Tensor, "*bs out"]:
        inputs = image_features if voxel_features is None else torch.cat([image_features, voxel_features], dim=-1)
        return self.layers(inputs)


class DensityHead(nn.Module):
    """g_sigma: one linear layer and a Softplus, so densities are >= 0.

    The paper's supplementary says "a single linear layer followed by a softmax"; a softmax over one channel is
    the constant 1 and cannot express a density, so this follows ENeRF (which GHNeRF builds on): Softplus.
    """

    def __init__(self, in_dim: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(in_dim, 1), nn.Softplus())

    def forward(self, nerf_features: Float[Tensor, "*bs C"]) -> Float[Tensor, "*bs 1"]:
        return self.layers(nerf_features)


class ColorHead(nn.Module):
    """g_c: two linear layers with a ReLU between, on V_NeRF ⊕ the encoded view direction; sigmoid RGB.

    The paper lists two ReLUs; a ReLU on the output would leave colours unbounded, so the output uses a sigmoid.

    Args:
        in_dim: channels of V_NeRF.
        direction_encoding: encodes the directions given to ``forward`` (e.g. nerfstudio's ``SHEncoding``: its torch
            implementation takes unit vectors, its tcnn one expects them mapped to [0, 1]); None feeds them raw.
        hidden_dim: width of the hidden layer.
    """

    def __init__(self, in_dim: int, direction_encoding: Optional[Encoding] = None, hidden_dim: int = 64) -> None:
        super().__init__()
        self.direction_encoding = direction_encoding
        direction_dim = 3 if direction_encoding is None else direction_encoding.get_out_dim()
        self.layers = nn.Sequential(
            nn.Linear(in_dim + direction_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, 3), nn.Sigmoid()
        )

    def forward(
        self, nerf_features: Float[Tensor, "*bs C"], directions: Float[Tensor, "*bs 3"]
    ) -> Float[Tensor, "*bs 3"]:
        encoded = directions if self.direction_encoding is None else self.direction_encoding(directions)
        return self.layers(torch.cat([nerf_features, encoded], dim=-1))


class HeatmapHead(nn.Module):
    """g_h: linear, ReLU, linear, Sigmoid on V_NeRF ⊕ f_h; one value in [0, 1] per joint.

    Args:
        in_dim: channels of V_NeRF.
        human_dim: channels of the pooled human feature f_h (0 for the ENeRF+Heatmap baseline, which has none).
        num_outputs: J heatmap channels (25 for BODY_25).
        hidden_dim: width of the hidden layer.
    """

    def __init__(self, in_dim: int, human_dim: int = 0, num_outputs: int = 25, hidden_dim: int = 64) -> None:
        super().__init__()
        self.human_dim = human_dim
        self.out_dim = num_outputs
        self.layers = nn.Sequential(
            nn.Linear(in_dim + human_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, num_outputs), nn.Sigmoid()
        )

    def forward(
        self, nerf_features: Float[Tensor, "*bs C"], human_features: Optional[Float[Tensor, "*bs Ch"]] = None
    ) -> Float[Tensor, "*bs out"]:
        if (human_features is None) != (self.human_dim == 0):
            raise ValueError(f"{type(self).__name__} was built with human_dim={self.human_dim}: pass f_h iff > 0.")
        inputs = nerf_features if human_features is None else torch.cat([nerf_features, human_features], dim=-1)
        return self.layers(inputs)


class DensePoseHead(HeatmapHead):
    """g_h's architecture with D outputs: a continuous surface embedding in [0, 1] (the targets' range).

    Args:
        in_dim: channels of V_NeRF.
        human_dim: channels of f_h (0 for none).
        num_outputs: embedding channels D (3 in this project's dense-pose files).
        hidden_dim: width of the hidden layer.
    """

    def __init__(self, in_dim: int, human_dim: int = 0, num_outputs: int = 3, hidden_dim: int = 64) -> None:
        super().__init__(in_dim, human_dim=human_dim, num_outputs=num_outputs, hidden_dim=hidden_dim)


class CoordinateHead(nn.Module):
    """g_co: regresses the 3D query point from V_NeRF (GHNeRF supplementary 2.1).

    The paper describes a linear layer followed by a ReLU; a ReLU output cannot reach negative coordinates, so
    the linear + ReLU is the hidden layer and a final linear layer outputs an unbounded point. Supervise it with
    points in a fixed frame, e.g. normalised to the subject's bounding box (see ``coordinate_loss``).
    """

    def __init__(self, in_dim: int, hidden_dim: int = 64) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, 3))

    def forward(self, nerf_features: Float[Tensor, "*bs C"]) -> Float[Tensor, "*bs 3"]:
        return self.layers(nerf_features)


class ResidualLinear(nn.Module):
    """x + act(Linear(x)): a hidden layer of a residual MLP."""

    def __init__(self, dim: int, activation: nn.Module) -> None:
        super().__init__()
        self.linear = nn.Linear(dim, dim)
        self.activation = activation

    def forward(self, x: Float[Tensor, "*bs C"]) -> Float[Tensor, "*bs C"]:
        return x + self.activation(self.linear(x))


class IBRBlendingHead(nn.Module):
    """ENeRF's colour by image-based rendering: a softmax over source views blends the source colours.

    A per-view MLP on [context, per-view features, view-direction difference] gives a weight logit per view;
    views where the point does not project into the image (``valid`` False) get weight 0; a softmax over the
    remaining views weights the RGB sampled from the source images. A point no view sees gets colour 0.
    Views come first, as in ``pooling`` and ``projection`` (V, *bs, ...).

    IBRNet's (and KeypointNeRF's) deeper variant: ``num_layers`` linear layers whose hidden ones are residual,
    ELU activations, and ``view_statistics`` appending the mean and variance over the valid views of the per-view
    inputs to each view's input, so the views communicate before their weights are predicted.

    Args:
        view_dim: per-view feature channels (ENeRF: image features ⊕ sampled RGB).
        context_dim: channels of a per-point context shared by all views (ENeRF: V_NeRF ⊕ f_voxel ⊕ f_img), 0 for none.
        direction_dim: channels of the direction input (4 for ``pooling.relative_view_directions``).
        hidden_dim: width of the hidden layers.
        num_layers: linear layers (ENeRF: 2; KeypointNeRF: 9), the hidden-to-hidden ones residual.
        activation: "relu" (ENeRF) or "elu" (IBRNet, KeypointNeRF).
        view_statistics: append the visibility-weighted mean and variance over views of the per-view inputs.
    """

    def __init__(
        self,
        view_dim: int,
        context_dim: int = 0,
        direction_dim: int = 4,
        hidden_dim: int = 64,
        num_layers: int = 2,
        activation: Literal["relu", "elu"] = "relu",
        view_statistics: bool = False,
    ) -> None:
        super().__init__()
        if num_layers < 2:
            raise ValueError("IBRBlendingHead needs at least 2 layers")
        self.context_dim = context_dim
        self.view_statistics = view_statistics
        in_dim = context_dim + view_dim + direction_dim
        in_dim = 3 * in_dim if view_statistics else in_dim
        act = nn.ReLU if activation == "relu" else nn.ELU
        hidden = [ResidualLinear(hidden_dim, act()) for _ in range(num_layers - 2)]
        self.layers = nn.Sequential(nn.Linear(in_dim, hidden_dim), act(), *hidden, nn.Linear(hidden_dim, 1))

    def blend_weights(
        self,
        view_features: Float[Tensor, "V *bs C"],
        directions: Float[Tensor, "V *bs D"],
        valid: Optional[Bool[Tensor, " V *bs"]] = None,
        context: Optional[Float[Tensor, "*bs Cc"]] = None,
    ) -> Float[Tensor, "V *bs 1"]:
        """Blending weights: >= 0, 0 for invalid views, summing to 1 over views wherever one is valid."""
        inputs = [view_features, directions]
        if (context is None) != (self.context_dim == 0):
            raise ValueError(f"IBRBlendingHead was built with context_dim={self.context_dim}: pass context iff > 0.")
        if context is not None:
            inputs.insert(0, context.expand(view_features.shape[0], *context.shape))
        inputs = torch.cat(inputs, dim=-1)
        if self.view_statistics:
            weights = None if valid is None else valid[..., None].to(inputs.dtype)
            mean, var = weighted_mean_variance(inputs, weights)
            inputs = torch.cat([inputs, mean.expand_as(inputs), var.expand_as(inputs)], dim=-1)
        logits = self.layers(inputs)
        if valid is None:
            return torch.softmax(logits, dim=0)
        mask = valid[..., None]
        logits = logits.masked_fill(~mask, torch.finfo(logits.dtype).min)
        return torch.softmax(logits, dim=0) * mask.to(logits.dtype)

    def forward(
        self,
        view_features: Float[Tensor, "V *bs C"],
        directions: Float[Tensor, "V *bs D"],
        source_rgb: Float[Tensor, "V *bs 3"],
        valid: Optional[Bool[Tensor, " V *bs"]] = None,
        context: Optional[Float[Tensor, "*bs Cc"]] = None,
    ) -> Float[Tensor, "*bs 3"]:
        weights = self.blend_weights(view_features, directions, valid, context)
        return (weights * source_rgb).sum(dim=0)
