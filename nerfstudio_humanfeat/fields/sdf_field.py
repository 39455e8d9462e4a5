"""A conditioned signed distance field on a hash grid, with VolSDF's Laplace-CDF density (AniPixel 3.2, VolSDF).

- ``laplace_density``: sigma = (1 / b) (1/2 + 1/2 sign(s) (exp(-|s| / b) - 1)), the scaled CDF of a zero-mean Laplace
  distribution at -s (VolSDF eq. 2 with alpha = 1 / b; AniPixel eq. 5). ``LaplaceDensity`` learns b (VolSDF's
  parameterisation b = |b_param| + b_min, initial 0.1 there).
- ``SDFNetwork``: s = ||x|| - r + MLP(hash(x), x, conditioning), plus a feature vector: IDR/VolSDF's geometric
  initialisation in closed form (their initialisation approximates the sphere's distance ||x|| - r with wide layers;
  here the sphere is an explicit base and the MLP's SDF output starts at zero, so at initialisation s is exactly the
  signed distance to a sphere of radius ``init_radius`` around the origin of x, whatever the conditioning),
  Softplus(beta=100) activations. The hash grid is nerfstudio's ``HashEncoding``: tinycudann when
  it is installed and the points are on a GPU, else its torch implementation.
- ``sdf_gradient``: ds/dx by autograd (create_graph while training, for the Eikonal loss).
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from jaxtyping import Float
from nerfstudio.field_components.encodings import HashEncoding
from torch import Tensor, nn


def laplace_density(sdf: Float[Tensor, "*bs 1"], b: Float[Tensor, ""] | float) -> Float[Tensor, "*bs 1"]:
    """VolSDF's density: alpha Psi_b(-s) with alpha = 1 / b (Psi_b: the CDF of the Laplace(0, b) distribution)."""
    b = torch.as_tensor(b, dtype=sdf.dtype, device=sdf.device)
    return (0.5 + 0.5 * sdf.sign() * torch.expm1(-sdf.abs() / b)) / b


class LaplaceDensity(nn.Module):
    """``laplace_density`` with a learnable scale b = |b_param| + b_min (VolSDF), at most ``b_max`` when given."""

    def __init__(self, init_b: float = 0.1, b_min: float = 1e-4, b_max: Optional[float] = None) -> None:
        super().__init__()
        self.b_min, self.b_max = b_min, b_max
        self.b_param = nn.Parameter(torch.tensor(float(init_b) - b_min))

    @property
    def b(self) -> Float[Tensor, ""]:
        b = self.b_param.abs() + self.b_min
        return b if self.b_max is None else b.clamp(max=self.b_max)

    def forward(self, sdf: Float[Tensor, "*bs 1"]) -> Float[Tensor, "*bs 1"]:
        return laplace_density(sdf, self.b)


class SDFNetwork(nn.Module):
    """Signed distance and a feature vector of points, conditioned on per-point vectors.

    Args:
        condition_dim: channels of the conditioning concatenated to the encoded point (0: none).
        feature_dim: channels of the feature vector returned with s (0: none).
        hidden_dim: width of the hidden layers.
        num_layers: hidden layers.
        num_levels, min_res, max_res, log2_hashmap_size, features_per_level: the hash grid (Instant-NGP's).
        init_radius: radius of the initial sphere, in the units of the points.
        bound: the points' half extent: ``forward`` maps [-bound, bound]^3 to the hash grid's [0, 1]^3.
        implementation: "tcnn" (falls back to torch when tinycudann is missing) or "torch".
    """

    def __init__(
        self,
        condition_dim: int = 0,
        feature_dim: int = 0,
        hidden_dim: int = 64,
        num_layers: int = 2,
        num_levels: int = 16,
        min_res: int = 16,
        max_res: int = 1024,
        log2_hashmap_size: int = 19,
        features_per_level: int = 2,
        init_radius: float = 0.5,
        bound: float = 1.0,
        implementation: str = "tcnn",
    ) -> None:
        super().__init__()
        self.bound = bound
        self.feature_dim = feature_dim
        self.condition_dim = condition_dim
        self.encoding = HashEncoding(
            num_levels=num_levels,
            min_res=min_res,
            max_res=max_res,
            log2_hashmap_size=log2_hashmap_size,
            features_per_level=features_per_level,
            implementation=implementation,  # type: ignore[arg-type]
        )
        self.encoding_dim = self.encoding.get_out_dim()
        in_dim = 3 + self.encoding_dim + condition_dim
        dims = [in_dim] + [hidden_dim] * num_layers
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.out = nn.Linear(dims[-1], 1 + feature_dim)
        self.activation = nn.Softplus(beta=100)
        self._geometric_init(init_radius)

    def _geometric_init(self, radius: float) -> None:
        """s(x) = ||x|| - radius at initialisation: the residual MLP's SDF output starts at zero."""
        self.radius = radius
        nn.init.zeros_(self.out.weight[:1])
        nn.init.zeros_(self.out.bias[:1])

    def forward(
        self, points: Float[Tensor, "N 3"], condition: Optional[Float[Tensor, "N C"]] = None
    ) -> Tuple[Float[Tensor, "N 1"], Float[Tensor, "N F"]]:
        """(s, features) of points in [-bound, bound]^3 (the hash grid clamps points outside)."""
        unit = ((points / self.bound + 1.0) * 0.5).clamp(0.0, 1.0)
        inputs = [points, self.encoding(unit).to(points.dtype)]
        if self.condition_dim:
            if condition is None:
                raise ValueError(f"this SDF network is conditioned on {self.condition_dim} channels: pass `condition`")
            inputs.append(condition)
        x = torch.cat(inputs, dim=-1)
        for layer in self.hidden:
            x = self.activation(layer(x))
        out = self.out(x)
        return points.norm(dim=-1, keepdim=True) - self.radius + out[..., :1], out[..., 1:]


def sdf_gradient(
    sdf: Float[Tensor, "N 1"], points: Float[Tensor, "N 3"], create_graph: bool = True
) -> Float[Tensor, "N 3"]:
    """ds/dx by autograd; ``points`` must be part of the graph that made ``sdf`` (requires_grad)."""
    (grad,) = torch.autograd.grad(
        sdf, points, grad_outputs=torch.ones_like(sdf), create_graph=create_graph, retain_graph=True
    )
    return grad


def eikonal_loss(gradients: Float[Tensor, "N 3"]) -> Float[Tensor, ""]:
    """IGR's Eikonal term mean((||grad s|| - 1)^2): zero exactly for a signed distance function."""
    return ((gradients.norm(dim=-1) - 1.0) ** 2).mean()


def min_sdf_mask_loss(
    min_sdf: Float[Tensor, "R 1"], mask: Float[Tensor, "R 1"], alpha: float = 50.0
) -> Float[Tensor, ""]:
    """IDR's mask loss on the minimum SDF along each ray: BCE(sigmoid(-alpha min s), mask) / alpha.

    A ray in the foreground mask must reach inside the surface (min s < 0), a background ray must stay outside.
    """
    return F.binary_cross_entropy_with_logits(-alpha * min_sdf, mask.to(min_sdf.dtype)) / alpha


def normal_smoothness_loss(normals: Float[Tensor, "N 3"], neighbour_normals: Float[Tensor, "N 3"]) -> Float[Tensor, ""]:
    """Mean squared difference of unit normals at points and at small perturbations of them (UNISURF)."""
    return ((normals - neighbour_normals) ** 2).sum(dim=-1).mean()
